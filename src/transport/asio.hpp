// The one way dx's sources include Boost.Asio: every Asio user in src/ includes this header
// instead of <boost/asio...> directly, so the workaround below lives in one place. Asio stays
// private to the library; no header in include/ may include this one.
//
//   #include "transport/asio.hpp"
//   dx::asio::io_context io;
#pragma once

// Must come before any Asio header: Boost 1.74's boost/asio/awaitable.hpp uses std::exchange
// without including <utility>, which g++ 12 in C++20 mode does not pull in transitively.
#include <utility>

#include <boost/asio.hpp>

namespace dx {
namespace asio = boost::asio;
}  // namespace dx
