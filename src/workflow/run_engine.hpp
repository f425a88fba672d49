// The engine of one workflow run: which steps may run, their submission as dx tasks (registered
// functions and dx::run_command on the cluster's workers, or its local threads), splitting into
// chunks and reducing them, and the record of every change in the run's journal.
//
// The engine's own record of each task (its status, attempts, worker, result) is the one record:
// the journal is written from it and views are copied from it. Its work per event is independent
// of the run's size: a step's dependents wait on a counter of unmet dependencies, the run on
// counters of ended and failed steps.
#pragma once

#include "cluster/cluster_extension.hpp"
#include "workflow/run_events.hpp"
#include "workflow/run_journal.hpp"
#include "workflow/run_views.hpp"

#include <dx/cluster.hpp>
#include <dx/detail/remote_call.hpp>
#include <dx/workflow.hpp>
#include <dx/workflow_run.hpp>

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace dx::detail {

class head_core;
class state_base;

class run_engine;

/// Counts a cluster's runs share, for its metrics: tasks that ended, by status.
struct workflow_counters {
  std::array<std::atomic<std::uint64_t>, 9> finished{};
};

/// The runs of one cluster: interrupted (and their journals flushed) before the cluster stops;
/// served at /api/runs by the head's HTTP endpoint, counted in its metrics, named in its traces.
/// A run is kept while it has not ended (whoever holds its handle), and so are the last
/// `kept_ended` runs that ended; older ones are listed while a handle holds them.
class workflow_host final : public cluster_extension {
 public:
  static constexpr std::size_t kept_ended = 32;

  explicit workflow_host(cluster& cl);
  ~workflow_host() override;
  /// Starts a run of `wf` here (see cluster::start). Throws as run_engine::create does, and
  /// dx::workflow_error when the cluster is stopping. Thread-safe; blocks while it is recorded.
  std::shared_ptr<run_engine> start(const workflow& wf, const run_options& opts);
  /// Resumes the run `id` here (see workflow_run::resume). Thread-safe; blocks while it loads.
  std::shared_ptr<run_engine> resume(std::string_view id, const run_options& opts);
  /// Interrupts every run still going: no new task starts; the journal says INTERRUPTED.
  void shutdown() noexcept override;
  /// The runs started or resumed here that are kept or still exist, oldest first. Thread-safe.
  std::vector<std::shared_ptr<run_engine>> runs() const;
  /// The run `id` of this cluster, or nullptr. Thread-safe.
  std::shared_ptr<run_engine> find(std::string_view id) const;

  /// GET /api/runs, GET /api/runs/{id}, POST /api/runs, POST /api/runs/{id}/cancel and
  /// /resume, POST /api/workflows/validate, GET /api/events (a WebSocket) (workflow_host.cpp;
  /// docs/http-api.md). `access` is the head's verdict for this request: the write rule for the
  /// POSTs that change the cluster, the read rule for the others.
  std::optional<http_response> serve_http(const http_request& r, const http_write_access& access) override;
  /// dx_workflow_runs, dx_workflow_tasks, dx_workflow_tasks_finished_total and the journals'
  /// dx_workflow_journal_commits_total and dx_workflow_journal_commit_seconds_total.
  void collect(exposition& out) const override;
  std::vector<std::string> task_labels(std::span<const std::uint64_t> head_tasks) const override;

 private:
  struct entry {
    std::weak_ptr<run_engine> run;
    std::shared_ptr<run_engine> held;  // while the run goes on, and for the last ended ones
  };
  void add(const std::shared_ptr<run_engine>& run);
  /// Lets go of ended runs beyond the last kept_ended (returned, to be dropped after the lock),
  /// and forgets runs that are gone.
  std::vector<std::shared_ptr<run_engine>> prune_locked() const;
  /// POST /api/runs: validates the body and starts it with the default run options.
  http_response start_over_http(const http_request& r);
  /// POST /api/workflows/validate: every problem of the body, nothing started.
  http_response validate_over_http(const http_request& r);
  /// POST /api/runs/{id}/resume.
  http_response resume_over_http(const std::string& id);
  /// Resumes the run `id` of `journal` here, in place of `old` (an engine of the same run that
  /// ended here, or null).
  std::shared_ptr<run_engine> resume_from(std::string_view id, std::shared_ptr<run_journal> journal,
                                          const std::shared_ptr<run_engine>& old);

  /// Raises this cluster's alerts when `journal`'s store is away, back, or taken over (once per
  /// journal), until stop_alerting().
  void alert_on_journal(const std::shared_ptr<run_journal>& journal);
  void stop_alerting() noexcept;

  cluster& cl_;
  std::map<const run_journal*, std::weak_ptr<run_journal>> alerted_journals_;  // under mutex_
  std::shared_ptr<workflow_counters> counters_ = std::make_shared<workflow_counters>();
  std::shared_ptr<run_event_feed> events_ = std::make_shared<run_event_feed>();
  mutable std::mutex mutex_;
  mutable std::vector<entry> runs_;
  bool closed_ = false;
};

class run_engine : public std::enable_shared_from_this<run_engine> {
 public:
  /// A new run of `wf` (validated) on `cl`; journal may be null (not journaled).
  static std::shared_ptr<run_engine> create(cluster& cl, const workflow& wf, std::shared_ptr<run_journal> writer);
  /// The run `id` of `journal`, to continue.
  static std::shared_ptr<run_engine> resume(cluster& cl, std::string_view id, std::shared_ptr<run_journal> writer);

  /// Stops taking requests for the run from its journal.
  ~run_engine();

  /// Submits every step that can run, and takes the requests other processes make for the run
  /// through its journal (dx cancel). Call once, after create/resume.
  void start();
  /// Stops the run here without ending it (see workflow_run::interrupt); false when it was not
  /// running.
  bool interrupt();
  bool cancel();

  const std::string& id() const noexcept { return id_; }
  const std::string& name() const noexcept { return name_; }
  workflow_status status() const;
  std::vector<task_state> tasks() const;
  /// The steps as defined (dependencies, function or command, parameters). Does not block.
  const std::vector<workflow_step>& definition() const noexcept { return steps_; }
  workflow_status wait() const;
  bool wait_for(std::chrono::nanoseconds d) const;
  /// Whether the run has ended (succeeded, failed, cancelled or interrupted). Does not block.
  bool has_ended() const;

  // views (run_views.cpp): copied under the lock, written out by the caller
  run_summary_view summary() const;
  /// The run and its steps; with `q`, a page of the subtasks of q->step (nullopt in `subtasks`
  /// when the run has no such step).
  run_detail_view detail(const subtask_query* q) const;
  /// Adds the status of every task (steps and subtasks) to `counts`.
  void count_tasks(status_counts& counts) const;
  /// Fills the empty entries of `labels` whose head task is one of this run's with its key.
  void label_tasks(std::span<const std::uint64_t> head_tasks, std::vector<std::string>& labels) const;
  /// Where the run counts the tasks that end (its host's counters).
  void count_into(std::shared_ptr<workflow_counters> counters);
  /// Where the run reports its changes for /api/events (its host's feed). Call before start().
  void publish_to(std::shared_ptr<run_event_feed> feed);
  /// A newer engine of the same run (a resume) takes over: this one takes no more requests from
  /// the journal, writes nothing more to it nor to the event feed, and starts nothing. Call once
  /// the run has ended here. Thread-safe.
  void retire();
  std::string result_bytes(std::string_view step);
  const std::shared_ptr<run_journal>& journal_writer() const noexcept { return journal_; }

  /// A task's outcome, from whatever ran it. `worker` and `seconds` say where and how long the
  /// successful run took, when known (empty, negative: not known).
  void finished(std::size_t task, std::uint64_t sending, std::string bytes, const std::string& worker, double seconds);
  void failed(std::size_t task, std::uint64_t sending, std::exception_ptr e);
  /// A submission of the task was sent to `worker` (attempt: the head's count of its dispatches).
  void sent(std::size_t task, std::uint64_t sending, std::uint32_t attempt, const std::string& worker);
  /// An attempt threw and the task waits to run again.
  void retrying(std::size_t task, std::uint64_t sending, std::uint32_t attempt, const std::string& worker,
                const std::string& why);

 private:
  struct task {
    std::string key;
    std::size_t id = 0;       // its index in tasks_
    std::size_t step = 0;     // index in steps_
    std::int64_t chunk = -1;  // the chunk of a split step's subtask
    // A split subtask's part: [first, last) positions in the split's range or items.
    std::int64_t first = 0, last = 0;
    task_status status = task_status::pending;
    std::uint32_t attempts = 0;
    std::uint32_t attempts_before = 0;  // attempts of earlier submissions (and earlier heads)
    std::string assigned_to;
    std::string error;
    std::optional<std::string> result;
    bool result_in_journal = false;  // finished before a resume: read from the journal when needed
    std::string cache_key;
    std::string result_hash;        // sha256 of the result, once something needed it
    state_base* running = nullptr;  // the future's state while it runs (one reference)
    std::uint64_t sending = 0;      // which submission the running state is
    bool counted_end = false;       // counted in workflow_counters::finished
  };
  /// How a split step is being cut: all at once (a fixed or known size), or by probing first.
  struct split_cut {
    bool planned = false;
    std::int64_t total = 0;          // indices or items
    std::int64_t base = 0;           // a range's start
    std::vector<std::string> items;  // an items or lines split's items
    std::int64_t next = 0;           // first position not cut yet
    std::int64_t size = 0;           // positions per chunk from here on; 0: not decided
    std::int64_t most = 1;           // at most this many per chunk (several chunks per thread)
    std::int64_t count = 0;          // chunks in all, once known (0: still measuring)
    bool probing = false;            // chunks out to measure the kind; the rest waits for them
    bool per_item = false;           // a command with {item}: one item per chunk
    std::string kind;                // what the cost model knows the chunks as
    double target = 0;               // seconds one chunk should take
  };
  struct step_run {
    std::size_t task = 0;                 // the step's own task
    std::vector<std::size_t> dependents;  // steps that depend on this one
    std::size_t unmet = 0;                // dependencies not succeeded yet
    bool ended = false;                   // counted in ended_steps_
    std::vector<std::size_t> subtasks;    // a split step's chunks, or an aggregate's reductions
    // An aggregate: results waiting for a partner, in order. A vector: a deque allocates as it is
    // made, and every step has one.
    std::vector<std::size_t> to_reduce;
    std::size_t open = 0;             // subtasks not finished
    std::size_t done = 0;             // subtasks succeeded
    std::int64_t done_positions = 0;  // a split's indices or items in chunks that succeeded
    int shown_percent = -1;           // the parent's progress as last journaled
    split_cut cut;
  };

  run_engine(cluster& cl, std::shared_ptr<run_journal> writer);
  void load_steps(const workflow& wf);
  std::size_t add_task(std::string key, std::size_t step);

  // scheduling (run_engine.cpp)
  /// Steps launched at most per launch_ready_locked: a slice's submissions are sent before the
  /// next slice is launched.
  static constexpr std::size_t launch_slice = 256;
  /// The pump launches the next slice once at most this many changes wait for the journal (some
  /// 1,000 to 4,000 steps' worth: a few tenths of a second at most of finished work to redo after
  /// a crash).
  static constexpr std::size_t journal_lag = 4096;
  /// Launches up to launch_slice ready steps; send_queued (which every caller runs after it,
  /// without the lock) sends them and launches the rest. Does nothing while another thread pumps
  /// (see send_queued), unless `pump` (that thread).
  void launch_ready_locked(bool pump = false);
  void step_ended_locked(std::size_t step);
  void launch_locked(std::size_t step);
  bool reuse_resumed_locked(std::size_t step);
  void task_succeeded_locked(std::size_t task, std::string bytes);
  void task_failed_locked(std::size_t task, const std::string& why, task_status how);
  void step_done_locked(std::size_t step);
  void finish_if_done_locked();
  void set_run_status_locked(workflow_status s, const std::string& detail = {});
  /// Something the views show changed (a status, a worker, an attempt).
  void changed_locked();
  /// Records t's change: in the views' version, the counts of ended tasks, the journal, and the
  /// event feed.
  void journal_task_locked(task& t, const std::string& detail = {});
  /// An attempt of t was sent (start) or gave its outcome: an event when a client listens.
  void attempt_event_locked(const task& t, bool start, bool ok);
  void journal_result_locked(const task& t);
  /// A task's result bytes, read from the journal when it finished before a resume (nullptr
  /// when it has none, or it was lost: the caller runs what needed it again).
  const std::string* result_locked(std::size_t task);
  std::string cache_key_locked(std::size_t step);
  double progress_locked(std::size_t task) const;
  // views (run_views.cpp)
  void summary_locked(run_summary_view& v) const;
  task_state task_view_locked(std::size_t task) const;
  bool try_cache_locked(std::size_t step);
  bool outcome_current_locked(std::size_t task, std::uint64_t sending, state_base*& drop);

  // splits and aggregates (run_split.cpp)
  void plan_split_locked(std::size_t step);
  void cut_more_locked(std::size_t step);
  void cut_chunk_locked(std::size_t step, std::int64_t first, std::int64_t last);
  void submit_chunk_locked(std::size_t task);
  void chunk_measured_locked(std::size_t task, double seconds);
  std::int64_t known_chunk_size_locked(std::size_t step) const;
  chunk chunk_of_locked(const task& t) const;
  void subtask_succeeded_locked(std::size_t task);
  void launch_aggregate_locked(std::size_t step);
  void reduce_more_locked(std::size_t step);
  std::size_t worker_threads() const;

  // submission (run_submit.cpp)
  /// Submits to the head what submit_locked queued. Called without the lock, after every change
  /// that may have queued work or readied steps: the head reports synchronously (a task sent, a
  /// task it fails at once), and its reports take the lock. With `pump` (the caller is the pump
  /// task: pumping_ was set for it), also launches the ready steps launch_ready_locked left, a
  /// slice at a time, until none is left; without, hands them to a pump task on the local
  /// executor when nobody pumps.
  void send_queued(bool pump = false);
  /// Posts the pump (pumping_ set for it) as a task of the local executor.
  void hand_pump_over();
  void submit_locked(std::size_t task, const std::string& function, std::vector<std::string> args,
                     const task_options& opts);
  std::vector<std::string> function_args_locked(const workflow_step& s, const std::string* chunk_bytes);
  std::string command_args_locked(const workflow_step& s, const chunk* c);

  cluster& cl_;
  head_core* head_ = nullptr;
  std::shared_ptr<run_journal> journal_;
  std::string id_, name_;
  std::vector<workflow_step> steps_;
  std::unordered_map<std::string, std::size_t> step_index_;
  std::vector<step_run> runs_;
  mutable std::mutex mutex_;
  mutable std::condition_variable done_cv_;
  std::deque<task> tasks_;                                // stable addresses; indices are task ids
  std::unordered_map<std::string, task_record> resumed_;  // tasks the journal had, by key (resume only)
  std::shared_ptr<void> leftovers_;                 // what resume read and no longer needs, freed once start() sent
  std::deque<std::size_t> ready_;                   // steps whose dependencies all succeeded
  std::size_t ended_steps_ = 0, failed_steps_ = 0;  // failed: failed, skipped or cancelled
  workflow_status status_ = workflow_status::created;
  std::int64_t created_ms_ = 0, updated_ms_ = 0;  // Unix milliseconds
  std::uint64_t version_ = 0;                     // see run_summary_view::version
  std::shared_ptr<workflow_counters> counters_;
  std::shared_ptr<run_event_feed> events_;        // null: no host feed
  std::shared_ptr<const std::string> shared_id_;  // id_, shared by the run's events
  bool watching_ = false;                         // registered with the journal for requests
  bool retired_ = false;                          // see retire()
  // The head's task ids of this run's submissions -> the task, for the names in traces.
  std::unordered_map<std::uint64_t, std::uint32_t> head_tasks_;
  /// A task submit_locked made ready for the head, submitted by send_queued.
  struct queued_submission {
    std::size_t task = 0;
    std::uint64_t sending = 0;
    remote_result* state = nullptr;  // holds the creation reference until submitted
    const remote_function* function = nullptr;
    std::vector<remote_arg> args;
    task_options options;
  };
  std::vector<queued_submission> queued_;
  /// Watches of tasks on the local threads (run_submit.cpp's local_outcome), registered on their
  /// futures by send_queued.
  std::vector<continuation*> local_outcomes_;
  std::uint64_t next_sending_ = 1;
  std::size_t in_flight_ = 0;
  bool stopping_ = false;   // cancelled or interrupted: nothing new starts
  bool launching_ = false;  // launch_ready_locked is on the stack
  bool pumping_ = false;    // a thread in send_queued launches the ready steps, slice by slice (or will)
};

}  // namespace dx::detail
