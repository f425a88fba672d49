// Which journal locations are Redis databases (journal.hpp, is_redis_location): built with or
// without hiredis, so that a redis:// location is never taken for a file name.
#include "journal/journal.hpp"

namespace dx::detail {

bool is_redis_location(std::string_view location) noexcept { return location.substr(0, 8) == "redis://"; }

}  // namespace dx::detail
