// The forecast: what is left, list-scheduled with the model's current predictions (sent tasks
// where they are, the rest placed as the policy would), giving the predicted backlog per worker,
// the time until everything finishes, a lower bound, the remaining critical path and the
// bottleneck.
#include "sched/placement.hpp"

#include <algorithm>
#include <cmath>
#include <queue>
#include <set>

namespace dx::sched {

forecast_result scheduler::forecast(double now) const {
  const state& s = *s_;
  forecast_result r;
  r.now = now;
  // List-schedule what is left with the model's current predictions. Sent tasks stay on their
  // workers, in send order; everything else (held here, ready, waiting) is placed where it would
  // finish first, as rebalancing would move it (under a baseline that does not rebalance, held
  // tasks stay on their workers too): held and ready tasks in queue order, then the
  // waiting ones in submission (topological) order. Each worker's threads are a heap of free
  // times; workers sit in speed buckets ordered by their earliest free thread, so a placement
  // costs O(buckets + log workers), as in the scheduler itself.
  struct sim_worker {
    const worker_rec* w;
    std::priority_queue<double, std::vector<double>, std::greater<>> free;
    double finish = 0, variance = 0;
    std::size_t queued = 0;
    bucket_key bucket{};
  };
  std::vector<sim_worker> ws;
  std::map<bucket_key, std::set<std::pair<double, std::size_t>>> by_bucket;
  std::unordered_map<worker_id, std::size_t> slot;
  double total_speed = 0;
  for (auto& [id, w] : s.workers) {
    if (!w.active) continue;
    slot[id] = ws.size();
    sim_worker& sw = ws.emplace_back();
    sw.w = &w;
    for (std::uint32_t i = 0; i < w.threads; ++i) sw.free.push(now);
    sw.finish = now;
    sw.bucket = {w.cls, w.bucket, w.distance};
    if (s.in_buckets(w)) by_bucket[sw.bucket].insert({now, ws.size() - 1});
    total_speed += w.threads / std::max(s.worker_factor(w), 1e-9);
  }
  std::unordered_map<task_id, double> finish_at;
  std::unordered_map<task_id, task_id> critical_input;
  double total_work = 0;
  auto ready_time = [&](const task_rec& t, task_id& crit) {
    double ready = now;
    crit = 0;
    for (task_id in : t.inputs) {
      auto f = finish_at.find(in);
      if (f != finish_at.end() && f->second > ready) {
        ready = f->second;
        crit = in;
      }
    }
    return ready;
  };
  std::vector<state::remote_input> inputs;
  std::set<std::string> guessed_kinds;
  auto run_on = [&](std::size_t idx, const task_rec& t, double ready, task_id crit) {
    sim_worker& sw = ws[idx];
    const bool indexed = s.in_buckets(*sw.w);
    if (indexed) by_bucket[sw.bucket].erase({sw.free.top(), idx});
    const prediction p = s.predict_class(t, sw.w->cls);
    if (!p.calibrated) {
      ++r.uncalibrated_tasks;
      guessed_kinds.insert(s.m.kind_name(t.kind));
    }
    double duration = p.mean * sw.w->factor;  // the learned speed, whatever the policy assumes
    s.gather_inputs(t, inputs);
    // Half a round trip to reach the worker (unless it is there already) and half to report back.
    const double one_way = sw.w->round_trip / 2;
    const bool there = t.state == task_state::sent || t.state == task_state::running;
    double start = std::max(sw.free.top(), ready + (there ? 0 : one_way) + state::transfer_cost(inputs, sw.w->id));
    if (t.state == task_state::running && t.started_at >= 0) {
      duration = std::max(duration - (now - t.started_at), 0.1 * duration);
      start = now;
    }
    sw.free.pop();
    const double end = start + duration;
    sw.free.push(end);
    if (indexed) by_bucket[sw.bucket].insert({sw.free.top(), idx});
    sw.finish = std::max(sw.finish, end + one_way);
    const double sd = p.mean > 0 ? p.sd / p.mean * duration : 0;
    sw.variance += sd * sd;
    ++sw.queued;
    finish_at[t.id] = end + one_way;
    if (crit) critical_input[t.id] = crit;
    total_work += duration / std::max(s.worker_factor(*sw.w), 1e-9);
  };
  std::size_t next_in_turn = 0;
  const forecast_placement style = s.policy->forecast_style();
  auto place = [&](const task_rec& t) {
    task_id crit = 0;
    const double ready = ready_time(t, crit);
    std::size_t best = ws.size();
    double best_finish = infinity;
    s.gather_inputs(t, inputs);
    auto consider = [&](std::size_t idx) {
      const sim_worker& sw = ws[idx];
      if (!s.in_buckets(*sw.w) || !s.can_host(*sw.w, t)) return;
      const double one_way = sw.w->round_trip / 2;
      const double f = std::max(sw.free.top(), ready + one_way + state::transfer_cost(inputs, sw.w->id)) +
                       s.predict_class(t, sw.w->cls).mean * s.worker_factor(*sw.w) + one_way;
      if (f < best_finish) {
        best_finish = f;
        best = idx;
      }
    };
    // The baselines place the way they would: in turn, or on the least busy worker whatever its speed.
    if (style != forecast_placement::earliest_finish) {
      const bool least_busy = style == forecast_placement::least_busy;
      double best_load = infinity;
      for (std::size_t tries = 0; tries < ws.size(); ++tries) {
        const std::size_t idx = least_busy ? tries : next_in_turn++ % ws.size();
        const sim_worker& sw = ws[idx];
        if (!s.in_buckets(*sw.w) || !s.can_host(*sw.w, t)) continue;
        if (!least_busy) {
          best = idx;
          break;
        }
        const double load = sw.free.top();  // fewest tasks waiting: the first thread to free up
        if (load < best_load) {
          best_load = load;
          best = idx;
        }
      }
    } else if (!t.needs.empty()) {
      for (std::size_t i = 0; i < ws.size(); ++i) consider(i);
    } else {
      for (auto& [k, set] : by_bucket)
        if (!set.empty()) consider(set.begin()->second);
      for (const state::remote_input& in : inputs)
        for (worker_id h : *in.holders)
          if (auto sl = slot.find(h); sl != slot.end()) consider(sl->second);
    }
    if (best < ws.size()) run_on(best, t, ready, crit);
  };
  // Sent tasks: running first, then by send order.
  std::vector<const task_rec*> sent, pending;
  for (auto& [id, t] : s.tasks) {
    if ((t.state == task_state::sent || t.state == task_state::running) && slot.count(t.where)) {
      sent.push_back(&t);
    } else if (t.state == task_state::held || t.state == task_state::ready) {
      pending.push_back(&t);
    }
  }
  std::sort(sent.begin(), sent.end(), [](auto* a, auto* b) {
    if ((a->state == task_state::running) != (b->state == task_state::running)) return a->state == task_state::running;
    return a->sent_seq < b->sent_seq;
  });
  for (const task_rec* t : sent) run_on(slot.find(t->where)->second, *t, now, 0);
  std::sort(pending.begin(), pending.end(), [&](auto* a, auto* b) {
    return queue_key{a->priority, a->rank, a->seq, a->id} < queue_key{b->priority, b->rank, b->seq, b->id};
  });
  // Held tasks move only under the policies that rebalance; the baselines leave them where they are.
  const bool held_moves = s.cfg.rebalance && s.policy->steals();
  for (const task_rec* t : pending) {
    if (t->state == task_state::held && !held_moves && slot.count(t->where)) {
      task_id crit = 0;
      run_on(slot.find(t->where)->second, *t, ready_time(*t, crit), crit);
    } else {
      place(*t);
    }
  }
  for (task_id id : s.order) {
    auto it = s.tasks.find(id);
    if (it != s.tasks.end() && it->second.state == task_state::waiting) place(it->second);
  }
  r.tasks_left = finish_at.size();
  r.uncalibrated_kinds.assign(guessed_kinds.begin(), guessed_kinds.end());
  const sim_worker* last = nullptr;
  double mean_finish = 0;
  for (auto& sw : ws) {
    worker_forecast& f = r.workers.emplace_back();
    f.id = sw.w->id;
    f.name = sw.w->name;
    f.backlog_seconds = sw.w->load();
    f.round_trip_seconds = sw.w->round_trip;
    f.queued = sw.w->held.size() + sw.w->sent;
    mean_finish += sw.finish - now;
    if (!last || sw.finish > last->finish) last = &sw;
  }
  if (!last || r.tasks_left == 0) return r;
  mean_finish /= static_cast<double>(ws.size());
  r.remaining_seconds = last->finish - now;
  r.remaining_sd = std::sqrt(last->variance / std::max<double>(1.0, last->w->threads));
  // The longest chain of what is left, following the input that finished last.
  task_id end_task = 0;
  double end_time = -infinity;
  for (auto& [id, f] : finish_at)
    if (f > end_time || (f == end_time && id < end_task)) {
      end_time = f;
      end_task = id;
    }
  double chain = 0;
  for (task_id cur = end_task; cur;) {
    const task_rec& t = s.tasks.at(cur);
    r.critical_tasks.push_back(cur);
    r.critical_path.push_back(s.m.kind_name(t.kind));
    chain += s.predict_class(t, s.reference_class).mean;
    auto c = critical_input.find(cur);
    cur = c == critical_input.end() ? 0 : c->second;
    if (r.critical_tasks.size() > 10000) break;
  }
  std::reverse(r.critical_tasks.begin(), r.critical_tasks.end());
  std::reverse(r.critical_path.begin(), r.critical_path.end());
  r.lower_bound = std::max(chain, total_speed > 0 ? total_work / total_speed : 0.0);
  if (ws.size() > 1 && r.remaining_seconds > 1.25 * mean_finish) {
    r.bottleneck = "worker " + last->w->name;
  } else {
    std::map<std::string, double> by_kind;
    for (auto& [id, f] : finish_at) {
      const task_rec& t = s.tasks.at(id);
      by_kind[s.m.kind_name(t.kind)] += s.predict_class(t, s.reference_class).mean;
    }
    auto top = std::max_element(by_kind.begin(), by_kind.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; });
    if (top != by_kind.end()) r.bottleneck = "kind " + top->first;
  }
  return r;
}

}  // namespace dx::sched
