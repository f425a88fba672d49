// The encoders of the common types (see builtin_codec in dx/serialize.hpp), compiled once here, so
// that users' files instantiate none for these types. Their bytes are those of Boost binary
// archives. Scalars and strings write those bytes directly: a Boost archive builds a std::locale
// each time it is made (a microsecond or more), which was most of the cost of encoding an int, and
// a workflow encodes every parameter of every step twice (checking it, then sending it).
#include <dx/archive.hpp>

#include <cstring>
#include <span>
#include <string>

namespace dx::detail {

namespace {

[[noreturn]] void short_input() {
  throw boost::archive::archive_exception(boost::archive::archive_exception::input_stream_error);
}

// A Boost binary archive of a primitive is its object's bytes (save_binary(&v, sizeof v)).
template <class T>
void write_scalar(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <class T>
T read_scalar(std::span<const char> in) {
  if (in.size() < sizeof(T)) short_input();
  T v;
  std::memcpy(&v, in.data(), sizeof v);
  return v;
}

}  // namespace

#define DX_DETAIL_DEFINE_SCALAR_CODEC(...)                                                                 \
  void builtin_codec<__VA_ARGS__>::write(std::string& out, const __VA_ARGS__& v) { write_scalar(out, v); } \
  __VA_ARGS__ builtin_codec<__VA_ARGS__>::read(std::span<const char> in) { return read_scalar<__VA_ARGS__>(in); }
// clang-format off
DX_DETAIL_DEFINE_SCALAR_CODEC(char) DX_DETAIL_DEFINE_SCALAR_CODEC(signed char)
DX_DETAIL_DEFINE_SCALAR_CODEC(unsigned char) DX_DETAIL_DEFINE_SCALAR_CODEC(short)
DX_DETAIL_DEFINE_SCALAR_CODEC(unsigned short) DX_DETAIL_DEFINE_SCALAR_CODEC(int)
DX_DETAIL_DEFINE_SCALAR_CODEC(unsigned) DX_DETAIL_DEFINE_SCALAR_CODEC(long)
DX_DETAIL_DEFINE_SCALAR_CODEC(unsigned long) DX_DETAIL_DEFINE_SCALAR_CODEC(long long)
DX_DETAIL_DEFINE_SCALAR_CODEC(unsigned long long) DX_DETAIL_DEFINE_SCALAR_CODEC(float)
DX_DETAIL_DEFINE_SCALAR_CODEC(double) DX_DETAIL_DEFINE_SCALAR_CODEC(long double)
// clang-format on
#undef DX_DETAIL_DEFINE_SCALAR_CODEC

                        void builtin_codec<bool>::write(std::string& out, const bool& v) {
  out.push_back(v ? 1 : 0);
}

bool builtin_codec<bool>::read(std::span<const char> in) {
  if (in.empty()) short_input();
  // Any other byte would make an invalid bool (Boost copies the byte into it).
  if (in[0] != 0 && in[0] != 1) throw std::runtime_error("dx: invalid bool in archive");
  return in[0] == 1;
}

// A string is its length as a std::size_t, then its bytes.
void builtin_codec<std::string>::write(std::string& out, const std::string& v) {
  write_scalar(out, static_cast<std::size_t>(v.size()));
  out.append(v);
}

std::string builtin_codec<std::string>::read(std::span<const char> in) {
  const auto length = read_scalar<std::size_t>(in);
  // Checked before anything is allocated: a damaged length cannot ask for more than is there.
  if (length > in.size() - sizeof(std::size_t)) short_input();
  return std::string(in.data() + sizeof(std::size_t), length);
}

#define DX_DETAIL_DEFINE_BUILTIN_CODEC(...)                                        \
  void builtin_codec<__VA_ARGS__>::write(std::string& out, const __VA_ARGS__& v) { \
    archive_codec<__VA_ARGS__>::write(out, v);                                     \
  }                                                                                \
  __VA_ARGS__ builtin_codec<__VA_ARGS__>::read(std::span<const char> in) {         \
    return archive_codec<__VA_ARGS__>::read(in);                                   \
  }
DX_DETAIL_CONTAINER_CODECS(DX_DETAIL_DEFINE_BUILTIN_CODEC)
#undef DX_DETAIL_DEFINE_BUILTIN_CODEC

}  // namespace dx::detail
