// The head's records and the one class whose rooms (head.cpp, membership.cpp, dispatch.cpp,
// lineage.cpp, results.cpp, recovery.cpp, head_metrics.cpp, head_views.cpp) implement it. Private to
// src/cluster.
//
// Who owns what (one record of each fact):
// - the scheduler (sched_) is the one record of where each task is: its phase (waiting, ready,
//   sent, running, done, failed), the worker it was sent to, the workers holding its result, the
//   tasks sent to each worker. The head asks it (phase_of, sent_to, holders, tasks_on) and tells
//   it every change as an event; the decisions it returns are current, so the head carries them
//   out without checking them against records of its own;
// - task_entry holds what the scheduler has no use for: the arguments' bytes, the future, the
//   result's bytes when the head has them, the attempt number that tells a stale answer from the
//   current one, and the lineage (who waits on whom) that recovery replays;
// - worker_rec holds a connection and what the worker reported about itself.
// Everything below is guarded by head_impl::mutex_ unless a comment says otherwise.
#pragma once

#include "cluster/cluster_extension.hpp"
#include "cluster/head.hpp"
#include "cluster/worker.hpp"
#include "observe/alert_rules.hpp"
#include "observe/exposition.hpp"
#include "observe/head_views.hpp"
#include "observe/http_server.hpp"
#include "observe/runtime_stats.hpp"
#include "sched/round_trip_meter.hpp"
#include "sched/scheduler.hpp"
#include "transport/transport.hpp"
#include "wire/messages.hpp"

#include <dx/cost_model.hpp>
#include <dx/replicate.hpp>

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace dx::detail {

using head_clock = std::chrono::steady_clock;

/// A worker by its name: one record per name for the head's life. A worker that left or was lost
/// and joins again under its name takes its record back (and its scheduler id, counters and
/// history with it); two live workers never share a name.
struct worker_rec {
  std::string id;  // its name
  std::shared_ptr<transport::connection> conn;
  std::string data_address;
  std::size_t threads = 1;
  std::map<std::string, double> resources;
  worker_state state = worker_state::active;
  bool local = false;  // the head's own threads
  std::int64_t pid = 0;
  head_clock::time_point last_seen = head_clock::now();
  std::vector<std::uint64_t> to_release;    // batched release messages
  wire::run_tasks_msg outbox;               // tasks placed in this dispatch round
  std::uint64_t arrived_seen = 0;           // its connection's bytes_arrived at the last liveness check
  std::uint64_t outbox_bytes = 0;           // their run messages' size, kept under options::max_value_size
  wire::cancel_msg cancel_outbox;           // tasks given up in this dispatch round
  sched::worker_id sid = sched::no_worker;  // the scheduler's name for it
  std::uint64_t sent_tasks = 0, sent_frames = 0, done_tasks = 0, done_frames = 0;
  // As its last heartbeat reported.
  std::uint32_t running_reported = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t stored_bytes = 0;
  // Bytes over its connections that ended (the one now open is counted by the connection).
  std::uint64_t bytes_to_final = 0, bytes_from_final = 0;
  // The round trip to it (pings in heartbeats), for its window, placement and deadlines.
  sched::round_trip_meter round_trip;
  std::uint64_t next_ping = 1;
  // Offline (options::offline_grace): since when its link is lost; its work waits for it until then
  // plus the grace.
  head_clock::time_point offline_since{};
  // Joined again from offline: until its resume_msg says what it holds, the scheduler places
  // nothing new there.
  bool awaiting_resume = false;
};

/// A worker's record of results checked against their copies, kept by name for the head's life
/// and saved beside the cost model (reliability.cpp).
struct reliability_rec {
  std::uint64_t valid = 0;              // agreed with the canonical result
  std::uint64_t invalid = 0;            // disagreed with it
  std::uint64_t lost = 0;               // attempts lost with the worker (it went away while running them)
  std::uint64_t late = 0;               // copies answered after their hard deadline
  std::uint64_t consecutive_valid = 0;  // valid results since its last invalid one (adaptive trust)
  bool quarantined = false;             // receives no work
  // Its answers to tasks whose copies disagree and that have not settled yet: neither valid nor
  // invalid so far, they count against it for adaptive trust until they are, weighed by the share
  // of its settled disagreements it lost (not saved).
  std::uint64_t disputed = 0;
  std::uint64_t disputes_won = 0, disputes_lost = 0;
};

/// The copies of a replicated task (or one with deadlines), shared by the task and its copies
/// (replication.cpp). The task itself never runs: its copies do, and it takes the result a
/// quorum of them agree on.
struct replica_set {
  std::uint64_t task = 0;  // the task whose copies these are
  dx::replicate rules;
  dx::deadline deadline;
  std::string kind;  // the scheduler's kind for the copies
  std::vector<std::pair<std::string, double>> needs;
  int priority = 0;
  double size_hint = 0;
  std::uint32_t max_copies = 0;
  result_tolerance tolerance = nullptr;
  result_comparator comparator = nullptr;
  std::uint32_t issued = 0;
  std::vector<std::uint64_t> live;         // copies issued and not answered (or given up)
  std::vector<sched::worker_id> answered;  // workers that answered (later copies avoid them)
  struct answer {
    std::string worker;
    std::shared_ptr<const std::string> bytes;  // null for an error
    std::string error;                         // "type: message" of an exception
    std::exception_ptr exception;
  };
  std::vector<answer> answers;
  std::vector<std::vector<std::size_t>> groups;  // answers that agree, by index; first: the representative
  bool settled = false;                          // the task committed or failed
  std::shared_ptr<const std::string> canonical;
  // The workers whose answers count as disputed (reliability_rec::disputed) while the answers
  // disagree and the task has not settled: every answer's once there are two groups.
  std::vector<std::string> disputants;
};

struct arg_slot {
  std::string bytes;           // known value (or encoded local dependency)
  std::uint64_t ref = 0;       // a remote result of this head
  bool pending_local = false;  // a local future not ready yet
};

struct task_entry {
  std::uint64_t id = 0;
  std::string function;
  std::uint32_t kind = 0;  // index of its kind in the head's kind statistics
  std::vector<arg_slot> args;
  std::size_t deps_pending = 0;
  std::vector<std::uint64_t> waiting;  // dependents waiting for this result
  std::uint32_t attempt = 0;           // dispatches so far; the token that tells a stale answer from the current one
  std::vector<std::uint32_t> handed_back;  // dispatches returned unstarted (moved, or drained by a leaving worker)
  std::uint32_t failures = 0;              // attempts lost with a worker (options::allowed_failures)
  std::vector<std::string> lost_on;        // workers that died while it was assigned
  // Retries after its own exceptions (task_options::with_retries; null: an exception is final),
  // the attempts that threw so far, and, while it waits out a retry's pause, the token of the
  // timer that ends the pause (0: not pausing).
  std::shared_ptr<const retry_rules> retries;
  std::uint32_t thrown = 0;
  std::uint64_t retry_timer = 0;
  head_clock::time_point dispatched_at{};
  // Where the frame that carried its last dispatch ends in its connection's stream (the
  // connection's bytes_sent after it): until the worker reports it handled that far, the task may
  // still be on its way, however long a large frame takes.
  std::uint64_t sent_through = 0;
  double running_since = -1;  // seconds since the head started, as a heartbeat reported; -1: not known
  std::uint32_t running_thread = 0;
  // result (the workers holding it are the scheduler's record)
  std::shared_ptr<const std::string> inline_result;
  std::uint64_t result_size = 0;
  std::exception_ptr error;
  // consumers
  remote_result* future = nullptr;  // alive while set
  bool delivered = false;
  bool demanded = false;
  bool fetching = false;
  std::size_t pending_dependents = 0;  // dependents not finished that need the data
  std::size_t lineage_refs = 0;        // the future + dependents still in the table
  // Replication (replication.cpp): the set of copies, on the task and on each copy; a copy
  // names its task and, past its hard deadline, is overdue (reissued, not cancelled); a copy
  // given a speculative twin is not given another.
  std::shared_ptr<replica_set> replicas;
  std::uint64_t copy_of = 0;
  bool overdue = false;
  bool speculated = false;
};

/// Work to do once the head's lock is released: delivering into futures runs user continuations.
struct deferred {
  std::vector<std::pair<remote_result*, std::shared_ptr<const std::string>>> values;
  std::vector<std::pair<remote_result*, std::exception_ptr>> errors;
  std::vector<state_base*> drop;                                      // future states whose references the head gave up
  std::vector<std::pair<remote_result*, remote_result::note>> notes;  // delivered before values

  void run();
};

const char* state_name(worker_state s) noexcept;

class head_impl;

/// One connection to the head: a worker once the handshake has passed.
struct session final : transport::handler {
  std::weak_ptr<head_impl> head;
  std::shared_ptr<transport::connection> conn;  // until on_closed
  std::string nonce;
  std::chrono::steady_clock::time_point challenged_at{};
  worker_rec* worker = nullptr;  // set after the handshake (guarded by the head's lock)
  bool authed = false;
  void on_frame(transport::connection& c, wire::frame&& f) override;
  void on_closed(transport::connection& c, const std::string& reason) override;
};

/// A local future passed as an argument: when it is ready, its value is encoded into the task.
struct local_dep final : continuation {
  std::weak_ptr<head_impl> head;
  std::uint64_t task = 0;
  std::size_t arg = 0;
  state_base* state = nullptr;
  std::string (*encode)(state_base&) = nullptr;
  static void on_fire(continuation* c) noexcept;
};

class head_impl final : public head_core, public observe::head_view_source {
 public:
  head_impl(const options& opts, executor& local, dx::metrics& registry, observe::alert_center& alerts,
            std::shared_ptr<extension_slot> extensions);

  // ---- head.cpp: start, stop, submit, futures, queries -----------------------------------------
  void start();
  worker_config worker_template() const;
  void shutdown() override;
  void submit(const task_options& opts, const remote_function& fn, std::vector<remote_arg>&& args,
              remote_result& result) override;
  void local_dep_fired(std::uint64_t task, std::size_t arg, std::string bytes, std::exception_ptr error);
  void request_value(std::uint64_t task) noexcept override;
  bool stop(std::uint64_t task, std::exception_ptr outcome) noexcept override;
  void released(std::uint64_t task) noexcept override;
  dx::forecast forecast() const override;
  dx::cost_model cost_model_snapshot() const override;
  dx::prediction predict_kind(std::string_view kind, const task_features& f, bool& known) const override;
  std::string endpoint() const override;
  std::vector<worker_info> workers() const override;
  void wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) override;
  void wait_idle() override;
  std::string http_endpoint() const override;

  // ---- membership.cpp: connections, handshake, heartbeats, leaving, local processes, the tick ---
  void spawn_processes(std::size_t n);
  std::size_t add_local_worker() override;
  void kill_local_worker(std::size_t index) override;
  void leave_local_worker(std::size_t index) override;
  std::vector<int> worker_pids() const override;
  void on_frame(session& s, transport::connection& c, wire::frame&& f);
  void on_closed(session& s, const std::string& reason);
  /// A connection that has not completed the handshake; closed if it stays silent too long.
  void track_pending(const std::shared_ptr<transport::connection>& c);

  // ---- head_views.cpp: what observe's views read ------------------------------------------------
  observe::state_record view_state() const override;
  observe::task_page view_tasks(std::optional<std::uint64_t> since, std::size_t limit) const override;
  observe::trace_input view_trace() const override;
  std::string metrics_text() const override;
  std::string trace_json() const override;
  /// Routes an HTTP request: the extension's routes (workflow runs), then the head's own.
  http_response serve_http(const http_request& r) const;
  /// Whether `r` may change the cluster (see http_write_access).
  http_write_access write_access(const http_request& r) const;
  /// Whether `r` may read (GET /api/*, /metrics, the WebSocket, POST /api/workflows/validate):
  /// always on a loopback endpoint or without a token; otherwise with the HTTP token (also as
  /// "?token=" when `query_token`, for the WebSocket, which browsers cannot give headers).
  http_write_access read_access(const http_request& r, bool query_token) const;

 private:
  // membership.cpp
  void protocol_violation(transport::connection& c, const std::string& why);
  void handshake_locked(session& s, transport::connection& c, const wire::frame& f, deferred& d);
  /// The name a worker joins under: the one it asked for, else "<host>-<n>" with the lowest n no
  /// live worker holds (nor a worker this head starts). Empty, with `refusal` set, when it cannot
  /// join under that name.
  std::string name_for_locked(const wire::hello_msg& h, std::string& refusal) const;
  /// The name of the next worker the head starts itself: "<this host>-<n>", kept for it.
  std::string next_local_name();
  std::size_t active_workers_locked() const;
  void heartbeat_locked(worker_rec& w, const wire::heartbeat_msg& m, deferred& d);
  /// Sends w a heartbeat that pings it (and tells it the silence deadline it is held to).
  void ping_locked(worker_rec& w);
  /// How long w may stay silent before it is taken for lost: the configured timeout, plus room
  /// for its link's measured round trip and jitter (a far worker is not a dead one).
  std::chrono::nanoseconds silence_deadline_locked(const worker_rec& w) const;
  /// How long a connection may take to complete the handshake: the silence deadline, plus a
  /// second for the one round trip a far worker's answer needs (unknown before it answers).
  std::chrono::nanoseconds handshake_deadline() const { return opts_.heartbeat_timeout() + std::chrono::seconds(1); }
  /// The link's share of a deadline: two round trips plus their jitter margin, capped.
  std::chrono::nanoseconds link_allowance_locked(const worker_rec& w) const;
  void leaving_locked(worker_rec& w, const wire::leaving_msg& m);
  /// w's link is lost and it may come back (options::offline_grace): its work stays, placed
  /// nowhere new, until it joins again or the grace runs out (tick).
  void go_offline_locked(worker_rec& w, const std::string& reason, deferred& d);
  /// w joined again from offline and says what it still holds: the rest of its work moves.
  void resume_locked(worker_rec& w, const wire::resume_msg& m, deferred& d);
  /// The handshake of w, offline, joining again with its work: it takes its record back.
  void resume_join_locked(session& s, transport::connection& c, worker_rec& w, const wire::hello_msg& h);
  void tick();

  // dispatch.cpp: the scheduler's decisions become frames
  void dispatch_locked(deferred& d);
  void send_task_locked(task_entry& t, worker_rec& w, std::vector<worker_rec*>& touched, deferred& d);
  /// Sends the tasks placed on w so far in one frame, and notes where it ends in the stream.
  void flush_outbox_locked(worker_rec& w);
  /// Queues a note for t's future when it asked for them.
  void note_locked(task_entry& t, remote_result::note n, deferred& d);
  worker_rec* by_sid_locked(sched::worker_id sid) const;
  /// Queues a release of `task`'s result on `w`, sent by the next flush_releases_locked.
  void release_later_locked(worker_rec& w, std::uint64_t task);
  /// The one record of a task's phase and worker, kept by the scheduler.
  sched::phase phase_locked(std::uint64_t task) const { return sched_->phase_of(task); }
  bool is_finished_locked(std::uint64_t task) const {
    const sched::phase p = phase_locked(task);
    return p == sched::phase::done || p == sched::phase::failed || p == sched::phase::cancelled;
  }
  /// Whether the task ended without a result (failed, timed out or cancelled).
  bool is_unsuccessful_locked(std::uint64_t task) const {
    const sched::phase p = phase_locked(task);
    return p == sched::phase::failed || p == sched::phase::cancelled;
  }
  /// Whether the attempt a worker answers for is the one the task is sent for.
  bool current_attempt_locked(const task_entry& t, const worker_rec& w, std::uint32_t attempt) const {
    return sched_->sent_to(t.id) == w.sid && t.attempt == attempt;
  }
  /// Threads of w running one of its tasks (a heartbeat may still count one just finished).
  std::size_t busy_locked(const worker_rec& w) const {
    return std::min<std::size_t>(w.running_reported, sched_->sent_count(w.sid));
  }
  void collect_alerts_locked();
  void steal_reply_locked(worker_rec& w, const wire::steal_reply_msg& m);

  // lineage.cpp: a task's life from submitted to finished or failed, and who waits on whom
  /// Ready tasks belong to the scheduler until it decides where they run.
  void make_ready_locked(task_entry& t);
  std::size_t runnable_locked() const;
  /// Whether t (or an input it waits for, transitively) waits on a local future, or on a task no
  /// worker can host.
  bool waits_on_local_locked(const task_entry& t) const;
  void task_done_locked(worker_rec& w, wire::task_done_msg m, std::shared_ptr<const std::string> payload, deferred& d);
  void count_finished_locked(task_entry& t);
  void wake_dependents_locked(task_entry& t, deferred& d);
  void task_failed_locked(worker_rec& w, const wire::task_failed_msg& m, deferred& d);
  /// Fails every task that has not finished (ids first: failing one may erase others).
  void fail_open_locked(const std::exception_ptr& e, deferred& d);
  /// `ran_on`: the worker it failed on, for the statistics (default: where it was sent).
  void fail_locked(std::uint64_t id, std::exception_ptr e, deferred& d, const worker_rec* ran_on = nullptr);
  /// Gives t up at the caller's request (`timed_out`: past its limit): the scheduler frees what
  /// it held and tells its worker; t's future and dependents settle with `outcome`. Returns false
  /// when t has finished already.
  bool stop_locked(std::uint64_t id, std::exception_ptr outcome, bool timed_out, deferred& d);
  /// Fails (or, when `input` was cancelled, cancels) task `id` because its input failed.
  void fail_after_input_locked(std::uint64_t id, const task_entry& input, deferred& d);
  /// What failing and stopping share: the error goes to the future and the dependents.
  void settle_unsuccessful_locked(task_entry& t, std::exception_ptr e, deferred& d);
  /// A completion for an attempt that is not current: a late result when the task was given up.
  void note_stale_completion_locked(std::uint64_t task);
  void unref_locked(std::uint64_t id);
  void erase_locked(std::uint64_t id);
  /// Puts t back in the queue once its inputs are available, recomputing lost ones first.
  void requeue_locked(task_entry& t, deferred& d);

  // results.cpp: where a result's bytes live, delivering them to futures, releasing them
  bool available_locked(const task_entry& t) const;
  void deliver_locked(task_entry& t, deferred& d);
  void fetch_reply_locked(worker_rec& w, const wire::fetch_reply_msg& m, std::shared_ptr<const std::string> payload,
                          deferred& d);
  void forget_holder_locked(task_entry& t, worker_rec& w);
  /// Whether anyone still needs t's bytes: its future (not yet delivered) or unfinished dependents.
  bool data_needed(const task_entry& t) const;
  void maybe_release_data_locked(task_entry& t);
  void flush_releases_locked();

  // task_timers.cpp: time limits and retries
  /// Starts t's time limit when it has one (at submission).
  void start_limit_locked(task_entry& t, std::chrono::nanoseconds limit);
  /// t's current attempt threw `e` on w: when its retries allow another, it waits out the pause
  /// and runs again (returns true); else the caller fails it.
  bool retry_locked(task_entry& t, worker_rec& w, const std::exception_ptr& e, deferred& d);
  /// Stops every task past its time limit and readies every task whose retry pause is over.
  void fire_timers_locked(deferred& d);
  /// t no longer waits out a retry's pause (the pause ended, or t was given up meanwhile).
  void end_pause_locked(task_entry& t);

  // replication.cpp: copies of replicated tasks, their quorum, deadlines, workers' reliability
  /// Checks the options of a replicated task and makes its set of copies (throws dx::error).
  std::shared_ptr<replica_set> replica_set_for(const task_options& opts, const remote_function& fn,
                                               const std::string& kind) const;
  /// t (a replicated task) is ready: its first copies are issued instead.
  void issue_copies_locked(task_entry& t, std::uint32_t n);
  /// A copy answered (its result, or the exception it threw): the quorum is checked.
  void copy_answered_locked(task_entry& copy, worker_rec& w, std::shared_ptr<const std::string> bytes,
                            std::exception_ptr error, std::string error_text, deferred& d);
  /// Decides what the answers so far make of the task: committed, failed, or more copies.
  void evaluate_quorum_locked(replica_set& set, sched::worker_id last, deferred& d);
  /// The task takes `bytes` as its result, as if it had run: future, dependents, once.
  void commit_result_locked(task_entry& t, std::shared_ptr<const std::string> bytes, deferred& d);
  /// Gives the copies of `set` up (all, or those not overdue), telling their workers.
  void cancel_copies_locked(replica_set& set, bool keep_overdue);
  /// Drops copy c (it will not answer), then sees whether its task needs another.
  void drop_copy_locked(task_entry& c, deferred& d);
  /// Whether two answers agree under the set's comparison.
  bool agree(const replica_set& set, const replica_set::answer& a, const replica_set::answer& b) const;
  /// A copy's deadline came: a speculative twin (soft) or a reissue (hard).
  void copy_deadline_locked(task_entry& c, bool hard, deferred& d);
  /// Starts copy c's soft deadline once its worker says it runs.
  void copy_started_locked(task_entry& c);
  reliability_rec& reliability_locked(const std::string& worker) { return reliability_[worker]; }
  /// The set settles (committed, failed or given up): its disputed answers no longer count as such.
  void end_disputes_locked(replica_set& set);
  /// w's result was checked: valid or not. An invalid one may quarantine w.
  void record_checked_locked(const std::string& worker, bool valid, deferred& d);
  /// Takes w out of the scheduler's workers for good: its work goes elsewhere, an alert says why.
  void quarantine_locked(worker_rec& w, const std::string& why, deferred& d);
  void load_reliability();
  void save_reliability_locked() const;

  // recovery.cpp: lost workers, lost results, lost inputs, lost completions
  /// t's result is lost and still needed (delivery found no holder, an input was lost): run it
  /// again. Does nothing unless t is done.
  void recompute_locked(task_entry& t, deferred& d);
  /// Delivery found no copy of t's result: recovery decides what to do (recompute it if anyone
  /// still needs it).
  void result_lost_locked(task_entry& t, deferred& d);
  /// The scheduler decided to recompute t (its only holder left while unfinished tasks read it)
  /// and made t and those readers wait: they wait for t here too, and t runs again.
  void recompute_decided_locked(std::uint64_t id, deferred& d);
  /// t is waiting again after it finished: counted open, its inputs needed again, requeued.
  void restart_locked(task_entry& t, deferred& d);
  void remove_worker_locked(worker_rec& w, deferred& d);
  /// Results the head was fetching from w, which it can no longer answer: asked of another holder,
  /// or recomputed.
  void abandon_fetches_from_locked(worker_rec& w, deferred& d);
  void input_lost_locked(task_entry& t, worker_rec& w, std::uint64_t lost_input, deferred& d);
  void requeue_stale_locked(worker_rec& w, std::uint64_t handled, deferred& d);

  // head_metrics.cpp: per-kind statistics, attempts, the forecast cache, the /metrics collector
  /// The slot of `name` in kinds_ (added on first use), through the cost model's interned index.
  std::uint32_t kind_index_locked(const std::string& name);
  /// The run that dispatch `attempt` of t was, as users count attempts: a dispatch handed back
  /// before it started (a move, a leaving worker) never ran, so it is not an attempt.
  static std::uint32_t run_number(const task_entry& t, std::uint32_t attempt);
  /// One attempt of t ended on w `seconds` after it started (the worker's measure); `now` is when
  /// the head learned it.
  void record_attempt_locked(const task_entry& t, const worker_rec& w, double now, double seconds, std::uint32_t thread,
                             std::uint32_t attempt, observe::attempt_end how);
  /// The attempt of t on w ended without an answer: from when it started running (or was sent,
  /// when no heartbeat said it had started) until now.
  void record_lost_attempt_locked(const task_entry& t, const worker_rec& w);
  const sched::forecast_result& cached_forecast_locked() const;
  static double backlog_of(const sched::forecast_result& fc, sched::worker_id sid);
  std::string worker_name(std::uint32_t sid) const;
  /// Tasks sent to workers and not finished, by kind; `running`: those a heartbeat saw running.
  std::vector<std::uint64_t> assigned_by_kind_locked(std::vector<std::uint64_t>* running = nullptr) const;
  void collect(exposition& out) const;

  // head.cpp
  double now_seconds() const;
  double unix_seconds(double head_seconds) const { return epoch_unix_ + head_seconds; }
  void save_model_locked();

  static constexpr std::size_t pipeline_per_thread = 256;
  static constexpr std::size_t max_running_listed = 2000;

  options opts_;
  executor& local_;
  dx::metrics& metrics_;
  observe::alert_center& alerts_;  // thread-safe; its lock is taken after mutex_, never before
  const bool observe_;
  std::string token_;
  std::string http_token_;  // what HTTP clients give: options::http_token, else token_
  // Whether the HTTP endpoint is bound to a loopback address: false (the stricter rule) until
  // http_ is made, since the server may answer before its constructor has returned.
  std::atomic<bool> http_loopback_{false};
  std::unique_ptr<transport::transport> net_;
  std::string endpoint_;

  mutable std::mutex mutex_;
  std::condition_variable idle_cv_;
  std::condition_variable workers_cv_;
  std::condition_variable tick_cv_;
  std::unordered_map<std::uint64_t, task_entry> tasks_;
  head_clock::time_point epoch_ = head_clock::now();
  cost_model model_;
  std::filesystem::path model_path_;
  bool model_saved_ = false;
  std::unique_ptr<sched::scheduler> sched_;
  std::vector<sched::decision> decisions_;
  std::vector<worker_rec*> by_sid_;
  std::vector<worker_rec*> releasing_;  // workers whose to_release is not empty (records are never freed)
  std::map<std::string, std::unique_ptr<worker_rec>> workers_;
  struct fetch_rec {
    std::uint64_t task = 0;
    worker_rec* from = nullptr;
    double asked = 0;  // seconds since the head started
  };
  std::unordered_map<std::uint64_t, fetch_rec> fetches_;  // by request id
  // Time limits (task_options::with_timeout) and retry pauses, earliest first. A timer whose task
  // finished (or, for a pause, whose token is not the task's retry_timer) is dropped when it
  // comes up.
  enum class timer_kind : std::uint8_t { limit, pause, soft_deadline, hard_deadline };
  struct task_timer {
    head_clock::time_point at;
    std::uint64_t task = 0;
    std::int64_t limit_ns = 0;  // a time limit; 0: a retry's pause or a copy's deadline
    std::uint64_t token = 0;    // a pause's token, or the attempt of a copy's deadline
    timer_kind kind = timer_kind::limit;
    bool operator>(const task_timer& o) const noexcept { return at > o.at; }
  };
  void add_timer_locked(const task_timer& timer);
  /// Whether a timer can still fire: its task is open and, for a pause, still waits out this one.
  bool timer_live_locked(const task_timer& timer) const;
  std::priority_queue<task_timer, std::vector<task_timer>, std::greater<>> timers_;
  bool timer_added_ = false;  // the tick is woken for an earlier timer, not for a beat
  std::size_t sweep_timers_at_ = 1024;
  std::uint64_t next_timer_ = 1;
  std::uint64_t late_results_ = 0;  // completions of tasks given up (cancelled, timed out)
  // Workers' reliability by name (replication.cpp), saved beside the cost model.
  std::map<std::string, reliability_rec> reliability_;
  std::filesystem::path reliability_path_;
  std::uint64_t copies_issued_ = 0, copies_speculative_ = 0, copies_reissued_ = 0, trusted_alone_ = 0;
  std::uint64_t quorums_failed_ = 0;
  std::uint64_t replica_draws_ = 0x9e3779b97f4a7c15ULL;  // adaptive replication's coin (splitmix64 state)
  std::uint64_t next_task_ = 1;
  std::uint64_t next_request_ = 1;
  // Worker names: the head's own threads prove themselves with head_key_; the workers the head
  // starts are named "<host_>-<n>" (n from next_local_), and those names are kept for them.
  const std::string head_key_;
  const std::string host_;
  std::size_t next_local_ = 1;
  std::unordered_set<std::string> reserved_names_;
  std::size_t unfinished_ = 0;
  bool shutting_down_ = false;
  bool shut_down_ = false;

  struct pending_conn {
    std::weak_ptr<transport::connection> conn;
    head_clock::time_point since;
  };
  std::vector<pending_conn> pending_;

  std::thread ticker_;
  bool ticker_stop_ = false;
  std::unique_ptr<worker_runtime> head_worker_;
  std::vector<std::unique_ptr<worker_runtime>> thread_workers_;
  std::vector<pid_t> children_;

  // Observability.
  double epoch_unix_ = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  // Kinds are interned once, by the cost model (model_, which the scheduler shares): kind_slot_
  // maps the model's kind index to the kind's statistics in kinds_ (in order of first submission
  // here), or no_kind_slot for a kind the model knows but this head never ran.
  std::vector<std::unique_ptr<observe::kind_stats>> kinds_;
  static constexpr std::uint32_t no_kind_slot = ~std::uint32_t{0};
  std::vector<std::uint32_t> kind_slot_;
  observe::history<observe::task_event> task_events_;
  observe::history<observe::transfer_event> transfer_events_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, observe::link_stats> links_;
  mutable std::optional<sched::forecast_result> forecast_cache_;
  mutable double forecast_at_ = 0;
  mutable double forecast_cost_ = 0;   // seconds the last one took
  std::unique_ptr<http_server> http_;  // its handlers read the head: stopped first in shutdown
  std::shared_ptr<extension_slot> extensions_;
  std::uint64_t collector_key_ = 0;
};

}  // namespace dx::detail
