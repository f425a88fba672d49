// The scheduler's spread groups: copies of one task (replication) are never placed on one worker,
// nor on one host when asked, nor where another copy already finished or where the caller says
// not to; a copy with nowhere left to go waits and raises an unplaceable alert.
#include "scheduler_harness.hpp"

#include <catch2/catch.hpp>

using namespace sched_test;

namespace {

task_spec copy_spec(task_id id, task_id group, bool hosts = false, std::vector<worker_id> avoid = {}) {
  task_spec t;
  t.id = id;
  t.kind = "k";
  t.true_seconds = 1;
  t.spread_group = group;
  t.spread_hosts = hosts;
  t.avoid = std::move(avoid);
  return t;
}

void add_copy(harness& h, const task_spec& t) {
  h.seconds[t.id] = t.true_seconds;
  h.s.task_submitted(t, h.now);
  h.s.task_ready(t.id, h.now);
}

void join_on(harness& h, worker_id id, std::string host) {
  worker_spec w;
  w.id = id;
  w.name = name_of(id);
  w.host = std::move(host);
  h.workers[id] = w;
  h.s.worker_joined(w, h.now);
}

}  // namespace

TEST_CASE("copies of one task go to distinct workers, whatever the policy", "[sched][spread]") {
  for (policy p : {policy::predictive, policy::oracle, policy::round_robin, policy::random, policy::least_loaded,
                   policy::dask_like}) {
    INFO(to_string(p));
    harness h(with_policy(p));
    for (worker_id w = 0; w < 3; ++w) h.join(w);
    for (task_id g = 1; g <= 30; g += 3)
      for (task_id c = 0; c < 3; ++c) add_copy(h, copy_spec(g + c, g));
    std::map<task_id, std::set<worker_id>> where;
    run_to_end(h, [&] {
      for (const auto& [t, w] : h.live) where[(t - 1) / 3 * 3 + 1].insert(w);
    });
    for (auto& [g, ws] : where) CHECK(ws.size() == 3);
    CHECK(h.double_runs == 0);
  }
}

TEST_CASE("a copy never goes where another copy of its task finished, nor where it is told not to", "[sched][spread]") {
  harness h(with_policy(policy::predictive));
  h.join(0);
  h.join(1);
  add_copy(h, copy_spec(1, 1));
  auto first = runs_of(h.decide());
  REQUIRE(first.size() == 1);
  const worker_id ran = first[0].to;
  h.finish(1);
  // A second copy issued after the first finished must take the other worker, even idle as both are.
  add_copy(h, copy_spec(2, 1));
  auto second = runs_of(h.decide());
  REQUIRE(second.size() == 1);
  CHECK(second[0].to != ran);
  // And a copy told to avoid both has nowhere to go: it waits, with an alert naming why.
  add_copy(h, copy_spec(3, 1, false, {0, 1}));
  CHECK(runs_of(h.decide()).empty());
  CHECK_FALSE(h.s.hostable(3));
  bool alerted = false;
  for (const auto& a : h.alerts)
    alerted = alerted || (a.kind == alert_kind::unplaceable && a.message.find("copy") != std::string::npos);
  CHECK(alerted);
  // A new worker takes it.
  h.join(2);
  auto third = runs_of(h.decide());
  REQUIRE(third.size() == 1);
  CHECK(third[0].to == 2);
}

TEST_CASE("copies asked to spread over hosts never share a machine", "[sched][spread]") {
  harness h(with_policy(policy::predictive));
  join_on(h, 0, "alpha");
  join_on(h, 1, "alpha");
  join_on(h, 2, "beta");
  add_copy(h, copy_spec(1, 1, true));
  add_copy(h, copy_spec(2, 1, true));
  add_copy(h, copy_spec(3, 1, true));
  auto runs = runs_of(h.decide());
  REQUIRE(runs.size() == 2);  // two hosts: the third copy waits
  std::set<std::string> hosts;
  for (const auto& d : runs) hosts.insert(h.workers[d.to].host);
  CHECK(hosts.size() == 2);
  task_id waiting = 6 - runs[0].task - runs[1].task;  // of copies 1, 2 and 3
  CHECK_FALSE(h.s.hostable(waiting));
}
