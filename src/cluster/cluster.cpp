// dx::cluster: the local executor, and a head when the options ask for workers; the metrics
// registry and the alerts of either.
#include <dx/cluster.hpp>
#include <dx/task_graph.hpp>

#include "cluster/cluster_alerts.hpp"
#include "cluster/cluster_extension.hpp"
#include "cluster/head.hpp"
#include "cluster/mpi_launch.hpp"
#include "cluster/slurm.hpp"
#include "common/atomic_file.hpp"
#include "common/log.hpp"
#include "observe/runtime_stats.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>

namespace dx {

namespace {
std::size_t local_threads(const options& opts) {
  return opts.threads() == 0 ? executor::default_threads() : opts.threads();
}

/// A worker process started by local_processes() whose main() did not hand over to
/// dx::worker_main reaches a cluster constructor: it becomes the worker here rather than
/// starting a head (and more workers) of its own.
void become_worker_if_spawned() {
  if (!std::getenv("DX_WORKER_OF")) return;
  static char arg0[] = "dx-worker";
  static char flag[] = "--dx-worker";
  char* argv[] = {arg0, flag, nullptr};
  std::exit(worker_main(2, argv));
}

/// Under srun (a step of several tasks, see cluster/slurm.hpp), task 0's cluster is the head of
/// the others, listening where they look for it; any other task that reaches a cluster
/// constructor becomes a worker here. Settings the program gave explicitly win.
options adopt_slurm_step(const options& opts) {
  if (std::getenv("DX_WORKER_OF")) return opts;         // a worker a head started: become_worker_if_spawned
  if (detail::mpi_job_from_environment()) return opts;  // adopt_mpi_job's
  const auto step = detail::slurm_step_from_environment();
  if (!step) return opts;
  if (!step->is_head()) {
    static char arg0[] = "dx-worker";
    static char flag[] = "--dx-worker";
    char* argv[] = {arg0, flag, nullptr};
    std::exit(worker_main(2, argv));
  }
  options o = opts;
  if (o.listen().empty()) {
    const char* listen = std::getenv("DX_LISTEN");
    o.listen(listen && *listen ? std::string(listen) : fmt::format("0.0.0.0:{}", step->port));
  }
  if (o.token().empty() && o.token_file().empty()) o.token(step->token);
  if (!o.tls().enabled()) o.tls(step->tls);
  return o;
}

/// Under mpirun (an MPI job of several ranks, see cluster/mpi_launch.hpp), the head rank's
/// cluster is the head of the others over MPI; any other rank that reaches a cluster constructor
/// becomes a worker here. The transport and the address are the job's: nothing else would reach
/// the other ranks. A token the program gave wins.
options adopt_mpi_job(const options& opts) {
  if (std::getenv("DX_WORKER_OF")) return opts;
  const auto job = detail::mpi_job_from_environment();
  if (!job) return opts;
  if (!job->is_head()) {
    static char arg0[] = "dx-worker";
    char* argv[] = {arg0, nullptr};
    std::exit(worker_main(1, argv));
  }
  options o = opts;
  if (o.transport() != transport_kind::mpi || (!o.listen().empty() && !o.listen().starts_with("mpi:")))
    detail::log(detail::log_level::info, "MPI job of {} ranks: the head is rank {}, its workers the other ranks",
                job->size, job->rank);
  o.transport(transport_kind::mpi);
  o.listen(job->head_address());
  if (o.token().empty() && o.token_file().empty()) o.token(job->token);
  return o;
}

options adopt_launcher(const options& opts) { return adopt_mpi_job(adopt_slurm_step(opts)); }
}  // namespace

cluster::cluster() : cluster(options{}) {}

cluster::cluster(const options& given)
    : options_(adopt_launcher(given)),
      metrics_(std::make_unique<dx::metrics>()),
      local_(std::make_unique<executor>(local_threads(given))),
      alerts_(std::make_unique<detail::cluster_alerts>(*metrics_, given.heartbeat_interval())),
      extensions_(std::make_shared<detail::extension_slot>(*this)) {
  detail::init_log_from_environment();  // a bad DX_LOG is reported as the cluster starts
  const options& opts = options_;
  if (opts.distributed()) {
    become_worker_if_spawned();
    // Made before the HTTP endpoint opens, so that its routes answer from the first request
    // (starting a run over HTTP needs no run to have been started in C++ first).
    if (!opts.http().empty()) extensions_->get_or_make_registered();
    head_ = detail::head_core::create(opts, *local_, *metrics_, alerts_->center(), extensions_);
    // The HTTP endpoint is open already, and its routes reach this cluster's head through the
    // extension slot, under its lock: taking that lock once the head is set orders this write
    // before every request that comes after (a run started over HTTP reads head_).
    (void)extensions_->get();
    if (const auto job = detail::mpi_job_from_environment()) {
      // Every other rank joins; the program starts with all of them, or with those that came
      // within a minute (a warning names how many are missing).
      const auto expected = static_cast<std::size_t>(job->size - 1);
      try {
        wait_for_workers(expected, std::chrono::seconds(60));
      } catch (const std::exception& e) {
        detail::log(detail::log_level::warn, "MPI: {} of the job's {} worker ranks joined within 60 s: {}",
                    workers().size(), expected, e.what());
      }
    } else if (const auto step = detail::slurm_step_from_environment()) {
      // Every other task of the step joins; the program starts with all of them, or with those
      // that came within a minute (a warning names how many are missing).
      const auto expected = static_cast<std::size_t>(step->tasks - 1);
      try {
        wait_for_workers(expected, std::chrono::seconds(60));
      } catch (const std::exception& e) {
        detail::log(detail::log_level::warn, "Slurm: {} of the step's {} worker tasks joined within 60 s: {}",
                    workers().size(), expected, e.what());
      }
    }
  }
  detail::metrics_access::add_collector(
      *metrics_, [slot = std::weak_ptr<detail::extension_slot>(extensions_)](detail::exposition& out) {
        if (auto s = slot.lock())
          if (auto e = s->get()) e->collect(out);
      });
}

cluster::~cluster() {
  extensions_->shutdown();
  if (head_) head_->shutdown();
  head_.reset();
  alerts_->stop();
  local_.reset();
}

future<void> cluster::run(task_graph& g) { return local_->run(g); }

void cluster::wait_idle() {
  if (head_) head_->wait_idle();
  local_->wait_idle();
}

std::string cluster::endpoint() const { return head_ ? head_->endpoint() : std::string(); }

std::vector<worker_info> cluster::workers() const {
  if (head_) return head_->workers();
  worker_info self;
  self.id = "head";
  self.threads = local_->num_threads();
  return {self};
}

void cluster::wait_for_workers(std::size_t n, std::chrono::milliseconds timeout) {
  if (head_) {
    head_->wait_for_workers(n, timeout);
  } else if (n > 0) {
    detail::throw_error(detail::error_kind::timeout,
                        "wait_for_workers on a cluster that is not distributed: no worker can join");
  }
}

void cluster::submit_remote(const task_options& opts, const detail::remote_function& rf,
                            std::vector<detail::remote_arg>&& args, detail::remote_result& result) {
  head_->submit(opts, rf, std::move(args), result);
}

dx::forecast cluster::forecast() const { return head_ ? head_->forecast() : dx::forecast{}; }

void cluster::on_alert(std::function<void(const alert&)> callback) { alerts_->center().on_alert(std::move(callback)); }

dx::cost_model cluster::cost_model_snapshot() const { return head_ ? head_->cost_model_snapshot() : dx::cost_model{}; }

}  // namespace dx

namespace dx {

std::string cluster::http_endpoint() const { return head_ ? head_->http_endpoint() : std::string(); }

void cluster::write_trace(const std::string& path) const {
  std::string json;
  if (head_) {
    json = head_->trace_json();
  } else {
    detail::observe::write_chrome_trace({}, json);
  }
  detail::write_file_atomically(path, json);
}

void cluster::add_alert_rule(alert_rule rule) {
  alerts_->center().add_rule(std::move(rule));
  // A head evaluates the rules on its tick; without one, a thread of the alerts' own does.
  if (!head_) alerts_->evaluate_on_own_thread();
}

std::vector<alert> cluster::recent_alerts() const { return alerts_->center().recent(); }

namespace detail {

namespace {
std::mutex factory_mutex;
extension_slot::factory& registered_factory() {
  static extension_slot::factory f;
  return f;
}
}  // namespace

std::shared_ptr<cluster_extension> extension_slot::get() const {
  std::lock_guard lock(mutex_);
  return extension_;
}

std::shared_ptr<cluster_extension> extension_slot::get_or_make(const factory& make) {
  std::lock_guard lock(mutex_);
  if (!extension_ && !closed_) extension_ = make(cluster_);
  return extension_;
}

std::shared_ptr<cluster_extension> extension_slot::get_or_make_registered() {
  factory make;
  {
    std::lock_guard lock(factory_mutex);
    make = registered_factory();
  }
  if (!make) return get();
  return get_or_make(make);
}

void extension_slot::shutdown() noexcept {
  std::shared_ptr<cluster_extension> e;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    e = extension_;  // kept: what it holds lives as long as the cluster
  }
  if (e) e->shutdown();
}

void extension_slot::register_factory(factory make) {
  std::lock_guard lock(factory_mutex);
  registered_factory() = std::move(make);
}

std::shared_ptr<cluster_extension> cluster_extensions::get_or_make(cluster& cl, const extension_slot::factory& make) {
  auto e = cl.extensions_->get_or_make(make);
  if (!e) throw_error(error_kind::generic, "the cluster is stopping: nothing new can start on it");
  return e;
}

std::shared_ptr<cluster_extension> cluster_extensions::get(const cluster& cl) { return cl.extensions_->get(); }

}  // namespace detail

}  // namespace dx
