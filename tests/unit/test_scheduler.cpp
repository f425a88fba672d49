// Tests of the scheduler's decision logic (src/sched), driven by hand: explicit events at virtual
// times, decisions checked one by one. No simulator and no cluster: every test plays the caller.
#include "sched/scheduler.hpp"
#include "scheduler_harness.hpp"

#include <dx/cost_model.hpp>
#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace dx::sched;
using namespace sched_test;

// ---- readiness ----------------------------------------------------------------------------------

TEST_CASE("a ready task gets exactly one run decision", "[sched]") {
  harness h;
  h.join(1);
  h.add(1);
  auto first = h.decide();
  REQUIRE(first.size() == 1);
  CHECK(first[0].kind == decision_kind::run);
  CHECK(first[0].task == 1);
  CHECK(first[0].to == 1);
  CHECK(h.s.is_sent(1));
  CHECK(h.s.placed_on(1) == 1);
  // Deciding again without new events repeats nothing.
  h.now = 0.5;
  CHECK(h.decide().empty());
  CHECK(h.s.decisions_made() == 1);
}

TEST_CASE("nothing is decided for a task that is not ready", "[sched]") {
  harness h;
  h.join(1, 4);
  h.submit(1);  // never made ready
  h.add(2);
  h.submit(3, 1, {2});  // waits for 2
  auto ds = h.decide();
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].task == 2);
  CHECK(h.s.placed_on(1) == no_worker);
  CHECK(h.s.placed_on(3) == no_worker);
  CHECK_FALSE(h.s.is_sent(3));
  h.now = 1;
  h.finish(2);
  CHECK(h.decide().empty());  // 3's input finished, but the caller has not said it is ready
  h.s.task_ready(3, h.now);
  auto later = h.decide();
  REQUIRE(later.size() == 1);
  CHECK(later[0].task == 3);
}

TEST_CASE("without workers tasks are held and placed when a worker joins", "[sched]") {
  harness h;
  for (task_id t = 1; t <= 3; ++t) h.add(t);
  CHECK(h.decide().empty());
  for (task_id t = 1; t <= 3; ++t) CHECK(h.s.placed_on(t) == no_worker);
  CHECK(h.count_alerts(alert_kind::unplaceable) == 0);  // no worker at all is not "needs too much"
  h.now = 1;
  h.join(7, 4);
  auto ds = runs_of(h.decide());
  REQUIRE(ds.size() == 3);
  for (const decision& d : ds) CHECK(d.to == 7);
  CHECK(h.double_runs == 0);
}

// ---- send window --------------------------------------------------------------------------------

TEST_CASE("long tasks: only about one per thread is sent, each finish lets one more go", "[sched]") {
  harness h(with_policy(policy::predictive));
  teach(h.model, "slow", "w1", 1.0);
  h.join(1, 2);
  for (task_id t = 1; t <= 50; ++t) h.add(t, 1, {}, 0, {}, "slow");
  auto first = runs_of(h.decide());
  CHECK(first.size() >= 2);
  CHECK(first.size() <= 4);
  const std::size_t window = first.size();
  // The rest stay placed here, not sent.
  std::size_t held = 0;
  for (task_id t = 1; t <= 50; ++t)
    if (h.s.placed_on(t) == 1 && !h.s.is_sent(t)) ++held;
  CHECK(held == 50 - window);
  for (int i = 0; i < 10; ++i) {
    h.now += 1;
    const task_id done = h.live.begin()->first;
    h.start(done);
    h.finish(done);
    auto next = runs_of(h.decide());
    REQUIRE(next.size() == 1);
    CHECK(next[0].to == 1);
    CHECK(h.live.size() == window);
  }
  CHECK(h.double_runs == 0);
}

TEST_CASE("near-zero tasks: many are sent, up to max_sent_per_thread * threads", "[sched]") {
  config c = with_policy(policy::predictive);
  c.max_sent_per_thread = 16;
  harness h(c);
  teach(h.model, "tiny", "w1", 1e-7);
  h.join(1, 2);
  for (task_id t = 1; t <= 100; ++t) h.add(t, 1e-7, {}, 0, {}, "tiny");
  CHECK(runs_of(h.decide()).size() == 32);
  // One finishes: exactly one more fits under the cap.
  h.now = 0.001;
  h.finish(h.live.begin()->first);
  CHECK(runs_of(h.decide()).size() == 1);
}

TEST_CASE("the window is measured in predicted seconds", "[sched]") {
  config c = oracle_config();
  c.round_trip_seconds = 0.0005;
  c.send_ahead_seconds = 0.004;  // 4.5 ms per thread
  harness h(c);
  h.join(1, 1);
  for (task_id t = 1; t <= 20; ++t) h.add(t, 0.001);
  // 1, 2, 3, 4 ms are under 4.5 ms: five go, the fifth reaching 5 ms closes the window.
  CHECK(runs_of(h.decide()).size() == 5);
  h.now = 0.001;
  h.finish(h.live.begin()->first);
  CHECK(runs_of(h.decide()).size() == 1);
}

// ---- placement ----------------------------------------------------------------------------------

TEST_CASE("earliest finish: a 4x slower worker gets about a quarter of the fast one's work", "[sched]") {
  harness h;
  h.join(1, 1, 1.0);
  h.join(2, 1, 4.0);
  for (task_id t = 1; t <= 100; ++t) h.add(t, 1.0);
  h.decide();
  // Placement alone: with k tasks on A and m on B, the next one finishes at k + 1 on A, 4 (m + 1) on B.
  std::size_t on_a = 0;
  for (task_id t = 1; t <= 100; ++t) on_a += h.s.placed_on(t) == 1;
  CHECK(on_a >= 75);
  CHECK(on_a <= 85);
  run_to_end(h);
  REQUIRE(h.live.empty());
  REQUIRE(h.runs[1] + h.runs[2] == 100);
  const double ratio = static_cast<double>(h.runs[1]) / std::max(1, h.runs[2]);
  CHECK(ratio >= 3.0);
  CHECK(ratio <= 5.5);
  CHECK(h.now == Approx(80).margin(4));  // both end together: 80 x 1 s = 20 x 4 s
  CHECK(h.double_runs == 0);
}

TEST_CASE("priority: with one thread the higher priority is sent first", "[sched]") {
  harness h;
  h.join(1, 1);
  h.add(1, 1, {}, 0);
  h.add(2, 1, {}, 5);
  h.add(3, 1, {}, 1);
  std::vector<task_id> order;
  for (int i = 0; i < 3; ++i) {
    auto r = runs_of(h.decide());
    REQUIRE(r.size() == 1);
    order.push_back(r[0].task);
    h.now += 1;
    h.finish(r[0].task);
  }
  CHECK(order == std::vector<task_id>{2, 3, 1});
}

TEST_CASE("priority ties: the task with the longer chain below it goes first", "[sched]") {
  harness h;
  h.join(1, 1);
  h.submit(1);  // alone
  h.submit(2);  // heads a chain of three
  h.submit(3, 1, {2});
  h.submit(4, 1, {3});
  h.s.task_ready(1, 0);
  h.s.task_ready(2, 0);
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 1);
  CHECK(r[0].task == 2);  // though 1 was submitted first
  h.now = 1;
  h.finish(2);
  h.s.task_ready(3, h.now);
  auto r2 = runs_of(h.decide());
  REQUIRE(r2.size() == 1);
  CHECK(r2[0].task == 3);  // rank 2 s against 1 s
}

TEST_CASE("priority beats rank", "[sched]") {
  harness h;
  h.join(1, 1);
  h.submit(1, 1, {}, 1);  // short, higher priority
  h.submit(2, 50);        // long, priority 0
  h.s.task_ready(1, 0);
  h.s.task_ready(2, 0);
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 1);
  CHECK(r[0].task == 1);
}

// ---- stealing held tasks and the move protocol --------------------------------------------------

TEST_CASE("a late joiner takes tasks held for another worker without a move", "[sched]") {
  harness h;
  h.join(1, 1);
  for (task_id t = 1; t <= 10; ++t) h.add(t, 1.0);
  auto first = runs_of(h.decide());
  REQUIRE(first.size() == 1);
  for (task_id t = 1; t <= 10; ++t) REQUIRE(h.s.placed_on(t) == 1);
  h.now = 0.1;
  h.join(2, 1);
  auto ds = h.decide();
  CHECK(moves_of(ds).empty());
  auto r = runs_of(ds);
  REQUIRE(r.size() == 1);
  CHECK(r[0].to == 2);
  CHECK(r[0].task != first[0].task);  // one that was held for worker 1, not the one it runs
  CHECK(h.double_runs == 0);
  // To the end: each task runs once, both workers share the work.
  run_to_end(h);
  CHECK(h.runs[1] + h.runs[2] == 10);
  CHECK(h.runs[2] >= 3);
  CHECK(h.double_runs == 0);
  CHECK(h.live.empty());
}

TEST_CASE("a late joiner with several threads takes held work for each of them", "[sched]") {
  // Held tasks can be taken by any worker with room, which is how late joiners get work: a
  // 4-thread joiner, while 19 one-second tasks wait for a 1-thread worker, should start 4 of
  // them at once, not one at a time.
  harness h;
  h.join(1, 1);
  for (task_id t = 1; t <= 20; ++t) h.add(t, 1.0);
  REQUIRE(runs_of(h.decide()).size() == 1);
  h.now = 0.1;
  h.join(2, 4);
  auto r = runs_of(h.decide());
  CHECK(r.size() == 4);
  for (const decision& d : r) CHECK(d.to == 2);
  CHECK(h.double_runs == 0);
}

namespace {

/// A slow worker (factor 4) that was sent every one of `n` tasks (a window wide enough for all),
/// then an idle fast worker joins: the situation that needs the move protocol.
struct move_setup {
  harness h;
  std::vector<decision> moves;

  explicit move_setup(int n = 10, policy p = policy::oracle) : h(make_config(p)) {
    if (p == policy::predictive) {
      teach(h.model, "k", "w1", 4.0);
      teach(h.model, "k", "w2", 1.0);
    }
    h.join(1, 1, 4.0);
    for (task_id t = 1; t <= static_cast<task_id>(n); ++t) h.add(t, 1.0);
    REQUIRE(runs_of(h.decide()).size() == static_cast<std::size_t>(n));
    h.now = 0.1;
    h.join(2, 1, 1.0);
    auto ds = h.decide();
    REQUIRE(runs_of(ds).empty());  // nothing held anywhere: it has to ask
    moves = moves_of(ds);
  }
  static config make_config(policy p) {
    config c = with_policy(p);
    c.send_ahead_seconds = 1000;
    return c;
  }
};

}  // namespace

TEST_CASE("move: an idle worker asks for a sent task that has not started", "[sched]") {
  for (policy p : {policy::oracle, policy::predictive}) {
    INFO(to_string(p));
    move_setup m(10, p);
    REQUIRE(m.moves.size() == 1);
    const decision mv = m.moves[0];
    CHECK(mv.from == 1);
    CHECK(mv.to == 2);
    // Still where it was until the victim answers.
    CHECK(m.h.s.placed_on(mv.task) == 1);
    CHECK(m.h.s.is_sent(mv.task));
    // One move at a time per thief.
    m.h.now = 0.2;
    CHECK(moves_of(m.h.decide()).empty());
  }
}

TEST_CASE("move given up: the task is placed again on the thief", "[sched]") {
  move_setup m;
  REQUIRE(m.moves.size() == 1);
  const decision mv = m.moves[0];
  m.h.now = 0.2;
  m.h.answer_move(mv, true);
  auto r = runs_of(m.h.decide());
  REQUIRE(r.size() == 1);
  CHECK(r[0].task == mv.task);
  CHECK(r[0].to == 2);
  CHECK(m.h.s.placed_on(mv.task) == 2);
  CHECK(m.h.s.moves_confirmed() == 1);
  CHECK(m.h.double_runs == 0);
}

TEST_CASE("move refused: the task stays and runs once", "[sched]") {
  move_setup m;
  REQUIRE(m.moves.size() == 1);
  const decision mv = m.moves[0];
  m.h.now = 0.2;
  m.h.answer_move(mv, false);
  auto ds = m.h.decide();
  CHECK_FALSE(has_run(ds, mv.task));
  CHECK(m.h.s.placed_on(mv.task) == 1);
  CHECK(m.h.s.is_sent(mv.task));
  CHECK(m.h.s.moves_confirmed() == 0);
  // The thief is free to ask again, for another task.
  auto again = moves_of(ds);
  REQUIRE(again.size() == 1);
  CHECK(again[0].task != mv.task);
  CHECK(again[0].to == 2);
  CHECK(m.h.double_runs == 0);
}

TEST_CASE("move: answers for unknown tasks or from the wrong worker are ignored", "[sched]") {
  move_setup m;
  REQUIRE(m.moves.size() == 1);
  const decision mv = m.moves[0];
  m.h.now = 0.2;
  m.h.s.move_answered(999, 1, true, m.h.now);      // no such task
  m.h.s.move_answered(mv.task, 2, true, m.h.now);  // not where it is
  CHECK(m.h.s.placed_on(mv.task) == 1);
  CHECK(m.h.s.is_sent(mv.task));
  CHECK(m.h.s.moves_confirmed() == 0);
  // The real answer is still awaited: the thief does not ask for a second task meanwhile.
  CHECK(m.h.decide().empty());
  // After a confirmed move and a re-send, a repeated answer about the old place changes nothing.
  m.h.answer_move(mv, true);
  REQUIRE(has_run(m.h.decide(), mv.task));
  m.h.now = 0.3;
  m.h.s.move_answered(mv.task, 1, true, m.h.now);
  CHECK(m.h.s.placed_on(mv.task) == 2);
  CHECK(m.h.s.is_sent(mv.task));
  CHECK_FALSE(has_run(m.h.decide(), mv.task));
  CHECK(m.h.s.moves_confirmed() == 1);
  CHECK(m.h.double_runs == 0);
}

TEST_CASE("move: an answer for a task nobody asked to move is ignored", "[sched]") {
  move_setup m;
  REQUIRE(m.moves.size() == 1);
  // A task of worker 1 no move was asked for (the first sent: the thief asks for the last).
  const task_id other = m.moves[0].task == 1 ? 2 : 1;
  REQUIRE(m.h.s.placed_on(other) == 1);
  m.h.now = 0.2;
  m.h.s.move_answered(other, 1, true, m.h.now);
  CHECK(m.h.s.placed_on(other) == 1);
  CHECK(m.h.s.is_sent(other));
  CHECK(m.h.s.moves_confirmed() == 0);
  CHECK_FALSE(has_run(m.h.decide(), other));  // worker 1 still has it: a run elsewhere would be a duplicate
}

TEST_CASE("move: the thief asks again after the moved task finished before the answer", "[sched]") {
  // The victim started and finished the task before it saw the request, then answers "not given
  // up". The thief is idle and the victim still has 9 tasks it has not started: it must ask again.
  move_setup m;
  REQUIRE(m.moves.size() == 1);
  const decision mv = m.moves[0];
  m.h.now = 0.2;
  m.h.start(mv.task);
  m.h.now = 4.2;
  m.h.finish(mv.task);
  auto moves = moves_of(m.h.decide());
  m.h.s.move_answered(mv.task, 1, false, m.h.now);
  m.h.now = 4.5;
  for (const decision& d : moves_of(m.h.decide())) moves.push_back(d);
  REQUIRE(moves.size() == 1);
  CHECK(moves[0].to == 2);
  CHECK(moves[0].from == 1);
  CHECK(moves[0].task != mv.task);
}

TEST_CASE("move: the thief asks again after its victim was lost", "[sched]") {
  // Two slow workers were sent everything; the fast one asks one of them for a task and that
  // victim is lost (it never answers). The fast worker takes over the victim's tasks, runs them
  // all, and is then idle while the other slow worker still has 10 tasks it has not started.
  config c = oracle_config();
  c.send_ahead_seconds = 1000;
  harness h(c);
  h.join(1, 1, 4.0);
  h.join(3, 1, 4.0);
  for (task_id t = 1; t <= 20; ++t) h.add(t, 1.0);
  REQUIRE(runs_of(h.decide()).size() == 20);
  h.now = 0.1;
  h.join(2, 1, 1.0);
  auto mv = moves_of(h.decide());
  REQUIRE(mv.size() == 1);
  REQUIRE(mv[0].to == 2);
  const worker_id victim = mv[0].from, other = victim == 1 ? 3 : 1;
  h.now = 0.2;
  h.lose(victim);
  h.decide();
  REQUIRE(h.live_on(2) > 0);
  REQUIRE(h.live_on(other) == 10);
  std::vector<decision> after;
  while (h.live_on(2) > 0) {
    task_id t = 0;
    for (auto& [id, w] : h.live)
      if (w == 2) t = id;
    h.now += 1;
    h.start(t);
    h.finish(t);
    for (const decision& d : h.decide()) after.push_back(d);
  }
  h.now += 1;
  for (const decision& d : h.decide()) after.push_back(d);
  auto asked = moves_of(after);
  REQUIRE(asked.size() == 1);
  CHECK(asked[0].to == 2);
  CHECK(asked[0].from == other);
}

TEST_CASE("a worker lost while its move was pending asks again when it joins again under its id", "[sched]") {
  move_setup m;
  REQUIRE(m.moves.size() == 1);
  const decision mv = m.moves[0];
  REQUIRE(mv.to == 2);
  m.h.now = 0.2;
  m.h.lose(2);  // the thief goes before the victim answers
  m.h.answer_move(mv, false);
  m.h.decide();
  m.h.now = 0.3;
  m.h.join(2, 1, 1.0);  // the same worker (its name, its id) again: nothing of its last stay holds
  auto asked = moves_of(m.h.decide());
  REQUIRE(asked.size() == 1);
  CHECK(asked[0].to == 2);
  CHECK(asked[0].from == 1);
  CHECK(asked[0].task != mv.task);
}

TEST_CASE("eager policies never move", "[sched]") {
  for (policy p : {policy::round_robin, policy::random, policy::least_loaded}) {
    INFO(to_string(p));
    harness h(with_policy(p));
    h.join(1, 1, 4.0);
    for (task_id t = 1; t <= 10; ++t) h.add(t, 1.0);
    CHECK(runs_of(h.decide()).size() == 10);
    h.now = 0.1;
    h.join(2, 1);
    CHECK(h.decide().empty());
  }
}

// ---- resources ----------------------------------------------------------------------------------

TEST_CASE("resources: a gpu is never over-committed", "[sched]") {
  harness h;
  h.join(1, 4, 1, {{"gpu", 1}});
  h.join(2, 4, 1, {{"gpu", 1}});
  for (task_id t = 1; t <= 12; ++t) h.add(t, 1.0, {}, 0, {{"gpu", 1}});
  for (task_id t = 13; t <= 24; ++t) h.add(t, 1.0);
  auto first = runs_of(h.decide());
  std::map<worker_id, int> gpu_first;
  for (const decision& d : first)
    if (d.task <= 12) ++gpu_first[d.to];
  CHECK(gpu_first[1] == 1);
  CHECK(gpu_first[2] == 1);
  // Plain tasks use the other threads meanwhile.
  CHECK(first.size() > 2);
  std::size_t worst = 0;
  run_to_end(h, [&] {
    std::map<worker_id, std::size_t> gpu_live;
    for (auto& [t, w] : h.live)
      if (t <= 12) worst = std::max(worst, ++gpu_live[w]);
  });
  CHECK(worst == 1);
  CHECK(h.runs[1] + h.runs[2] == 24);
  CHECK(h.live.empty());
  CHECK(h.double_runs == 0);
}

TEST_CASE("resources: cpu needs count against threads", "[sched]") {
  harness h;
  h.join(1, 4);
  for (task_id t = 1; t <= 6; ++t) h.add(t, 1.0, {}, 0, {{"cpu", 3}});
  std::size_t worst = 0;
  run_to_end(h, [&] { worst = std::max(worst, h.live.size()); });
  CHECK(worst == 1);  // 3 + 3 > 4
}

TEST_CASE("resources: a need no worker meets is not run and raises unplaceable", "[sched]") {
  harness h;
  h.join(1, 4, 1, {{"gpu", 1}});
  h.add(1, 1.0, {}, 0, {{"gpu", 2}});
  h.add(2, 1.0);
  auto ds = h.decide();
  CHECK_FALSE(has_run(ds, 1));
  CHECK(has_run(ds, 2));
  CHECK(h.s.placed_on(1) == no_worker);
  CHECK(h.count_alerts(alert_kind::unplaceable, "task 1") == 1);
  h.now = 1;
  CHECK(h.decide().empty());
  CHECK(h.count_alerts(alert_kind::unplaceable) == 1);  // not repeated
  h.join(2, 2, 1, {{"gpu", 2}});
  auto later = runs_of(h.decide());
  REQUIRE(later.size() == 1);
  CHECK(later[0].task == 1);
  CHECK(later[0].to == 2);
}

TEST_CASE("resources: a task unplaceable twice is placed once when a host joins", "[sched]") {
  // A gpu task with no gpu worker around is set aside; it leaves the queues and comes back
  // (task_waiting, task_ready) and is set aside again. When a gpu worker joins, it gets one run.
  harness h;
  h.join(1, 2);
  h.add(1, 1.0, {}, 0, {{"gpu", 1}});
  CHECK(h.decide().empty());
  h.now = 0.5;
  h.s.task_waiting(1, h.now);
  h.s.task_ready(1, h.now);
  CHECK(h.decide().empty());
  h.now = 1;
  h.join(2, 2, 1, {{"gpu", 1}});
  auto first = runs_of(h.decide());
  REQUIRE(first.size() == 1);
  CHECK(first[0].to == 2);
  CHECK(h.s.is_sent(1));
  CHECK(h.s.placed_on(1) == 2);
  h.now = 1.5;
  CHECK(runs_of(h.decide()).empty());
  // It finishes: the gpu is free for the next one.
  h.now = 2;
  h.finish(1);
  h.add(2, 1.0, {}, 0, {{"gpu", 1}});
  auto next = runs_of(h.decide());
  REQUIRE(next.size() == 1);
  CHECK(next[0].task == 2);
  CHECK(h.double_runs == 0);
}

// ---- workers leaving ----------------------------------------------------------------------------

TEST_CASE("worker lost: its held and sent tasks are run elsewhere", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 1);
  for (task_id t = 1; t <= 10; ++t) h.add(t, 1.0);
  h.decide();
  std::vector<task_id> on1;
  for (task_id t = 1; t <= 10; ++t)
    if (h.s.placed_on(t) == 1) on1.push_back(t);
  REQUIRE(on1.size() >= 2);  // one sent, the rest held
  h.now = 0.5;
  const int runs_on_1 = h.runs[1];
  h.lose(1);
  for (task_id t : on1) CHECK(h.s.placed_on(t) == 2);
  h.decide();
  CHECK(h.count_alerts(alert_kind::worker_lost, "w1") == 1);
  run_to_end(h);
  CHECK(h.runs[1] == runs_on_1);
  CHECK(h.runs[2] == 10);  // every task finished there, the one worker 1 had started included
  CHECK(h.live.empty());
  CHECK(h.double_runs == 0);
  for (task_id t = 1; t <= 10; ++t) CHECK(h.s.placed_on(t) == no_worker);
}

TEST_CASE("worker lost: a result held only there is recomputed for a pending dependent", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 4);
  h.add(1, 1.0);
  h.submit(2, 1.0, {1});
  h.add(3, 1.0);  // finished elsewhere and kept at the caller: not recomputed
  h.submit(4, 1.0, {3});
  auto ds = runs_of(h.decide());
  REQUIRE(ds.size() == 2);
  // 1 and 3 run on different workers: losing 1's leaves 3's result alone.
  REQUIRE(h.live.at(1) != h.live.at(3));
  const worker_id w1 = h.live.at(1);
  h.now = 1;
  h.finish(1, /*held_on_worker=*/true, 1000);
  h.finish(3, /*held_on_worker=*/false, 1000);
  h.s.task_ready(2, h.now);
  h.s.task_ready(4, h.now);
  h.decide();
  REQUIRE(h.s.placed_on(2) != no_worker);
  h.now = 1.5;
  h.lose(w1);
  auto after = h.decide();
  auto rec = of_kind(after, decision_kind::recompute);
  REQUIRE(rec.size() == 1);
  CHECK(rec[0].task == 1);
  CHECK_FALSE(has_run(after, 2));  // back to waiting until 1 is there again
  CHECK(h.s.placed_on(2) == no_worker);
  CHECK(h.count_alerts(alert_kind::worker_lost) == 1);
  // 2's run, if any, is called off; the caller readies 1 at once and 2 once 1 finished again.
  h.forget_run(2);
  h.s.task_ready(1, h.now);
  auto r1 = runs_of(h.decide());
  REQUIRE(r1.size() == 1);
  CHECK(r1[0].task == 1);
  CHECK(r1[0].to != w1);
  h.now = 2.5;
  h.finish(1, true, 1000);
  h.s.task_ready(2, h.now);
  CHECK(has_run(h.decide(), 2));
}

TEST_CASE("worker lost: no recompute for results nobody needs", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 1);
  h.add(1, 1.0);
  h.submit(2, 1.0, {1});
  h.decide();
  const worker_id w = h.live.at(1);
  h.now = 1;
  h.finish(1, true);
  h.s.task_ready(2, h.now);
  h.decide();
  h.now = 2;
  h.finish(2, false);
  h.decide();
  h.lose(w);
  CHECK(of_kind(h.decide(), decision_kind::recompute).empty());
}

TEST_CASE("worker lost: every lost result a pending task needs is recomputed, down the chain", "[sched]") {
  // 1 -> 2 -> ... -> 40, results kept on worker 1; 40 has not run. Losing worker 1 loses all 39
  // results, and 39 cannot be recomputed without 38, and so on: every one of them is needed.
  harness h;
  h.join(1, 1);
  const task_id n = 40;
  for (task_id t = 1; t <= n; ++t) h.submit(t, 0.01, t == 1 ? std::vector<task_id>{} : std::vector<task_id>{t - 1});
  h.s.task_ready(1, 0);
  for (task_id t = 1; t < n; ++t) {
    REQUIRE(has_run(h.decide(), t));
    h.now += 0.01;
    h.finish(t, true, 100);
    h.s.task_ready(t + 1, h.now);
  }
  REQUIRE(has_run(h.decide(), n));
  h.join(2, 1);
  h.now += 0.001;
  h.lose(1);
  auto rec = of_kind(h.decide(), decision_kind::recompute);
  std::set<task_id> recomputed;
  for (const decision& d : rec) recomputed.insert(d.task);
  CHECK(recomputed.size() == n - 1);
  CHECK(recomputed.count(1) == 1);  // the root: the one that can run at once
}

TEST_CASE("worker lost: an input lost earlier, unneeded then, is recomputed when a recompute needs it", "[sched]") {
  // 1 ran on worker 1, 2 (input 1) on worker 2, both results kept where they ran; 3 (input 2)
  // waits. Losing worker 1 loses 1's result, which nobody needs then (2 has finished). Losing
  // worker 2 loses 2's result, which 3 needs: 2 is recomputed, and for that 1 is needed again.
  harness h;
  h.join(1, 1);
  h.join(2, 1);
  h.join(3, 1);
  h.add(1, 1.0);
  h.submit(2, 1.0, {1});
  h.submit(3, 1.0, {2});
  REQUIRE(h.decide().size() == 1);
  REQUIRE(h.live.at(1) == 1);
  h.now = 1;
  h.finish(1, true, 100);
  h.s.task_ready(2, h.now);
  h.s.worker_draining(1, h.now);  // so that 2 runs elsewhere
  auto r2 = runs_of(h.decide());
  REQUIRE(r2.size() == 1);
  const worker_id w2 = r2[0].to;
  REQUIRE(w2 != 1);
  h.now = 2;
  h.finish(2, true, 100);
  h.s.task_ready(3, h.now);
  h.s.worker_draining(w2, h.now);  // 3 waits elsewhere, on the third worker
  h.decide();
  h.now = 2.5;
  h.lose(1);
  CHECK(of_kind(h.decide(), decision_kind::recompute).empty());  // nobody needs 1's result now
  h.now = 3;
  h.lose(w2);
  std::set<task_id> recomputed;
  for (const decision& d : of_kind(h.decide(), decision_kind::recompute)) recomputed.insert(d.task);
  CHECK(recomputed.count(2) == 1);
  CHECK(recomputed.count(1) == 1);  // without it, 2 can never run again
}

TEST_CASE("worker lost: losing the last worker does not make its tasks unplaceable", "[sched]") {
  harness h;
  h.join(1, 1);
  for (task_id t = 1; t <= 3; ++t) h.add(t, 1.0);
  h.decide();
  h.now = 0.5;
  h.lose(1);
  CHECK(h.decide().empty());
  CHECK(h.count_alerts(alert_kind::worker_lost, "w1") == 1);
  CHECK(h.count_alerts(alert_kind::unplaceable) == 0);  // they need nothing special
  h.join(2, 1);
  CHECK(has_run(h.decide(), 1));
}

TEST_CASE("worker draining: it gets nothing new, returned tasks are run elsewhere", "[sched]") {
  harness h;
  h.join(1, 2);
  h.join(2, 2);
  for (task_id t = 1; t <= 8; ++t) h.add(t, 1.0);
  h.decide();
  std::vector<task_id> sent_to_1;
  for (auto& [t, w] : h.live)
    if (w == 1) sent_to_1.push_back(t);
  REQUIRE(sent_to_1.size() == 2);
  h.now = 0.1;
  const int runs_on_1 = h.runs[1];
  h.s.worker_draining(1, h.now);
  for (task_id t = 1; t <= 8; ++t)
    if (!h.s.is_sent(t)) CHECK(h.s.placed_on(t) == 2);
  for (task_id t = 9; t <= 12; ++t) h.add(t, 1.0);
  for (const decision& d : h.decide()) CHECK(d.to != 1);
  // Worker 1 runs one of its two and gives the other back.
  h.start(sent_to_1[0]);
  h.give_back(sent_to_1[1]);
  CHECK(h.s.placed_on(sent_to_1[1]) == no_worker);
  auto ds = h.decide();
  CHECK(h.s.placed_on(sent_to_1[1]) == 2);
  for (const decision& d : ds) CHECK(d.to != 1);
  h.now = 1;
  h.finish(sent_to_1[0]);
  h.s.worker_left(1, false, h.now);
  run_to_end(h);
  CHECK(h.runs[1] == runs_on_1);
  CHECK(h.live.empty());
  CHECK(h.double_runs == 0);
  CHECK(h.count_alerts(alert_kind::worker_lost) == 0);  // a graceful leave is not a loss
}

// ---- failures and waiting -----------------------------------------------------------------------

TEST_CASE("task failed: retried tasks are placed again, others not", "[sched]") {
  harness h;
  h.join(1, 2);
  h.add(1);
  h.add(2);
  REQUIRE(runs_of(h.decide()).size() == 2);
  h.now = 0.5;
  h.fail(1, true);
  h.fail(2, false);
  auto ds = runs_of(h.decide());
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].task == 1);
  CHECK_FALSE(h.s.is_sent(2));
  CHECK(h.s.placed_on(2) == no_worker);
  h.now = 1;
  CHECK(h.decide().empty());
}

TEST_CASE("task waiting leaves the queues until it is ready again", "[sched]") {
  harness h;
  h.join(1, 1);
  h.add(1);
  h.add(2);
  h.add(3);
  const auto [sent, held] = h.sent_and_held();
  REQUIRE(h.s.placed_on(held) == 1);
  h.s.task_waiting(sent, 0.1);
  h.forget_run(sent);
  h.s.task_waiting(held, 0.1);
  CHECK(h.s.placed_on(sent) == no_worker);
  CHECK(h.s.placed_on(held) == no_worker);
  CHECK_FALSE(h.s.is_sent(sent));
  // The window it held is free: the remaining task goes.
  h.now = 0.1;
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 1);
  CHECK(r[0].task == 3);
  h.now = 1;
  h.finish(3);
  CHECK(h.decide().empty());  // both still waiting
  h.s.task_ready(sent, h.now);
  h.s.task_ready(held, h.now);
  auto again = runs_of(h.decide());
  REQUIRE(again.size() == 1);
  h.now = 2;
  h.finish(again[0].task);
  auto last = runs_of(h.decide());
  REQUIRE(last.size() == 1);
  CHECK(std::set<task_id>{again[0].task, last[0].task} == std::set<task_id>{sent, held});
  CHECK(h.double_runs == 0);
}

TEST_CASE("task cancelled: a held task leaves its queue and is never run", "[sched][cancel]") {
  harness h;
  h.join(1, 1);
  h.add(1);
  h.add(2);
  const auto [sent, held] = h.sent_and_held();
  REQUIRE(h.s.placed_on(held) == 1);
  h.s.task_cancelled(held, 0.1, false);
  CHECK(h.s.phase_of(held) == phase::cancelled);
  CHECK(std::string(to_string(phase::cancelled)) == "cancelled");
  CHECK(h.s.placed_on(held) == no_worker);
  auto after = h.decide();
  CHECK(of_kind(after, decision_kind::cancel).empty());  // no worker saw it: nothing to tell
  h.now = 1;
  h.finish(sent);
  CHECK(runs_of(h.decide()).empty());
  CHECK(h.s.forecast(h.now).tasks_left == 0);
  h.s.task_forgotten(held);
  CHECK(h.s.phase_of(held) == phase::unknown);
}

TEST_CASE("task cancelled: a sent task frees its window slot and its worker is told", "[sched][cancel]") {
  harness h;
  h.join(1, 1);
  h.add(1);
  h.add(2);
  const auto [sent, held] = h.sent_and_held();
  h.start(sent);
  h.s.task_cancelled(sent, 0.1, false);
  h.forget_run(sent);
  CHECK(h.s.phase_of(sent) == phase::cancelled);
  CHECK(h.s.sent_to(sent) == no_worker);
  CHECK(h.s.sent_count(1) == 0);
  auto after = h.decide();
  auto cancels = of_kind(after, decision_kind::cancel);
  REQUIRE(cancels.size() == 1);
  CHECK(cancels[0].task == sent);
  CHECK(cancels[0].from == 1);
  // The slot it held is free: the other task goes now, not after the cancelled one's run time.
  auto runs = runs_of(after);
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].task == held);
  // A late finish of the cancelled task changes nothing.
  h.s.task_finished(sent, 1, 0.2, 0.2, 0, false);
  CHECK(h.s.phase_of(sent) == phase::cancelled);
  CHECK(h.s.sent_count(1) == 1);
  CHECK(h.double_runs == 0);
}

TEST_CASE("task cancelled: a timed-out task reads as failed, finished tasks are not changed", "[sched][cancel]") {
  harness h;
  h.join(1, 2);
  h.add(1);
  h.add(2);
  REQUIRE(runs_of(h.decide()).size() == 2);
  h.now = 0.5;
  h.finish(1);
  h.s.task_cancelled(1, h.now, false);
  CHECK(h.s.phase_of(1) == phase::done);
  h.s.task_cancelled(2, h.now, true);
  h.forget_run(2);
  CHECK(h.s.phase_of(2) == phase::failed);
  CHECK(of_kind(h.decide(), decision_kind::cancel).size() == 1);
  h.s.task_cancelled(2, h.now, false);  // a second request: nothing more to tell
  CHECK(of_kind(h.decide(), decision_kind::cancel).empty());
}

TEST_CASE("task cancelled: a move in flight is moot and the thief asks again", "[sched][cancel]") {
  harness h(with_policy(policy::predictive));
  h.join(1, 1);
  for (task_id t = 1; t <= 3; ++t) h.add(t, 1);
  h.decide();
  h.join(2, 1);
  auto ds = h.decide();
  auto mv = moves_of(ds);
  if (mv.empty()) return;  // placement took held work instead: nothing to check here
  h.s.task_cancelled(mv[0].task, h.now, false);
  h.forget_run(mv[0].task);
  auto after = h.decide();
  CHECK(of_kind(after, decision_kind::cancel).size() == 1);
  h.answer_move(mv[0], true);  // the answer to the moot move is ignored
  CHECK(h.s.phase_of(mv[0].task) == phase::cancelled);
  CHECK(h.double_runs == 0);
}

// ---- the one record of where a task is ----------------------------------------------------------

TEST_CASE("phase_of and sent_to follow a task through its life", "[sched]") {
  harness h;
  CHECK(h.s.phase_of(1) == phase::unknown);
  h.join(1, 1);
  h.submit(1);
  h.submit(2);
  CHECK(h.s.phase_of(1) == phase::waiting);
  h.s.task_ready(1, 0);
  h.s.task_ready(2, 0);
  CHECK(h.s.phase_of(1) == phase::ready);
  const auto [sent, held] = h.sent_and_held();
  CHECK(h.s.phase_of(sent) == phase::sent);
  CHECK(h.s.sent_to(sent) == 1);
  CHECK(h.s.phase_of(held) == phase::ready);  // held in w1's queue here: not sent
  CHECK(h.s.sent_to(held) == no_worker);
  CHECK(h.s.placed_on(held) == 1);
  h.start(sent);
  CHECK(h.s.phase_of(sent) == phase::running);
  CHECK(h.s.sent_to(sent) == 1);
  h.now = 1;
  h.finish(sent);
  CHECK(h.s.phase_of(sent) == phase::done);
  CHECK(h.s.sent_to(sent) == no_worker);
  REQUIRE(runs_of(h.decide()).size() == 1);
  h.fail(held, false);
  CHECK(h.s.phase_of(held) == phase::failed);
  CHECK(std::string(to_string(phase::failed)) == "failed");
  h.s.task_forgotten(held);
  CHECK(h.s.phase_of(held) == phase::unknown);
}

TEST_CASE("tasks_on and sent_count list what is sent to a worker, started or not", "[sched]") {
  harness h;
  h.join(1, 2);
  h.join(2, 2);
  for (task_id t = 1; t <= 4; ++t) h.add(t, 1.0);
  h.decide();
  std::vector<task_id> on1, on2;
  for (auto& [t, w] : h.live) (w == 1 ? on1 : on2).push_back(t);
  REQUIRE(on1.size() == 2);
  h.start(on1[0]);  // one running, one sent and not started
  CHECK(h.s.tasks_on(1) == on1);
  CHECK(h.s.tasks_on(2) == on2);
  CHECK(h.s.sent_count(1) == 2);
  h.now = 1;
  h.finish(on1[0]);
  CHECK(h.s.tasks_on(1) == std::vector<task_id>{on1[1]});
  CHECK(h.s.sent_count(1) == 1);
  h.give_back(on1[1]);
  CHECK(h.s.sent_count(1) == 0);
  CHECK(h.s.tasks_on(1).empty());
  CHECK(h.s.tasks_on(99).empty());
  CHECK(h.s.sent_count(99) == 0);
}

TEST_CASE("holders: a result kept on a worker, lost there, released", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 1);
  h.add(1);
  h.add(2);
  h.decide();
  const worker_id w1 = h.live.at(1), w2 = h.live.at(2);
  h.now = 1;
  h.finish(1, /*held_on_worker=*/true, 100);
  h.finish(2, /*held_on_worker=*/false, 100);
  CHECK(h.s.holders(1) == std::vector<worker_id>{w1});
  CHECK(h.s.holders(2).empty());  // at the caller
  CHECK(h.s.holders(77).empty());
  CHECK(h.s.results_on(w1) == std::vector<task_id>{1});
  CHECK(h.s.results_on(w2).empty());
  h.s.holder_lost(1, w2);  // not a holder: nothing changes
  CHECK(h.s.holders(1) == std::vector<worker_id>{w1});
  h.s.holder_lost(1, w1);
  CHECK(h.s.holders(1).empty());
  CHECK(h.s.results_on(w1).empty());
  h.s.task_ready(1, h.now);  // recomputed where the scheduler likes
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 1);
  h.now = 2;
  h.finish(1, true, 100);
  REQUIRE(h.s.holders(1).size() == 1);
  h.s.result_released(1);
  CHECK(h.s.holders(1).empty());
  CHECK(h.s.phase_of(1) == phase::done);
}

TEST_CASE("decide drops a run overtaken by a failure after it was made", "[sched]") {
  harness h;
  h.join(1, 1);
  h.add(1);
  REQUIRE(runs_of(h.decide()).size() == 1);
  h.join(2, 4);
  // Losing w1 places task 1 on w2 at once: the run is made now and handed out at the next decide.
  h.lose(1);
  h.s.task_failed(1, no_worker, h.now, false);  // the caller gave it up in between
  const auto ds = h.decide();
  CHECK_FALSE(has_run(ds, 1));
  CHECK(h.s.phase_of(1) == phase::failed);
  CHECK(h.s.sent_count(2) == 0);
}

TEST_CASE("decide hands out only the latest sending of a task sent twice between two calls", "[sched]") {
  harness h;
  h.join(1, 1);
  h.add(1);
  REQUIRE(runs_of(h.decide()).size() == 1);
  h.join(2, 4);
  h.lose(1);                   // run of 1 on w2 made (sending a)
  h.s.task_waiting(1, h.now);  // called off before it went out
  h.s.task_ready(1, h.now);    // ready again: placed and sent once more at decide (sending b)
  const auto ds = runs_of(h.decide());
  REQUIRE(ds.size() == 1);
  CHECK(ds[0].task == 1);
  CHECK(h.double_runs == 0);
  CHECK(h.s.sent_to(1) == ds[0].to);
}

TEST_CASE("a recompute started by the caller counts the task as left again", "[sched]") {
  harness h;
  h.join(1, 1);
  h.add(1, 2.0);
  h.decide();
  h.now = 2;
  h.finish(1, true, 10);
  CHECK(h.s.forecast(h.now).tasks_left == 0);
  h.s.task_waiting(1, h.now);  // its result was lost and the caller runs it again
  CHECK(h.s.phase_of(1) == phase::waiting);
  CHECK(h.s.forecast(h.now).tasks_left == 1);
  h.s.task_ready(1, h.now);
  REQUIRE(runs_of(h.decide()).size() == 1);
  h.now = 4;
  h.finish(1, true, 10);
  CHECK(h.s.forecast(h.now).tasks_left == 0);
}

// ---- baselines ----------------------------------------------------------------------------------

TEST_CASE("round_robin alternates workers and sends at once", "[sched]") {
  harness h(with_policy(policy::round_robin));
  h.join(1, 1);
  h.join(2, 1);
  for (task_id t = 1; t <= 10; ++t) h.add(t, 1.0);
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 10);
  std::map<task_id, worker_id> to;
  for (const decision& d : r) to[d.task] = d.to;
  for (task_id t = 1; t <= 10; ++t) CHECK(to[t] == (t % 2 == 1 ? 1u : 2u));
}

TEST_CASE("least_loaded fills by tasks per thread", "[sched]") {
  harness h(with_policy(policy::least_loaded));
  h.join(1, 1);
  h.join(2, 3);
  for (task_id t = 1; t <= 8; ++t) h.add(t, 1.0);
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 8);
  std::map<worker_id, int> n;
  for (const decision& d : r) ++n[d.to];
  CHECK(n[1] == 2);
  CHECK(n[2] == 6);
  // Worker 2 drains its share; new tasks go to it until per-thread counts match again.
  h.now = 1;
  for (auto& d : r)
    if (d.to == 2) h.finish(d.task);
  h.decide();
  for (task_id t = 9; t <= 12; ++t) h.add(t, 1.0);
  std::map<worker_id, int> m;
  for (const decision& d : runs_of(h.decide())) ++m[d.to];
  CHECK(m[2] == 4);
}

TEST_CASE("random is deterministic for a seed and spreads the work", "[sched]") {
  auto assign = [](std::uint64_t seed) {
    config c = with_policy(policy::random);
    c.seed = seed;
    harness h(c);
    for (worker_id w = 1; w <= 4; ++w) h.join(w, 1);
    for (task_id t = 1; t <= 200; ++t) h.add(t, 1.0);
    std::map<task_id, worker_id> to;
    for (const decision& d : runs_of(h.decide())) to[d.task] = d.to;
    return to;
  };
  const auto a = assign(7), b = assign(7), c = assign(8);
  REQUIRE(a.size() == 200);
  CHECK(a == b);
  CHECK(a != c);
  std::map<worker_id, int> n;
  for (auto& [t, w] : a) ++n[w];
  for (worker_id w = 1; w <= 4; ++w) CHECK(n[w] >= 20);
}

TEST_CASE("dask_like holds input-free tasks and sends ceil(1.1 x threads) per worker", "[sched]") {
  for (std::uint32_t threads : {1u, 4u, 10u}) {
    INFO("threads " << threads);
    harness h(with_policy(policy::dask_like));
    h.join(1, threads);
    for (task_id t = 1; t <= 40; ++t) h.add(t, 1.0);
    const std::size_t limit = (11 * threads + 9) / 10;
    auto r = runs_of(h.decide());
    CHECK(r.size() == limit);
    std::size_t at_scheduler = 0;
    for (task_id t = 1; t <= 40; ++t) at_scheduler += h.s.placed_on(t) == no_worker;
    CHECK(at_scheduler == 40 - limit);
    for (int i = 0; i < 3; ++i) {
      h.now += 1;
      h.finish(h.live.begin()->first);
      CHECK(runs_of(h.decide()).size() == 1);
      CHECK(h.live.size() == limit);
    }
  }
}

TEST_CASE("dask_like sends tasks with inputs at once, to a holder of an input", "[sched]") {
  harness h(with_policy(policy::dask_like));
  h.join(1, 1);
  h.join(2, 1);
  h.add(1, 1.0);
  auto r = runs_of(h.decide());
  REQUIRE(r.size() == 1);
  const worker_id holder = r[0].to;
  h.now = 1;
  h.finish(1, true, 1 << 20);
  for (task_id t = 2; t <= 6; ++t) {
    h.submit(t, 1.0, {1});
    h.s.task_ready(t, h.now);
  }
  auto r2 = runs_of(h.decide());
  CHECK(r2.size() == 5);  // beyond 1.1 x threads: only input-free tasks are held back
  for (const decision& d : r2) CHECK(d.to == holder);
}

// ---- forecast -----------------------------------------------------------------------------------

TEST_CASE("forecast: ten 1 s tasks on two 1-thread workers take 5 s", "[sched]") {
  harness h;
  h.s.set_round_trip(0);  // run times alone
  h.join(1, 1);
  h.join(2, 1);
  for (task_id t = 1; t <= 10; ++t) h.add(t, 1.0);
  h.decide();
  auto f = h.s.forecast(0);
  CHECK(f.tasks_left == 10);
  CHECK(f.remaining_seconds == Approx(5).margin(1e-6));
  CHECK(f.lower_bound <= f.remaining_seconds + 1e-9);
  CHECK(f.lower_bound == Approx(5).margin(1e-6));
  CHECK_FALSE(f.critical_path.empty());
  CHECK(f.critical_path.back() == "k");
  CHECK(f.bottleneck == "kind k");  // both workers end together: no worker stands out
  REQUIRE(f.workers.size() == 2);
  for (const worker_forecast& w : f.workers) {
    CHECK(w.queued == 5);
    CHECK(w.backlog_seconds == Approx(5));
  }
  // Two finish at t = 1, the next two start: 8 left, 4 s.
  h.now = 1;
  for (auto it = h.live.begin(); it != h.live.end();) {
    const task_id t = it++->first;
    h.finish(t);
  }
  h.decide();
  for (auto& [t, w] : h.live) h.start(t);
  auto g = h.s.forecast(1);
  CHECK(g.tasks_left == 8);
  CHECK(g.remaining_seconds == Approx(4).margin(1e-6));
  // Half a second later the running ones have half a second left.
  auto k = h.s.forecast(1.5);
  CHECK(k.remaining_seconds == Approx(3.5).margin(1e-6));
  CHECK(k.lower_bound <= k.remaining_seconds + 1e-9);
}

TEST_CASE("forecast: includes tasks not ready yet and follows the chain", "[sched]") {
  harness h;
  h.s.set_round_trip(0);  // run times alone
  h.join(1, 4);
  h.submit(1, 1.0, {}, 0, {}, "load");
  h.submit(2, 2.0, {1}, 0, {}, "fft");
  h.submit(3, 3.0, {2}, 0, {}, "reduce");
  h.add(4, 0.5, {}, 0, {}, "side");
  h.s.task_ready(1, 0);
  h.decide();
  auto f = h.s.forecast(0);
  CHECK(f.tasks_left == 4);
  CHECK(f.remaining_seconds == Approx(6).margin(1e-6));
  CHECK(f.critical_path == std::vector<std::string>{"load", "fft", "reduce"});
  CHECK(f.critical_tasks == std::vector<task_id>{1, 2, 3});
  CHECK(f.lower_bound <= f.remaining_seconds + 1e-9);
  CHECK(f.lower_bound == Approx(6).margin(1e-6));
  CHECK(f.bottleneck == "kind reduce");
}

TEST_CASE("forecast: the one worker that can run the work is the bottleneck", "[sched]") {
  harness h;
  h.s.set_round_trip(0);  // run times alone
  h.join(1, 1);
  h.join(2, 1, 1.0, {{"gpu", 1}});
  for (task_id t = 1; t <= 6; ++t) h.add(t, 1.0, {}, 0, {{"gpu", 1}});
  h.decide();
  auto f = h.s.forecast(0);
  CHECK(f.remaining_seconds == Approx(6).margin(1e-6));
  CHECK(f.bottleneck == "worker w2");
}

// ---- alerts -------------------------------------------------------------------------------------

TEST_CASE("alert: straggler once, past 2x its prediction", "[sched]") {
  harness h;
  h.join(1, 1);
  h.add(1, 1.0);
  h.decide();
  h.start(1);
  h.now = 1.5;
  h.decide();
  CHECK(h.count_alerts(alert_kind::straggler) == 0);
  h.now = 2.5;
  h.decide();
  REQUIRE(h.count_alerts(alert_kind::straggler, "task 1") == 1);
  CHECK(h.alerts.back().value == Approx(2.5));
  h.now = 3;
  h.decide();
  h.now = 10;
  h.decide();
  CHECK(h.count_alerts(alert_kind::straggler) == 1);
}

TEST_CASE("alert: saturation once while it holds, again after it cleared", "[sched]") {
  harness h;
  h.join(1, 1);
  for (task_id t = 1; t <= 20; ++t) h.add(t, 1.0);
  h.decide();
  CHECK(h.count_alerts(alert_kind::saturation, "cluster") == 1);
  task_id next = 21;
  for (int i = 0; i < 11; ++i) {
    h.now += 1;
    h.finish(h.live.begin()->first);
    h.decide();
  }
  CHECK(h.count_alerts(alert_kind::saturation) == 1);  // held, then cleared once 10 s or less are left
  for (int i = 0; i < 10; ++i) h.add(next++, 1.0);
  h.now += 1;
  h.decide();
  CHECK(h.count_alerts(alert_kind::saturation) == 2);
}

TEST_CASE("alert: no saturation while a worker has room", "[sched]") {
  harness h;
  h.join(1, 1);
  h.join(2, 64);
  for (task_id t = 1; t <= 40; ++t) h.add(t, 1.0);
  h.decide();
  CHECK(h.count_alerts(alert_kind::saturation) == 0);
}

TEST_CASE("alert: imbalance names the overloaded worker, once", "[sched]") {
  harness h;
  h.join(1, 1, 1, {{"gpu", 1}});
  h.join(2, 1);
  h.join(3, 1);
  for (task_id t = 1; t <= 10; ++t) h.add(t, 1.0, {}, 0, {{"gpu", 1}});
  h.decide();
  CHECK(h.count_alerts(alert_kind::imbalance, "w1") == 1);
  for (int i = 0; i < 3; ++i) {
    h.now += 1;
    h.finish(h.live.begin()->first);
    h.decide();
  }
  CHECK(h.count_alerts(alert_kind::imbalance) == 1);
}

TEST_CASE("alert: imbalance fires again after the cluster went idle", "[sched]") {
  // Two 5 s gpu tasks on the only gpu worker while two others idle: imbalance. They finish, the
  // whole cluster is idle (the condition has cleared), then the same happens again.
  harness h;
  h.join(1, 1, 1, {{"gpu", 1}});
  h.join(2, 1);
  h.join(3, 1);
  for (task_id t = 1; t <= 2; ++t) h.add(t, 5.0, {}, 0, {{"gpu", 1}});
  h.decide();
  REQUIRE(h.count_alerts(alert_kind::imbalance, "w1") == 1);
  while (!h.live.empty()) {
    h.now += 5;
    h.finish(h.live.begin()->first);
    h.decide();
  }
  h.now += 1;
  h.decide();
  for (task_id t = 3; t <= 4; ++t) h.add(t, 5.0, {}, 0, {{"gpu", 1}});
  h.now += 1;
  h.decide();
  CHECK(h.count_alerts(alert_kind::imbalance, "w1") == 2);
}

// ---- randomized stress --------------------------------------------------------------------------

namespace {

/// Random events over a few thousand tasks of a random graph: joins, graceful leaves, losses,
/// failures with retry, moves answered at random, results kept on workers or not. After every
/// decide() the caller's view (its outstanding runs) and the scheduler's must agree, no task has
/// two runs outstanding, and in the end every task has finished (within a bounded number of steps).
void stress(policy kind, std::uint64_t seed, bool held_results, double send_ahead_seconds = 0.002) {
  INFO("policy " << to_string(kind) << " seed " << seed << " held_results " << held_results << " send_ahead "
                 << send_ahead_seconds);
  config c = with_policy(kind);
  c.seed = seed;
  c.send_ahead_seconds = send_ahead_seconds;
  dx::cost_model model;
  scheduler s(c, model);
  std::mt19937_64 rng(seed);
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto pick = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };

  enum class st : std::uint8_t { unsubmitted, waiting, ready, done };
  struct task {
    st state = st::unsubmitted;
    std::vector<task_id> inputs, dependents;
    double seconds = 0;
    bool gpu = false;
    worker_id live = no_worker;  // the outstanding run
    bool started = false;
    std::uint32_t attempt = 0;     // bumped whenever the outstanding run is cancelled
    worker_id holder = no_worker;  // result kept there (no_worker: at the caller)
    bool lost = false;
  };
  struct worker {
    std::uint32_t threads = 1;
    bool gpu = false, active = true, draining = false;
    std::vector<task_id> sent;  // in send order
    std::uint32_t running = 0;
  };
  struct pending_move {
    decision d;
    std::uint32_t attempt;
    int due;
  };
  const task_id n = 2000;
  std::vector<task> tasks(n + 1);
  std::map<worker_id, worker> workers;
  std::set<task_id> ready;  // ready in the caller's view, not finished
  std::set<task_id> fresh;  // made ready after the last decide(): placed at the next one
  std::vector<pending_move> moves;
  std::vector<std::string> faults;
  auto fault = [&](const std::string& what) {
    if (faults.size() < 20) faults.push_back(what);
  };
  double now = 0;
  task_id next_task = 1;
  worker_id next_worker = 1;
  std::size_t finished = 0;

  auto join = [&](bool gpu) {
    worker_spec w;
    w.id = next_worker++;
    w.name = name_of(w.id);
    w.threads = static_cast<std::uint32_t>(1 + pick(4));
    w.true_factor = 1 + static_cast<double>(pick(4));
    if (gpu) w.capacity["gpu"] = 1;
    worker& me = workers[w.id];
    me.threads = w.threads;
    me.gpu = gpu;
    s.worker_joined(w, now);
  };
  auto cancel = [&](task_id t) {
    task& r = tasks[t];
    if (r.live == no_worker) return;
    worker& w = workers[r.live];
    std::erase(w.sent, t);
    if (r.started) --w.running;
    r.live = no_worker;
    r.started = false;
    ++r.attempt;
  };
  auto available = [&](task_id in) { return tasks[in].state == st::done && !tasks[in].lost; };
  auto try_ready = [&](task_id t) {
    task& r = tasks[t];
    if (r.state != st::waiting) return;
    for (task_id in : r.inputs)
      if (!available(in)) return;
    r.state = st::ready;
    ready.insert(t);
    fresh.insert(t);
    s.task_ready(t, now);
  };
  auto submit = [&] {
    const task_id id = next_task++;
    task& r = tasks[id];
    task_spec spec;
    spec.id = id;
    spec.kind = "k" + std::to_string(pick(3));
    const std::size_t n_inputs = id > 1 ? pick(3) : 0;
    for (std::size_t i = 0; i < n_inputs; ++i) {
      const task_id lo = id > 100 ? id - 100 : 1;
      const task_id in = lo + pick(id - lo);
      // A result lost before anything needed it is the caller's business, not the scheduler's.
      if (tasks[in].lost || std::find(r.inputs.begin(), r.inputs.end(), in) != r.inputs.end()) continue;
      r.inputs.push_back(in);
      tasks[in].dependents.push_back(id);
    }
    spec.inputs = r.inputs;
    r.seconds = 0.001 + 0.5 * std::uniform_real_distribution<double>(0, 1)(rng);
    spec.true_seconds = r.seconds;
    spec.priority = static_cast<int>(pick(3));
    r.gpu = chance(0.05);
    if (r.gpu) spec.needs["gpu"] = 1;
    r.state = st::waiting;
    s.task_submitted(spec, now);
    try_ready(id);
  };
  auto leave = [&](worker_id id, bool lost) {
    worker& w = workers[id];
    for (task_id t : std::vector<task_id>(w.sent)) cancel(t);
    w.active = false;
    for (task_id t = 1; t < next_task; ++t)
      if (tasks[t].holder == id) tasks[t].lost = true;
    s.worker_left(id, lost, now);
  };
  auto usable = [&](bool need_gpu) {
    for (auto& [id, w] : workers)
      if (w.active && !w.draining && (w.gpu || !need_gpu)) return true;
    return false;
  };
  auto active_count = [&] {
    int k = 0;
    for (auto& [id, w] : workers) k += w.active && !w.draining;
    return k;
  };

  for (int i = 0; i < 3; ++i) join(i == 0);
  std::vector<decision> out;
  std::vector<alert_event> alerts;
  const int max_steps = 20000;
  int step = 0;
  // The caller decides after every batch of events and acts on the decisions at once.
  auto decide_and_check = [&] {
    out.clear();
    s.decide(now, out);
    fresh.clear();
    for (const decision& d : out) {
      task& r = tasks[d.task];
      switch (d.kind) {
        case decision_kind::run: {
          if (r.state != st::ready) fault("run for task " + std::to_string(d.task) + " that is not ready");
          if (r.live != no_worker) fault("second run for task " + std::to_string(d.task) + " while one is outstanding");
          auto w = workers.find(d.to);
          if (w == workers.end() || !w->second.active || w->second.draining) {
            fault("run for task " + std::to_string(d.task) + " to a worker that takes nothing");
            break;
          }
          if (r.gpu && !w->second.gpu) fault("gpu task " + std::to_string(d.task) + " to a worker without one");
          cancel(d.task);
          r.live = d.to;
          w->second.sent.push_back(d.task);
          break;
        }
        case decision_kind::move:
          if (r.live != d.from || r.started)
            fault("move of task " + std::to_string(d.task) + " that is not queued on its victim");
          moves.push_back({d, r.attempt, step + static_cast<int>(pick(5))});
          break;
        case decision_kind::recompute:
          if (r.state != st::done || !r.lost) fault("recompute of task " + std::to_string(d.task) + " not lost");
          r.state = st::waiting;
          r.lost = false;
          r.holder = no_worker;
          --finished;
          // Its dependents go back to waiting; the caller readies them once it is there again.
          for (task_id dep : r.dependents)
            if (tasks[dep].state == st::ready) {
              cancel(dep);
              tasks[dep].state = st::waiting;
              ready.erase(dep);
            }
          try_ready(d.task);
          break;
        case decision_kind::cancel:
          fault("cancel of task " + std::to_string(d.task) + " nobody gave up");
          break;
      }
    }
    // Each worker's gpu holds one task at most.
    for (auto& [id, w] : workers) {
      int gpus = 0;
      for (task_id t : w.sent) gpus += tasks[t].gpu;
      if (gpus > 1) fault("worker " + std::to_string(id) + " was sent " + std::to_string(gpus) + " gpu tasks");
    }
    // The scheduler's view of every ready task matches the caller's.
    for (task_id t : ready) {
      const task& r = tasks[t];
      if (r.live != no_worker) {
        if (!s.is_sent(t) || s.placed_on(t) != r.live)
          fault("task " + std::to_string(t) + " was sent but the scheduler does not say so");
        continue;
      }
      if (s.is_sent(t)) fault("task " + std::to_string(t) + " sent without a run decision");
      const worker_id at = s.placed_on(t);
      if (at != no_worker) {
        auto w = workers.find(at);
        if (w == workers.end() || !w->second.active || w->second.draining)
          fault("task " + std::to_string(t) + " held for a worker that takes nothing");
      } else if (usable(r.gpu) && !fresh.count(t) && !(kind == policy::dask_like && r.inputs.empty() && !r.gpu)) {
        fault("ready task " + std::to_string(t) + " placed nowhere while a worker could run it");
      }
    }
    if (step % 200 == 0)
      for (task_id t = 1; t < next_task; ++t)
        if (tasks[t].state != st::ready && (s.is_sent(t) || s.placed_on(t) != no_worker))
          fault("task " + std::to_string(t) + " not ready but placed");
    alerts.clear();
    s.take_alerts(alerts);
  };
  for (; step < max_steps && finished < n; ++step) {
    now += 0.001 + 0.01 * std::uniform_real_distribution<double>(0, 1)(rng);
    const bool chaos = next_task <= n || step < 3000;
    // ---- events
    if (next_task <= n && chance(0.3))
      for (std::size_t k = 1 + pick(20); k > 0 && next_task <= n; --k) submit();
    if (chance(0.01) && workers.size() < 40) join(chance(0.3));
    if (chaos && chance(0.004) && active_count() > 1) {
      std::vector<worker_id> ids;
      for (auto& [id, w] : workers)
        if (w.active) ids.push_back(id);
      leave(ids[pick(ids.size())], true);
      decide_and_check();
    }
    if (chaos && chance(0.004) && active_count() > 1) {
      std::vector<worker_id> ids;
      for (auto& [id, w] : workers)
        if (w.active && !w.draining) ids.push_back(id);
      const worker_id id = ids[pick(ids.size())];
      worker& w = workers[id];
      w.draining = true;
      s.worker_draining(id, now);
      for (task_id t : std::vector<task_id>(w.sent))
        if (!tasks[t].started) {
          cancel(t);
          s.task_returned(t, id, now);
        }
    }
    // A drained worker leaves once what it runs has finished.
    for (auto& [id, w] : workers)
      if (w.active && w.draining && w.sent.empty()) {
        leave(id, false);
        decide_and_check();
      }
    if (!chaos && !usable(true)) join(true);
    if (!usable(false)) join(chance(0.5));
    // Workers start what they were sent, in order.
    for (auto& [id, w] : workers) {
      if (!w.active) continue;
      for (task_id t : w.sent) {
        if (w.running >= w.threads) break;
        if (tasks[t].started) continue;
        tasks[t].started = true;
        ++w.running;
        s.task_started(t, id, now);
      }
    }
    // Some running tasks finish (or fail and are retried).
    for (std::size_t k = pick(4); k > 0; --k) {
      std::vector<task_id> running;
      for (auto& [id, w] : workers)
        for (task_id t : w.sent)
          if (tasks[t].started) running.push_back(t);
      if (running.empty()) break;
      const task_id t = running[pick(running.size())];
      task& r = tasks[t];
      const worker_id w = r.live;
      cancel(t);
      if (chance(0.03)) {
        s.task_failed(t, w, now, true);
        continue;
      }
      const bool held = held_results && chance(0.5);
      s.task_finished(t, w, now, r.seconds, 1000, held);
      r.state = st::done;
      r.holder = held ? w : no_worker;
      r.lost = false;
      ready.erase(t);
      ++finished;
      for (task_id d : r.dependents) try_ready(d);
    }
    // Victims answer moves after a while; a lost victim never does.
    for (auto it = moves.begin(); it != moves.end();) {
      if (it->due > step) {
        ++it;
        continue;
      }
      const decision d = it->d;
      task& r = tasks[d.task];
      if (workers[d.from].active) {
        const bool same = r.live == d.from && r.attempt == it->attempt;
        const bool given_up = same && !r.started && chance(0.7);
        if (given_up) cancel(d.task);
        s.move_answered(d.task, d.from, given_up, now);
      }
      it = moves.erase(it);
    }
    decide_and_check();
    if (faults.size() >= 20) break;
  }
  std::size_t once = 0, blocked = 0;
  for (task_id t = 1; t <= n; ++t) {
    once += tasks[t].state == st::done;
    if (tasks[t].state == st::waiting)
      for (task_id in : tasks[t].inputs) blocked += tasks[in].lost;
  }
  for (const std::string& f : faults) UNSCOPED_INFO(f);
  CHECK(faults.empty());
  INFO("steps " << step << ", tasks waiting on a lost result nobody recomputes: " << blocked);
  CHECK(step < max_steps);
  CHECK(once == n);
  CHECK(finished == n);
}

}  // namespace

TEST_CASE("stress: predictive, results at the caller", "[sched]") { stress(policy::predictive, 1, false); }
TEST_CASE("stress: predictive, results kept on workers", "[sched]") { stress(policy::predictive, 2, true); }
TEST_CASE("stress: oracle, results kept on workers", "[sched]") { stress(policy::oracle, 3, true); }
TEST_CASE("stress: dask_like, results kept on workers", "[sched]") { stress(policy::dask_like, 4, true); }
TEST_CASE("stress: round_robin, results at the caller", "[sched]") { stress(policy::round_robin, 5, false); }
TEST_CASE("stress: least_loaded, results kept on workers", "[sched]") { stress(policy::least_loaded, 6, true); }
TEST_CASE("stress: random, results at the caller", "[sched]") { stress(policy::random, 7, false); }
// A window wide enough for everything: all is sent at once, so idle workers must ask (moves).
TEST_CASE("stress: predictive, wide window, results at the caller", "[sched]") {
  stress(policy::predictive, 8, false, 1000);
}
TEST_CASE("stress: oracle, wide window, results kept on workers", "[sched]") { stress(policy::oracle, 9, true, 1000); }

TEST_CASE("task_failed naming no worker releases a task wherever it was sent", "[sched]") {
  harness h;
  h.join(1);
  h.add(1, 1.0);
  REQUIRE(runs_of(h.decide()).size() == 1);
  // The caller gives it up without knowing where it went (an input failed, the cluster stops).
  h.forget_run(1);
  h.s.task_failed(1, no_worker, h.now, false);
  CHECK_FALSE(h.s.is_sent(1));
  // The worker's window is free again: the next task goes out at once.
  h.add(2, 1.0);
  CHECK(has_run(h.decide(), 2));
}

TEST_CASE("a kind nothing is known about is probed with a few of its smallest tasks first", "[sched]") {
  dx::cost_model model;
  config c = with_policy(policy::predictive);
  scheduler s(c, model);
  for (worker_id w = 0; w < 20; ++w) {
    worker_spec spec;
    spec.id = w;
    spec.name = name_of(w);
    s.worker_joined(spec, 0);
  }
  for (task_id t = 1; t <= 40; ++t) {
    task_spec spec;
    spec.id = t;
    spec.kind = "unknown";
    spec.size_hint = static_cast<double>(1000 - t);  // later tasks are smaller
    s.task_submitted(spec, 0);
    s.task_ready(t, 0);
  }
  std::vector<decision> out;
  s.decide(0, out);
  const auto runs = runs_of(out);
  // Twenty idle workers, but only a handful of probes until the kind has samples.
  CHECK(runs.size() <= 4);
  REQUIRE(!runs.empty());
  for (const decision& d : runs) CHECK(d.task > 30);  // the smallest ones
}
TEST_CASE("an idle worker takes work queued behind tasks that overran their prediction", "[scheduler]") {
  harness h{with_policy(policy::predictive)};
  teach(h.model, "k", "w0", 1.0);
  teach(h.model, "k", "w1", 5.0);
  h.join(0, 2);
  h.join(1, 1);
  for (task_id t = 1; t <= 3; ++t) h.add(t, 1.0);
  // All three go to the fast worker: the third waits there 1 s, which beats 5 s on the slow one.
  const auto first = runs_of(h.decide());
  REQUIRE(first.size() == 2);
  for (const decision& d : first) {
    CHECK(d.to == 0);
    h.start(d.task);
  }
  CHECK(h.s.placed_on(3) == 0);
  CHECK_FALSE(h.s.is_sent(3));
  // Slightly late: still better to wait.
  h.now = 1.5;
  h.s.load_report(1, 0, 0, h.now);
  CHECK(runs_of(h.decide()).empty());
  // Far past their prediction, the running tasks are expected to go on about as long again: the
  // idle worker takes the queued task instead of leaving it behind them.
  h.now = 20;
  h.s.load_report(1, 0, 0, h.now);
  const auto later = runs_of(h.decide());
  REQUIRE(later.size() == 1);
  CHECK(later[0].task == 3);
  CHECK(later[0].to == 1);
  CHECK(h.double_runs == 0);
}

TEST_CASE("a task id of 2^36 or more is refused with a dx::error", "[sched]") {
  dx::cost_model model;
  scheduler s(config{}, model);
  task_spec t;
  t.id = std::uint64_t{1} << 36;
  t.kind = "k";
  REQUIRE_THROWS_AS(s.task_submitted(t, 0), dx::error);
  t.id = 1;
  REQUIRE_NOTHROW(s.task_submitted(t, 0));
}

TEST_CASE("forecast: predictions of kinds the model has not learned are flagged, by kind", "[sched][forecast]") {
  harness h(with_policy(policy::predictive));
  teach(h.model, "fft", "w1", 0.2);
  h.join(1, 1);
  for (task_id t = 1; t <= 4; ++t) h.add(t, 0.2, {}, 0, {}, "fft");
  auto f = h.s.forecast(0);
  CHECK(f.uncalibrated_tasks == 0);
  CHECK(f.uncalibrated_kinds.empty());

  for (task_id t = 5; t <= 7; ++t) h.add(t, 0.01, {}, 0, {}, "parse");  // never seen: 0.5 s each, a guess
  h.add(8, 0.01, {}, 0, {}, "load");
  h.decide();
  f = h.s.forecast(0);
  CHECK(f.tasks_left == 8);
  CHECK(f.uncalibrated_tasks == 4);
  CHECK(f.uncalibrated_kinds == std::vector<std::string>{"load", "parse"});

  // A kind seen fewer than min_samples times is still a guess; enough runs calibrate it.
  teach(h.model, "parse", "w1", 0.01, 2);
  teach(h.model, "load", "w1", 0.01, 5);
  f = h.s.forecast(0);
  CHECK(f.uncalibrated_kinds == std::vector<std::string>{"parse"});
  teach(h.model, "parse", "w1", 0.01, 3);
  f = h.s.forecast(0);
  CHECK(f.uncalibrated_tasks == 0);
  CHECK(f.uncalibrated_kinds.empty());
}
