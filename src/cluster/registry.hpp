// What dx's own layers ask of the registry of functions (DX_REMOTE) beyond dx/detail/remote_call.hpp.
#pragma once

#include <string>
#include <vector>

namespace dx::detail {

/// The names of the registered functions, sorted, without cluster::map's chunk runners.
/// Thread-safe; does not block.
std::vector<std::string> remote_function_names();

}  // namespace dx::detail
