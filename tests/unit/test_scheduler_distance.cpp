// Tests of the scheduler with workers at different distances: each worker's window covers its own
// measured round trip and jitter, placement counts the round trip, far workers give work back to
// idle near ones, and one worker's figures never change another's window.
#include "sched/scheduler.hpp"
#include "scheduler_harness.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

using namespace dx::sched;
using namespace sched_test;

namespace {

/// Sent to `w` and not finished, by the harness's count of run decisions.
std::size_t sent_to(harness& h, worker_id w) {
  h.decide();
  return h.live_on(w);
}

/// Finishes, one at a time in virtual time, every task running or sent on `w`, deciding after
/// each; returns the move decisions made meanwhile.
std::vector<decision> drain(harness& h, worker_id w, double seconds_each) {
  std::vector<decision> moves;
  for (int guard = 0; guard < 10000 && h.live_on(w) > 0; ++guard) {
    task_id next = 0;
    for (auto& [t, at] : h.live)
      if (at == w) {
        next = t;
        break;
      }
    if (!h.started.count(next)) h.start(next);
    h.now += seconds_each;
    h.finish(next);
    for (const decision& m : moves_of(h.decide())) moves.push_back(m);
  }
  return moves;
}

/// Submits a ready task of `seconds` whose arguments, sent by the caller, are `bytes` long.
void add_with_bytes(harness& h, task_id id, double seconds, std::uint64_t bytes) {
  task_spec t;
  t.id = id;
  t.kind = "k";
  t.input_bytes = bytes;
  t.true_seconds = seconds;
  h.seconds[id] = seconds;
  h.s.task_submitted(t, h.now);
  h.s.task_ready(id, h.now);
}

}  // namespace

TEST_CASE("distance: a worker's window grows with its round trip and shrinks when its link gets faster", "[sched]") {
  harness h;
  h.join(1, 1);
  for (task_id t = 1; t <= 400; ++t) h.add(t, 0.01);
  // Near (the configured 0.2 ms): one task at a time is enough.
  CHECK(sent_to(h, 1) == 1);
  // 200 ms away: about a round trip of 10 ms tasks, sent ahead.
  h.s.worker_round_trip(1, 0.2, 0);
  const std::size_t far = sent_to(h, 1);
  CHECK(far >= 21);
  CHECK(far <= 22);
  // The link gets faster (50 ms): as tasks finish, no more is sent than the new window covers.
  h.s.worker_round_trip(1, 0.05, 0);
  for (int i = 0; i < 30; ++i) {
    task_id next = h.live.begin()->first;
    h.start(next);
    h.now += 0.01;
    h.finish(next);
    h.decide();
  }
  CHECK(h.live_on(1) >= 6);
  CHECK(h.live_on(1) <= 7);
}

TEST_CASE("distance: a far worker running tasks longer than its round trip has the next one queued", "[sched]") {
  harness h;
  h.join(1, 1);
  h.s.worker_round_trip(1, 0.05, 0);
  for (task_id t = 1; t <= 10; ++t) h.add(t, 0.1);
  // The running task alone fills a 52 ms window; the one after it must already be there when it
  // ends, or the thread waits 50 ms after each task.
  CHECK(sent_to(h, 1) == 2);
  harness near;
  near.join(1, 1);
  for (task_id t = 1; t <= 10; ++t) near.add(t, 0.1);
  CHECK(sent_to(near, 1) == 1);  // near: nothing to hide, nothing queued that another could take
}

TEST_CASE("distance: jitter widens the window by its margin", "[sched]") {
  config c = oracle_config();
  c.jitter_margin = 4;
  harness steady(c), jittery(c);
  for (harness* h : {&steady, &jittery}) {
    h->join(1, 1);
    for (task_id t = 1; t <= 100; ++t) h->add(t, 0.01);
  }
  steady.s.worker_round_trip(1, 0.1, 0);
  jittery.s.worker_round_trip(1, 0.1, 0.02);  // covers 0.1 + 4 x 0.02
  // Round trip (+ 4 x jitter) + 2 ms, and the task running: 10 ms tasks.
  CHECK(sent_to(steady, 1) == 12);
  CHECK(sent_to(jittery, 1) == 20);
}

TEST_CASE("distance: a worker that reports bogus round trips changes no other worker's window", "[sched]") {
  auto first_window = [](double w2_round_trip, double w2_jitter) {
    harness h;
    h.join(1, 1);
    h.join(2, 1);
    h.s.worker_round_trip(1, 0.1, 0.001);
    h.s.worker_round_trip(2, w2_round_trip, w2_jitter);
    for (task_id t = 1; t <= 400; ++t) h.add(t, 0.01);
    return sent_to(h, 1);
  };
  const std::size_t reference = first_window(0.1, 0.001);
  CHECK(reference >= 10);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(first_window(1e9, 0) == reference);
  CHECK(first_window(0, 0) == reference);
  CHECK(first_window(nan, nan) == reference);
  CHECK(first_window(-5, -5) == reference);
  CHECK(first_window(inf, 1e9) == reference);
}

TEST_CASE("distance: a task is placed where it finishes first counting the round trip", "[sched]") {
  harness h;
  h.join(1, 1);  // near
  h.join(2, 1);  // 400 ms away
  h.s.worker_round_trip(2, 0.4, 0);
  // 50 ms tasks: the near worker finishes four before the far one could return its first.
  for (task_id t = 1; t <= 6; ++t) h.add(t, 0.05);
  h.decide();
  const auto f = h.s.forecast(h.now);
  std::size_t near_queued = 0, far_queued = 0;
  for (const worker_forecast& w : f.workers) (w.id == 1 ? near_queued : far_queued) = w.queued;
  CHECK(near_queued >= 5);
  CHECK(far_queued <= 1);
  // Long tasks are worth the trip.
  harness g;
  g.join(1, 1);
  g.join(2, 1);
  g.s.worker_round_trip(2, 0.4, 0);
  g.add(1, 5.0);
  g.add(2, 5.0);
  g.decide();
  CHECK(g.live_on(1) == 1);
  CHECK(g.live_on(2) == 1);
}

TEST_CASE("distance: work sent ahead to a far worker is taken back for an idle near one, each task run once",
          "[sched]") {
  harness h;
  h.join(1, 1);  // near
  h.join(2, 1);  // far: what is sent there has not arrived yet (never started here)
  h.s.worker_round_trip(2, 0.2, 0);
  for (task_id t = 1; t <= 60; ++t) h.add(t, 0.01);
  h.decide();
  const std::size_t sent_far = h.live_on(2);
  REQUIRE(sent_far >= 5);
  // The near worker works through everything else, then goes idle and asks for the far work.
  std::size_t moved = 0;
  for (int round = 0; round < 200 && h.live_on(2) > 0; ++round) {
    std::vector<decision> moves = drain(h, 1, 0.01);
    if (moves.empty()) {
      h.now += 0.001;
      h.s.load_report(1, 0, 0, h.now);  // an idle worker looks for work again at its reports
      moves = moves_of(h.decide());
    }
    for (const decision& m : moves) {
      CHECK(m.from == 2);
      CHECK(m.to == 1);
      h.answer_move(m, true);  // it had not started there
      ++moved;
    }
  }
  // What stays is what the far worker finishes before a move's answer could come back: about a
  // round trip of its tasks, from its queue of more than two.
  INFO("left on the far worker: " << h.live_on(2) << " of " << sent_far);
  CHECK(moved >= sent_far / 3);
  CHECK(h.live_on(2) <= 12);
  CHECK(h.double_runs == 0);
  for (task_id t = 1; t <= 60; ++t)
    if (h.s.phase_of(t) != phase::done) CHECK(h.s.placed_on(t) == 2);  // at most the one it runs
}

TEST_CASE("distance: a worker's window stops at its byte budget, one task per thread at least", "[sched]") {
  config c = oracle_config();
  c.max_sent_bytes_per_worker = 1000;
  harness h(c);
  h.join(1, 2);
  h.s.worker_round_trip(1, 0.2, 0);
  for (task_id id = 1; id <= 50; ++id) add_with_bytes(h, id, 0.01, 400);
  // Two for the threads (800 bytes), one more while under 1000, then closed.
  CHECK(sent_to(h, 1) == 3);
  c.max_sent_bytes_per_worker = 100;
  harness tiny(c);
  tiny.join(1, 2);
  tiny.s.worker_round_trip(1, 0.2, 0);
  for (task_id id = 1; id <= 10; ++id) add_with_bytes(tiny, id, 0.01, 400);
  CHECK(sent_to(tiny, 1) == 2);  // one per thread whatever the budget
}

TEST_CASE("distance: a far worker is sent no more than its share of the work placed", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 1);
  h.s.worker_round_trip(1, 0.4, 0);
  h.s.worker_round_trip(2, 0.4, 0);
  // 8 tasks of 10 ms: 40 ms each, far less than a 400 ms round trip: neither takes them all.
  for (task_id t = 1; t <= 8; ++t) h.add(t, 0.01);
  h.decide();
  CHECK(h.live_on(1) <= 5);
  CHECK(h.live_on(2) <= 5);
  CHECK(h.live_on(1) + h.live_on(2) >= 2);
}

TEST_CASE("distance: the forecast counts each worker's round trip", "[sched][forecast]") {
  harness h;
  h.join(1, 1);
  h.s.worker_round_trip(1, 0.2, 0);
  h.add(1, 1.0);
  h.decide();
  const auto f = h.s.forecast(h.now);
  CHECK(f.remaining_seconds == Approx(1.1).margin(1e-6));  // sent already: it runs, then reports back
  REQUIRE(f.workers.size() == 1);
  CHECK(f.workers[0].round_trip_seconds == Approx(0.2));
  harness g;
  g.join(1, 1);
  g.s.worker_round_trip(1, 0.2, 0);
  g.submit(1, 1.0);
  g.submit(2, 1.0, {1});
  g.s.task_ready(1, g.now);
  g.decide();
  // Task 2 waits for task 1's report (0.1 s after it ends), then travels there and back.
  CHECK(g.s.forecast(g.now).remaining_seconds == Approx(1.1 + 0.1 + 1.0 + 0.1).margin(1e-6));
}

TEST_CASE("distance: a worker on a slow link from the caller gets compute-heavy, data-light tasks", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 1);
  // Worker 2's link from the caller carries 1 MiB/s, worker 1's 1 GiB/s.
  for (int i = 0; i < 5; ++i) {
    h.s.head_transfer_measured(2, 4 << 20, 4.0);
    h.s.head_transfer_measured(1, 4 << 20, 0.004);
  }
  auto submit = [&](task_id id, double seconds, std::uint64_t argument_bytes) {
    add_with_bytes(h, id, seconds, argument_bytes);
    h.decide();
  };
  submit(1, 1.0, 0);        // worker 1 (the tie goes to the lower id)
  submit(2, 0.1, 8 << 20);  // 8 MiB of arguments: 8 s to worker 2, a second's wait on worker 1
  submit(3, 0.1, 0);        // no data: worker 2, idle
  CHECK(h.s.placed_on(1) == 1);
  CHECK(h.s.placed_on(2) == 1);
  CHECK(h.s.placed_on(3) == 2);
  // Without the link's measure the same data-heavy task would go to the idle worker.
  harness blind;
  blind.join(1, 1);
  blind.join(2, 1);
  blind.add(1, 1.0);
  blind.decide();
  add_with_bytes(blind, 2, 0.1, 8 << 20);
  blind.decide();
  CHECK(blind.s.placed_on(2) == 2);
}
