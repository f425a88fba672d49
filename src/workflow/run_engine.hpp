// The engine of one workflow run: which steps may run, their submission as dx tasks (registered
// functions and dx::run_command on the cluster's workers, or its local threads), splitting into
// chunks and reducing them, and the record of every change in the run's journal.
#pragma once

#include "cluster/cluster_extension.hpp"
#include "workflow/run_journal.hpp"

#include <dx/cluster.hpp>
#include <dx/workflow.hpp>
#include <dx/workflow_run.hpp>

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace dx::detail {

class head_core;
class state_base;

class run_engine;

/// The runs of one cluster: interrupted (and their journals flushed) before the cluster stops.
class workflow_host final : public cluster_extension {
 public:
  void add(const std::shared_ptr<run_engine>& run);
  /// Interrupts every run still going: no new task starts; the journal says INTERRUPTED.
  void shutdown() noexcept override;

 private:
  std::mutex mutex_;
  std::vector<std::weak_ptr<run_engine>> runs_;
  bool closed_ = false;
};

class run_engine : public std::enable_shared_from_this<run_engine> {
 public:
  /// A new run of `wf` (validated) on `cl`; journal may be null (not journaled).
  static std::shared_ptr<run_engine> create(cluster& cl, const workflow& wf, std::shared_ptr<run_journal> writer);
  /// The run `id` of `journal`, to continue.
  static std::shared_ptr<run_engine> resume(cluster& cl, std::string_view id, std::shared_ptr<run_journal> writer);

  /// Submits every step that can run. Call once, after create/resume.
  void start();
  void interrupt();
  bool cancel();

  const std::string& id() const noexcept { return id_; }
  workflow_status status() const;
  std::vector<task_state> tasks() const;
  workflow_status wait() const;
  bool wait_for(std::chrono::nanoseconds d) const;
  std::string result_bytes(std::string_view step) const;

  /// A task's outcome, from whatever ran it.
  void finished(std::size_t task, std::uint64_t sending, std::string bytes);
  void failed(std::size_t task, std::uint64_t sending, std::exception_ptr e);

 private:
  struct task {
    std::string key;
    std::size_t step = 0;     // index in steps_
    std::int64_t chunk = -1;  // the chunk of a split step's subtask
    task_status status = task_status::pending;
    std::uint32_t attempts = 0;
    std::string assigned_to;
    std::string error;
    std::optional<std::string> result;
    std::string cache_key;
    state_base* running = nullptr;  // the future's state while it runs (one reference)
    std::uint64_t sending = 0;      // which submission the running state is
  };
  struct step_run {
    std::size_t task = 0;               // the step's own task
    std::vector<std::size_t> subtasks;  // a split step's chunks, or an aggregate's reductions
    std::deque<std::size_t> to_reduce;  // an aggregate: results waiting for a partner, in order
    std::size_t open = 0;               // subtasks not finished
  };

  run_engine(cluster& cl, std::shared_ptr<run_journal> writer);
  void load_steps(const workflow& wf);
  std::size_t add_task(std::string key, std::size_t step);

  void schedule_locked();
  bool deps_done_locked(const workflow_step& s) const;
  bool deps_failed_locked(const workflow_step& s, std::string& why) const;
  void launch_locked(std::size_t step);
  void plan_split_locked(std::size_t step);
  void launch_aggregate_locked(std::size_t step);
  void reduce_more_locked(std::size_t step);
  void submit_locked(std::size_t task, const std::string& function, std::vector<std::string> args);
  std::vector<std::string> function_args_locked(const workflow_step& s, const std::string* chunk_bytes) const;
  std::string command_args_locked(const workflow_step& s, const chunk* c) const;
  /// Whether `sending` of `task` is the submission still running (a late or repeated answer is
  /// not); if so it is no longer in flight and `drop` holds the reference to release unlocked.
  bool outcome_current_locked(std::size_t task, std::uint64_t sending, state_base*& drop);
  void task_succeeded_locked(std::size_t task, std::string bytes);
  void task_failed_locked(std::size_t task, const std::string& why, task_status how);
  void step_done_locked(std::size_t step);
  void finish_if_done_locked();
  void set_run_status_locked(workflow_status s, const std::string& detail = {});
  void journal_task_locked(const task& t, const std::string& detail = {});
  std::string cache_key_locked(const workflow_step& s) const;
  /// The share of a step's subtasks that succeeded (1 once the task itself did).
  double progress_locked(std::size_t task) const;
  bool try_cache_locked(std::size_t step);

  cluster& cl_;
  head_core* head_ = nullptr;
  std::shared_ptr<run_journal> journal_;
  std::string id_;
  std::vector<workflow_step> steps_;
  std::map<std::string, std::size_t> step_index_;
  std::vector<step_run> runs_;
  mutable std::mutex mutex_;
  mutable std::condition_variable done_cv_;
  std::deque<task> tasks_;  // stable addresses; indices are task ids
  std::map<std::string, std::size_t> task_index_;
  std::map<std::string, task_record> resumed_;  // tasks the journal had, by key (resume only)
  workflow_status status_ = workflow_status::created;
  std::uint64_t next_sending_ = 1;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;  // cancelled or interrupted: nothing new starts
};

}  // namespace dx::detail
