// The scheduler tests' harness: a caller played by hand (explicit events at virtual times,
// decisions recorded) and a virtual-time run to the end. Shared by the scheduler's test files.
#pragma once

#include "sched/scheduler.hpp"

#include <dx/cost_model.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace sched_test {

using namespace dx::sched;

inline std::string name_of(worker_id w) { return "w" + std::to_string(w); }

inline config oracle_config() {
  config c;
  c.kind = policy::oracle;
  return c;
}

inline config with_policy(policy p) {
  config c;
  c.kind = p;
  return c;
}

/// Teaches the model that `kind` takes `seconds` on `worker`, enough samples to be calibrated.
inline void teach(dx::cost_model& m, std::string_view kind, std::string_view worker, double seconds, int samples = 10) {
  for (int i = 0; i < samples; ++i)
    m.observe({.kind = kind, .worker = worker, .worker_class = "default", .features = {}, .seconds = seconds});
}

inline std::vector<decision> of_kind(const std::vector<decision>& ds, decision_kind k) {
  std::vector<decision> r;
  for (const decision& d : ds)
    if (d.kind == k) r.push_back(d);
  return r;
}
inline std::vector<decision> runs_of(const std::vector<decision>& ds) { return of_kind(ds, decision_kind::run); }
inline std::vector<decision> moves_of(const std::vector<decision>& ds) { return of_kind(ds, decision_kind::move); }

inline bool has_run(const std::vector<decision>& ds, task_id t) {
  return std::any_of(ds.begin(), ds.end(),
                     [&](const decision& d) { return d.kind == decision_kind::run && d.task == t; });
}

/// Plays the caller: remembers the outstanding run decisions (sent, not yet finished, failed,
/// returned, given up or lost), so that a second run for a task that still has one is counted as
/// a fault whatever the test is about.
struct harness {
  dx::cost_model model;
  scheduler s;
  double now = 0;
  std::map<task_id, worker_id> live;
  std::set<task_id> started;
  std::map<worker_id, int> runs;  // run decisions per worker, all so far
  std::map<worker_id, worker_spec> workers;
  std::map<task_id, double> seconds;  // true run time on a worker of factor 1
  std::vector<alert_event> alerts;    // every alert so far
  std::size_t double_runs = 0;

  explicit harness(config c = oracle_config()) : s(c, model) {}

  void join(worker_id id, std::uint32_t threads = 1, double factor = 1, resource_map capacity = {}) {
    worker_spec w;
    w.id = id;
    w.name = name_of(id);
    w.threads = threads;
    w.true_factor = factor;
    w.capacity = std::move(capacity);
    workers[id] = w;
    s.worker_joined(w, now);
  }
  void submit(task_id id, double secs = 1, std::vector<task_id> inputs = {}, int priority = 0, resource_map need = {},
              std::string kind = "k") {
    task_spec t;
    t.id = id;
    t.kind = std::move(kind);
    t.inputs = std::move(inputs);
    t.priority = priority;
    t.needs = std::move(need);
    t.true_seconds = secs;
    seconds[id] = secs;
    s.task_submitted(t, now);
  }
  /// Submitted and ready at once (no inputs still running).
  void add(task_id id, double secs = 1, std::vector<task_id> inputs = {}, int priority = 0, resource_map need = {},
           std::string kind = "k") {
    submit(id, secs, std::move(inputs), priority, std::move(need), std::move(kind));
    s.task_ready(id, now);
  }
  std::vector<decision> decide() {
    std::vector<decision> out;
    s.decide(now, out);
    for (const decision& d : out) {
      if (d.kind != decision_kind::run) continue;
      if (live.count(d.task)) ++double_runs;
      live[d.task] = d.to;
      started.erase(d.task);
      ++runs[d.to];
    }
    s.take_alerts(alerts);
    return out;
  }
  void start(task_id t) {
    s.task_started(t, live.at(t), now);
    started.insert(t);
  }
  void forget_run(task_id t) {
    live.erase(t);
    started.erase(t);
  }
  void finish(task_id t, bool held_on_worker = false, std::uint64_t bytes = 0) {
    const worker_id w = live.at(t);
    forget_run(t);
    s.task_finished(t, w, now, seconds[t] * workers[w].true_factor, bytes, held_on_worker);
  }
  void fail(task_id t, bool retry) {
    const worker_id w = live.at(t);
    forget_run(t);
    s.task_failed(t, w, now, retry);
  }
  void give_back(task_id t) {
    const worker_id w = live.at(t);
    forget_run(t);
    s.task_returned(t, w, now);
  }
  void answer_move(const decision& m, bool given_up) {
    if (given_up) forget_run(m.task);
    s.move_answered(m.task, m.from, given_up, now);
  }
  void lose(worker_id w, bool lost = true) {
    std::vector<task_id> there;
    for (auto& [t, at] : live)
      if (at == w) there.push_back(t);
    for (task_id t : there) forget_run(t);
    s.worker_left(w, lost, now);
  }
  std::size_t live_on(worker_id w) const {
    return static_cast<std::size_t>(std::count_if(live.begin(), live.end(), [&](auto& p) { return p.second == w; }));
  }
  std::size_t count_alerts(alert_kind k, const std::string& subject = {}) const {
    return static_cast<std::size_t>(std::count_if(alerts.begin(), alerts.end(), [&](const alert_event& a) {
      return a.kind == k && (subject.empty() || a.subject == subject);
    }));
  }

  /// Decides with tasks 1 and 2 ready for one worker thread, expecting one run: the task sent, and
  /// whichever of 1 and 2 was held back.
  std::pair<task_id, task_id> sent_and_held() {
    auto ds = runs_of(decide());
    REQUIRE(ds.size() == 1);
    return {ds[0].task, ds[0].task == 1 ? 2 : 1};
  }
};

/// Runs everything to completion in virtual time: each worker starts what it was sent in send
/// order on its threads, a task takes its true seconds times the worker's factor, moves are given
/// up when the task has not started. Runs already outstanding are picked up first. `each` runs
/// after every decide().
inline void run_to_end(harness& h, const std::function<void()>& each = {}, int max_steps = 100000) {
  struct busy {
    double end;
    task_id t;
  };
  std::map<worker_id, std::deque<task_id>> queued;
  std::map<worker_id, std::vector<busy>> running;
  for (auto& [t, w] : h.live) {
    if (h.started.count(t))
      running[w].push_back({h.now + h.seconds[t] * h.workers[w].true_factor, t});
    else
      queued[w].push_back(t);
  }
  for (int step = 0; step < max_steps; ++step) {
    const std::vector<decision> ds = h.decide();
    for (const decision& d : ds) {
      if (d.kind == decision_kind::run) {
        queued[d.to].push_back(d.task);
      } else if (d.kind == decision_kind::move) {
        auto& q = queued[d.from];
        auto it = std::find(q.begin(), q.end(), d.task);
        const bool given_up = it != q.end();
        if (given_up) q.erase(it);
        h.answer_move(d, given_up);
      }
    }
    if (each) each();
    for (auto& [w, q] : queued) {
      auto& r = running[w];
      while (!q.empty() && r.size() < h.workers[w].threads) {
        const task_id t = q.front();
        q.pop_front();
        h.start(t);
        r.push_back({h.now + h.seconds[t] * h.workers[w].true_factor, t});
      }
    }
    worker_id next_w = no_worker;
    std::size_t next_i = 0;
    double next_end = 0;
    for (auto& [w, r] : running)
      for (std::size_t i = 0; i < r.size(); ++i)
        if (next_w == no_worker || r[i].end < next_end) {
          next_w = w;
          next_i = i;
          next_end = r[i].end;
        }
    if (next_w == no_worker) {
      if (!ds.empty()) continue;  // an answered move may place something at the next decide
      break;                      // done, or stuck: the callers check
    }
    const task_id t = running[next_w][next_i].t;
    running[next_w].erase(running[next_w].begin() + static_cast<std::ptrdiff_t>(next_i));
    h.now = std::max(h.now, next_end);
    h.finish(t);
  }
}

}  // namespace sched_test
