// The encoder of dx::chunk (dx/chunk.hpp), compiled once so that a function taking a chunk needs
// no <dx/archive.hpp>.
#include <dx/chunk.hpp>

#include <dx/archive.hpp>

namespace dx::detail {

void builtin_codec<chunk>::write(std::string& out, const chunk& v) { archive_codec<chunk>::write(out, v); }

chunk builtin_codec<chunk>::read(std::span<const char> in) { return archive_codec<chunk>::read(in); }

}  // namespace dx::detail
