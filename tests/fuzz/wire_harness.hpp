// The body of the wire fuzzer, shared by the libFuzzer target (fuzz_wire.cpp) and the ordinary
// test that replays the corpus and random mutations (replay_corpus.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dx::fuzz {

/// The largest body parse_frame accepts in the harness.
inline constexpr std::uint64_t harness_max_body = std::uint64_t{1} << 20;

/// Runs the wire decoding entry points on `data`: parse_frame + check_message on it as a whole
/// frame, then check_message on it as the archive of each message type. Whatever they accept must
/// re-encode to bytes that decode again to the same bytes. Aborts with a message on stderr when
/// an invariant breaks; returns how many of the 1 + max_msg_type attempts were accepted.
int run_wire_input(const std::uint8_t* data, std::size_t size);

}  // namespace dx::fuzz
