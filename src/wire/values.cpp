// The encoders of the common types (see builtin_codec in dx/serialize.hpp): Boost binary archives
// compiled once here, so that users' files instantiate none for these types.
#include <dx/archive.hpp>

#include <span>
#include <string>

namespace dx::detail {

#define DX_DETAIL_DEFINE_BUILTIN_CODEC(...)                                        \
  void builtin_codec<__VA_ARGS__>::write(std::string& out, const __VA_ARGS__& v) { \
    archive_codec<__VA_ARGS__>::write(out, v);                                     \
  }                                                                                \
  __VA_ARGS__ builtin_codec<__VA_ARGS__>::read(std::span<const char> in) {         \
    return archive_codec<__VA_ARGS__>::read(in);                                   \
  }
DX_DETAIL_SCALAR_CODECS(DX_DETAIL_DEFINE_BUILTIN_CODEC)
DX_DETAIL_CONTAINER_CODECS(DX_DETAIL_DEFINE_BUILTIN_CODEC)
#undef DX_DETAIL_DEFINE_BUILTIN_CODEC

}  // namespace dx::detail
