// The core of placement, whatever the policy: predictions as the policy believes them, placing
// ready tasks (highest priority and rank first) on the worker the policy chooses, tasks no
// worker can host, re-placing held work, and idle workers taking work from busy ones (held
// tasks freely, sent ones through the move protocol).
#include "sched/placement.hpp"

#include <algorithm>

namespace dx::sched {

// ---- the policy ----------------------------------------------------------------------------------

std::unique_ptr<placement_policy> make_placement_policy(const config& cfg) {
  switch (cfg.kind) {
    case policy::predictive:
      return make_predictive_policy();
    case policy::oracle:
      return make_oracle_policy();
    case policy::round_robin:
      return make_round_robin_policy();
    case policy::random:
      return make_random_policy(cfg.seed);
    case policy::least_loaded:
      return make_least_loaded_policy();
    case policy::dask_like:
      return make_dask_like_policy();
  }
  dx::detail::throw_error(dx::detail::error_kind::generic, "dx scheduler: unknown placement policy");
}

prediction placement_policy::predict(const state& s, const task_rec& t, model_index cls) const {
  return s.m.predict(t.kind, cls, t.features);
}

// ---- predictions ---------------------------------------------------------------------------------

prediction scheduler::state::predict_class(const task_rec& t, model_index cls) const {
  if (!placing.active || placing.task != t.id) return policy->predict(*this, t, cls);
  if (!placing.valid || placing.cls != cls) {
    placing.answer = policy->predict(*this, t, cls);
    placing.cls = cls;
    placing.valid = true;
  }
  return placing.answer;
}

double scheduler::state::worker_factor(const worker_rec& w) const { return policy->uses_speeds() ? w.factor : 1.0; }

void scheduler::state::gather_inputs(const task_rec& t, std::vector<remote_input>& out) const {
  out.clear();
  for (task_id in : t.inputs) {
    auto it = tasks.find(in);
    if (it == tasks.end()) continue;
    const task_rec& r = it->second;
    if (r.holders.empty() || r.result_bytes == 0) continue;
    // Priced on the holder's link to the network at large: looking up every (holder,
    // candidate) link would cost more than the placement itself.
    const double cost =
        m.predict_transfer(worker(r.holders.front()).model, cost_model::impl::no_index, r.result_bytes).mean;
    out.push_back({&r.holders, cost});
  }
}

double scheduler::state::transfer_cost(const std::vector<remote_input>& inputs, worker_id w) {
  double total = 0;
  for (const remote_input& in : inputs)
    if (std::find(in.holders->begin(), in.holders->end(), w) == in.holders->end()) total += in.cost;
  return total;
}

double scheduler::state::link_cost(std::uint64_t caller_bytes, const worker_rec& w) const {
  return m.predict_transfer(head_link, w.model, caller_bytes).mean;
}

double scheduler::state::transfer_to(const task_rec& t, const worker_rec& w) const {
  std::vector<remote_input> inputs;
  gather_inputs(t, inputs);
  return transfer_cost(inputs, w.id) + arguments_cost(t, w);
}

// ---- placement -----------------------------------------------------------------------------------

void scheduler::state::place(task_rec& t, double now) {
  if (policy->hold_at_scheduler(*this, t)) return;
  placing = {.task = t.id, .active = true};
  struct end_memo {
    prediction_memo& memo;
    ~end_memo() { memo.active = false; }
  } end{placing};
  const worker_id w_id = policy->choose_worker(*this, t, now);
  if (w_id == no_worker) {
    t.state = task_state::ready;
    t.where = no_worker;
    unplaceable.push_back(t.id);
    if ((!t.needs.empty() || t.constrained) && any_active_worker() && !any_can_host(t)) raise_unplaceable(t, now);
    return;
  }
  worker_rec& w = worker(w_id);
  t.state = task_state::held;
  t.where = w_id;
  charge(t, w);
  const bool nothing_more_urgent = !priorities_used || held_levels.empty() || held_levels.rbegin()->first <= t.priority;
  if (w.held.empty() && nothing_more_urgent && w.active && !w.draining && window_open(w) && fits_now(w, t)) {
    send(t, w);  // nothing queued before it: skip the queue
    return;
  }
  hold_insert(w, t);
  hungry.insert(w_id);
}

void scheduler::state::place_pending(double now) {
  if (to_place.empty()) return;
  std::vector<task_id> batch;
  batch.swap(to_place);
  // Highest priority and rank first: they get the earliest slots.
  std::vector<queue_key> keys;
  keys.reserve(batch.size());
  for (task_id id : batch) {
    auto it = tasks.find(id);
    if (it == tasks.end() || it->second.state != task_state::ready || it->second.where != no_worker) continue;
    const task_rec& t = it->second;
    keys.push_back({t.priority, t.rank, t.seq, t.id});
  }
  std::sort(keys.begin(), keys.end());
  for (const queue_key& k : keys) {
    task_rec& t = tasks.at(k.id);
    // The same task may be listed twice (set aside, made waiting, ready again): place it once.
    if (t.state != task_state::ready || t.where != no_worker) continue;
    place(t, now);
  }
}

void scheduler::state::retry_unplaceable(double now) {
  if (unplaceable.empty()) return;
  std::vector<task_id> retry;
  retry.swap(unplaceable);
  for (task_id id : retry) {
    auto it = tasks.find(id);
    if (it != tasks.end() && it->second.state == task_state::ready && it->second.where == no_worker)
      to_place.push_back(id);
  }
  place_pending(now);
}

void scheduler::state::replace_held(double now) {
  // Tasks sent to far workers on a guess (probes of a kind just learned) count at what they are now
  // predicted to take: their guessed charge would keep those windows shut until they finish, a
  // round trip lost. (Near workers lose nothing by waiting, and keep their start order.) Only what
  // far workers were sent is looked at: this runs whenever a kind becomes calibrated.
  for (auto& [id, w] : workers) {
    if (!w.active || !far(w)) continue;
    std::vector<task_id> there(w.running_ids.begin(), w.running_ids.end());
    for (const auto& e : w.unstarted)
      if (unstarted_on(w, e)) there.push_back(e.second);
    for (task_id tid : there) {
      task_rec& t = tasks.at(tid);
      if (!t.charged_fallback) continue;
      w.sent_seconds = std::max(0.0, w.sent_seconds - t.charge);
      discharge(t, w);
      if (probes_in_flight[t.kind] > 0) --probes_in_flight[t.kind];
      charge(t, w);
      if (t.charged_fallback) ++probes_in_flight[t.kind];
      w.sent_seconds += t.charge;
      hungry.insert(w.id);
    }
  }
  for (auto& [id, w] : workers) {
    std::vector<task_id> ids;
    for (const queue_key& k : w.held) ids.push_back(k.id);
    for (task_id t : ids) {
      unhold(tasks.at(t));
      to_place.push_back(t);
    }
  }
  compute_ranks();
  place_pending(now);
}

// ---- stealing ------------------------------------------------------------------------------------

/// How long a task queued on w now would wait for a thread: its sent work per thread, or, when
/// every thread runs a task far past its prediction (overrun_ratio times), as long again as the
/// soonest of them has run so far: the prediction was wrong, and the longer a task has run, the
/// longer it tends to go on. Without this, work queued behind such tasks waits there while
/// other workers idle. Moderate overruns (noise, a worker's speed still being learned) are left
/// to the queue estimate: taking work away from them placed it worse in simulated runs.
double scheduler::state::wait_on(const worker_rec& w, double now) const {
  const double queued = w.sent_seconds / w.threads;
  if (w.running_ids.size() < w.threads) return queued;
  double soonest = infinity;
  for (task_id id : w.running_ids) {
    const task_rec& r = tasks.at(id);
    const double elapsed = std::max(0.0, now - r.started_at);
    if (elapsed <= overrun_ratio * r.charge) return queued;
    soonest = std::min(soonest, elapsed);
  }
  return std::max(queued, soonest);
}

/// The most loaded other worker of any bucket, or nullptr.
worker_rec* scheduler::state::busiest_but(const worker_rec& thief) {
  worker_rec* victim = nullptr;
  for (const load_heap* bucket : bucket_list) {
    if (bucket->empty()) continue;
    worker_rec& w = bucket->most();
    if (&w == &thief) continue;
    if (!victim || w.load() > victim->load()) victim = &w;
  }
  // Draining workers hold nothing: fill() sends them nothing, leave() returns their held tasks.
  return victim && victim->backlog > 0 ? victim : nullptr;
}

/// The first task held for `victim` moves to `thief` when it would finish sooner there (free:
/// the victim never saw it). Returns whether it moved.
bool scheduler::state::take_held(worker_rec& thief, worker_rec& victim, double now) {
  if (victim.held.empty()) return false;
  task_rec& t = tasks.at(victim.held.begin()->id);
  if (!can_host(thief, t)) return false;
  const double start_there = std::max(wait_on(victim, now), victim.round_trip / 2);
  const double finish_there = start_there + t.charge + victim.round_trip / 2;
  const double finish_here = finish_on(thief, transfer_to(t, thief), predict_on(t, thief));
  if (!policy->takes_held(finish_here, finish_there)) return false;
  unhold(t);
  hold_on(t, thief);
  return true;
}

/// An idle worker takes work: first a task still held here for another worker (free: that
/// worker never saw it), else a sent task the victim has not started (confirm protocol).
void scheduler::state::steal_for(worker_rec& thief, double now) {
  if (!policy->steals() || thief.stealing) return;
  worker_rec* victim = busiest_but(thief);
  if (!victim) return;
  if (!victim->held.empty()) {
    if (take_held(thief, *victim, now)) fill(thief, now);
    return;
  }
  if (victim->sent <= victim->threads) return;  // everything there is probably running
  // The last task sent is the least likely to have started.
  for (auto it = victim->unstarted.rbegin(); it != victim->unstarted.rend(); ++it) {
    if (!unstarted_on(*victim, *it)) continue;
    task_rec& t = tasks.at(it->second);
    if (t.move_pending || t.move_tried || !can_host(thief, t)) continue;
    // Its start there (plus the report's way back) against the move's answer and a send here.
    const double finish_there = wait_on(*victim, now) + victim->round_trip / 2;
    const double finish_here = victim->round_trip + thief.round_trip + transfer_to(t, thief) + predict_on(t, thief);
    if (finish_here >= finish_there) return;
    if (!policy->asks_move(t)) return;
    t.move_pending = true;
    t.move_tried = true;
    thief.stealing = true;
    move_thief[t.id] = thief.id;
    out.push_back({decision_kind::move, t.id, thief.id, victim->id});
    ++decisions;
    return;
  }
}

void scheduler::state::release_move(task_rec& t) {
  t.move_pending = false;
  auto mv = move_thief.find(t.id);
  if (mv == move_thief.end()) return;
  if (auto w = workers.find(mv->second); w != workers.end()) {
    w->second.stealing = false;
    hungry.insert(w->first);
  }
  move_thief.erase(mv);
}

}  // namespace dx::sched
