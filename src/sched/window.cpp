// Holding and sending: a placed task waits in its worker's queue here until the worker's window
// has room; the window covers a round trip in predicted seconds under a pacing policy (at least
// one task per thread), else whatever is placed is sent. Also the priority index that lets a
// worker take a more urgent task held elsewhere, and the charges of placed work to backlogs.
#include "sched/placement.hpp"

#include <algorithm>

namespace dx::sched {

/// A worker's queue, and (once priorities are in use) which workers hold which priorities, so
/// a worker about to start work can take a higher priority task queued elsewhere first.
void scheduler::state::hold_insert(worker_rec& w, const task_rec& t) {
  w.held.insert(key(t));
  if (priorities_used) ++held_levels[t.priority][w.id];
}

void scheduler::state::hold_erase(worker_rec& w, const task_rec& t) {
  w.held.erase(key(t));
  if (!priorities_used) return;
  auto level = held_levels.find(t.priority);
  if (level == held_levels.end()) return;
  auto c = level->second.find(w.id);
  if (c != level->second.end() && --c->second == 0) level->second.erase(c);
  if (level->second.empty()) held_levels.erase(level);
}

void scheduler::state::start_priority_index() {
  priorities_used = true;
  for (auto& [id, w] : workers)
    for (const queue_key& k : w.held) ++held_levels[k.priority][id];
}

/// A held task of a higher priority than `below` that w could send now, taken from another
/// worker's queue; nullptr when there is none.
task_rec* scheduler::state::higher_priority_elsewhere(worker_rec& w, int below) {
  if (!priorities_used || held_levels.empty()) return nullptr;
  auto top = held_levels.rbegin();
  if (top->first <= below) return nullptr;
  for (auto& [vid, count] : top->second) {
    if (vid == w.id || worker(vid).held.empty()) continue;
    task_rec& t = tasks.at(worker(vid).held.begin()->id);
    if (t.priority != top->first || !can_host(w, t) || !fits_now(w, t)) continue;
    unhold(t);
    hold_on(t, w);
    return &t;
  }
  return nullptr;
}

void scheduler::state::hold_on(task_rec& t, worker_rec& w) {
  t.where = w.id;
  charge(t, w);
  t.state = task_state::held;
  hold_insert(w, t);
}

/// Takes a held task off its worker (it stays ready).
void scheduler::state::unhold(task_rec& t) {
  worker_rec& w = worker(t.where);
  hold_erase(w, t);
  discharge(t, w);
  t.where = no_worker;
  t.state = task_state::ready;
}

/// Adds t's predicted run time on w to w's backlog.
void scheduler::state::charge(task_rec& t, worker_rec& w) {
  t.charge = predict_on(t, w);
  t.charged_fallback = policy->learns() && !m.calibrated(t.kind, w.cls);
  uncalibrated_placed += t.charged_fallback;
  add_backlog(w, t.charge);
}

void scheduler::state::discharge(task_rec& t, worker_rec& w) {
  add_backlog(w, -t.charge);
  uncalibrated_placed -= t.charged_fallback;
  t.charged_fallback = false;
  t.charge = 0;
}

/// Undoes a send: the worker no longer has it queued or running.
void scheduler::state::unsend(task_rec& t) {
  worker_rec& w = worker(t.where);
  running_tasks.erase(t.id);
  if (t.state == task_state::running && w.running > 0) --w.running;
  if (auto r = std::find(w.running_ids.begin(), w.running_ids.end(), t.id); r != w.running_ids.end()) {
    *r = w.running_ids.back();
    w.running_ids.pop_back();
  }
  --w.sent;
  w.sent_seconds = std::max(0.0, w.sent_seconds - t.charge);
  w.sent_bytes -= std::min(w.sent_bytes, t.features.input_bytes);
  for (auto [r, amount] : t.needs) w.used[r] -= amount;
  if (t.charged_fallback && probes_in_flight[t.kind] > 0) --probes_in_flight[t.kind];
  discharge(t, w);
  t.where = no_worker;
  t.state = task_state::ready;
  t.started_at = -1;
  if (t.move_pending) release_move(t);
  hungry.insert(w.id);
}

void scheduler::state::send(task_rec& t, worker_rec& w) {
  if (!w.held.empty()) hold_erase(w, t);
  if (t.charged_fallback) ++probes_in_flight[t.kind];
  t.state = task_state::sent;
  t.sent_seq = next_sent_seq++;
  ++w.sent;
  w.sent_seconds += t.charge;
  w.sent_bytes += t.features.input_bytes;
  if (w.unstarted.size() > 2 * static_cast<std::size_t>(w.sent) + 64)
    std::erase_if(w.unstarted, [&](const auto& e) { return !unstarted_on(w, e); });
  w.unstarted.emplace_back(t.sent_seq, t.id);
  for (auto [r, amount] : t.needs) w.used[r] += amount;
  out.push_back({decision_kind::run, t.id, w.id, no_worker, t.sent_seq});
  ++decisions;
}

bool scheduler::state::unstarted_on(const worker_rec& w, const std::pair<std::uint64_t, task_id>& e) const {
  auto it = tasks.find(e.second);
  return it != tasks.end() && it->second.state == task_state::sent && it->second.where == w.id &&
         it->second.sent_seq == e.first;
}

/// How much a worker may have sent ahead: at least one task per thread; then, per thread, enough
/// predicted work to cover its own round trip and a margin for its jitter, within the byte budget.
/// A far worker also gets the task it runs on top (so its threads do not wait a round trip for
/// each task), and no more than its even share of the work placed (so it never holds what the
/// others could finish first).
bool scheduler::state::window_open(const worker_rec& w) const {
  if (w.sent >= cfg.max_sent_per_thread * w.threads) return false;
  if (!policy->paces_sending()) return true;  // sends what it places
  if (w.sent < w.threads) return true;
  if (w.sent_bytes >= cfg.max_sent_bytes_per_worker) return false;
  double cover = w.round_trip + cfg.jitter_margin * w.jitter + cfg.send_ahead_seconds;
  if (far(w)) {
    // Sent work counts whole tasks, the running one too: on a far link, a window that a running
    // task fills would leave the thread idle a round trip after each task. One task more keeps
    // the next one there. (On a near link the round trip is less than the send-ahead: nothing to
    // hide, and the window is about one task anyway.)
    if (w.sent > 0) cover += w.sent_seconds / w.sent;
    if (indexed_threads > 0) cover = std::min(cover, std::max(total_backlog / indexed_threads, cfg.send_ahead_seconds));
  }
  return w.sent_seconds / w.threads < cover;
}

void scheduler::state::fill(worker_rec& w, double now) {
  if (!w.active || w.draining) return;
  while (window_open(w)) {
    // Highest priority first, here or queued elsewhere; a task whose resources are busy waits
    // without blocking the rest.
    task_rec* next = nullptr;
    for (auto it = w.held.begin(); it != w.held.end(); ++it) {
      task_rec& t = tasks.at(it->id);
      if (!fits_now(w, t)) continue;
      next = &t;
      break;
    }
    // An idle worker takes work by predicted finish instead (steal_for).
    if (!next) break;
    if (task_rec* better = higher_priority_elsewhere(w, next->priority)) next = better;
    send(*next, w);
  }
  policy->offer_held(*this, w);
  if (!cfg.rebalance || !w.held.empty()) return;
  if (w.sent < w.threads) {
    steal_for(w, now);
    return;
  }
  // A far worker with room in its window and nothing of its own takes work held for a busier one
  // that would finish here first, now: waiting until it idles costs it a round trip, and near the
  // end leaves it idle while the other works through its queue. (A near worker waits until it
  // idles: it loses nothing by it, and what it starts stays in priority order.)
  if (!policy->paces_sending() || !policy->steals() || w.stealing) return;
  if (!far(w)) return;
  while (window_open(w) && w.held.empty()) {
    worker_rec* victim = busiest_but(w);
    if (!victim || !take_held(w, *victim, now)) break;
    task_rec* next = &tasks.at(w.held.begin()->id);
    if (!fits_now(w, *next)) break;
    if (task_rec* better = higher_priority_elsewhere(w, next->priority)) next = better;
    send(*next, w);
  }
}

}  // namespace dx::sched
