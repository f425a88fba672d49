// Tests of the round trip meter (src/sched/round_trip_meter.hpp): samples only from echoes of
// pings the head sent, once each, within the deadline; smoothing of the mean and the jitter.
#include "sched/round_trip_meter.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <limits>

using dx::sched::round_trip_meter;
using namespace std::chrono_literals;

TEST_CASE("round trip meter: an echo of a ping sent is a sample, the first taken whole", "[round_trip]") {
  round_trip_meter m;
  const auto t0 = round_trip_meter::clock::now();
  m.pinged(1, t0);
  CHECK(m.echoed(1, t0 + 200ms, 10s));
  CHECK(m.samples() == 1);
  CHECK(m.seconds() == Approx(0.2));
  CHECK(m.jitter() == Approx(0.2 / 8));
}

TEST_CASE("round trip meter: echoes of pings never sent, sent to no one, answered twice or too late are ignored",
          "[round_trip]") {
  round_trip_meter m;
  const auto t0 = round_trip_meter::clock::now();
  m.pinged(7, t0);
  CHECK_FALSE(m.echoed(8, t0 + 1ms, 10s));  // never sent
  CHECK_FALSE(m.echoed(0, t0 + 1ms, 10s));  // "no ping"
  CHECK_FALSE(m.echoed(7, t0 - 1ms, 10s));  // before it was sent: a clock that went back
  CHECK(m.samples() == 0);
  m.pinged(9, t0);
  CHECK(m.echoed(9, t0 + 50ms, 10s));
  CHECK_FALSE(m.echoed(9, t0 + 1ms, 10s));  // answered once already
  m.pinged(10, t0);
  CHECK_FALSE(m.echoed(10, t0 + 11s, 10s));  // past the deadline: the link was taken for lost
  CHECK(m.samples() == 1);
  CHECK(m.seconds() == Approx(0.05));
}

TEST_CASE("round trip meter: only the last four pings are outstanding", "[round_trip]") {
  round_trip_meter m;
  const auto t0 = round_trip_meter::clock::now();
  for (std::uint64_t seq = 1; seq <= 6; ++seq) m.pinged(seq, t0);
  CHECK_FALSE(m.echoed(1, t0 + 10ms, 10s));
  CHECK_FALSE(m.echoed(2, t0 + 10ms, 10s));
  for (std::uint64_t seq = 3; seq <= 6; ++seq) CHECK(m.echoed(seq, t0 + 10ms, 10s));
}

TEST_CASE("round trip meter: the mean follows a link that gets faster, the jitter a link that varies", "[round_trip]") {
  round_trip_meter m;
  m.add(0.3);
  for (int i = 0; i < 12; ++i) m.add(0.01);
  CHECK(m.seconds() < 0.02);
  // The change reads as jitter for a while (the window keeps a margin until the link settles).
  const double settling = m.jitter();
  CHECK(settling > 0.01);
  for (int i = 0; i < 20; ++i) m.add(0.01);
  CHECK(m.jitter() < 0.01);
  round_trip_meter varying;
  for (int i = 0; i < 40; ++i) varying.add(i % 2 ? 0.08 : 0.12);
  CHECK(varying.seconds() == Approx(0.1).margin(0.02));
  CHECK(varying.jitter() > 0.015);
  // Samples that are no numbers, or negative, change nothing.
  const double before = varying.seconds();
  varying.add(std::numeric_limits<double>::quiet_NaN());
  varying.add(-1);
  varying.add(std::numeric_limits<double>::infinity());
  CHECK(varying.seconds() == before);
}
