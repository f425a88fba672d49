// The least_loaded baseline: each ready task goes to the worker with the fewest tasks placed per
// thread (whatever its speed), and is sent at once; no ranks, no rebalancing.
#include "sched/placement.hpp"

namespace dx::sched {

namespace {

class least_loaded_policy final : public placement_policy {
 public:
  worker_id choose_worker(state& s, task_rec& t, double) override {
    worker_id best = no_worker;
    double best_load = infinity;
    for (worker_id id : s.join_order) {
      const worker_rec& w = s.worker(id);
      if (!s.in_buckets(w) || !s.can_host(w, t)) continue;
      const double load = static_cast<double>(w.sent + w.held.size()) / w.threads;
      if (load < best_load) {
        best = id;
        best_load = load;
      }
    }
    return best;
  }
  bool orders_by_rank() const override { return false; }
  bool steals() const override { return false; }
  forecast_placement forecast_style() const override { return forecast_placement::least_busy; }
};

}  // namespace

std::unique_ptr<placement_policy> make_least_loaded_policy() { return std::make_unique<least_loaded_policy>(); }

}  // namespace dx::sched
