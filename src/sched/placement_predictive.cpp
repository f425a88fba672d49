// The predictive policy (dx's own) and oracle: a ready task goes to the worker where it is
// predicted to finish first, work is sent ahead only as far as the window covers a round trip,
// idle workers take held or unstarted work from the busiest. Oracle is the same with the true
// durations and speeds the caller gives (HEFT with perfect information).
#include "sched/placement.hpp"

#include <algorithm>

namespace dx::sched {

namespace {

/// The worker where `t` is predicted to finish first (as the head learns it: round trips
/// included), among the least loaded of each bucket of speed and distance and the workers
/// holding its inputs. no_worker when no active worker can host it.
worker_id earliest_finish(scheduler::state& s, const task_rec& t, double& finish_out, double& transfer_out) {
  worker_id best = no_worker;
  double best_finish = infinity, best_transfer = 0;
  model_index memo_cls = ~model_index{0};
  double memo_duration = 0;
  s.gather_inputs(t, s.inputs_scratch);
  const bool uses_speeds = s.policy->uses_speeds();
  const bool has_remote_inputs = !s.inputs_scratch.empty();
  auto weigh = [&](worker_id id, model_index cls, double load, double factor, double round_trip, double transfer) {
    if (cls != memo_cls) {
      memo_cls = cls;
      memo_duration = s.predict_class(t, cls).mean;
    }
    const double finish =
        scheduler::state::finish_at(load, round_trip, transfer, uses_speeds ? memo_duration * factor : memo_duration);
    if (finish < best_finish || (finish == best_finish && id < best)) {
      best = id;
      best_finish = finish;
      best_transfer = transfer;
    }
  };
  auto consider = [&](const worker_rec& w) {
    if (!s.in_buckets(w) || !s.can_host(w, t)) return;
    const double transfer =
        (has_remote_inputs ? scheduler::state::transfer_cost(s.inputs_scratch, w.id) : 0.0) + s.arguments_cost(t, w);
    weigh(w.id, w.cls, w.load(), w.factor, w.round_trip, transfer);
  };
  const bool data_heavy =
      t.caller_bytes >= cost_model::impl::small_transfer_bytes && s.head_link != cost_model::impl::no_index;
  if (!t.needs.empty() || data_heavy || t.constrained) {
    // Few tasks declare resources or must spread (copies), and only some workers can host them;
    // a task with large arguments costs what each worker's own link makes it: look at all.
    for (auto& [id, w] : s.workers) consider(w);
  } else {
    // The least loaded of each bucket, read from the index alone: a bucket's leader is active
    // and, for a task with neither needs nor constraints, can host it; small arguments cost
    // nothing to send.
    const bool small_arguments = t.caller_bytes < cost_model::impl::small_transfer_bytes;
    for (const load_heap* bucket : s.bucket_list) {
      if (bucket->empty()) continue;
      if (!small_arguments) {
        consider(bucket->least());
        continue;
      }
      const load_heap::entry& e = bucket->least_entry();
      weigh(e.id, e.cls, e.load, e.factor, e.round_trip,
            has_remote_inputs ? scheduler::state::transfer_cost(s.inputs_scratch, e.id) : 0.0);
    }
    for (const scheduler::state::remote_input& in : s.inputs_scratch)
      for (worker_id h : *in.holders) consider(s.worker(h));
  }
  finish_out = best_finish;
  transfer_out = best_transfer;
  return best;
}

class predictive_policy : public placement_policy {
 public:
  worker_id choose_worker(state& s, task_rec& t, double) override {
    double finish = 0, transfer = 0;
    const worker_id w = earliest_finish(s, t, finish, transfer);
    if (w != no_worker) {
      // What placements cost in transfers against compute, for the network_bound alert.
      s.transfer_window += transfer;
      const worker_rec& chosen = s.worker(w);
      s.compute_window += std::max(0.0, finish - chosen.round_trip - std::max(chosen.load(), transfer));
    }
    return w;
  }
  bool paces_sending() const override { return true; }
  bool probes_new_kinds() const override { return true; }
  bool replaces_held() const override { return true; }
};

class oracle_policy final : public predictive_policy {
 public:
  prediction predict(const state&, const task_rec& t, model_index) const override {
    return {t.true_seconds, 0, true, 1};
  }
  bool learns() const override { return false; }
};

}  // namespace

std::unique_ptr<placement_policy> make_predictive_policy() { return std::make_unique<predictive_policy>(); }
std::unique_ptr<placement_policy> make_oracle_policy() { return std::make_unique<oracle_policy>(); }

}  // namespace dx::sched
