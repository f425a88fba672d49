// Shared helpers for dx's tests.
#pragma once

#include <dx/future.hpp>

#include <catch2/catch.hpp>

#include <chrono>

namespace dx_test {

/// Every wait in a test is bounded: a hang becomes a failure with a message, not a stuck run.
inline constexpr std::chrono::seconds bound{20};

template <class Fut>
void require_ready_soon(const Fut& f) {
  REQUIRE(f.wait_for(bound) == dx::future_status::ready);
}

/// get() after a bounded wait.
template <class Fut>
decltype(auto) get_soon(Fut&& f) {
  require_ready_soon(f);
  return f.get();
}

}  // namespace dx_test
