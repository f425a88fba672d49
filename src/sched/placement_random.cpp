// The random baseline: each ready task goes to a uniformly random worker that can host it (one
// random stream, seeded from config.seed), and is sent at once; no ranks, no rebalancing.
#include "sched/placement.hpp"

#include <random>

namespace dx::sched {

namespace {

class random_policy final : public placement_policy {
 public:
  explicit random_policy(std::uint64_t seed) : rng_(seed) {}
  worker_id choose_worker(state& s, task_rec& t, double) override {
    const std::size_t n = s.join_order.size();
    if (n == 0) return no_worker;
    for (std::size_t tries = 0; tries < n; ++tries) {
      const std::size_t i = std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
      const worker_rec& w = s.worker(s.join_order[i]);
      if (s.in_buckets(w) && s.can_host(w, t)) return w.id;
    }
    return s.first_host(t);  // the draws missed the few hosts that fit
  }
  bool orders_by_rank() const override { return false; }
  bool steals() const override { return false; }
  forecast_placement forecast_style() const override { return forecast_placement::in_turn; }

 private:
  std::mt19937_64 rng_;
};

}  // namespace

std::unique_ptr<placement_policy> make_random_policy(std::uint64_t seed) {
  return std::make_unique<random_policy>(seed);
}

}  // namespace dx::sched
