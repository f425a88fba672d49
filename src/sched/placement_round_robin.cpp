// The round_robin baseline: each ready task goes to the next worker in join order that can host
// it, and is sent at once; no ranks, no rebalancing.
#include "sched/placement.hpp"

namespace dx::sched {

namespace {

class round_robin_policy final : public placement_policy {
 public:
  worker_id choose_worker(state& s, task_rec& t, double) override {
    const std::size_t n = s.join_order.size();
    if (n == 0) return no_worker;
    for (std::size_t tries = 0; tries < n; ++tries) {
      const worker_rec& w = s.worker(s.join_order[next_++ % n]);
      if (s.in_buckets(w) && s.can_host(w, t)) return w.id;
    }
    return s.first_host(t);
  }
  bool orders_by_rank() const override { return false; }
  bool steals() const override { return false; }
  forecast_placement forecast_style() const override { return forecast_placement::in_turn; }

 private:
  std::size_t next_ = 0;
};

}  // namespace

std::unique_ptr<placement_policy> make_round_robin_policy() { return std::make_unique<round_robin_policy>(); }

}  // namespace dx::sched
