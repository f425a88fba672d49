// The dask_like policy, Dask's rules: occupancy per thread from per-kind averages (no worker
// speeds), candidates restricted to the workers holding a task's inputs, input-free tasks kept at
// the scheduler while workers have 1.1x their threads, idle workers steal (never sub-ms tasks).
#include "sched/placement.hpp"

#include <cmath>

namespace dx::sched {

namespace {

class dask_like_policy final : public placement_policy {
 public:
  worker_id choose_worker(state& s, task_rec& t, double) override {
    // Candidates: workers holding an input, else all; least occupancy per thread plus the
    // time to fetch what is missing.
    worker_id best = no_worker;
    double best_cost = infinity;
    auto consider = [&](const worker_rec& w) {
      if (!s.in_buckets(w) || !s.can_host(w, t)) return;
      const double cost = w.load() + s.transfer_to(t, w);
      if (cost < best_cost || (cost == best_cost && w.id < best)) {
        best = w.id;
        best_cost = cost;
      }
    };
    bool any_holder = false;
    if (t.needs.empty()) {
      for (task_id in : t.inputs) {
        auto it = s.tasks.find(in);
        if (it == s.tasks.end()) continue;
        for (worker_id h : it->second.holders) {
          auto w = s.workers.find(h);
          if (w != s.workers.end() && s.in_buckets(w->second)) {
            any_holder = true;
            consider(w->second);
          }
        }
      }
    }
    if (!any_holder) {
      // A task that needs resources or must avoid some workers (a copy of a replicated task)
      // looks at every worker: the first of each speed bucket may be one it cannot go to.
      if (!t.needs.empty() || t.constrained) {
        for (auto& [id, w] : s.workers) consider(w);
      } else {
        for (const load_heap* bucket : s.bucket_list)
          if (!bucket->empty()) consider(bucket->least());
      }
    }
    return best;
  }

  bool uses_speeds() const override { return false; }
  bool orders_by_rank() const override { return false; }

  bool hold_at_scheduler(state& s, task_rec& t) override {
    // Held tasks go to whichever worker asks next: not those that cannot go anywhere.
    if (!t.root || !t.needs.empty() || t.constrained) return false;
    t.state = task_state::ready;
    t.where = no_worker;
    roots_.insert(s.key(t));
    return true;
  }
  bool holds_any() const override { return !roots_.empty(); }
  void offer_held(state& s, worker_rec& w) override {
    const auto limit = static_cast<std::uint32_t>(std::ceil(1.1 * w.threads));
    while (w.sent < limit && !roots_.empty()) {
      task_rec& t = s.tasks.at(roots_.begin()->id);
      roots_.erase(roots_.begin());
      s.hold_on(t, w);
      s.send(t, w);
    }
  }
  void withdraw(state& s, const task_rec& t) override { roots_.erase(s.key(t)); }

  bool takes_held(double, double) const override { return true; }
  bool asks_move(const task_rec& t) const override { return t.charge >= 0.001; }  // never sub-ms tasks

 private:
  std::set<queue_key> roots_;  // input-free tasks kept here, in priority then submission order
};

}  // namespace

std::unique_ptr<placement_policy> make_dask_like_policy() { return std::make_unique<dask_like_policy>(); }

}  // namespace dx::sched
