// Tasks: the paged table of task records, the task events (submitted, ready, started, finished,
// failed, returned, waiting, forgotten, move answered), who holds each result, and the views of
// where a task is.
#include "sched/placement.hpp"

#include <algorithm>

namespace dx::sched {

// ---- the table -----------------------------------------------------------------------------------

std::pair<task_table::iterator, bool> task_table::try_emplace(task_id id) {
  if (id > max_id)
    dx::detail::throw_error(dx::detail::error_kind::generic, "dx scheduler: task ids must be below 2^36");
  const std::size_t page_index = id >> page_bits;
  if (page_index >= pages_.size()) pages_.resize(page_index + 1);
  auto& p = pages_[page_index];
  // Default-initialised (not make_unique, which would zero the storage first).
  if (!p) p = spare_ ? std::move(spare_) : std::unique_ptr<page>(new page);
  const std::size_t i = id & (page_size - 1);
  if (p->has(i)) return {iterator(this, id), false};
  new (p->at(i)) entry(std::piecewise_construct, std::forward_as_tuple(id), std::forward_as_tuple());
  p->used[i / 64] |= std::uint64_t{1} << (i % 64);
  ++p->count;
  return {iterator(this, id), true};
}

void task_table::erase(task_id id) {
  if (!slot(id)) return;
  auto& p = pages_[id >> page_bits];
  const std::size_t i = id & (page_size - 1);
  p->at(i)->~entry();
  p->used[i / 64] &= ~(std::uint64_t{1} << (i % 64));
  if (--p->count == 0) {
    if (spare_)
      p.reset();
    else
      spare_ = std::move(p);
  }
}

void scheduler::state::make_waiting(task_rec& t) {
  if (t.state == task_state::done) ++live_tasks;  // a recompute the caller started
  if (t.state == task_state::held) unhold(t);
  if (t.state == task_state::sent || t.state == task_state::running) {
    unsend(t);
  }
  if (t.state == task_state::ready) policy->withdraw(*this, t);
  t.state = task_state::waiting;
  t.where = no_worker;
}

// ---- task events ---------------------------------------------------------------------------------

void scheduler::task_submitted(const task_spec& spec, double) {
  state& s = *s_;
  auto [it, fresh] = s.tasks.try_emplace(spec.id);
  task_rec& t = it->second;
  if (!fresh) return;
  t.id = spec.id;
  t.kind = s.m.kind_index(spec.kind);
  t.inputs = spec.inputs;
  t.priority = spec.priority;
  if (spec.priority != 0 && !s.priorities_used) s.start_priority_index();
  t.true_seconds = spec.true_seconds;
  t.seq = s.next_seq++;
  t.features.size_hint = spec.size_hint;
  t.features.input_bytes = spec.input_bytes;
  t.caller_bytes = spec.input_bytes;
  t.root = true;
  for (task_id in : spec.inputs) {
    auto p = s.tasks.find(in);
    if (p == s.tasks.end()) continue;
    t.root = false;
    ++s.edges_since_ranks;
    p->second.dependents.push_back(spec.id);
    t.features.input_bytes += p->second.result_bytes;
  }
  for (auto& [name, amount] : spec.needs)
    if (amount > 0) t.needs.emplace_back(s.resource_index(name), amount);
  if (spec.spread_group != 0 || !spec.avoid.empty()) {
    t.constrained = true;
    s.constraints[spec.id] = placement_constraint{spec.spread_group, spec.spread_hosts, spec.avoid};
    if (spec.spread_group != 0) s.spread_groups[spec.spread_group].members.push_back(spec.id);
  }
  const prediction p = s.predict_class(t, s.reference_class);
  t.predicted = p.mean;
  t.rank = t.predicted + state::cold_tie_break(t, p);
  // One level of rank propagation now; the full pass runs once enough has been submitted.
  for (task_id in : spec.inputs) {
    auto p2 = s.tasks.find(in);
    if (p2 != s.tasks.end() && p2->second.state != task_state::done)
      s.set_rank(p2->second, std::max(p2->second.rank, p2->second.predicted + t.rank));
  }
  s.order.push_back(spec.id);
  if (s.order.size() >= s.order_compact_at) {
    std::erase_if(s.order, [&](task_id id) { return s.tasks.find(id) == s.tasks.end(); });
    s.order_compact_at = std::max<std::size_t>(4096, 2 * s.order.size());
  }
  ++s.live_tasks;
  ++s.submitted_since_ranks;
}

void scheduler::task_ready(task_id id, double) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  if (t.state != task_state::waiting && t.state != task_state::done && t.state != task_state::failed) return;
  if (t.state == task_state::done) ++s.live_tasks;  // a recompute
  // Inputs finished since submission: their sizes are known now.
  std::uint64_t bytes = 0;
  bool any_task_input = false;
  for (task_id in : t.inputs) {
    auto p = s.tasks.find(in);
    if (p == s.tasks.end()) continue;
    any_task_input = true;
    bytes += p->second.result_bytes;
  }
  if (any_task_input) t.features.input_bytes = bytes;
  t.state = task_state::ready;
  t.where = no_worker;
  s.to_place.push_back(id);
}

void scheduler::task_started(task_id id, worker_id w, double now) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end() || it->second.where != w || it->second.state != task_state::sent) return;
  task_rec& t = it->second;
  worker_rec& wr = s.worker(w);
  t.state = task_state::running;
  t.started_at = now;
  ++wr.running;
  wr.running_ids.push_back(id);
  s.running_tasks.insert(id);
}

void scheduler::task_finished(task_id id, worker_id w, double, double seconds, std::uint64_t result_bytes,
                              bool held_on_worker) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  auto wit = s.workers.find(w);
  if (s.policy->learns() && wit != s.workers.end()) {
    const bool was_calibrated = s.m.calibrated(t.kind, wit->second.cls);
    s.m.observe(t.kind, wit->second.model, t.features, seconds);
    // Held work is placed again when a kind is first calibrated on a class (it was placed on a
    // guess). A kind calibrated again after a regime restart (noisy, very short tasks restart
    // often) leaves it alone: re-placing every held task dozens of times a second stalls a head
    // with a deep queue, and what was placed on the old regime's figures is no guess.
    if (!was_calibrated && s.m.calibrated(t.kind, wit->second.cls) &&
        s.calibrated_once.emplace(t.kind, wit->second.cls).second)
      s.recost = true;
    s.refresh_factor(wit->second);
  }
  if (t.state == task_state::cancelled) return;  // a late result: the caller gave the task up
  if (t.where == w && (t.state == task_state::sent || t.state == task_state::running)) {
    s.unsend(t);
  } else if (t.state == task_state::held) {
    s.unhold(t);  // finished from an attempt the caller still accepted
  }
  s.move_thief.erase(id);
  if (t.constrained && wit != s.workers.end()) {
    // Its group's other members never run where it ran, even once it is done.
    auto c = s.constraints.find(id);
    if (c != s.constraints.end() && c->second.group != 0) s.spread_groups[c->second.group].ran_on.push_back(w);
  }
  t.state = task_state::done;
  t.result_bytes = result_bytes;
  t.holders.clear();
  t.result_remote = held_on_worker;
  if (held_on_worker) t.holders.push_back(w);
  if (s.live_tasks > 0) --s.live_tasks;
  if (t.forgotten) {
    s.drop_constraint(t);
    s.tasks.erase(it);
  }
}

void scheduler::task_failed(task_id id, worker_id w, double, bool retry) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  // no_worker: the caller gives the task up wherever it is (a failed input, a shutdown).
  if ((t.where == w || w == no_worker) && (t.state == task_state::sent || t.state == task_state::running)) {
    s.unsend(t);
  } else if (t.state == task_state::held) {
    s.unhold(t);
  }
  if (retry) {
    t.state = task_state::ready;
    s.to_place.push_back(id);
  } else {
    t.state = task_state::failed;
    if (s.live_tasks > 0) --s.live_tasks;
  }
}

void scheduler::task_cancelled(task_id id, double, bool timed_out) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  if (t.state == task_state::done || t.state == task_state::failed || t.state == task_state::cancelled) return;
  const bool on_worker = t.state == task_state::sent || t.state == task_state::running;
  const worker_id was_on = t.where;
  if (t.move_pending) s.release_move(t);  // a move in flight is moot: its answer is ignored
  s.make_waiting(t);                      // out of the queues; held slot, window and resources freed
  t.state = timed_out ? task_state::failed : task_state::cancelled;
  if (s.live_tasks > 0) --s.live_tasks;
  if (on_worker) {
    s.out.push_back({decision_kind::cancel, id, no_worker, was_on});
    ++s.decisions;
  }
  if (t.forgotten) {
    s.drop_constraint(t);
    s.tasks.erase(it);
  }
}

void scheduler::task_returned(task_id id, worker_id w, double) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  if (t.where != w || (t.state != task_state::sent && t.state != task_state::running)) return;
  s.unsend(t);
  s.to_place.push_back(id);
}

void scheduler::task_waiting(task_id id, double) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  s.make_waiting(it->second);
}

void scheduler::task_forgotten(task_id id) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  it->second.forgotten = true;
  if (it->second.state == task_state::done || it->second.state == task_state::failed ||
      it->second.state == task_state::cancelled) {
    s.drop_constraint(it->second);
    s.tasks.erase(it);
  }
}

void scheduler::holder_lost(task_id id, worker_id w) {
  auto it = s_->tasks.find(id);
  if (it == s_->tasks.end()) return;
  std::erase(it->second.holders, w);
}

void scheduler::result_released(task_id id) {
  auto it = s_->tasks.find(id);
  if (it != s_->tasks.end()) it->second.holders.clear();
}

void scheduler::move_answered(task_id id, worker_id from, bool given_up, double) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  // Only the answer to the move in flight counts.
  if (!t.move_pending || t.where != from || (t.state != task_state::sent && t.state != task_state::running)) return;
  auto mv = s.move_thief.find(id);
  const worker_id thief = mv == s.move_thief.end() ? no_worker : mv->second;
  s.release_move(t);
  if (!given_up) return;
  ++s.moves_confirmed;
  s.unsend(t);
  auto tw = s.workers.find(thief);
  if (tw != s.workers.end() && s.in_buckets(tw->second) && s.can_host(tw->second, t)) {
    s.hold_on(t, tw->second);
    s.hungry.insert(thief);
  } else {
    s.to_place.push_back(id);
  }
}

// ---- views ---------------------------------------------------------------------------------------

worker_id scheduler::placed_on(task_id t) const {
  auto it = s_->tasks.find(t);
  return it == s_->tasks.end() ? no_worker : it->second.where;
}

bool scheduler::is_sent(task_id t) const {
  auto it = s_->tasks.find(t);
  return it != s_->tasks.end() && (it->second.state == task_state::sent || it->second.state == task_state::running);
}

phase scheduler::phase_of(task_id id) const {
  auto it = s_->tasks.find(id);
  if (it == s_->tasks.end()) return phase::unknown;
  switch (it->second.state) {
    case task_state::waiting:
      return phase::waiting;
    case task_state::ready:
    case task_state::held:
      return phase::ready;
    case task_state::sent:
      return phase::sent;
    case task_state::running:
      return phase::running;
    case task_state::done:
      return phase::done;
    case task_state::failed:
      return phase::failed;
    case task_state::cancelled:
      return phase::cancelled;
  }
  return phase::unknown;
}

const char* to_string(phase p) noexcept {
  static constexpr const char* names[] = {"unknown", "waiting", "ready",  "sent",
                                          "running", "done",    "failed", "cancelled"};
  return names[static_cast<int>(p)];
}

worker_id scheduler::sent_to(task_id id) const {
  auto it = s_->tasks.find(id);
  if (it == s_->tasks.end()) return no_worker;
  const task_rec& t = it->second;
  return t.state == task_state::sent || t.state == task_state::running ? t.where : no_worker;
}

const std::vector<worker_id>& scheduler::holders(task_id id) const {
  static const std::vector<worker_id> none;
  auto it = s_->tasks.find(id);
  return it == s_->tasks.end() ? none : it->second.holders;
}

std::vector<task_id> scheduler::tasks_on(worker_id id) const {
  std::vector<task_id> out;
  if (id >= s_->by_id.size() || !s_->by_id[id]) return out;
  const worker_rec& w = *s_->by_id[id];
  // Sent tasks are either known to run, or listed (perhaps among stale entries) as unstarted.
  for (task_id t : w.running_ids) {
    auto it = s_->tasks.find(t);
    if (it != s_->tasks.end() && it->second.state == task_state::running && it->second.where == id) out.push_back(t);
  }
  for (const auto& e : w.unstarted)
    if (s_->unstarted_on(w, e)) out.push_back(e.second);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::size_t scheduler::sent_count(worker_id id) const {
  return id < s_->by_id.size() && s_->by_id[id] ? s_->by_id[id]->sent : 0;
}

std::vector<task_id> scheduler::results_on(worker_id w) const {
  std::vector<task_id> out;
  for (const auto& [id, t] : s_->tasks)
    if (std::find(t.holders.begin(), t.holders.end(), w) != t.holders.end()) out.push_back(id);
  return out;
}

bool scheduler::hostable(task_id id) const {
  auto it = s_->tasks.find(id);
  if (it == s_->tasks.end() || (it->second.needs.empty() && !it->second.constrained)) return true;
  return s_->any_can_host(it->second);
}

double scheduler::predicted_seconds(task_id id) const {
  auto it = s_->tasks.find(id);
  return it == s_->tasks.end() ? 0 : it->second.predicted;
}

}  // namespace dx::sched
