// dx::link::emulator: a TCP proxy on loopback that makes a connection behave like a WAN link
// (one-way delay, jitter that never reorders bytes, a bandwidth cap, stalls and cuts), for dx's
// tests and benchmarks on machines without netem. Not part of dx::dx and never installed.
//
//   dx::link::emulator link("127.0.0.1:7700", {.delay = 50ms}, {.delay = 50ms});
//   connect_to(link.address());   // every byte now takes 50 ms each way
//   link.stall(true);             // a partition: bytes are held, connections stay open
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dx::link {

/// One direction of a link.
struct profile {
  std::chrono::microseconds delay{0};   // one-way latency added to every byte
  std::chrono::microseconds jitter{0};  // uniform extra delay in [0, jitter]; bytes are never reordered
  double bytes_per_second = 0;          // bandwidth cap; 0 is unlimited
};

/// Listens on one address and forwards each connection it accepts to a target, shaping the bytes
/// of each direction by its profile. Runs one thread of its own; every public method is
/// thread-safe.
class emulator {
 public:
  /// Listens on `listen` ("host:port", port 0 picks a free one) and forwards each accepted
  /// connection to `target` ("host:port"). `to_target` shapes the bytes the connecting side
  /// sends, `from_target` those it receives. Throws std::invalid_argument for a malformed address
  /// or profile, std::system_error when the target does not resolve or `listen` cannot be bound.
  emulator(std::string target, profile to_target, profile from_target, std::string listen = "127.0.0.1:0");
  /// Closes every connection at once and joins the emulator's thread.
  ~emulator();
  emulator(const emulator&) = delete;
  emulator& operator=(const emulator&) = delete;

  /// The address to connect to, "127.0.0.1:PORT" (an IPv6 host in brackets).
  std::string address() const;
  /// New profiles for the bytes read from now on, on live connections too; bytes already held
  /// keep their delivery times. Blocks until applied. Throws std::invalid_argument for a negative
  /// delay, jitter or bandwidth.
  void set_profiles(profile to_target, profile from_target);
  /// on: no byte moves in either direction (held bytes stay held, connections stay open); off:
  /// the flow resumes and bytes whose time has passed are delivered at once. Blocks until applied.
  void stall(bool on);
  /// Closes every current connection on both sides at once, dropping held bytes; new connections
  /// are still accepted. Blocks until done.
  void cut();
  /// Connections accepted and not yet closed.
  std::size_t connections() const;
  /// Bytes delivered so far, both directions together.
  std::uint64_t bytes_forwarded() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace dx::link
