// A worker's round trip as the head (and the simulator playing it) measures it: pings carry a number the head chose,
// the worker echoes it, and the time between is a sample on the head's clock alone (a worker's clock, or a timestamp it
// makes up, is never read). Samples are smoothed much as TCP smooths them (RFC 6298), a mean and a mean deviation each
// moving by a quarter of each error: pings come twice a second, not with every packet, so the mean follows faster than
// TCP's eighth. The first is taken whole. An echo of a number not outstanding, echoed twice, or taking longer than the
// deadline given is ignored, so a misbehaving worker can only make itself look slower, never faster than it answers,
// and never change another worker's figures.
#pragma once

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace dx::sched {

class round_trip_meter {
 public:
  using clock = std::chrono::steady_clock;

  /// Records a ping numbered `seq` (never 0) sent at `at`. The last few stay outstanding.
  void pinged(std::uint64_t seq, clock::time_point at) noexcept {
    outstanding_[next_++ % outstanding_.size()] = {seq, at};
  }

  /// The echo of `seq` arrived at `at`: true when it was an outstanding ping answered within
  /// `longest`, whose sample then moves the estimate.
  bool echoed(std::uint64_t seq, clock::time_point at, std::chrono::nanoseconds longest) noexcept {
    if (seq == 0) return false;
    for (auto& p : outstanding_) {
      if (p.seq != seq) continue;
      p.seq = 0;  // answered once
      if (at < p.sent || at - p.sent > longest) return false;
      add(std::chrono::duration<double>(at - p.sent).count());
      return true;
    }
    return false;
  }

  /// Adds a sample in seconds (the handshake's exchange is one).
  void add(double seconds) noexcept {
    if (!std::isfinite(seconds) || seconds < 0) return;
    if (samples_ == 0) {
      smoothed_ = seconds;
      deviation_ = seconds / 8;
    } else {
      deviation_ += (std::abs(seconds - smoothed_) - deviation_) / 4;
      smoothed_ += (seconds - smoothed_) / 4;
    }
    ++samples_;
    last_ = seconds;
  }

  double seconds() const noexcept { return smoothed_; }
  /// The mean deviation of the samples from the smoothed round trip.
  double jitter() const noexcept { return deviation_; }
  double last() const noexcept { return last_; }
  std::uint64_t samples() const noexcept { return samples_; }

 private:
  struct ping {
    std::uint64_t seq = 0;
    clock::time_point sent{};
  };
  std::array<ping, 4> outstanding_{};
  std::uint64_t next_ = 0;
  double smoothed_ = 0, deviation_ = 0, last_ = 0;
  std::uint64_t samples_ = 0;
};

}  // namespace dx::sched
