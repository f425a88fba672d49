#include "wire/frame.hpp"

#include <fmt/format.h>

#include <cstring>
#include <limits>

namespace dx::wire {

namespace {
template <class T>
void put_le(char*& out, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i)
    *out++ = static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff);
}
template <class T>
T get_le(const char*& in) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(*in++)) << (8 * i);
  return static_cast<T>(v);
}
}  // namespace

std::array<char, header_size> encode_header(const frame_header& h) noexcept {
  std::array<char, header_size> out{};
  char* p = out.data();
  put_le(p, h.magic);
  put_le(p, h.version);
  put_le(p, h.type);
  put_le(p, h.flags);
  put_le(p, h.archive_size);
  put_le(p, h.payload_size);
  return out;
}

std::array<char, header_size> encode_header(const frame& f) noexcept {
  frame_header h;
  h.type = f.type;
  h.flags = f.flags;
  h.archive_size = static_cast<std::uint32_t>(f.archive.size());
  h.payload_size = f.payload ? f.payload->size() : 0;
  return encode_header(h);
}

frame_header decode_header(const char* in) noexcept {
  frame_header h;
  h.magic = get_le<std::uint32_t>(in);
  h.version = get_le<std::uint16_t>(in);
  h.type = get_le<std::uint16_t>(in);
  h.flags = get_le<std::uint32_t>(in);
  h.archive_size = get_le<std::uint32_t>(in);
  h.payload_size = get_le<std::uint64_t>(in);
  return h;
}

std::optional<std::string> check_header(const frame_header& h, std::uint64_t max_body) {
  if (h.magic != frame_magic) return fmt::format("not a dx frame (magic {:#010x})", h.magic);
  if (h.version != protocol_version)
    return fmt::format("protocol version {} is not supported (this side speaks {})", h.version, protocol_version);
  // Compared without forming archive + payload first: with a limit near 2^64 the sum could wrap.
  if (h.payload_size > max_body || h.archive_size > max_body - h.payload_size) {
    if (h.payload_size > std::numeric_limits<std::uint64_t>::max() - h.archive_size)
      return fmt::format("frame body of {} + {} bytes is over the limit of {} bytes", h.archive_size, h.payload_size,
                         max_body);
    return fmt::format("frame body of {} bytes is over the limit of {} bytes", h.archive_size + h.payload_size,
                       max_body);
  }
  return std::nullopt;
}

std::string frame_bytes(const frame& f) {
  const auto header = encode_header(f);
  std::string out;
  out.reserve(header_size + f.body_size());
  out.append(header.data(), header.size());
  out.append(f.archive);
  if (f.payload) out.append(*f.payload);
  return out;
}

std::optional<std::string> parse_frame(std::span<const char> bytes, std::uint64_t max_body, frame& out) {
  if (bytes.size() < header_size)
    return fmt::format("truncated frame: {} bytes, the header alone is {} bytes", bytes.size(), header_size);
  const frame_header h = decode_header(bytes.data());
  if (auto why = check_header(h, max_body)) return why;
  // check_header bounded archive + payload by max_body without overflow, so the sum is exact.
  const std::uint64_t body = std::uint64_t{h.archive_size} + h.payload_size;
  const std::uint64_t present = bytes.size() - header_size;
  if (present < body)
    return fmt::format("truncated frame: the header announces a body of {} bytes ({} archive + {} payload), {} present",
                       body, h.archive_size, h.payload_size, present);
  if (present > body) return fmt::format("{} bytes after the end of the frame", present - body);

  frame f;
  f.type = h.type;
  f.flags = h.flags;
  const char* p = bytes.data() + header_size;
  f.archive.assign(p, h.archive_size);
  if (h.payload_size > 0)
    f.payload = std::make_shared<const std::string>(p + h.archive_size, static_cast<std::size_t>(h.payload_size));
  out = std::move(f);
  return std::nullopt;
}

}  // namespace dx::wire
