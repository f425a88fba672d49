// dx::cluster: the local executor, and a head when the options ask for workers; the metrics
// registry and the alerts of either.
#include <dx/cluster.hpp>
#include <dx/task_graph.hpp>

#include "cluster/cluster_alerts.hpp"
#include "cluster/cluster_extension.hpp"
#include "cluster/head.hpp"
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
}  // namespace

cluster::cluster() : cluster(options{}) {}

cluster::cluster(const options& opts)
    : options_(opts),
      metrics_(std::make_unique<dx::metrics>()),
      local_(std::make_unique<executor>(local_threads(opts))),
      alerts_(std::make_unique<detail::cluster_alerts>(*metrics_, opts.heartbeat_interval())) {
  detail::init_log_from_environment();  // a bad DX_LOG is reported as the cluster starts
  if (opts.distributed()) {
    become_worker_if_spawned();
    head_ = detail::head_core::create(opts, *local_, *metrics_, alerts_->center());
  }
}

cluster::~cluster() {
  if (extension_) extension_->shutdown();
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

std::shared_ptr<detail::cluster_extension> detail::cluster_extensions::get_or_make(
    cluster& cl, const std::function<std::shared_ptr<cluster_extension>()>& make) {
  std::lock_guard lock(cl.extension_mutex_);
  if (!cl.extension_) cl.extension_ = make();
  return cl.extension_;
}

}  // namespace dx
