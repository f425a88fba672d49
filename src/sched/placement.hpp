// Placement policies: the hooks by which the scheduler's core asks where a ready task goes, how
// placed work is sent (paced by a window of predicted seconds, or at once), whether idle workers
// take work from busy ones, and which durations the policy believes. One implementation per
// policy, each in its own file:
//   placement_predictive.cpp     predictive (dx's own) and oracle (the same with true durations)
//   placement_round_robin.cpp    round_robin
//   placement_random.cpp         random
//   placement_least_loaded.cpp   least_loaded
//   placement_dask_like.cpp      dask_like
// Policies are pure like the rest of the scheduler: state in, a choice out.
#pragma once

#include "sched/scheduler_state.hpp"

#include <memory>

namespace dx::sched {

/// How the forecast replays a policy's placements of what is not sent yet.
enum class forecast_placement : std::uint8_t {
  earliest_finish,  ///< where the task is predicted to finish first
  in_turn,          ///< the next worker in turn
  least_busy,       ///< the worker whose first thread frees up first, whatever its speed
};

class placement_policy {
 public:
  using state = scheduler::state;
  virtual ~placement_policy() = default;

  /// The worker a ready task goes to, or no_worker when no active worker can host it.
  virtual worker_id choose_worker(state& s, task_rec& t, double now) = 0;

  // ---- what the policy believes ----------------------------------------------------------------
  /// Run time of `t` on a worker of factor 1 of class `cls`: the learned model's by default.
  virtual prediction predict(const state& s, const task_rec& t, model_index cls) const;
  /// Whether the cost model learns from this run (else durations and speeds are given: oracle).
  virtual bool learns() const { return true; }
  /// Whether placement weighs workers by their speed factors (else every worker counts as 1).
  virtual bool uses_speeds() const { return true; }
  /// Whether queues are ordered by upward rank after priority (else by submission).
  virtual bool orders_by_rank() const { return true; }

  // ---- sending ---------------------------------------------------------------------------------
  /// Whether placed work is sent only as far as the window of predicted seconds allows (else a
  /// worker is sent whatever is placed on it, up to max_sent_per_thread).
  virtual bool paces_sending() const { return false; }
  /// Whether tasks of a kind nothing is known about are sent a few at a time first.
  virtual bool probes_new_kinds() const { return false; }
  /// Whether held tasks are placed again when predictions change (a kind calibrated, a speed learned).
  virtual bool replaces_held() const { return false; }
  /// Keeps `t` at the scheduler instead of placing it on a worker; true when it did.
  virtual bool hold_at_scheduler(state&, task_rec&) { return false; }
  /// Whether anything is kept at the scheduler (every worker is then offered some in fill).
  virtual bool holds_any() const { return false; }
  /// `w` is being filled: sends it what is kept at the scheduler, as far as the policy allows.
  virtual void offer_held(state&, worker_rec&) {}
  /// `t` is no longer ready (made waiting): forgets it if kept at the scheduler.
  virtual void withdraw(state&, const task_rec&) {}

  // ---- balancing -------------------------------------------------------------------------------
  /// Whether an idle worker takes held or sent work from busier ones.
  virtual bool steals() const { return true; }
  /// Whether an idle worker takes a held task predicted to finish there at `here` rather than
  /// at `there` on its worker.
  virtual bool takes_held(double here, double there) const { return here < there; }
  /// Whether a sent, unstarted task that would finish sooner on an idle worker is asked back.
  virtual bool asks_move(const task_rec&) const { return true; }

  virtual forecast_placement forecast_style() const { return forecast_placement::earliest_finish; }
};

/// The policy config.kind names, seeded from config.seed where it draws random numbers.
std::unique_ptr<placement_policy> make_predictive_policy();
std::unique_ptr<placement_policy> make_oracle_policy();
std::unique_ptr<placement_policy> make_round_robin_policy();
std::unique_ptr<placement_policy> make_random_policy(std::uint64_t seed);
std::unique_ptr<placement_policy> make_least_loaded_policy();
std::unique_ptr<placement_policy> make_dask_like_policy();
std::unique_ptr<placement_policy> make_placement_policy(const config& cfg);

}  // namespace dx::sched
