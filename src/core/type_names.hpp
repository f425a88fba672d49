// The names of exception types as they travel between processes: demangled, with the public base
// classes a receiver matches against (dx::remote_error::type_bases). Private to dx.
#pragma once

#include <dx/retry.hpp>  // type_name_of

#include <string>
#include <typeinfo>
#include <vector>

namespace dx::detail {

/// The demangled names of t's public base classes, nearest first, each once (at most 32). Empty
/// for a type that is not a class with bases.
std::vector<std::string> public_base_names(const std::type_info& t);

}  // namespace dx::detail
