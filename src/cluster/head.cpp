// The head's life cycle and its public face: start and stop, submit, local futures as arguments,
// the futures' requests for values and releases, and the queries of head_core.
#include "cluster/auth.hpp"
#include "cluster/head_state.hpp"
#include "cluster/process.hpp"
#include "common/log.hpp"
#include "observe/head_views.hpp"
#include "transport/address.hpp"
#include "transport/mpi.hpp"

#include <fmt/format.h>
#include <unistd.h>
#include <algorithm>
#include <dx/error.hpp>

namespace dx::detail {

head_impl::head_impl(const options& opts, executor& local, dx::metrics& registry, observe::alert_center& alerts,
                     std::shared_ptr<extension_slot> extensions)
    : opts_(opts),
      local_(local),
      metrics_(registry),
      alerts_(alerts),
      observe_(opts.metrics()),
      head_key_(make_nonce()),
      host_(host_name()),
      task_events_(opts.metrics() ? opts.task_history() : 0),
      transfer_events_(opts.metrics() ? opts.task_history() : 0),
      extensions_(std::move(extensions)) {
  if (opts_.persist_cost_model()) {
    model_path_ =
        std::filesystem::path(opts_.cost_model_file().empty() ? cost_model::default_path() : opts_.cost_model_file());
    try {
      if (model_.load(model_path_)) log(log_level::info, "cost model loaded from {}", model_path_.string());
    } catch (const std::exception& e) {
      log(log_level::warn, "starting with an empty cost model: {}", e.what());
    }
    reliability_path_ = model_path_.string() + ".reliability";
    load_reliability();
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

void head_impl::start() {
  if (opts_.transport() == transport_kind::mpi && opts_.local_processes() > 0)
    throw_error(error_kind::generic,
                "options::local_processes with transport_kind::mpi: the workers are the MPI job's other ranks "
                "(mpirun -np N starts them)");
  std::weak_ptr<head_impl> self = std::static_pointer_cast<head_impl>(shared_from_this());
  // The token before the HTTP endpoint, whose write routes check it (and never change it after).
  if (!opts_.token_file().empty()) token_ = read_token_file(opts_.token_file());
  if (token_.empty()) token_ = opts_.token();
  http_token_ = opts_.http_token().empty() ? token_ : opts_.http_token();
  // One set of credentials for the HTTP endpoint and the transport: both serve the same
  // certificates, read (and read again on a change) once.
  const auto tls = !opts_.http().empty() || opts_.transport() == transport_kind::tcp
                       ? transport::make_tls_credentials(opts_.tls())
                       : nullptr;
  if (!opts_.http().empty()) {
    // First: a busy port fails the cluster's construction before any thread or worker starts.
    websocket_settings ws;
    ws.max_clients = opts_.websocket_clients();
    ws.queue_bytes = opts_.websocket_queue_bytes();
    http_ = std::make_unique<http_server>(
        opts_.http(),
        [self](const http_request& r) {
          if (auto h = self.lock()) return h->serve_http(r);
          return http_response{503, "text/plain; charset=utf-8", "the cluster is stopping\n"};
        },
        std::chrono::seconds(10), ws, tls);
    http_loopback_.store(http_->loopback(), std::memory_order_release);
    const char* scheme = tls ? "https" : "http";
    log(log_level::info, "dashboard at {}://{}/, metrics at {}://{}/metrics", scheme, http_->endpoint(), scheme,
        http_->endpoint());
    if (!http_->loopback()) {
      if (!tls)
        log(log_level::warn,
            "the HTTP endpoint at {} is reachable from other machines without TLS: the token and the data cross the "
            "network readable (options::tls, dx/tls.hpp)",
            http_->endpoint());
      if (http_token_.empty())
        log(log_level::warn,
            "the HTTP endpoint at {} is reachable from other machines and the cluster has no token: anyone who "
            "reaches it reads the cluster (changes are taken from this machine only)",
            http_->endpoint());
      else if (opts_.metrics_open())
        log(log_level::info, "the HTTP endpoint at {} needs the token for everything but the page and /metrics",
            http_->endpoint());
    }
  }
  collector_key_ = metrics_access::add_collector(metrics_, [self](exposition& out) {
    if (auto h = self.lock()) h->collect(out);
  });
  transport::config tc;
  tc.max_frame_size = opts_.max_frame_size();
  tc.max_value_size = opts_.max_value_size();
  // Until its hello passes (on_frame), a connection sends handshake-sized frames only, and one
  // that does not pass in time is closed by the transport.
  tc.untrusted_frame_limit = transport::handshake_frame_limit;
  tc.handshake_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(handshake_deadline());
  if (opts_.transport() == transport_kind::tcp) tc.tls = tls;
  net_ = transport::make_transport(opts_.transport(), tc);
  // Under MPI the head listens where every rank looks for it (transport/mpi.hpp).
  const std::string default_listen =
      opts_.transport() == transport_kind::mpi ? fmt::format("mpi:{}", transport::mpi_head_port) : "127.0.0.1:0";
  const std::string listen_at = opts_.listen().empty() ? default_listen : opts_.listen();
  std::weak_ptr<head_impl> weak = std::static_pointer_cast<head_impl>(shared_from_this());
  endpoint_ = net_->listen(listen_at, [weak](std::shared_ptr<transport::connection> c) {
    auto h = weak.lock();
    auto s = std::make_shared<session>();
    s->head = weak;
    s->nonce = make_nonce();
    s->conn = c;
    if (h) h->track_pending(c);
    c->set_handler(s);
    s->challenged_at = head_clock::now();  // the hello that answers it is the first round trip
    c->send(wire::encode(wire::challenge_msg{s->nonce, h && !h->token_.empty()}));
  });
  if (opts_.transport() == transport_kind::tcp && !tc.tls) {
    const auto at = transport::parse_address(endpoint_);
    if (at && !transport::is_loopback_host(at->host))
      log(log_level::warn,
          "workers join at {} without TLS: the token proves who joins, but tasks and results cross the network "
          "readable (options::tls, dx/tls.hpp)",
          endpoint_);
  }
  ticker_ = std::thread([this] { tick(); });
  if (opts_.head_runs_tasks()) {
    worker_config wc = worker_template();
    wc.name = "head";
    wc.head_key = head_key_;
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

worker_config head_impl::worker_template() const {
  worker_config wc;
  wc.connect = endpoint_;
  wc.token = token_;
  wc.transport = opts_.transport();
  wc.max_frame_size = opts_.max_frame_size();
  wc.max_value_size = opts_.max_value_size();
  wc.threads = opts_.threads_per_process();
  wc.tls = opts_.tls();
  return wc;
}

void head_impl::shutdown() {
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
  stop_processes(children, std::chrono::milliseconds(3000));
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
    if (t.future && !t.delivered && phase_locked(id) == sched::phase::done) {
      if (t.future->state().try_add_ref())
        d.errors.emplace_back(
            t.future, make_error(error_kind::cancelled, "the cluster was destroyed before the result was fetched"));
      t.delivered = true;
    }
  lock.unlock();
  d.run();
}

void head_impl::submit(const task_options& opts, const remote_function& fn, std::vector<remote_arg>&& args,
                       remote_result& result) {
  result.head = shared_from_this();
  result.state().set_executor(local_.impl());
  std::vector<local_dep*> local_deps;
  deferred d;
  // Checked before anything is recorded: a bad replication throws dx::error to the caller.
  std::shared_ptr<replica_set> replicas =
      opts.replication || opts.deadlines ? replica_set_for(opts, fn, opts.kind.empty() ? fn.name : opts.kind) : nullptr;
  {
    std::lock_guard lock(mutex_);
    const std::uint64_t id = next_task_++;
    result.task_id = id;
    task_entry& t = tasks_[id];
    if (replicas) {
      replicas->task = id;
      t.replicas = std::move(replicas);
    }
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
    std::uint64_t failed_input = 0;
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
      // from the head's copy, like a local future; so is one converted to the parameter's type.
      const bool by_reference = !a.by_value && known != tasks_.end() &&
                                !(phase_locked(known->first) == sched::phase::done && !available_locked(known->second));
      if (by_reference) {
        task_entry& in = tasks_[rr->task_id];
        t.args[i].ref = in.id;
        spec.inputs.push_back(in.id);
        ++in.lineage_refs;
        if (is_unsuccessful_locked(in.id)) {
          if (!failed) failed_input = in.id;
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
    if (opts.timeout.count() > 0) start_limit_locked(t, opts.timeout);
    if (opts.retries_enabled()) t.retries = opts.retries;
    if (failed) {
      // Dependencies registered above stay counted until the local ones fire.
      fail_after_input_locked(id, tasks_.at(failed_input), d);
    } else if (spec.input_bytes > opts_.max_value_size()) {
      // Over the limit already without the message around them: this task fails alone, at once.
      const std::string why = fmt::format(
          "the arguments of task {} ({}) are {} bytes: over the value limit of {} bytes (options::max_value_size)", id,
          t.function, spec.input_bytes, opts_.max_value_size());
      log(log_level::warn, "{}", why);
      for (arg_slot& a : t.args) std::string().swap(a.bytes);
      fail_locked(id, make_error(error_kind::generic, why), d);
    } else if (t.deps_pending == 0) {
      make_ready_locked(t);
      dispatch_locked(d);
    }
  }
  d.run();
  for (auto* n : local_deps) n->state->on_ready(n);
}

void head_impl::local_dep_fired(std::uint64_t task, std::size_t arg, std::string bytes, std::exception_ptr error) {
  deferred d;
  {
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(task);
    if (it == tasks_.end()) return;
    task_entry& t = it->second;
    t.args[arg].pending_local = false;
    t.args[arg].bytes = std::move(bytes);
    if (is_unsuccessful_locked(task)) return;
    if (error) {
      // A cancelled input cancels the task (its own outcome); any other error fails it.
      bool input_cancelled = false;
      try {
        std::rethrow_exception(error);
      } catch (const cancelled&) {
        input_cancelled = true;
      } catch (...) {
      }
      if (input_cancelled) {
        stop_locked(task, error, false, d);
      } else {
        fail_locked(task, error, d);
      }
    } else if (--t.deps_pending == 0 && phase_locked(task) == sched::phase::waiting) {
      make_ready_locked(t);
      dispatch_locked(d);
    }
  }
  d.run();
}

void head_impl::request_value(std::uint64_t task) noexcept {
  deferred d;
  {
    std::lock_guard lock(mutex_);
    auto it = tasks_.find(task);
    if (it == tasks_.end()) return;
    task_entry& t = it->second;
    if (t.demanded) return;
    t.demanded = true;
    if (phase_locked(task) == sched::phase::done) deliver_locked(t, d);
  }
  d.run();
}

bool head_impl::stop(std::uint64_t task, std::exception_ptr outcome) noexcept {
  deferred d;
  bool stopped = false;
  {
    std::lock_guard lock(mutex_);
    stopped = stop_locked(task, std::move(outcome), false, d);
    if (stopped) dispatch_locked(d);  // tells the worker, and fills the slot it freed
  }
  d.run();
  return stopped;
}

void head_impl::released(std::uint64_t task) noexcept {
  std::lock_guard lock(mutex_);
  auto it = tasks_.find(task);
  if (it == tasks_.end()) return;
  task_entry& t = it->second;
  t.future = nullptr;
  maybe_release_data_locked(t);
  unref_locked(t.id);
  flush_releases_locked();
}

dx::forecast head_impl::forecast() const {
  std::lock_guard lock(mutex_);
  const sched::forecast_result r = sched_->forecast(now_seconds());
  dx::forecast f;
  f.remaining_seconds = r.remaining_seconds;
  f.remaining_sd = r.remaining_sd;
  f.lower_bound_seconds = r.lower_bound;
  f.tasks_left = r.tasks_left;
  f.bottleneck = r.bottleneck;
  f.critical_path = r.critical_path;
  f.calibrated = r.uncalibrated_tasks == 0;
  f.uncalibrated_tasks = r.uncalibrated_tasks;
  f.uncalibrated_kinds = r.uncalibrated_kinds;
  for (const auto& w : r.workers) f.workers.push_back({w.name, w.backlog_seconds, w.queued});
  return f;
}

dx::cost_model head_impl::cost_model_snapshot() const {
  std::lock_guard lock(mutex_);
  return model_;
}

dx::prediction head_impl::predict_kind(std::string_view kind, const task_features& f, bool& known) const {
  std::lock_guard lock(mutex_);
  known = model_.calibrated(kind);
  // Learned worker factors and class averages trade off against each other, so only a prediction
  // for a worker is reliable: the average over the active workers.
  dx::prediction sum;
  sum.calibrated = true;
  std::size_t n = 0;
  for (const auto& [id, w] : workers_) {
    if (w->state != worker_state::active) continue;
    const dx::prediction p = model_.predict(kind, w->id, f);
    sum.mean += p.mean;
    sum.sd += p.sd;
    sum.calibrated = sum.calibrated && p.calibrated;
    sum.samples += p.samples;
    ++n;
  }
  if (n == 0) return model_.predict_kind(kind, f);
  sum.mean /= static_cast<double>(n);
  sum.sd /= static_cast<double>(n);
  return sum;
}

std::string head_impl::endpoint() const { return endpoint_; }

std::vector<worker_info> head_impl::workers() const {
  std::lock_guard lock(mutex_);
  std::vector<worker_info> out;
  for (const auto& [id, w] : workers_) {
    worker_info i;
    i.id = w->id;
    i.address = w->data_address;
    i.threads = w->threads;
    i.resources = w->resources;
    i.state = w->state;
    i.tasks_assigned = w->state == worker_state::gone ? 0 : sched_->sent_count(w->sid);
    i.pid = w->pid;
    i.round_trip_seconds = w->round_trip.seconds();
    i.round_trip_jitter_seconds = w->round_trip.jitter();
    if (auto r = reliability_.find(w->id); r != reliability_.end()) {
      i.reliability.valid = r->second.valid;
      i.reliability.invalid = r->second.invalid;
      i.reliability.lost = r->second.lost;
      i.reliability.late = r->second.late;
      i.reliability.consecutive_valid = r->second.consecutive_valid;
      i.reliability.quarantined = r->second.quarantined;
    }
    out.push_back(std::move(i));
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const worker_info& a, const worker_info& b) { return (a.id == "head") > (b.id == "head"); });
  return out;
}

void head_impl::wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
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

void head_impl::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_cv_.wait(lock, [&] { return unfinished_ == 0; });
}

double head_impl::now_seconds() const { return std::chrono::duration<double>(head_clock::now() - epoch_).count(); }

void head_impl::save_model_locked() {
  if (!opts_.persist_cost_model() || model_saved_) return;
  model_saved_ = true;
  save_reliability_locked();
  try {
    model_.save(model_path_);
    log(log_level::info, "cost model saved to {}", model_path_.string());
  } catch (const std::exception& e) {
    log(log_level::warn, "the cost model was not saved: {}", e.what());
  }
}

void deferred::run() {
  for (auto& [r, n] : notes) {
    r->on_note(n);
    r->state().release();
  }
  notes.clear();
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

std::shared_ptr<head_core> head_core::create(const options& opts, executor& local, dx::metrics& registry,
                                             observe::alert_center& alerts,
                                             std::shared_ptr<extension_slot> extensions) {
  auto h = std::make_shared<head_impl>(opts, local, registry, alerts, std::move(extensions));
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

bool remote_result::stop_remote(std::exception_ptr outcome) noexcept {
  return head && head->stop(task_id, std::move(outcome));
}

}  // namespace dx::detail
