// The scheduler's front: construction (the state and its placement policy), decide() which runs
// the pending work in order (ranks, re-placement, placement, filling windows, alerts), policy
// names, and the small views. The rest lives with what it owns; see scheduler_state.hpp.
#include "sched/scheduler.hpp"

#include "sched/placement.hpp"

#include <algorithm>

namespace dx::sched {

const char* to_string(policy p) noexcept {
  switch (p) {
    case policy::predictive:
      return "predictive";
    case policy::oracle:
      return "oracle";
    case policy::round_robin:
      return "round_robin";
    case policy::random:
      return "random";
    case policy::least_loaded:
      return "least_loaded";
    case policy::dask_like:
      return "dask_like";
  }
  return "?";
}

std::optional<policy> parse_policy(std::string_view name) noexcept {
  for (policy p : {policy::predictive, policy::oracle, policy::round_robin, policy::random, policy::least_loaded,
                   policy::dask_like})
    if (name == to_string(p)) return p;
  return std::nullopt;
}

scheduler::state::state(config c, cost_model& cm)
    : cfg(c),
      model(cm),
      m(detail::model_internals(cm)),
      policy(make_placement_policy(c)),
      reference_class(m.class_index("default")) {}

scheduler::state::~state() = default;

scheduler::scheduler(config cfg, cost_model& model) : s_(std::make_unique<state>(cfg, model)) {}
scheduler::~scheduler() = default;

void scheduler::set_round_trip(double seconds) {
  s_->cfg.round_trip_seconds = seconds;
  for (auto& [id, w] : s_->workers)
    if (!w.round_trip_measured) s_->set_round_trip(w, seconds);
}

void scheduler::decide(double now, std::vector<decision>& out) {
  state& s = *s_;
  // Without new edges every rank is the task's own cost, set at submission.
  if (s.edges_since_ranks > 0 && (s.submitted_since_ranks * 4 >= s.live_tasks || s.submitted_since_ranks > 4096))
    s.compute_ranks();
  if (s.recost && s.policy->replaces_held()) {
    s.recost = false;
    s.replace_held(now);
  }
  s.place_pending(now);
  // Work kept at the scheduler goes to any worker with room for it.
  if (s.policy->holds_any())
    for (auto& [id, w] : s.workers)
      if (s.in_buckets(w)) s.hungry.insert(id);
  // Fill the windows of workers that may have room; idle ones steal.
  std::vector<worker_id>& ids = s.hungry_scratch;
  while (!s.hungry.empty()) {
    s.hungry.take_sorted(ids);
    for (worker_id id : ids)
      if (id < s.by_id.size() && s.by_id[id]) s.fill(*s.by_id[id], now);
  }
  s.check_alerts(now);
  for (const decision& d : s.out)
    if (s.current(d)) out.push_back(d);
  s.out.clear();
}

bool scheduler::state::current(const decision& d) const {
  if (d.kind == decision_kind::cancel) return true;  // the task's record may be gone already
  auto it = tasks.find(d.task);
  if (it == tasks.end()) return false;
  const task_rec& t = it->second;
  switch (d.kind) {
    case decision_kind::run:
      return t.state == task_state::sent && t.where == d.to && t.sent_seq == d.sending;
    case decision_kind::move:
      return t.move_pending && t.where == d.from && (t.state == task_state::sent || t.state == task_state::running);
    case decision_kind::recompute:
      return t.state == task_state::waiting;
    case decision_kind::cancel:
      return true;  // the worker must hear it whatever happened since
  }
  return false;
}

std::size_t scheduler::decisions_made() const noexcept { return s_->decisions; }
std::size_t scheduler::moves_confirmed() const noexcept { return s_->moves_confirmed; }
const config& scheduler::settings() const noexcept { return s_->cfg; }
cost_model& scheduler::model() noexcept { return s_->model; }

}  // namespace dx::sched
