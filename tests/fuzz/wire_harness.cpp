#include "wire_harness.hpp"

#include "wire/frame.hpp"
#include "wire/messages.hpp"

#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <tuple>
#include <utility>

namespace dx::fuzz {

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "wire harness: %s: %s\n", what, detail.c_str());
  std::abort();
}

/// For an accepted frame of type M: its canonical encoding must decode, and re-encode identically.
template <class M>
void check_canonical(const wire::frame& f) {
  M first;
  try {
    first = wire::decode<M>(f);
  } catch (const std::exception& e) {
    fail("check_message accepted a frame decode rejects", e.what());
  }
  const wire::frame again = wire::encode(first, f.payload);
  if (auto why = wire::check_message(again)) fail("the re-encoding of an accepted message is rejected", *why);
  M second;
  try {
    second = wire::decode<M>(again);
  } catch (const std::exception& e) {
    fail("the re-encoding of an accepted message does not decode", e.what());
  }
  if (wire::encode(second).archive != again.archive)
    fail("encode(decode(encode(m))) differs from encode(m)", wire::msg_name(f.type));
}

template <std::size_t... I>
void check_canonical_as(std::uint16_t type, const wire::frame& f, std::index_sequence<I...>) {
  ((type == I + 1 ? check_canonical<std::tuple_element_t<I, wire::message_types>>(f) : void()), ...);
}

/// check_message on `f`; on acceptance, the canonical round trip. True when accepted.
bool check(const wire::frame& f) {
  std::optional<std::string> why;
  try {
    why = wire::check_message(f);
  } catch (const std::exception& e) {
    fail("check_message threw", e.what());
  }
  if (why) {
    if (why->empty()) fail("check_message rejected a frame without a reason", wire::msg_name(f.type));
    return false;
  }
  if (f.type == 0 || f.type > wire::max_msg_type)
    fail("check_message accepted an unknown type", std::to_string(f.type));
  check_canonical_as(f.type, f, std::make_index_sequence<wire::max_msg_type>{});
  return true;
}

}  // namespace

int run_wire_input(const std::uint8_t* data, std::size_t size) {
  const std::span<const char> bytes(reinterpret_cast<const char*>(data), size);
  int accepted = 0;

  // 1. The input as a whole frame.
  wire::frame f;
  std::optional<std::string> why;
  try {
    why = wire::parse_frame(bytes, harness_max_body, f);
  } catch (const std::exception& e) {
    fail("parse_frame threw", e.what());
  }
  if (!why) {
    if (wire::frame_bytes(f) != std::string(bytes.data(), bytes.size()))
      fail("frame_bytes(parse_frame(x)) != x", std::to_string(size) + " bytes");
    if (f.payload && f.payload->empty()) fail("parse_frame made an empty payload", "");
    accepted += check(f) ? 1 : 0;
  } else if (why->empty()) {
    fail("parse_frame rejected a frame without a reason", "");
  }

  // 2. The input as the archive of each message type, without payload.
  wire::frame body;
  body.archive.assign(bytes.data(), bytes.size());
  for (std::uint16_t type = 0; type <= wire::max_msg_type + 1; ++type) {
    body.type = type;
    accepted += check(body) ? 1 : 0;
  }
  return accepted;
}

}  // namespace dx::fuzz
