// The Redis journal of a dx built without hiredis: a redis:// location is refused with the reason.
#include "journal/redis_journal.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

namespace dx::detail {

std::unique_ptr<journal> open_redis_journal(std::string_view location, journal::open_mode, std::chrono::milliseconds) {
  throw_error(error_kind::generic,
              fmt::format("cannot open journal {}: this dx was built without Redis support (hiredis was not found at "
                          "build time; install libhiredis-dev and build again)",
                          location));
}

}  // namespace dx::detail
