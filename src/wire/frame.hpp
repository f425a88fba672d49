// The unit every transport carries: a fixed 24-byte header and a body. The body is a Boost
// binary archive of one message (see messages.hpp) followed by an optional raw payload, which
// carries large values (results, arguments) so they are never copied into the archive.
//
// Header, little-endian:
//   u32 magic "DXW1" | u16 protocol version | u16 message type | u32 flags |
//   u32 archive size | u64 payload size
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace dx::wire {

inline constexpr std::uint32_t frame_magic = 0x31575844;  // "DXW1" read as little-endian bytes
inline constexpr std::uint16_t protocol_version = 5;
inline constexpr std::size_t header_size = 24;

/// The two high bits of a header's flags belong to the transport (the rest are the sender's,
/// carried as they are; a sender's own high bits are cleared). They mark a message larger than
/// the frame limit, sent as a stream: first a
/// header alone with `frame_streamed`, announcing the message's type and its whole archive and
/// payload sizes (bounded by the value limit, and accepted only from a peer that passed the
/// handshake), then headers with `frame_chunk` and the same type, each followed by the next
/// bytes (at most a frame) of the archive, then the payload, until all have come. Nothing else
/// travels between them. The receiver sizes its buffers from the announcement and reads every
/// chunk straight into them.
inline constexpr std::uint32_t frame_streamed = 1u << 31;
inline constexpr std::uint32_t frame_chunk = 1u << 30;
inline constexpr std::uint32_t frame_transport_flags = frame_streamed | frame_chunk;

struct frame {
  std::uint16_t type = 0;
  std::uint32_t flags = 0;
  std::string archive;
  /// Large bytes sent after the archive without copying; shared so a sender may keep a result
  /// and send it to many peers.
  std::shared_ptr<const std::string> payload;
  /// Set by a transport on a received frame: microseconds from its header's arrival to its body's
  /// last byte, which for a large body is how long it took on the wire (its link's bandwidth).
  /// Not sent.
  std::uint64_t receive_us = 0;

  std::uint64_t body_size() const noexcept { return archive.size() + (payload ? payload->size() : 0); }
};

struct frame_header {
  std::uint32_t magic = frame_magic;
  std::uint16_t version = protocol_version;
  std::uint16_t type = 0;
  std::uint32_t flags = 0;
  std::uint32_t archive_size = 0;
  std::uint64_t payload_size = 0;
};

std::array<char, header_size> encode_header(const frame& f) noexcept;
std::array<char, header_size> encode_header(const frame_header& h) noexcept;
frame_header decode_header(const char* bytes) noexcept;

/// Why a header is unacceptable (wrong magic, wrong version, body over `max_body`), or nullopt.
/// Message types are checked when the body is decoded.
std::optional<std::string> check_header(const frame_header& h, std::uint64_t max_body);

/// The frame as it travels: the encoded header, the archive, then the payload.
std::string frame_bytes(const frame& f);

/// Parses `bytes`, which must hold exactly one frame as frame_bytes writes it, into `out`.
/// Returns why the bytes are not such a frame, or nullopt on success: "truncated frame: ..." when
/// the header or the body announced by the header is incomplete, check_header's reasons (bad
/// magic, unsupported version, body over `max_body`), or "... bytes after the end of the frame"
/// when bytes follow it. The message type and the body are not checked: check_message
/// (messages.hpp) does that. As on a socket, a frame without payload bytes gets a null payload.
/// `out` is only assigned on success.
std::optional<std::string> parse_frame(std::span<const char> bytes, std::uint64_t max_body, frame& out);

}  // namespace dx::wire
