#include "cluster/head.hpp"

#include "cluster/auth.hpp"
#include "cluster/process.hpp"
#include "cluster/worker.hpp"
#include "common/log.hpp"
#include "common/process_stats.hpp"
#include "observe/dashboard.hpp"
#include "observe/exposition.hpp"
#include "observe/http_server.hpp"
#include "observe/runtime_stats.hpp"
#include "sched/scheduler.hpp"
#include "transport/transport.hpp"
#include "wire/messages.hpp"

#include <dx/cost_model.hpp>
#include <dx/error.hpp>
#include <dx/version.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace dx::detail {

namespace {

using clock = std::chrono::steady_clock;

struct worker_rec {
  std::string id;
  std::shared_ptr<transport::connection> conn;
  std::string data_address;
  std::size_t threads = 1;
  std::map<std::string, double> resources;
  worker_state state = worker_state::active;
  bool local = false;  // the head's own threads
  std::int64_t pid = 0;
  clock::time_point last_seen = clock::now();
  std::unordered_set<std::uint64_t> assigned;
  std::unordered_set<std::uint64_t> holds;  // large results kept there
  std::vector<std::uint64_t> to_release;    // batched release messages
  wire::run_tasks_msg outbox;               // tasks placed in this dispatch round
  sched::worker_id sid = sched::no_worker;  // the scheduler's name for it
  std::uint64_t sent_tasks = 0, sent_frames = 0, done_tasks = 0, done_frames = 0;
  // As its last heartbeat reported.
  std::uint32_t running_reported = 0;
  std::uint64_t memory_bytes = 0;
  std::uint64_t stored_bytes = 0;
  // Bytes over its connection when the connection ended.
  std::uint64_t bytes_to_final = 0, bytes_from_final = 0;

  /// Threads running one of its tasks (a heartbeat may still count a task that has just finished).
  std::size_t busy() const noexcept { return std::min<std::size_t>(running_reported, assigned.size()); }
};

enum class task_status { waiting, ready, assigned, done, failed };

struct arg_slot {
  std::string bytes;           // known value (or encoded local dependency)
  std::uint64_t ref = 0;       // a remote result of this head
  bool pending_local = false;  // a local future not ready yet
};

struct task_entry {
  std::uint64_t id = 0;
  std::string function;
  std::uint32_t kind = 0;  // index of its function in the head's kind statistics
  std::vector<arg_slot> args;
  task_status status = task_status::waiting;
  std::size_t deps_pending = 0;
  std::vector<std::uint64_t> waiting;  // dependents waiting for this result
  std::uint32_t attempt = 0;           // dispatches so far; the token that tells a stale answer from the current one
  std::vector<std::uint32_t> handed_back;  // dispatches returned unstarted (moved, or drained by a leaving worker)
  std::uint32_t failures = 0;
  std::vector<std::string> lost_on;  // workers that died while it was assigned
  clock::time_point dispatched_at{};
  double running_since = -1;  // seconds since the head started, as a heartbeat reported; -1: not known
  std::uint32_t running_thread = 0;
  worker_rec* worker = nullptr;
  // result
  std::shared_ptr<const std::string> inline_result;
  std::uint64_t result_size = 0;
  std::vector<worker_rec*> holders;
  std::exception_ptr error;
  // consumers
  remote_result* future = nullptr;  // alive while set
  bool delivered = false;
  bool demanded = false;
  bool fetching = false;
  std::size_t pending_dependents = 0;  // dependents not finished that need the data
  std::size_t lineage_refs = 0;        // the future + dependents still in the table
};

/// Work to do once the head's lock is released: delivering into futures runs user continuations.
struct deferred {
  std::vector<std::pair<remote_result*, std::shared_ptr<const std::string>>> values;
  std::vector<std::pair<remote_result*, std::exception_ptr>> errors;
  std::vector<state_base*> drop;  // future states whose references the head gave up
  std::vector<alert> alerts;
  std::vector<std::function<void(const alert&)>> alert_callbacks;

  void run() {
    for (const alert& a : alerts)
      for (auto& cb : alert_callbacks) {
        try {
          cb(a);
        } catch (const std::exception& e) {
          log(log_level::warn, "an alert callback threw: {}", e.what());
        } catch (...) {
          log(log_level::warn, "an alert callback threw");
        }
      }
    alerts.clear();
    for (auto& [r, bytes] : values) {
      r->deliver(byte_view(bytes->data(), bytes->size()));
      r->state().release();
    }
    for (auto& [r, e] : errors) {
      r->fail(e);
      r->state().release();
    }
    for (auto* s : drop) s->release();
    values.clear();
    errors.clear();
    drop.clear();
  }
};

class head_impl;

struct session final : transport::handler {
  std::weak_ptr<head_impl> head;
  std::shared_ptr<transport::connection> conn;  // until on_closed
  std::string nonce;
  worker_rec* worker = nullptr;  // set after the handshake (guarded by the head's lock)
  bool authed = false;
  void on_frame(transport::connection& c, wire::frame&& f) override;
  void on_closed(transport::connection& c, const std::string& reason) override;
};

struct local_dep final : continuation {
  std::weak_ptr<head_impl> head;
  std::uint64_t task = 0;
  std::size_t arg = 0;
  state_base* state = nullptr;
  std::string (*encode)(state_base&) = nullptr;
  static void on_fire(continuation* c) noexcept;
};

class head_impl final : public head_core {
 public:
  head_impl(const options& opts, executor& local, dx::metrics& registry)
      : opts_(opts),
        local_(local),
        metrics_(registry),
        observe_(opts.metrics()),
        task_events_(opts.metrics() ? opts.task_history() : 0),
        transfer_events_(opts.metrics() ? opts.task_history() : 0) {
    if (opts_.persist_cost_model()) {
      model_path_ =
          opts_.cost_model_file().empty() ? cost_model::default_path() : std::filesystem::path(opts_.cost_model_file());
      try {
        if (model_.load(model_path_)) log(log_level::info, "cost model loaded from {}", model_path_.string());
      } catch (const std::exception& e) {
        log(log_level::warn, "starting with an empty cost model: {}", e.what());
      }
    }
    // The public choices in the order of dx::scheduling_policy (the oracle is the simulator's).
    constexpr sched::policy policies[] = {sched::policy::predictive, sched::policy::round_robin, sched::policy::random,
                                          sched::policy::least_loaded, sched::policy::dask_like};
    static_assert(static_cast<int>(scheduling_policy::dask_like) == 4);
    sched::config cfg;
    cfg.kind = policies[static_cast<int>(opts_.scheduling())];
    // A loopback round trip with batching on both sides; what is sent ahead covers it.
    cfg.round_trip_seconds = 0.0005;
    cfg.max_sent_per_thread = static_cast<std::uint32_t>(pipeline_per_thread);
    sched_ = std::make_unique<sched::scheduler>(cfg, model_);
  }

  // ---- start and stop ---------------------------------------------------------------------------

  void start() {
    std::weak_ptr<head_impl> self = std::static_pointer_cast<head_impl>(shared_from_this());
    if (!opts_.http().empty()) {
      // First: a busy port fails the cluster's construction before any thread or worker starts.
      http_ = std::make_unique<http_server>(opts_.http(), [self](const http_request& r) {
        if (auto h = self.lock()) return h->serve_http(r);
        return http_response{503, "text/plain; charset=utf-8", "the cluster is stopping\n"};
      });
      log(log_level::info, "dashboard at http://{}/, metrics at http://{}/metrics", http_->endpoint(),
          http_->endpoint());
    }
    collector_key_ = metrics_access::add_collector(metrics_, [self](exposition& out) {
      if (auto h = self.lock()) h->collect(out);
    });
    if (!opts_.token_file().empty()) token_ = read_token_file(opts_.token_file());
    if (token_.empty()) token_ = opts_.token();
    transport::config tc;
    tc.max_frame_size = opts_.max_frame_size();
    net_ = opts_.transport() == transport_kind::in_process ? transport::make_in_process_transport(tc)
                                                           : transport::make_tcp_transport(tc);
    const std::string listen_at = opts_.listen().empty() ? "127.0.0.1:0" : opts_.listen();
    std::weak_ptr<head_impl> weak = std::static_pointer_cast<head_impl>(shared_from_this());
    endpoint_ = net_->listen(listen_at, [weak](std::shared_ptr<transport::connection> c) {
      auto h = weak.lock();
      auto s = std::make_shared<session>();
      s->head = weak;
      s->nonce = make_nonce();
      s->conn = c;
      if (h) h->track_pending(c);
      c->set_handler(s);
      c->send(wire::encode(wire::challenge_msg{s->nonce, h && !h->token_.empty()}));
    });
    ticker_ = std::thread([this] { tick(); });
    if (opts_.head_runs_tasks()) {
      worker_config wc = worker_template();
      wc.name = "head";
      wc.threads = local_.num_threads();
      wc.executor = &local_;
      head_worker_ = std::make_unique<worker_runtime>(wc);
      head_worker_->start();
    }
    const std::size_t n = opts_.local_processes();
    if (n > 0) {
      if (opts_.transport() == transport_kind::in_process) {
        for (std::size_t i = 0; i < n; ++i) add_local_worker();
      } else {
        spawn_processes(n);
      }
      wait_for_workers(n, std::chrono::milliseconds(30'000));
    }
  }

  worker_config worker_template() const {
    worker_config wc;
    wc.connect = endpoint_;
    wc.token = token_;
    wc.transport = opts_.transport();
    wc.max_frame_size = opts_.max_frame_size();
    wc.threads = opts_.threads_per_process();
    return wc;
  }

  void spawn_processes(std::size_t n) {
    const std::string program = opts_.worker_program().empty() ? current_program() : opts_.worker_program();
    std::map<std::string, std::string> env{{"DX_WORKER_OF", std::to_string(::getpid())}};
    if (!token_.empty()) env["DX_TOKEN"] = token_;
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<std::string> args{"--dx-worker",
                                    "--connect",
                                    endpoint_,
                                    "--threads",
                                    std::to_string(opts_.threads_per_process()),
                                    "--max-frame-size",
                                    std::to_string(opts_.max_frame_size())};
      const pid_t pid = spawn_process(program, args, env);
      std::lock_guard lock(mutex_);
      children_.push_back(pid);
    }
  }

  std::size_t add_local_worker() override {
    auto w = std::make_unique<worker_runtime>(worker_template());
    w->start();
    std::lock_guard lock(mutex_);
    thread_workers_.push_back(std::move(w));
    return thread_workers_.size() - 1;
  }

  void kill_local_worker(std::size_t index) override {
    std::unique_ptr<worker_runtime> w;
    {
      std::lock_guard lock(mutex_);
      if (index >= thread_workers_.size() || !thread_workers_[index]) return;
      w = std::move(thread_workers_[index]);
    }
    w->kill();
  }

  void leave_local_worker(std::size_t index) override {
    worker_runtime* w = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (index >= thread_workers_.size() || !thread_workers_[index]) return;
      w = thread_workers_[index].get();
    }
    w->leave();
  }

  std::vector<int> worker_pids() const override {
    std::lock_guard lock(mutex_);
    return std::vector<int>(children_.begin(), children_.end());
  }

  void shutdown() override {
    if (http_) http_->stop();
    {
      std::unique_lock lock(mutex_);
      if (shut_down_) return;
      // Remote work finishes while some worker can run it; without workers it is cancelled.
      // Tasks still waiting for a local future that nobody completes would block forever: only
      // work that is ready or running is waited for.
      idle_cv_.wait(lock, [&] { return runnable_locked() == 0 || active_workers_locked() == 0; });
      shutting_down_ = true;
      save_model_locked();
      deferred d;
      if (unfinished_ > 0)
        fail_open_locked(
            make_error(error_kind::cancelled, "the cluster was destroyed while the task waited for a worker"), d);
      for (auto& [id, w] : workers_)
        if (w->conn && w->state != worker_state::gone)
          w->conn->send(wire::encode(wire::shutdown_msg{"the head is stopping"}));
      shut_down_ = true;
      lock.unlock();
      d.run();
    }
    // Workers exit on shutdown; give them a moment to read it before the connections close.
    std::vector<pid_t> children;
    {
      std::lock_guard lock(mutex_);
      children = children_;
    }
    for (pid_t pid : children) stop_process(pid, std::chrono::milliseconds(3000));
    {
      std::lock_guard lock(mutex_);
      ticker_stop_ = true;
      tick_cv_.notify_all();
    }
    if (ticker_.joinable()) ticker_.join();
    head_worker_.reset();
    std::vector<std::unique_ptr<worker_runtime>> threads;
    {
      std::lock_guard lock(mutex_);
      threads.swap(thread_workers_);
    }
    threads.clear();
    if (net_) net_->stop();
    metrics_access::remove_collector(metrics_, collector_key_);
    // Futures may outlive the cluster: anything still open must not hang.
    std::unique_lock lock(mutex_);
    deferred d;
    fail_open_locked(make_error(error_kind::cancelled, "the cluster was destroyed"), d);
    for (auto& [id, t] : tasks_)
      if (t.future && !t.delivered && t.status == task_status::done) {
        if (t.future->state().try_add_ref())
          d.errors.emplace_back(
              t.future, make_error(error_kind::cancelled, "the cluster was destroyed before the result was fetched"));
        t.delivered = true;
      }
    lock.unlock();
    d.run();
  }

  // ---- submit -------------------------------------------------------------------------------------

  void submit(const task_options& opts, const remote_function& fn, std::vector<remote_arg>&& args,
              remote_result& result) override {
    result.head = shared_from_this();
    result.state().set_executor(local_.impl());
    std::vector<local_dep*> local_deps;
    deferred d;
    {
      std::lock_guard lock(mutex_);
      const std::uint64_t id = next_task_++;
      result.task_id = id;
      task_entry& t = tasks_[id];
      t.id = id;
      t.function = fn.name;
      const std::string& kind = opts.kind.empty() ? fn.name : opts.kind;
      t.kind = kind_index_locked(kind);
      if (observe_) ++kinds_[t.kind]->submitted;
      t.future = &result;
      t.lineage_refs = 1;
      t.args.resize(args.size());
      ++unfinished_;
      bool failed = false;
      sched::task_spec spec;
      spec.id = id;
      spec.kind = kind;
      spec.priority = opts.priority;
      spec.size_hint = opts.hint.size;
      spec.needs = opts.resources.amounts;
      for (std::size_t i = 0; i < args.size(); ++i) {
        remote_arg& a = args[i];
        if (!a.dependency) {
          spec.input_bytes += a.bytes.size();
          t.args[i].bytes = std::move(a.bytes);
          continue;
        }
        auto* rr = dynamic_cast<remote_result*>(a.dependency);
        const auto known = rr && rr->head.get() == this ? tasks_.find(rr->task_id) : tasks_.end();
        // A result already delivered to the head and released on the workers is passed by value,
        // from the head's copy, like a local future.
        const bool by_reference =
            known != tasks_.end() && !(known->second.status == task_status::done && !available_locked(known->second));
        if (by_reference) {
          task_entry& in = tasks_[rr->task_id];
          t.args[i].ref = in.id;
          spec.inputs.push_back(in.id);
          ++in.lineage_refs;
          if (in.status == task_status::failed) {
            failed = true;
            if (!t.error) t.error = in.error;
          } else {
            ++in.pending_dependents;
            if (!available_locked(in)) {
              ++t.deps_pending;
              in.waiting.push_back(id);
            }
          }
          d.drop.push_back(a.dependency);
        } else {
          auto* n = new local_dep;
          n->fire = &local_dep::on_fire;
          n->head = std::static_pointer_cast<head_impl>(shared_from_this());
          n->task = id;
          n->arg = i;
          n->state = a.dependency;
          n->encode = a.encode;
          t.args[i].pending_local = true;
          ++t.deps_pending;
          local_deps.push_back(n);
        }
        a.dependency = nullptr;
      }
      sched_->task_submitted(spec, now_seconds());
      if (failed) {
        // Dependencies registered above stay counted until the local ones fire.
        fail_locked(id, t.error, d);
      } else if (t.deps_pending == 0) {
        make_ready_locked(t);
        dispatch_locked();
      }
    }
    d.run();
    for (auto* n : local_deps) n->state->on_ready(n);
  }

  void local_dep_fired(std::uint64_t task, std::size_t arg, std::string bytes, std::exception_ptr error) {
    deferred d;
    {
      std::lock_guard lock(mutex_);
      auto it = tasks_.find(task);
      if (it == tasks_.end()) return;
      task_entry& t = it->second;
      t.args[arg].pending_local = false;
      t.args[arg].bytes = std::move(bytes);
      if (t.status == task_status::failed) return;
      if (error) {
        fail_locked(task, error, d);
      } else if (--t.deps_pending == 0 && t.status == task_status::waiting) {
        make_ready_locked(t);
        dispatch_locked();
      }
    }
    d.run();
  }

  // ---- futures ------------------------------------------------------------------------------------

  void request_value(std::uint64_t task) noexcept override {
    deferred d;
    {
      std::lock_guard lock(mutex_);
      auto it = tasks_.find(task);
      if (it == tasks_.end()) return;
      task_entry& t = it->second;
      if (t.demanded) return;
      t.demanded = true;
      if (t.status == task_status::done) deliver_locked(t, d);
    }
    d.run();
  }

  void released(std::uint64_t task) noexcept override {
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(task);
    if (it == tasks_.end()) return;
    task_entry& t = it->second;
    t.future = nullptr;
    maybe_release_data_locked(t);
    unref_locked(t.id);
    flush_releases_locked();
  }

  // ---- queries ------------------------------------------------------------------------------------

  dx::forecast forecast() const override {
    std::lock_guard lock(mutex_);
    const sched::forecast_result r = sched_->forecast(now_seconds());
    dx::forecast f;
    f.remaining_seconds = r.remaining_seconds;
    f.remaining_sd = r.remaining_sd;
    f.lower_bound_seconds = r.lower_bound;
    f.tasks_left = r.tasks_left;
    f.bottleneck = r.bottleneck;
    f.critical_path = r.critical_path;
    for (const auto& w : r.workers) f.workers.push_back({w.name, w.backlog_seconds, w.queued});
    return f;
  }

  void on_alert(std::function<void(const alert&)> callback) override {
    std::lock_guard lock(mutex_);
    alert_callbacks_.push_back(std::move(callback));
  }

  dx::cost_model cost_model_snapshot() const override {
    std::lock_guard lock(mutex_);
    return model_;
  }

  std::string endpoint() const override { return endpoint_; }

  std::vector<worker_info> workers() const override {
    std::lock_guard lock(mutex_);
    std::vector<worker_info> out;
    for (const auto& [id, w] : workers_) {
      worker_info i;
      i.id = w->id;
      i.address = w->data_address;
      i.threads = w->threads;
      i.resources = w->resources;
      i.state = w->state;
      i.tasks_assigned = w->assigned.size();
      i.pid = w->pid;
      out.push_back(std::move(i));
    }
    std::stable_sort(out.begin(), out.end(),
                     [](const worker_info& a, const worker_info& b) { return (a.id == "head") > (b.id == "head"); });
    return out;
  }

  void wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mutex_);
    auto peers = [&] {
      std::size_t k = 0;
      for (const auto& [id, w] : workers_)
        if (!w->local && w->state == worker_state::active) ++k;
      return k;
    };
    if (!workers_cv_.wait_for(lock, timeout, [&] { return peers() >= n; }))
      throw_error(error_kind::timeout,
                  fmt::format("waited {} ms for {} workers; {} joined", timeout.count(), n, peers()));
  }

  void wait_idle() override {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [&] { return unfinished_ == 0; });
  }

  // ---- connections ----------------------------------------------------------------------------------

  void on_frame(session& s, transport::connection& c, wire::frame&& f) {
    deferred d;
    try {
      std::unique_lock lock(mutex_);
      if (!s.authed) {
        handshake_locked(s, c, f);
        return;
      }
      worker_rec* w = s.worker;
      if (!w) return;
      w->last_seen = clock::now();
      switch (static_cast<wire::msg>(f.type)) {
        case wire::msg::task_done:
          task_done_locked(*w, wire::decode<wire::task_done_msg>(f), std::move(f.payload), d);
          break;
        case wire::msg::tasks_done: {
          auto batch = wire::decode<wire::tasks_done_msg>(f);
          ++w->done_frames;
          w->done_tasks += batch.done.size();
          for (std::size_t i = 0; i < batch.done.size(); ++i) {
            std::shared_ptr<const std::string> result;
            if (batch.done[i].inline_result && i < batch.results.size())
              result = std::make_shared<const std::string>(std::move(batch.results[i]));
            task_done_locked(*w, batch.done[i], std::move(result), d);
          }
          break;
        }
        case wire::msg::task_failed:
          task_failed_locked(*w, wire::decode<wire::task_failed_msg>(f), d);
          break;
        case wire::msg::fetch_reply:
          fetch_reply_locked(*w, wire::decode<wire::fetch_reply_msg>(f), std::move(f.payload), d);
          break;
        case wire::msg::heartbeat:
          heartbeat_locked(*w, wire::decode<wire::heartbeat_msg>(f), d);
          break;
        case wire::msg::leaving:
          leaving_locked(*w, wire::decode<wire::leaving_msg>(f));
          break;
        case wire::msg::steal_reply:
          steal_reply_locked(*w, wire::decode<wire::steal_reply_msg>(f));
          break;
        default:
          lock.unlock();
          protocol_violation(
              c, fmt::format("unexpected {} message (type {}) from worker {}", wire::msg_name(f.type), f.type, w->id));
          return;
      }
      dispatch_locked();
      flush_releases_locked();
    } catch (const wire::decode_error& e) {
      protocol_violation(c, e.what());
    }
    d.run();
  }

  void protocol_violation(transport::connection& c, const std::string& why) {
    log(log_level::warn, "closing connection from {}: {}", c.remote_address(), why);
    c.close(why);
  }

  void handshake_locked(session& s, transport::connection& c, const wire::frame& f) {
    if (f.type != static_cast<std::uint16_t>(wire::msg::hello)) {
      const std::string why = fmt::format("expected hello first, got {} (type {})", wire::msg_name(f.type), f.type);
      log(log_level::warn, "closing connection from {}: {}", c.remote_address(), why);
      c.close(why);
      return;
    }
    auto h = wire::decode<wire::hello_msg>(f);
    if (!token_.empty() && !proof_valid(token_, s.nonce, h.proof)) {
      const std::string why =
          h.proof.empty() ? "authentication failed: no token" : "authentication failed: wrong token";
      log(log_level::warn, "rejecting {}: {}", c.remote_address(), why);
      c.send(wire::encode(wire::reject_msg{why}));
      c.close(why);
      return;
    }
    if (h.role != wire::peer_role::worker || shutting_down_) {
      c.send(wire::encode(wire::reject_msg{"this head accepts workers only"}));
      c.close("not a worker");
      return;
    }
    auto rec = std::make_unique<worker_rec>();
    rec->local = h.name == "head";
    rec->id = rec->local ? "head" : fmt::format("w{}", next_worker_++);
    rec->conn = s.conn;
    rec->data_address = h.data_address;
    rec->threads = std::max<std::size_t>(1, h.threads);
    rec->resources = h.resources;
    rec->pid = h.pid;
    s.authed = true;
    s.worker = rec.get();
    wire::welcome_msg wm{rec->id, static_cast<std::uint32_t>(opts_.heartbeat_interval().count()),
                         static_cast<std::uint32_t>(opts_.heartbeat_timeout().count()), opts_.inline_result_limit()};
    c.send(wire::encode(wm));
    log(log_level::info, "worker {} joined from {} ({} threads)", rec->id, c.remote_address(), rec->threads);
    rec->sid = static_cast<sched::worker_id>(by_sid_.size());
    by_sid_.push_back(rec.get());
    sched::worker_spec spec;
    spec.id = rec->sid;
    spec.name = rec->id;
    spec.threads = static_cast<std::uint32_t>(rec->threads);
    spec.capacity = rec->resources;
    sched_->worker_joined(spec, now_seconds());
    workers_.emplace(rec->id, std::move(rec));
    workers_cv_.notify_all();
    dispatch_locked();
  }

  void on_closed(session& s, const std::string& reason) {
    deferred d;
    {
      std::lock_guard lock(mutex_);
      worker_rec* w = s.worker;
      s.worker = nullptr;
      if (!w || w->state == worker_state::gone) return;
      if (!shutting_down_) log(log_level::info, "worker {} removed: {}", w->id, reason);
      remove_worker_locked(*w, d);
      dispatch_locked();
      flush_releases_locked();
    }
    d.run();
  }

  // ---- the task life cycle ---------------------------------------------------------------------------

  bool available_locked(const task_entry& t) const {
    return t.status == task_status::done && (t.inline_result || !t.holders.empty());
  }

  /// Ready tasks belong to the scheduler until it decides where they run.
  void make_ready_locked(task_entry& t) {
    t.status = task_status::ready;
    sched_->task_ready(t.id, now_seconds());
  }

  std::size_t runnable_locked() const {
    std::size_t n = 0;
    for (const auto& [id, t] : tasks_)
      if ((t.status == task_status::ready && sched_->hostable(id)) || t.status == task_status::assigned ||
          (t.status == task_status::waiting && !waits_on_local_locked(t)))
        ++n;
    return n;
  }

  /// Whether t (or an input it waits for, transitively) waits on a local future, or on a task no
  /// worker can host.
  bool waits_on_local_locked(const task_entry& t) const {
    for (const arg_slot& a : t.args) {
      if (a.pending_local) return true;
      if (!a.ref) continue;
      auto in = tasks_.find(a.ref);
      if (in == tasks_.end()) continue;
      // An input no worker can host never finishes either.
      if (in->second.status == task_status::ready && !sched_->hostable(in->first)) return true;
      if (in->second.status == task_status::waiting && waits_on_local_locked(in->second)) return true;
    }
    return false;
  }

  std::size_t active_workers_locked() const {
    std::size_t k = 0;
    for (const auto& [id, w] : workers_)
      if (w->state == worker_state::active) ++k;
    return k;
  }

  void dispatch_locked() {
    decisions_.clear();
    const double now = now_seconds();
    sched_->decide(now, decisions_);
    std::vector<worker_rec*> touched;
    for (const sched::decision& dec : decisions_) {
      switch (dec.kind) {
        case sched::decision_kind::run: {
          worker_rec* w = by_sid_locked(dec.to);
          auto it = tasks_.find(dec.task);
          if (!w || !w->conn || w->state == worker_state::gone) {
            sched_->task_returned(dec.task, dec.to, now);
            continue;
          }
          if (it == tasks_.end() || it->second.status != task_status::ready) {
            // Failed or waiting again since the scheduler placed it: the worker never sees it.
            const bool waiting = it != tasks_.end() && it->second.status == task_status::waiting;
            if (waiting) {
              sched_->task_waiting(dec.task, now);
            } else {
              sched_->task_failed(dec.task, dec.to, now, false);
            }
            continue;
          }
          send_task_locked(it->second, *w, touched);
          break;
        }
        case sched::decision_kind::move: {
          worker_rec* victim = by_sid_locked(dec.from);
          auto it = tasks_.find(dec.task);
          if (!victim || !victim->conn || it == tasks_.end() || it->second.status != task_status::assigned ||
              it->second.worker != victim) {
            sched_->move_answered(dec.task, dec.from, false, now);
            continue;
          }
          victim->conn->send(wire::encode(wire::steal_msg{dec.task, it->second.attempt}));
          log(log_level::debug, "asking {} to give task {} up for {}", victim->id, dec.task, dec.to);
          break;
        }
        case sched::decision_kind::recompute: {
          // The head's lineage recovery (remove_worker_locked) recomputes lost results; here only
          // the tasks that were ready and read that result wait for it again.
          auto lost = tasks_.find(dec.task);
          if (lost == tasks_.end()) continue;
          for (auto& [id, t] : tasks_) {
            if (t.status != task_status::ready) continue;
            bool reads = false;
            for (const arg_slot& a : t.args) reads = reads || a.ref == dec.task;
            if (!reads) continue;
            t.status = task_status::waiting;
            ++t.deps_pending;
            lost->second.waiting.push_back(id);
            sched_->task_waiting(id, now);
          }
          break;
        }
      }
    }
    // One frame per worker per round: a Boost archive costs about a microsecond to set up.
    for (worker_rec* w : touched) {
      w->sent_tasks += w->outbox.tasks.size();
      ++w->sent_frames;
      w->conn->send(wire::encode(w->outbox));
      w->outbox.tasks.clear();
    }
    collect_alerts_locked();
  }

  void send_task_locked(task_entry& t, worker_rec& w, std::vector<worker_rec*>& touched) {
    wire::run_task_msg& m = w.outbox.tasks.emplace_back();
    if (w.outbox.tasks.size() == 1) touched.push_back(&w);
    m.task_id = t.id;
    m.attempt = ++t.attempt;
    m.function = t.function;
    m.args.resize(t.args.size());
    for (std::size_t i = 0; i < t.args.size(); ++i) {
      if (!t.args[i].ref) {
        m.args[i].bytes = t.args[i].bytes;
        continue;
      }
      const task_entry& in = tasks_.at(t.args[i].ref);
      if (in.inline_result) {
        m.args[i].bytes = *in.inline_result;
      } else {
        m.args[i].is_ref = true;
        m.args[i].task_id = in.id;
        for (auto* h : in.holders) m.args[i].holders.push_back(h->data_address);
      }
    }
    t.status = task_status::assigned;
    t.worker = &w;
    t.dispatched_at = clock::now();
    t.running_since = -1;
    w.assigned.insert(t.id);
    log(log_level::debug, "task {} ({}) attempt {} -> {}", t.id, t.function, m.attempt, w.id);
  }

  worker_rec* by_sid_locked(sched::worker_id sid) const { return sid < by_sid_.size() ? by_sid_[sid] : nullptr; }

  double now_seconds() const { return std::chrono::duration<double>(clock::now() - epoch_).count(); }

  void collect_alerts_locked() {
    std::vector<sched::alert_event> raised;
    sched_->take_alerts(raised);
    for (auto& a : raised) {
      log(log_level::warn, "alert {}: {}", to_string(a.kind), a.message);
      alert out;
      out.kind = a.kind;
      out.subject = std::move(a.subject);
      out.message = std::move(a.message);
      out.value = a.value;
      out.threshold = a.threshold;
      out.time = std::chrono::system_clock::now();
      raise_alert_locked(std::move(out));
    }
    if (!pending_alerts_.empty()) tick_cv_.notify_all();
  }

  /// Every alert goes to the callbacks (from the tick thread), the dashboard and a metric.
  void raise_alert_locked(alert a) {
    ++alerts_by_kind_[static_cast<std::size_t>(a.kind)];
    recent_alerts_.push_back(a);
    if (recent_alerts_.size() > max_recent_alerts) recent_alerts_.pop_front();
    pending_alerts_.push_back(std::move(a));
  }

  void steal_reply_locked(worker_rec& w, const wire::steal_reply_msg& m) {
    auto it = tasks_.find(m.task_id);
    const bool current = it != tasks_.end() && it->second.status == task_status::assigned && it->second.worker == &w &&
                         it->second.attempt == m.attempt;
    if (!current) {
      sched_->move_answered(m.task_id, w.sid, false, now_seconds());
      return;
    }
    if (m.given_up) {
      task_entry& t = it->second;
      if (observe_) ++kinds_[t.kind]->moved;
      t.handed_back.push_back(t.attempt);
      w.assigned.erase(t.id);
      t.worker = nullptr;
      t.status = task_status::ready;  // the scheduler places it again
    }
    sched_->move_answered(m.task_id, w.sid, m.given_up, now_seconds());
  }

  void save_model_locked() {
    if (!opts_.persist_cost_model() || model_saved_) return;
    model_saved_ = true;
    try {
      model_.save(model_path_);
      log(log_level::info, "cost model saved to {}", model_path_.string());
    } catch (const std::exception& e) {
      log(log_level::warn, "the cost model was not saved: {}", e.what());
    }
  }

  void task_done_locked(worker_rec& w, wire::task_done_msg m, std::shared_ptr<const std::string> payload, deferred& d) {
    auto it = tasks_.find(m.task_id);
    const bool current = it != tasks_.end() && it->second.status == task_status::assigned &&
                         it->second.attempt == m.attempt && it->second.worker == &w;
    const double now = now_seconds();
    const double seconds = static_cast<double>(m.duration_ns) * 1e-9;
    if (!current) {
      // A stale attempt (the task was moved or re-run): its result is not committed.
      if (!m.inline_result) w.to_release.push_back(m.task_id);
      if (it != tasks_.end())
        record_attempt_locked(it->second, w, now, seconds, m.thread, m.attempt, observe::attempt_end::superseded);
      return;
    }
    task_entry& t = it->second;
    w.assigned.erase(t.id);
    t.worker = nullptr;
    t.status = task_status::done;
    if (observe_) {
      observe::kind_stats& k = *kinds_[t.kind];
      ++k.completed;
      observe::kind_stats::count_on(k.completed_on, w.sid);
      k.durations.observe(seconds);
      record_attempt_locked(t, w, now, seconds, m.thread, m.attempt, observe::attempt_end::done);
    }
    t.result_size = m.result_size;
    sched_->task_finished(t.id, w.sid, now, seconds, m.result_size, !m.inline_result);
    if (m.inline_result) {
      t.inline_result = payload ? std::move(payload) : std::make_shared<const std::string>();
    } else {
      t.holders.push_back(&w);
      w.holds.insert(t.id);
    }
    finished_locked(t);
    if (t.future && !t.delivered && (t.inline_result || t.demanded)) deliver_locked(t, d);
    wake_dependents_locked(t, d);
    maybe_release_data_locked(t);
    if (t.lineage_refs == 0) erase_locked(t.id);
  }

  void finished_locked(task_entry& t) {
    for (const arg_slot& a : t.args) {
      if (!a.ref) continue;
      auto in = tasks_.find(a.ref);
      if (in == tasks_.end()) continue;
      if (in->second.pending_dependents > 0) --in->second.pending_dependents;
      maybe_release_data_locked(in->second);
    }
    --unfinished_;
    idle_cv_.notify_all();  // wait_idle waits for zero, shutdown for no runnable task
  }

  void wake_dependents_locked(task_entry& t, deferred& d) {
    std::vector<std::uint64_t> waiting;
    waiting.swap(t.waiting);
    for (auto dep : waiting) {
      auto it = tasks_.find(dep);
      if (it == tasks_.end()) continue;
      task_entry& dt = it->second;
      if (dt.status != task_status::waiting) continue;
      if (t.status == task_status::failed) {
        fail_locked(dep, t.error, d);
      } else if (--dt.deps_pending == 0) {
        make_ready_locked(dt);
      }
    }
  }

  void deliver_locked(task_entry& t, deferred& d) {
    if (!t.future || t.delivered) return;
    if (t.inline_result) {
      if (t.future->state().try_add_ref()) d.values.emplace_back(t.future, t.inline_result);
      t.delivered = true;
      maybe_release_data_locked(t);
      return;
    }
    if (t.fetching) return;
    if (t.holders.empty()) {
      recompute_locked(t, d);
      return;
    }
    worker_rec* h = t.holders.front();
    const std::uint64_t request = next_request_++;
    fetches_[request] = fetch_rec{t.id, h, now_seconds()};
    t.fetching = true;
    h->conn->send(wire::encode(wire::fetch_msg{request, t.id}));
  }

  void fetch_reply_locked(worker_rec& w, const wire::fetch_reply_msg& m, std::shared_ptr<const std::string> payload,
                          deferred& d) {
    auto found = fetches_.find(m.request_id);
    if (found == fetches_.end() || found->second.from != &w) return;
    const fetch_rec rec = found->second;
    fetches_.erase(found);
    auto it = tasks_.find(m.task_id);
    if (it == tasks_.end()) return;
    task_entry& t = it->second;
    t.fetching = false;
    log(log_level::debug, "fetch reply for task {} from {}: found {}, {} bytes", m.task_id, w.id, m.found,
        payload ? payload->size() : 0);
    if (!m.found || !payload) {
      forget_holder_locked(t, w);
      if (t.future && !t.delivered) deliver_locked(t, d);
      return;
    }
    if (observe_) {
      const double now = now_seconds();
      transfer_events_.push(
          {t.id, rec.asked, static_cast<float>(now - rec.asked), w.sid, observe::no_worker, payload->size()});
      links_[{w.sid, observe::no_worker}].durations.observe(now - rec.asked);
    }
    if (t.future && !t.delivered) {
      if (t.future->state().try_add_ref()) d.values.emplace_back(t.future, std::move(payload));
      t.delivered = true;
    }
    maybe_release_data_locked(t);
  }

  void forget_holder_locked(task_entry& t, worker_rec& w) {
    t.holders.erase(std::remove(t.holders.begin(), t.holders.end(), &w), t.holders.end());
    w.holds.erase(t.id);
  }

  void task_failed_locked(worker_rec& w, const wire::task_failed_msg& m, deferred& d) {
    auto it = tasks_.find(m.task_id);
    if (it == tasks_.end() || it->second.status != task_status::assigned || it->second.attempt != m.attempt ||
        it->second.worker != &w)
      return;
    task_entry& t = it->second;
    if (m.kind != wire::failure_kind::input_lost)
      record_attempt_locked(t, w, now_seconds(), static_cast<double>(m.duration_ns) * 1e-9, m.thread, m.attempt,
                            observe::attempt_end::failed);
    w.assigned.erase(t.id);
    t.worker = nullptr;
    if (m.kind == wire::failure_kind::input_lost) {
      // The holder of an input is gone or lost it: recompute that input, then run again.
      sched_->task_returned(t.id, w.sid, now_seconds());
      auto in = tasks_.find(m.lost_input);
      if (in != tasks_.end()) {
        for (auto* h : std::vector<worker_rec*>(in->second.holders)) forget_holder_locked(in->second, *h);
      }
      if (++t.failures >= opts_.allowed_failures()) {
        fail_locked(t.id,
                    make_error(error_kind::worker_lost,
                               fmt::format("an input of task {} ({}) was lost {} times", t.id, t.function, t.failures)),
                    d);
        return;
      }
      t.status = task_status::waiting;
      if (observe_) ++kinds_[t.kind]->retried;
      requeue_locked(t, d);
      return;
    }
    std::exception_ptr e;
    switch (m.kind) {
      case wire::failure_kind::not_registered:
        e = make_error(error_kind::not_registered, m.message);
        break;
      case wire::failure_kind::bad_arguments:
        e = make_error(error_kind::protocol, fmt::format("{} on worker {}: {}", t.function, w.id, m.message));
        break;
      case wire::failure_kind::too_large:
        e = make_error(error_kind::generic, m.message);
        break;
      default:
        e = std::make_exception_ptr(remote_error(m.type_name, m.message, w.id));
    }
    fail_locked(t.id, e, d, &w);
  }

  /// Fails every task that has not finished (ids first: failing one may erase others).
  void fail_open_locked(const std::exception_ptr& e, deferred& d) {
    std::vector<std::uint64_t> open;
    for (auto& [id, t] : tasks_)
      if (t.status != task_status::done && t.status != task_status::failed) open.push_back(id);
    for (auto id : open) fail_locked(id, e, d);
  }

  /// `ran_on`: the worker it failed on, for the statistics (default: where it was sent).
  void fail_locked(std::uint64_t id, std::exception_ptr e, deferred& d, const worker_rec* ran_on = nullptr) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    task_entry& t = it->second;
    if (t.status == task_status::done || t.status == task_status::failed) return;
    sched_->task_failed(id, t.worker ? t.worker->sid : sched::no_worker, now_seconds(), false);
    if (observe_) {
      ++kinds_[t.kind]->failed;
      if (!ran_on) ran_on = t.worker;
      if (ran_on) {
        observe::kind_stats::count_on(kinds_[t.kind]->failed_on, ran_on->sid);
      } else {
        ++kinds_[t.kind]->failed_nowhere;
      }
    }
    if (t.worker) {
      t.worker->assigned.erase(id);
      t.worker = nullptr;
    }
    t.status = task_status::failed;
    t.error = e;
    finished_locked(t);
    if (t.future && !t.delivered) {
      if (t.future->state().try_add_ref()) d.errors.emplace_back(t.future, e);
      t.delivered = true;
    }
    wake_dependents_locked(t, d);
    if (t.lineage_refs == 0) erase_locked(id);
  }

  /// Whether anyone still needs t's bytes: its future (not yet delivered) or unfinished dependents.
  bool data_needed(const task_entry& t) const { return (t.future && !t.delivered) || t.pending_dependents > 0; }

  void maybe_release_data_locked(task_entry& t) {
    if (data_needed(t)) return;
    t.inline_result.reset();
    for (auto* h : t.holders) {
      h->holds.erase(t.id);
      h->to_release.push_back(t.id);
    }
    t.holders.clear();
  }

  void unref_locked(std::uint64_t id) {
    std::vector<std::uint64_t> stack{id};
    while (!stack.empty()) {
      const std::uint64_t cur = stack.back();
      stack.pop_back();
      auto it = tasks_.find(cur);
      if (it == tasks_.end()) continue;
      task_entry& t = it->second;
      if (t.lineage_refs > 0) --t.lineage_refs;
      if (t.lineage_refs > 0 || (t.status != task_status::done && t.status != task_status::failed)) continue;
      for (const arg_slot& a : t.args)
        if (a.ref) stack.push_back(a.ref);
      maybe_release_data_locked(t);
      sched_->task_forgotten(cur);
      tasks_.erase(it);
    }
  }

  void erase_locked(std::uint64_t id) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    ++it->second.lineage_refs;  // unref_locked takes it back and erases
    unref_locked(id);
  }

  void flush_releases_locked() {
    for (auto& [id, w] : workers_) {
      if (w->to_release.empty()) continue;
      if (w->conn && w->state != worker_state::gone)
        w->conn->send(wire::encode(wire::release_msg{std::move(w->to_release)}));
      w->to_release.clear();
    }
  }

  /// Puts t back in the queue once its inputs are available, recomputing lost ones first.
  void requeue_locked(task_entry& t, deferred& d) {
    t.status = task_status::waiting;
    t.deps_pending = 0;
    for (const arg_slot& a : t.args) {
      if (a.pending_local) ++t.deps_pending;
      if (!a.ref) continue;
      auto in = tasks_.find(a.ref);
      if (in == tasks_.end()) continue;
      task_entry& it = in->second;
      if (it.status == task_status::failed) {
        fail_locked(t.id, it.error, d);
        return;
      }
      if (available_locked(it)) continue;
      ++t.deps_pending;
      if (std::find(it.waiting.begin(), it.waiting.end(), t.id) == it.waiting.end()) it.waiting.push_back(t.id);
      if (it.status == task_status::done) recompute_locked(it, d);
    }
    if (t.deps_pending == 0) {
      make_ready_locked(t);
    } else {
      sched_->task_waiting(t.id, now_seconds());
    }
  }

  void recompute_locked(task_entry& t, deferred& d) {
    if (t.status != task_status::done) return;
    log(log_level::info, "recomputing task {} ({}): its result was lost", t.id, t.function);
    t.status = task_status::waiting;
    ++unfinished_;
    if (observe_) {
      ++kinds_[t.kind]->recomputed;
      ++kinds_[t.kind]->retried;
    }
    for (const arg_slot& a : t.args) {
      if (!a.ref) continue;
      auto in = tasks_.find(a.ref);
      if (in != tasks_.end()) ++in->second.pending_dependents;
    }
    requeue_locked(t, d);
  }

  void remove_worker_locked(worker_rec& w, deferred& d) {
    const bool graceful = w.state == worker_state::leaving;
    w.state = worker_state::gone;
    sched_->worker_left(w.sid, !graceful && !shutting_down_, now_seconds());
    std::vector<std::uint64_t> assigned(w.assigned.begin(), w.assigned.end());
    std::sort(assigned.begin(), assigned.end());
    w.assigned.clear();
    for (auto id : assigned) {
      auto it = tasks_.find(id);
      if (it == tasks_.end()) continue;
      task_entry& t = it->second;
      t.worker = nullptr;
      if (!graceful) {
        ++t.failures;
        t.lost_on.push_back(w.id);
        record_lost_attempt_locked(t, w);
      } else if (t.running_since >= 0) {
        record_lost_attempt_locked(t, w);  // it had started there and never finished
      } else {
        t.handed_back.push_back(t.attempt);  // sent as the worker left: it never saw it
      }
      if (t.failures >= opts_.allowed_failures()) {
        std::string on;
        for (const auto& n : t.lost_on) on += (on.empty() ? "" : ", ") + n;
        fail_locked(
            id,
            make_error(error_kind::worker_lost, fmt::format("task {} ({}) was running on {} workers that died: {}", id,
                                                            t.function, t.failures, on)),
            d);
        continue;
      }
      if (observe_ && !graceful) ++kinds_[t.kind]->retried;
      requeue_locked(t, d);
    }
    std::vector<std::uint64_t> held(w.holds.begin(), w.holds.end());
    std::sort(held.begin(), held.end());
    w.holds.clear();
    for (auto id : held) {
      auto it = tasks_.find(id);
      if (it == tasks_.end()) continue;
      task_entry& t = it->second;
      t.holders.erase(std::remove(t.holders.begin(), t.holders.end(), &w), t.holders.end());
      if (!available_locked(t) && t.status == task_status::done && data_needed(t)) {
        t.fetching = false;
        recompute_locked(t, d);
      }
    }
    std::vector<std::uint64_t> refetch;
    for (auto it = fetches_.begin(); it != fetches_.end();) {
      if (it->second.from == &w) {
        refetch.push_back(it->second.task);
        it = fetches_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto id : refetch) {
      // The value was being fetched from w: ask another holder, or recompute it.
      auto t = tasks_.find(id);
      if (t == tasks_.end()) continue;
      t->second.fetching = false;
      if (t->second.future && !t->second.delivered && t->second.status == task_status::done)
        deliver_locked(t->second, d);
    }
    w.to_release.clear();
    if (w.conn) {
      w.bytes_to_final = w.conn->bytes_sent();
      w.bytes_from_final = w.conn->bytes_received();
    }
    w.conn.reset();
    workers_cv_.notify_all();
    idle_cv_.notify_all();
  }

  /// A worker that reports nothing queued or running while tasks sent to it long before are still
  /// open lost them (a completion that never arrived): they are dispatched again, and a late
  /// completion of the old attempt is ignored, so no future waits forever on it.
  void heartbeat_locked(worker_rec& w, const wire::heartbeat_msg& m, deferred& d) {
    const double now = now_seconds();
    sched_->load_report(w.sid, m.running, m.queued, now);
    w.running_reported = m.running;
    w.memory_bytes = m.memory_bytes;
    w.stored_bytes = m.stored_bytes;
    for (const wire::running_task& r : m.running_tasks) {
      auto it = tasks_.find(r.task_id);
      if (it == tasks_.end() || it->second.worker != &w || it->second.attempt != r.attempt) continue;
      it->second.running_since = now - static_cast<double>(r.elapsed_us) * 1e-6;
      it->second.running_thread = r.thread;
      sched_->task_started(r.task_id, w.sid, it->second.running_since);
    }
    for (const wire::transfer_note& note : m.transfers) {
      for (const auto& [id, from] : workers_)
        if (from->data_address == note.from && from->sid != sched::no_worker) {
          const double seconds = static_cast<double>(note.micros) * 1e-6;
          sched_->transfer_measured(from->sid, w.sid, note.bytes, seconds);
          if (observe_) {
            observe::link_stats& link = links_[{from->sid, w.sid}];
            link.bytes += note.bytes;
            link.durations.observe(seconds);
            const double end = now - static_cast<double>(note.age_us) * 1e-6;
            transfer_events_.push(
                {note.task_id, end - seconds, static_cast<float>(seconds), from->sid, w.sid, note.bytes});
          }
          break;
        }
    }
    if (m.running != 0 || m.queued != 0 || w.assigned.empty()) return;
    const auto cutoff = clock::now() - 4 * opts_.heartbeat_interval();
    std::vector<std::uint64_t> stale;
    for (auto id : w.assigned) {
      auto it = tasks_.find(id);
      if (it != tasks_.end() && it->second.dispatched_at < cutoff) stale.push_back(id);
    }
    if (stale.empty()) return;
    std::sort(stale.begin(), stale.end());
    log(log_level::warn, "worker {} is idle but {} tasks sent to it are open; dispatching them again", w.id,
        stale.size());
    for (auto id : stale) {
      task_entry& t = tasks_.at(id);
      record_lost_attempt_locked(t, w);
      if (observe_) ++kinds_[t.kind]->retried;
      sched_->task_returned(id, w.sid, now);
      w.assigned.erase(id);
      t.worker = nullptr;
      requeue_locked(t, d);
    }
  }

  void leaving_locked(worker_rec& w, const wire::leaving_msg& m) {
    if (w.state == worker_state::active) w.state = worker_state::leaving;
    sched_->worker_draining(w.sid, now_seconds());
    for (const auto& back : m.tasks) {
      auto it = tasks_.find(back.task_id);
      if (it == tasks_.end()) continue;
      task_entry& t = it->second;
      if (t.status != task_status::assigned || t.worker != &w || t.attempt != back.attempt) continue;
      t.handed_back.push_back(t.attempt);
      w.assigned.erase(t.id);
      t.worker = nullptr;
      sched_->task_returned(t.id, w.sid, now_seconds());
      t.status = task_status::ready;
    }
  }

  // ---- observability ----------------------------------------------------------------------------

  std::uint32_t kind_index_locked(const std::string& name) {
    auto [it, added] = kind_index_.try_emplace(name, static_cast<std::uint32_t>(kinds_.size()));
    if (added) {
      kinds_.push_back(std::make_unique<observe::kind_stats>());
      kinds_.back()->name = name;
    }
    return it->second;
  }

  /// The run that dispatch `attempt` of t was, as users count attempts: a dispatch handed back
  /// before it started (a move, a leaving worker) never ran, so it is not an attempt.
  static std::uint32_t run_number(const task_entry& t, std::uint32_t attempt) {
    std::uint32_t earlier = 0;
    for (auto d : t.handed_back) earlier += d < attempt ? 1 : 0;
    return attempt - earlier;
  }

  /// One attempt of t ended on w `seconds` after it started (the worker's measure); `now` is when
  /// the head learned it.
  void record_attempt_locked(const task_entry& t, const worker_rec& w, double now, double seconds, std::uint32_t thread,
                             std::uint32_t attempt, observe::attempt_end how) {
    if (!observe_) return;
    observe::task_event e;
    e.task = t.id;
    e.start = now - seconds;
    e.duration = static_cast<float>(seconds);
    e.kind = t.kind;
    e.worker = w.sid;
    e.thread = static_cast<std::uint16_t>(std::min<std::uint32_t>(thread, observe::unknown_thread));
    e.attempt = static_cast<std::uint16_t>(std::min<std::uint32_t>(run_number(t, attempt), 0xffff));
    e.status = how;
    task_events_.push(e);
  }

  /// The attempt of t on w ended without an answer: from when it started running (or was sent,
  /// when no heartbeat said it had started) until now.
  void record_lost_attempt_locked(const task_entry& t, const worker_rec& w) {
    const double now = now_seconds();
    const bool started = t.running_since >= 0;
    const double from = started ? t.running_since : std::chrono::duration<double>(t.dispatched_at - epoch_).count();
    record_attempt_locked(t, w, now, now - from, started ? t.running_thread : observe::unknown_thread, t.attempt,
                          observe::attempt_end::lost);
  }

  /// The forecast for metrics and the dashboard: it list-schedules everything left, too much to do
  /// for every scrape of a large run. It is kept at least 0.5 s and at least 20 times as long as
  /// it took to compute, so that however many tasks are left it costs the head about 5% at most.
  const sched::forecast_result& cached_forecast_locked() const {
    const double now = now_seconds();
    if (!forecast_cache_ || now - forecast_at_ > std::max(0.5, 20 * forecast_cost_)) {
      const auto started = clock::now();
      forecast_cache_ = sched_->forecast(now);
      forecast_at_ = now;
      forecast_cost_ = std::chrono::duration<double>(clock::now() - started).count();
    }
    return *forecast_cache_;
  }

  static double backlog_of(const sched::forecast_result& fc, sched::worker_id sid) {
    for (const auto& b : fc.workers)
      if (b.id == sid) return b.backlog_seconds;
    return 0.0;
  }

  std::string worker_name(std::uint32_t sid) const {
    if (sid == observe::no_worker) return "head";
    return sid < by_sid_.size() && by_sid_[sid] ? by_sid_[sid]->id : std::string("none");
  }

  /// Tasks sent to workers and not finished, by kind; `running`: those a heartbeat saw running.
  std::vector<std::uint64_t> assigned_by_kind_locked(std::vector<std::uint64_t>* running = nullptr) const {
    std::vector<std::uint64_t> n(kinds_.size(), 0);
    if (running) running->assign(kinds_.size(), 0);
    for (const auto& [id, w] : workers_)
      for (auto task : w->assigned)
        if (auto it = tasks_.find(task); it != tasks_.end() && it->second.kind < n.size()) {
          ++n[it->second.kind];
          if (running && it->second.running_since >= 0) ++(*running)[it->second.kind];
        }
    return n;
  }

  void collect(exposition& out) const {
    std::lock_guard lock(mutex_);
    using detail::metric_type;
    auto per_kind = [&](const char* name, metric_type type, const char* help, auto value) {
      if (!out.family(name, type, help)) return;
      for (const auto& k : kinds_) out.sample(name, {{"kind", k->name}}, static_cast<double>(value(*k)));
    };
    per_kind("dx_tasks_submitted_total", metric_type::counter, "Tasks submitted, by kind (function).",
             [](const observe::kind_stats& k) { return k.submitted; });
    auto per_kind_worker = [&](const char* name, const char* help, auto member, auto nowhere) {
      if (!out.family(name, metric_type::counter, help)) return;
      for (const auto& k : kinds_) {
        const std::vector<std::uint64_t>& v = (*k).*member;
        for (std::size_t w = 0; w < v.size(); ++w)
          if (v[w])
            out.sample(name, {{"kind", k->name}, {"worker", worker_name(static_cast<std::uint32_t>(w))}},
                       static_cast<double>(v[w]));
        if (nowhere(*k)) out.sample(name, {{"kind", k->name}, {"worker", "none"}}, static_cast<double>(nowhere(*k)));
      }
    };
    per_kind_worker("dx_tasks_completed_total", "Task attempts that completed, by kind and worker.",
                    &observe::kind_stats::completed_on, [](const observe::kind_stats&) { return std::uint64_t{0}; });
    per_kind_worker("dx_tasks_failed_total", "Tasks that failed, by kind and worker (none: before reaching one).",
                    &observe::kind_stats::failed_on, [](const observe::kind_stats& k) { return k.failed_nowhere; });
    per_kind("dx_tasks_retried_total", metric_type::counter,
             "Tasks run again after a lost worker, a lost input or a lost result.",
             [](const observe::kind_stats& k) { return k.retried; });
    per_kind("dx_tasks_moved_total", metric_type::counter, "Tasks taken back from a worker's queue to run elsewhere.",
             [](const observe::kind_stats& k) { return k.moved; });
    std::vector<std::uint64_t> running;
    const std::vector<std::uint64_t> assigned = assigned_by_kind_locked(&running);
    if (out.family("dx_tasks_pending", metric_type::gauge, "Tasks at the head: waiting for inputs or for a worker.")) {
      for (std::size_t i = 0; i < kinds_.size(); ++i) {
        const std::uint64_t open = kinds_[i]->open();
        out.sample("dx_tasks_pending", {{"kind", kinds_[i]->name}},
                   static_cast<double>(open > assigned[i] ? open - assigned[i] : 0));
      }
    }
    if (out.family("dx_tasks_assigned", metric_type::gauge, "Tasks sent to a worker and not finished.")) {
      for (std::size_t i = 0; i < kinds_.size(); ++i)
        out.sample("dx_tasks_assigned", {{"kind", kinds_[i]->name}}, static_cast<double>(assigned[i]));
    }
    if (out.family("dx_tasks_running", metric_type::gauge,
                   "Tasks running on a worker, as its last heartbeat reported (part of dx_tasks_assigned).")) {
      for (std::size_t i = 0; i < kinds_.size(); ++i)
        out.sample("dx_tasks_running", {{"kind", kinds_[i]->name}}, static_cast<double>(running[i]));
    }
    if (out.family("dx_task_duration_seconds", metric_type::histogram, "Run time of completed tasks, by kind.")) {
      for (const auto& k : kinds_) {
        const label_ref l[] = {{"kind", k->name}};
        out.histogram_samples("dx_task_duration_seconds", l, observe::duration_bounds, k->durations.counts,
                              k->durations.sum);
      }
    }
    // Workers.
    const sched::forecast_result& fc = cached_forecast_locked();
    const auto now = clock::now();
    auto per_worker = [&](const char* name, const char* help, auto value) {
      if (!out.family(name, metric_type::gauge, help)) return;
      for (const auto& [id, w] : workers_)
        if (w->state != worker_state::gone) out.sample(name, {{"worker", id}}, static_cast<double>(value(*w)));
    };
    per_worker("dx_worker_threads", "Threads of the worker.", [](const worker_rec& w) { return w.threads; });
    per_worker("dx_worker_busy_threads", "Threads running a task, as the worker's last heartbeat reported.",
               [](const worker_rec& w) { return w.busy(); });
    per_worker("dx_worker_queue_depth", "Tasks sent to the worker and not started.",
               [](const worker_rec& w) { return w.assigned.size() - w.busy(); });
    per_worker("dx_worker_memory_bytes", "Resident memory of the worker process.",
               [&](const worker_rec& w) { return w.local ? resident_memory_bytes() : w.memory_bytes; });
    per_worker("dx_worker_stored_bytes", "Results the worker keeps for others.",
               [](const worker_rec& w) { return w.stored_bytes; });
    per_worker("dx_worker_heartbeat_age_seconds", "Seconds since the worker was last heard from.",
               [&](const worker_rec& w) { return std::chrono::duration<double>(now - w.last_seen).count(); });
    per_worker("dx_worker_predicted_backlog_seconds", "Predicted work placed on the worker, per thread.",
               [&](const worker_rec& w) { return backlog_of(fc, w.sid); });
    if (out.family("dx_worker_resource_capacity", metric_type::gauge, "Resources the worker declared.")) {
      for (const auto& [id, w] : workers_)
        if (w->state != worker_state::gone)
          for (const auto& [r, amount] : w->resources)
            out.sample("dx_worker_resource_capacity", {{"worker", id}, {"resource", r}}, amount);
    }
    if (out.family("dx_worker_state", metric_type::gauge, "1 for the state each worker is in.")) {
      for (const auto& [id, w] : workers_)
        out.sample("dx_worker_state", {{"worker", id}, {"state", state_name(w->state)}}, 1);
    }
    if (out.family("dx_workers", metric_type::gauge, "Workers by state.")) {
      std::size_t by[3] = {};
      for (const auto& [id, w] : workers_) ++by[static_cast<int>(w->state)];
      for (int i = 0; i < 3; ++i)
        out.sample("dx_workers", {{"state", state_name(static_cast<worker_state>(i))}}, static_cast<double>(by[i]));
    }
    // Links.
    if (out.family("dx_link_bytes_total", metric_type::counter,
                   "Bytes sent over a link: head to worker and back (frames), worker to worker (results).")) {
      for (const auto& [id, w] : workers_) {
        if (w->local) continue;  // the head's own threads: not a network link
        const std::uint64_t to = w->conn ? w->conn->bytes_sent() : w->bytes_to_final;
        const std::uint64_t from = w->conn ? w->conn->bytes_received() : w->bytes_from_final;
        out.sample("dx_link_bytes_total", {{"from", "head"}, {"to", id}}, static_cast<double>(to));
        out.sample("dx_link_bytes_total", {{"from", id}, {"to", "head"}}, static_cast<double>(from));
      }
      for (const auto& [link, st] : links_)
        if (link.second != observe::no_worker)
          out.sample("dx_link_bytes_total", {{"from", worker_name(link.first)}, {"to", worker_name(link.second)}},
                     static_cast<double>(st.bytes));
    }
    if (out.family("dx_transfer_duration_seconds", metric_type::histogram,
                   "Time to move a result from one worker to another (or to the head).")) {
      for (const auto& [link, st] : links_) {
        const std::string from = worker_name(link.first), to = worker_name(link.second);
        const label_ref l[] = {{"from", from}, {"to", to}};
        out.histogram_samples("dx_transfer_duration_seconds", l, observe::duration_bounds, st.durations.counts,
                              st.durations.sum);
      }
    }
    // Model, forecast, alerts.
    if (out.family("dx_prediction_error_ratio", metric_type::gauge,
                   "Median |predicted - actual| / actual of a kind's run time, once it has 20 samples.")) {
      for (const auto& a : model_.accuracy())
        if (a.calibrated_samples > 0) out.sample("dx_prediction_error_ratio", {{"kind", a.kind}}, a.median_ape);
    }
    if (out.family("dx_forecast_remaining_seconds", metric_type::gauge,
                   "Predicted time until every submitted task has finished."))
      out.sample("dx_forecast_remaining_seconds", {}, fc.remaining_seconds);
    if (out.family("dx_forecast_remaining_sd_seconds", metric_type::gauge, "Spread of that prediction."))
      out.sample("dx_forecast_remaining_sd_seconds", {}, fc.remaining_sd);
    if (out.family("dx_forecast_lower_bound_seconds", metric_type::gauge,
                   "Lower bound of the time left: critical path, or work over threads."))
      out.sample("dx_forecast_lower_bound_seconds", {}, fc.lower_bound);
    if (out.family("dx_alerts_total", metric_type::counter, "Alerts raised, by kind.")) {
      for (std::size_t i = 0; i < alert_kind_count; ++i)
        out.sample("dx_alerts_total", {{"kind", to_string(static_cast<alert_kind>(i))}},
                   static_cast<double>(alerts_by_kind_[i]));
    }
    if (out.family("dx_alert_active", metric_type::gauge, "1 while a user alert rule is firing.")) {
      for (const auto& [name, active] : rule_active_) out.sample("dx_alert_active", {{"rule", name}}, active ? 1 : 0);
    }
    if (out.family("dx_uptime_seconds", metric_type::gauge, "Seconds since the cluster started."))
      out.sample("dx_uptime_seconds", {}, now_seconds());
    if (http_ &&
        out.family("dx_http_requests_total", metric_type::counter, "HTTP requests served, by path and status.")) {
      for (const auto& [key, n] : http_->counts().by_path_and_code)
        out.sample("dx_http_requests_total", {{"path", key.first}, {"code", std::to_string(key.second)}},
                   static_cast<double>(n));
    }
  }

  static const char* state_name(worker_state s) {
    switch (s) {
      case worker_state::active:
        return "active";
      case worker_state::leaving:
        return "leaving";
      case worker_state::gone:
        return "gone";
    }
    return "?";
  }

  double unix_seconds(double head_seconds) const { return epoch_unix_ + head_seconds; }

  std::string state_json() const {
    using nlohmann::json;
    std::lock_guard lock(mutex_);
    json j;
    j["version"] = fmt::format("{}.{}.{}", DX_VERSION_MAJOR, DX_VERSION_MINOR, DX_VERSION_PATCH);
    j["now"] = unix_seconds(now_seconds());
    j["started"] = epoch_unix_;
    j["policy"] = sched::to_string(sched_->settings().kind);
    const std::vector<std::uint64_t> assigned = assigned_by_kind_locked();
    std::uint64_t submitted = 0, completed = 0, failed = 0, retried = 0, moved = 0, open = 0, sent = 0;
    json kinds = json::array();
    for (std::size_t i = 0; i < kinds_.size(); ++i) {
      const observe::kind_stats& k = *kinds_[i];
      submitted += k.submitted;
      completed += k.completed;
      failed += k.failed;
      retried += k.retried;
      moved += k.moved;
      open += k.open();
      sent += assigned[i];
      const std::uint64_t runs = k.durations.count();
      json kj{{"kind", k.name},
              {"submitted", k.submitted},
              {"completed", k.completed},
              {"failed", k.failed},
              {"pending", k.open() > assigned[i] ? k.open() - assigned[i] : 0},
              {"assigned", assigned[i]},
              {"mean_seconds", runs ? k.durations.sum / static_cast<double>(runs) : 0.0},
              {"prediction_error", nullptr}};
      kinds.push_back(std::move(kj));
    }
    for (const auto& a : model_.accuracy())
      if (a.calibrated_samples > 0)
        for (auto& kj : kinds)
          if (kj["kind"] == a.kind) kj["prediction_error"] = a.median_ape;
    std::uint64_t running = 0;
    json workers = json::array();
    const sched::forecast_result& fc = cached_forecast_locked();
    const auto now = clock::now();
    for (const auto& [id, w] : workers_) {
      const std::size_t busy = w->busy();
      if (w->state != worker_state::gone) running += busy;
      std::uint64_t done_here = 0, failed_here = 0;
      for (const auto& k : kinds_) {
        if (w->sid < k->completed_on.size()) done_here += k->completed_on[w->sid];
        if (w->sid < k->failed_on.size()) failed_here += k->failed_on[w->sid];
      }
      workers.push_back({{"id", id},
                         {"address", w->data_address},
                         {"state", state_name(w->state)},
                         {"threads", w->threads},
                         {"busy_threads", busy},
                         {"queued", w->assigned.size() - busy},
                         {"assigned", w->assigned.size()},
                         {"completed", done_here},
                         {"failed", failed_here},
                         {"memory_bytes", w->local ? resident_memory_bytes() : w->memory_bytes},
                         {"stored_bytes", w->stored_bytes},
                         {"resources", w->resources},
                         {"heartbeat_age_seconds", std::chrono::duration<double>(now - w->last_seen).count()},
                         {"backlog_seconds", backlog_of(fc, w->sid)},
                         {"pid", w->pid}});
    }
    std::stable_sort(workers.begin(), workers.end(),
                     [](const json& a, const json& b) { return (a["id"] == "head") > (b["id"] == "head"); });
    j["tasks"] = {{"submitted", submitted},
                  {"pending", open > sent ? open - sent : 0},
                  {"queued", sent > running ? sent - running : 0},
                  {"running", running},
                  {"completed", completed},
                  {"failed", failed},
                  {"retried", retried},
                  {"moved", moved}};
    j["kinds"] = std::move(kinds);
    j["workers"] = std::move(workers);
    j["forecast"] = {{"remaining_seconds", fc.remaining_seconds},
                     {"remaining_sd", fc.remaining_sd},
                     {"lower_bound_seconds", fc.lower_bound},
                     {"finish_time", unix_seconds(now_seconds() + fc.remaining_seconds)},
                     {"tasks_left", fc.tasks_left},
                     {"bottleneck", fc.bottleneck},
                     {"critical_path", fc.critical_path}};
    json alerts = json::array();
    for (const alert& a : recent_alerts_)
      alerts.push_back({{"kind", to_string(a.kind)},
                        {"subject", a.subject},
                        {"message", a.message},
                        {"value", a.value},
                        {"threshold", a.threshold},
                        {"time", std::chrono::duration<double>(a.time.time_since_epoch()).count()}});
    j["alerts"] = std::move(alerts);
    j["events"] = {{"first", task_events_.first()}, {"next", task_events_.next()}};
    // Tasks running now (as heartbeats reported them), for the task stream's open bars.
    json running_now = json::array();
    for (const auto& [id, w] : workers_) {
      if (w->state == worker_state::gone) continue;
      for (auto task : w->assigned) {
        if (running_now.size() >= max_running_listed) break;
        auto it = tasks_.find(task);
        if (it == tasks_.end() || it->second.running_since < 0) continue;
        running_now.push_back({{"task", task},
                               {"kind", kinds_[it->second.kind]->name},
                               {"worker", id},
                               {"thread", it->second.running_thread},
                               {"attempt", run_number(it->second, it->second.attempt)},
                               {"start", unix_seconds(it->second.running_since)}});
      }
    }
    j["running"] = std::move(running_now);
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  /// The events are copied under the lock and written out after it: a page of 10,000 events
  /// takes milliseconds to format, which dispatching should not wait for.
  std::string tasks_json(std::optional<std::uint64_t> since, std::size_t limit) const {
    std::vector<observe::task_event> events;
    std::vector<std::string> kinds, workers;
    std::uint64_t first = 0, next = 0, from = 0, to = 0;
    {
      std::lock_guard lock(mutex_);
      first = task_events_.first();
      next = task_events_.next();
      from = std::min(since ? std::max(*since, first) : (next - first > limit ? next - limit : first), next);
      to = std::min<std::uint64_t>(next, from + limit);
      events.reserve(static_cast<std::size_t>(to - from));
      for (std::uint64_t seq = from; seq < to; ++seq) events.push_back(task_events_.at(seq));
      for (const auto& k : kinds_) kinds.push_back(k->name);
      for (const worker_rec* w : by_sid_) workers.push_back(w ? w->id : std::string("none"));
    }
    std::string out;
    out.reserve(64 + events.size() * 160);
    fmt::format_to(std::back_inserter(out), R"({{"first":{},"next":{},"more":{},"events":[)", first, to,
                   to < next ? "true" : "false");
    for (std::size_t i = 0; i < events.size(); ++i) {
      const observe::task_event& e = events[i];
      if (i) out += ',';
      fmt::format_to(std::back_inserter(out), R"({{"seq":{},"task":{},"kind":")", from + i, e.task);
      observe::json_escape_into(out, e.kind < kinds.size() ? std::string_view(kinds[e.kind]) : "?");
      out += R"(","worker":")";
      observe::json_escape_into(out, e.worker < workers.size() ? std::string_view(workers[e.worker]) : "head");
      out += R"(","thread":)";
      if (e.thread == observe::unknown_thread) {
        out += "null";
      } else {
        fmt::format_to(std::back_inserter(out), "{}", e.thread);
      }
      fmt::format_to(std::back_inserter(out), R"(,"attempt":{},"start":{:.6f},"end":{:.6f},"status":"{}"}})", e.attempt,
                     unix_seconds(e.start), unix_seconds(e.start + e.duration), observe::to_string(e.status));
    }
    out += "]}";
    return out;
  }

  std::string trace_json() const override {
    observe::trace_input in;
    {
      std::lock_guard lock(mutex_);
      for (std::uint64_t s = task_events_.first(); s < task_events_.next(); ++s) in.tasks.push_back(task_events_.at(s));
      for (std::uint64_t s = transfer_events_.first(); s < transfer_events_.next(); ++s)
        in.transfers.push_back(transfer_events_.at(s));
      for (const auto& k : kinds_) in.kinds.push_back(k->name);
      for (const worker_rec* w : by_sid_) in.workers.push_back(w ? w->id : std::string("none"));
      in.epoch_unix_us = epoch_unix_ * 1e6;
    }
    std::string out;
    observe::write_chrome_trace(in, out);
    return out;
  }

  http_response serve_http(const http_request& r) const {
    auto json_error = [](unsigned status, const std::string& why) {
      return http_response{status, "application/json", nlohmann::json{{"error", why}}.dump()};
    };
    if (r.path == "/" || r.path == "/index.html")
      return {200, "text/html; charset=utf-8", std::string(dashboard_page())};
    if (r.path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render()};
    if (r.path == "/api/state") return {200, "application/json", state_json()};
    if (r.path == "/api/trace") return {200, "application/json", trace_json()};
    if (r.path == "/api/tasks") {
      auto number = [&](const char* key) -> std::optional<std::optional<std::uint64_t>> {
        auto it = r.query.find(key);
        if (it == r.query.end()) return std::optional<std::uint64_t>{};
        std::uint64_t v = 0;
        const auto& s = it->second;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
        return std::optional<std::uint64_t>(v);
      };
      const auto since = number("since");
      if (!since) return json_error(400, "since must be a non-negative integer (a sequence number from 'next')");
      const auto limit = number("limit");
      if (!limit) return json_error(400, "limit must be a non-negative integer");
      const std::size_t n = std::clamp<std::uint64_t>(limit->value_or(2000), 1, 10000);
      return {200, "application/json", tasks_json(*since, n)};
    }
    return {404, "text/plain; charset=utf-8",
            fmt::format("no page at {}: try /, /metrics, /api/state, /api/tasks?since=N or /api/trace\n", r.path)};
  }

  std::string http_endpoint() const override { return http_ ? http_->endpoint() : std::string(); }

  std::vector<alert> recent_alerts() const override {
    std::lock_guard lock(mutex_);
    return std::vector<alert>(recent_alerts_.begin(), recent_alerts_.end());
  }

  // ---- user alert rules ---------------------------------------------------------------------------

  struct series_watch {
    double since = -1;  // when the condition started to hold; -1: it does not
    bool firing = false;
    double last_value = std::nan("");
    double last_time = 0;
  };
  struct rule_watch {
    alert_rule rule;
    std::map<metric_labels, series_watch> series;
    explicit rule_watch(alert_rule r) : rule(std::move(r)) {}
  };

  void add_alert_rule(alert_rule rule) override {
    if (rule.name.empty()) throw_error(error_kind::generic, "an alert rule needs a name");
    if (rule.metric.empty())
      throw_error(error_kind::generic, fmt::format("alert rule '{}' names no metric", rule.name));
    if (rule.for_duration.count() < 0)
      throw_error(error_kind::generic, fmt::format("alert rule '{}': for_duration is negative", rule.name));
    if (std::isnan(rule.threshold))
      throw_error(error_kind::generic, fmt::format("alert rule '{}': the threshold is not a number", rule.name));
    std::sort(rule.labels.begin(), rule.labels.end());
    {
      std::lock_guard lock(mutex_);
      for (const auto& [name, active] : rule_active_)
        if (name == rule.name)
          throw_error(error_kind::generic, fmt::format("there is already an alert rule '{}'", rule.name));
      rule_active_.emplace_back(rule.name, false);
    }
    std::lock_guard rules(rules_mutex_);
    rules_.emplace_back(std::move(rule));
  }

  /// Reads the metrics the rules watch and fires the rules whose condition has held long enough.
  /// Runs on the tick thread without the head's lock (reading metrics takes it).
  void evaluate_rules() {
    std::lock_guard rules(rules_mutex_);
    if (rules_.empty()) return;
    std::set<std::string, std::less<>> families;
    for (const rule_watch& r : rules_)
      for (auto& f : families_of_sample(r.rule.metric)) families.insert(std::move(f));
    sample_reader reader(std::move(families));
    metrics_access::collect(metrics_, reader);
    const double now = now_seconds();
    std::vector<alert> fired;
    std::vector<std::pair<std::string, bool>> active;
    for (rule_watch& r : rules_) {
      std::set<metric_labels> seen;
      bool any_firing = false;
      for (const auto& s : reader.samples()) {
        if (s.name != r.rule.metric) continue;
        const bool matches = std::all_of(r.rule.labels.begin(), r.rule.labels.end(), [&](const auto& want) {
          return std::find(s.labels.begin(), s.labels.end(), want) != s.labels.end();
        });
        if (!matches) continue;
        seen.insert(s.labels);
        series_watch& w = r.series[s.labels];
        double v = s.value;
        if (r.rule.rate) {
          const double prev = w.last_value, prev_time = w.last_time;
          w.last_value = s.value;
          w.last_time = now;
          if (std::isnan(prev) || now <= prev_time) continue;
          v = std::max(0.0, s.value - prev) / (now - prev_time);  // a counter reset counts as no increase
        }
        const bool holds = r.rule.when == alert_rule::comparison::above ? v > r.rule.threshold : v < r.rule.threshold;
        if (!holds) {
          if (w.firing)
            log(log_level::info, "alert rule '{}' cleared for {}", r.rule.name, series_name(s.name, s.labels));
          w.since = -1;
          w.firing = false;
          continue;
        }
        if (w.since < 0) w.since = now;
        const double held = now - w.since;
        if (!w.firing && held >= std::chrono::duration<double>(r.rule.for_duration).count()) {
          w.firing = true;
          alert a;
          a.kind = alert_kind::rule;
          a.subject = r.rule.name;
          a.message =
              fmt::format("rule '{}': {}{} = {:.4g}, {} {:.4g} for {:.1f} s", r.rule.name,
                          series_name(s.name, s.labels), r.rule.rate ? " per second" : "", v,
                          r.rule.when == alert_rule::comparison::above ? "above" : "below", r.rule.threshold, held);
          a.value = v;
          a.threshold = r.rule.threshold;
          a.time = std::chrono::system_clock::now();
          fired.push_back(std::move(a));
        }
        any_firing = any_firing || w.firing;
      }
      std::erase_if(r.series, [&](const auto& e) { return !seen.count(e.first); });
      active.emplace_back(r.rule.name, any_firing);
    }
    std::lock_guard lock(mutex_);
    for (auto& a : fired) {
      log(log_level::warn, "alert {}: {}", to_string(a.kind), a.message);
      raise_alert_locked(std::move(a));
    }
    rule_active_ = std::move(active);
  }

  static std::string series_name(const std::string& name, const metric_labels& labels) {
    if (labels.empty()) return name;
    std::string out = name + "{";
    for (std::size_t i = 0; i < labels.size(); ++i)
      out += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first, labels[i].second);
    return out + "}";
  }

  // ---- heartbeats ---------------------------------------------------------------------------------

  /// A connection that has not completed the handshake; closed if it stays silent too long.
  void track_pending(const std::shared_ptr<transport::connection>& c) {
    std::lock_guard lock(mutex_);
    pending_.push_back({c, clock::now()});
  }

  void tick() {
    std::unique_lock lock(mutex_);
    while (!ticker_stop_) {
      tick_cv_.wait_for(lock, opts_.heartbeat_interval());
      if (ticker_stop_) break;
      if (stall_trace_enabled()) {
        std::size_t by[5] = {};
        for (auto& [id, t] : tasks_) ++by[static_cast<int>(t.status)];
        std::string ws;
        for (auto& [id, w] : workers_)
          ws += fmt::format(" {}:{} (sent {} in {}, done {} in {})", id, w->assigned.size(), w->sent_tasks,
                            w->sent_frames, w->done_tasks, w->done_frames);
        log(log_level::warn, "stall trace: waiting {} ready {} assigned {} done {} failed {}; unfinished {};{}", by[0],
            by[1], by[2], by[3], by[4], unfinished_, ws);
      }
      dispatch_locked();  // rebalancing and alert rules also run without events
      lock.unlock();
      evaluate_rules();  // reads metrics, which takes the lock
      lock.lock();
      if (ticker_stop_) break;
      if (!pending_alerts_.empty()) {
        deferred d;
        d.alerts.swap(pending_alerts_);
        d.alert_callbacks = alert_callbacks_;
        lock.unlock();
        d.run();
        lock.lock();
      }
      const auto now = clock::now();
      std::vector<std::shared_ptr<transport::connection>> silent;
      std::vector<std::shared_ptr<transport::connection>> no_handshake;
      std::erase_if(pending_, [&](const pending_conn& p) {
        auto c = p.conn.lock();
        if (!c) return true;
        bool joined = false;
        for (const auto& [id, w] : workers_) joined = joined || w->conn == c;
        if (joined) return true;
        if (now - p.since <= opts_.heartbeat_timeout()) return false;
        no_handshake.push_back(std::move(c));
        return true;
      });
      for (auto& [id, w] : workers_) {
        if (w->state == worker_state::gone || !w->conn) continue;
        if (now - w->last_seen > opts_.heartbeat_timeout()) {
          silent.push_back(w->conn);
        } else {
          w->conn->send(wire::encode(wire::heartbeat_msg{}));
        }
      }
      lock.unlock();
      for (auto& c : silent) c->close(fmt::format("no heartbeat for {} ms", opts_.heartbeat_timeout().count()));
      for (auto& c : no_handshake) {
        const std::string why = fmt::format("no handshake within {} ms", opts_.heartbeat_timeout().count());
        log(log_level::warn, "closing connection from {}: {}", c->remote_address(), why);
        c->close(why);
      }
      lock.lock();
    }
  }

 private:
  static constexpr std::size_t pipeline_per_thread = 256;

  static constexpr std::size_t max_recent_alerts = 100;
  static constexpr std::size_t max_running_listed = 2000;

  options opts_;
  executor& local_;
  dx::metrics& metrics_;
  const bool observe_;
  std::string token_;
  std::unique_ptr<transport::transport> net_;
  std::string endpoint_;

  mutable std::mutex mutex_;
  std::condition_variable idle_cv_;
  std::condition_variable workers_cv_;
  std::condition_variable tick_cv_;
  std::unordered_map<std::uint64_t, task_entry> tasks_;
  clock::time_point epoch_ = clock::now();
  cost_model model_;
  std::filesystem::path model_path_;
  bool model_saved_ = false;
  std::unique_ptr<sched::scheduler> sched_;
  std::vector<sched::decision> decisions_;
  std::vector<worker_rec*> by_sid_;
  std::vector<alert> pending_alerts_;
  std::vector<std::function<void(const alert&)>> alert_callbacks_;
  std::map<std::string, std::unique_ptr<worker_rec>> workers_;
  struct fetch_rec {
    std::uint64_t task = 0;
    worker_rec* from = nullptr;
    double asked = 0;  // seconds since the head started
  };
  std::unordered_map<std::uint64_t, fetch_rec> fetches_;  // by request id
  std::uint64_t next_task_ = 1;
  std::uint64_t next_request_ = 1;
  std::uint64_t next_worker_ = 1;
  std::size_t unfinished_ = 0;
  bool shutting_down_ = false;
  bool shut_down_ = false;

  struct pending_conn {
    std::weak_ptr<transport::connection> conn;
    clock::time_point since;
  };
  std::vector<pending_conn> pending_;

  std::thread ticker_;
  bool ticker_stop_ = false;
  std::unique_ptr<worker_runtime> head_worker_;
  std::vector<std::unique_ptr<worker_runtime>> thread_workers_;
  std::vector<pid_t> children_;

  // Observability (under mutex_ unless said otherwise).
  double epoch_unix_ = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::vector<std::unique_ptr<observe::kind_stats>> kinds_;
  std::unordered_map<std::string, std::uint32_t> kind_index_;
  observe::history<observe::task_event> task_events_;
  observe::history<observe::transfer_event> transfer_events_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, observe::link_stats> links_;
  std::deque<alert> recent_alerts_;
  std::array<std::uint64_t, alert_kind_count> alerts_by_kind_{};
  std::vector<std::pair<std::string, bool>> rule_active_;
  mutable std::optional<sched::forecast_result> forecast_cache_;
  mutable double forecast_at_ = 0;
  mutable double forecast_cost_ = 0;   // seconds the last one took
  std::unique_ptr<http_server> http_;  // its handlers read the head: stopped first in shutdown
  std::uint64_t collector_key_ = 0;
  std::mutex rules_mutex_;  // taken before mutex_, never while holding it
  std::vector<rule_watch> rules_;
};

void session::on_frame(transport::connection& c, wire::frame&& f) {
  if (auto h = head.lock()) h->on_frame(*this, c, std::move(f));
}
void session::on_closed(transport::connection&, const std::string& reason) {
  if (auto h = head.lock()) h->on_closed(*this, reason);
  conn.reset();
}

void local_dep::on_fire(continuation* c) noexcept {
  std::unique_ptr<local_dep> self(static_cast<local_dep*>(c));
  std::string bytes;
  std::exception_ptr error = self->state->error();
  if (!error) {
    try {
      bytes = self->encode(*self->state);
    } catch (...) {
      error = std::current_exception();
    }
  }
  if (auto h = self->head.lock()) h->local_dep_fired(self->task, self->arg, std::move(bytes), error);
  self->state->release();
}

}  // namespace

std::shared_ptr<head_core> head_core::create(const options& opts, executor& local, dx::metrics& registry) {
  auto h = std::make_shared<head_impl>(opts, local, registry);
  h->start();
  return h;
}

remote_result::~remote_result() = default;

void remote_result::request_value() noexcept {
  if (head) head->request_value(task_id);
}

void remote_result::released() noexcept {
  if (head) head->released(task_id);
}

}  // namespace dx::detail
