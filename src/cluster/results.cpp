// Results: where a result's bytes live (inline at the head, or held by workers), delivering them to
// futures (fetching from a holder), and releasing them once nobody needs them.
#include "cluster/head_state.hpp"
#include "common/log.hpp"

#include <algorithm>

namespace dx::detail {

bool head_impl::available_locked(const task_entry& t) const {
  return phase_locked(t.id) == sched::phase::done && (t.inline_result || !sched_->holders(t.id).empty());
}

void head_impl::deliver_locked(task_entry& t, deferred& d) {
  if (!t.future || t.delivered) return;
  if (t.inline_result) {
    if (t.future->state().try_add_ref()) d.values.emplace_back(t.future, t.inline_result);
    t.delivered = true;
    maybe_release_data_locked(t);
    return;
  }
  if (t.fetching) return;
  const auto& holders = sched_->holders(t.id);
  worker_rec* h = holders.empty() ? nullptr : by_sid_locked(holders.front());
  if (!h || !h->conn) {
    result_lost_locked(t, d);  // recovery decides; a recomputed result comes back here
    return;
  }
  const std::uint64_t request = next_request_++;
  fetches_[request] = fetch_rec{t.id, h, now_seconds()};
  t.fetching = true;
  h->conn->send(wire::encode(wire::fetch_msg{request, t.id}));
}

void head_impl::fetch_reply_locked(worker_rec& w, const wire::fetch_reply_msg& m,
                                   std::shared_ptr<const std::string> payload, deferred& d) {
  auto found = fetches_.find(m.request_id);
  if (found == fetches_.end() || found->second.from != &w) return;
  const fetch_rec rec = found->second;
  fetches_.erase(found);
  auto it = tasks_.find(m.task_id);
  if (it == tasks_.end()) return;
  task_entry& t = it->second;
  t.fetching = false;
  log(log_level::debug, "fetch reply for task {} from {}: found {}, {} bytes", m.task_id, w.id, m.found,
      payload ? payload->size() : 0);
  if (!m.found || !payload) {
    forget_holder_locked(t, w);
    if (t.future && !t.delivered) deliver_locked(t, d);
    return;
  }
  if (observe_) {
    const double now = now_seconds();
    transfer_events_.push(
        {t.id, rec.asked, static_cast<float>(now - rec.asked), w.sid, observe::no_worker, payload->size()});
    links_[{w.sid, observe::no_worker}].durations.observe(now - rec.asked);
  }
  if (t.future && !t.delivered) {
    if (t.future->state().try_add_ref()) d.values.emplace_back(t.future, std::move(payload));
    t.delivered = true;
  }
  maybe_release_data_locked(t);
}

void head_impl::forget_holder_locked(task_entry& t, worker_rec& w) { sched_->holder_lost(t.id, w.sid); }

/// Whether anyone still needs t's bytes: its future (not yet delivered) or unfinished dependents.
bool head_impl::data_needed(const task_entry& t) const {
  return (t.future && !t.delivered) || t.pending_dependents > 0;
}

void head_impl::maybe_release_data_locked(task_entry& t) {
  if (data_needed(t)) return;
  t.inline_result.reset();
  const auto& holders = sched_->holders(t.id);
  if (holders.empty()) return;
  for (sched::worker_id h : holders)
    if (worker_rec* holder = by_sid_locked(h)) release_later_locked(*holder, t.id);
  sched_->result_released(t.id);
}

void head_impl::release_later_locked(worker_rec& w, std::uint64_t task) {
  if (w.to_release.empty()) releasing_.push_back(&w);
  w.to_release.push_back(task);
}

// Called after every frame: it visits the workers that have releases waiting, not every worker
// the head has known.
void head_impl::flush_releases_locked() {
  for (worker_rec* w : releasing_) {
    if (w->to_release.empty()) continue;  // cleared meanwhile (the worker was lost)
    if (w->conn && w->state != worker_state::gone)
      w->conn->send(wire::encode(wire::release_msg{std::move(w->to_release)}));
    w->to_release.clear();
  }
  releasing_.clear();
}

}  // namespace dx::detail
