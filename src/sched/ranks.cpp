// Ranks: each unfinished task's upward rank, the predicted critical path from it to the end of
// the graph on a worker of the reference class, and the queue order built on it (priority, then
// rank when the policy orders by rank, then submission).
#include "sched/placement.hpp"

#include <algorithm>
#include <cmath>

namespace dx::sched {

double scheduler::state::cold_tie_break(const task_rec& t, const prediction& p) {
  if (p.calibrated) return 0;
  const double size = t.features.size_hint > 0 ? t.features.size_hint : static_cast<double>(t.features.input_bytes);
  return -1e-3 * std::log2(1 + size);
}

/// Upward ranks of every unfinished task, in reverse submission order (a topological order).
void scheduler::state::compute_ranks() {
  std::vector<task_id> kept;
  kept.reserve(order.size());
  for (task_id id : order) {
    auto it = tasks.find(id);
    if (it != tasks.end() && it->second.state != task_state::done && it->second.state != task_state::failed &&
        it->second.state != task_state::cancelled)
      kept.push_back(id);
  }
  order.swap(kept);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    task_rec& t = tasks.at(*it);
    const prediction p = predict_class(t, reference_class);
    t.predicted = p.mean;
    double below = 0;
    for (task_id d : t.dependents) {
      auto dt = tasks.find(d);
      if (dt != tasks.end() && dt->second.state != task_state::done) below = std::max(below, dt->second.rank);
    }
    set_rank(t, t.predicted + below + cold_tie_break(t, p));
  }
  submitted_since_ranks = 0;
  edges_since_ranks = 0;
}

void scheduler::state::set_rank(task_rec& t, double rank) {
  if (rank == t.rank) return;
  if (t.state == task_state::held) {
    // A held task's key is in its worker's queue: re-key it.
    worker_rec& w = worker(t.where);
    w.held.erase(key(t));
    t.rank = rank;
    w.held.insert(key(t));
  } else {
    // Tasks a policy keeps at the scheduler are keyed without their rank.
    t.rank = rank;
  }
}

queue_key scheduler::state::key(const task_rec& t) const {
  const double r = policy->orders_by_rank() ? t.rank : 0.0;
  return {t.priority, r, t.seq, t.id};
}

}  // namespace dx::sched
