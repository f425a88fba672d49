// dx::workflow_run and the cluster's part in it: starting a run, resuming one, listing the runs of
// a journal. The engine behind a run is run_engine.
#include <dx/cluster.hpp>
#include <dx/workflow_run.hpp>

#include "workflow/run_engine.hpp"

#include <fmt/format.h>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <thread>

namespace dx {

namespace {

detail::workflow_host& host_of(cluster& cl) {
  auto ext = detail::cluster_extensions::get_or_make(
      cl, [](cluster& c) { return std::make_shared<detail::workflow_host>(c); });
  return static_cast<detail::workflow_host&>(*ext);
}

workflow_status parse_run_status(const std::string& s) {
  return parse_workflow_status(s).value_or(workflow_status::created);
}

}  // namespace

workflow_run cluster::start(const workflow& wf) { return start(wf, run_options{}); }

workflow_run cluster::start(const workflow& wf, const run_options& opts) {
  return workflow_run(host_of(*this).start(wf, opts));
}

std::vector<run_summary> cluster::runs() const { return runs(run_options{}); }

namespace {

run_summary summary_of(const detail::run_record& r) {
  return run_summary{r.id, r.name, parse_run_status(r.status), r.created_ms, r.updated_ms};
}

/// The journal opened for reading only: a head may be writing it meanwhile.
std::unique_ptr<detail::journal> reader(const run_options& opts) {
  return detail::journal::open(detail::resolve_journal_path(opts.journal), detail::journal::open_mode::read_only);
}

}  // namespace

std::vector<run_summary> cluster::runs(const run_options& opts) const {
  std::vector<run_summary> out;
  if (!opts.journaled) return out;
  const auto path = detail::resolve_journal_path(opts.journal);
  // A file that does not exist: no run was ever recorded there (a Redis journal is asked).
  if (!detail::is_redis_location(path.native()) && !std::filesystem::exists(path)) return out;
  for (const auto& r : reader(opts)->runs()) out.push_back(summary_of(r));
  return out;
}

run_summary workflow_run::recorded(std::string_view id, const run_options& opts, std::vector<task_state>* tasks) {
  const detail::run_state state = reader(opts)->load(id);
  if (tasks) {
    tasks->clear();
    for (const auto& t : state.tasks) {
      task_state s;
      s.key = t.key;
      s.parent = t.parent;
      s.is_subtask = t.is_subtask;
      s.status = parse_task_status(t.status).value_or(task_status::pending);
      s.attempts = static_cast<std::uint32_t>(t.attempts);
      s.assigned_to = t.assigned_to;
      s.progress = t.progress;
      s.error = t.error;
      s.parameters = t.parameters;
      tasks->push_back(std::move(s));
    }
  }
  return summary_of(state.run);
}

namespace {

/// Whether process `pid` of this machine still runs (a zombie counts: its parent has not reaped it).
bool process_alive(std::int64_t pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

}  // namespace

cancel_answer workflow_run::request_cancel(std::string_view id, const run_options& opts,
                                           std::chrono::milliseconds wait) {
  if (!opts.journaled) detail::throw_error(detail::error_kind::workflow, "a run without a journal cannot be asked");
  const auto path = detail::resolve_journal_path(opts.journal);
  std::optional<detail::run_record> run;
  if (detail::is_redis_location(path.native()) || std::filesystem::exists(path)) run = reader(opts)->find_run(id);
  if (!run)
    detail::throw_error(detail::error_kind::workflow, fmt::format("no run {} in journal {}", id, path.string()));
  cancel_answer a;
  a.status = parse_run_status(run->status);
  auto not_running = [&](const std::string& why) {
    a.message = fmt::format("run {} is not running: {}", id, why);
    return a;
  };
  if (detail::is_finished_run_status(run->status)) return not_running("it ended " + run->status);
  if (run->status == "INTERRUPTED")
    return not_running(fmt::format("it was interrupted (its head stopped); 'dx resume {}' continues it", id));
  const std::int64_t head = run->head_pid;
  const std::string gone =
      fmt::format("its head (process {}) is gone; the next head to open the journal marks it INTERRUPTED", head);
  // A journal in Redis is shared by heads on other machines: their pids mean nothing here, and the
  // wait for an answer is all there is.
  const bool shared = detail::is_redis_location(path.native());
  const auto head_alive = [&] { return shared || process_alive(head); };
  if (!head_alive()) return not_running(gone);

  auto j = detail::journal::open(path, detail::journal::open_mode::request);
  const std::int64_t request = j->ask(id, "cancel");
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const auto r = j->request(request);
    if (r && r->answered_ms != 0) {
      if (auto now = j->find_run(id)) a.status = parse_run_status(now->status);
      a.cancelled = r->answer == "cancelled" && a.status == workflow_status::cancelled;
      a.message = a.cancelled ? fmt::format("run {} CANCELLED", id)
                              : fmt::format("run {} was not cancelled: {}", id, r->answer);
      return a;
    }
    const bool alive = head_alive();
    if (!alive || std::chrono::steady_clock::now() >= deadline) {
      const std::string why =
          alive ? fmt::format("its head (process {}) did not answer within {} ms", head, wait.count()) : gone;
      if (j->withdraw(request, why)) {
        if (auto now = j->find_run(id)) a.status = parse_run_status(now->status);
        if (!alive) return not_running(why);
        a.message = fmt::format("run {} was not cancelled: {}", id, why);
        return a;
      }
      continue;  // answered meanwhile: read the answer
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

workflow_run workflow_run::resume(cluster& cl, std::string_view id, const run_options& opts) {
  return workflow_run(host_of(cl).resume(id, opts));
}

namespace {
detail::run_engine& engine(const std::shared_ptr<detail::run_engine>& e) {
  if (!e) detail::throw_error(detail::error_kind::no_state, "an empty dx::workflow_run");
  return *e;
}
}  // namespace

const std::string& workflow_run::id() const { return engine(e_).id(); }
workflow_status workflow_run::status() const { return engine(e_).status(); }
std::vector<task_state> workflow_run::steps() const { return engine(e_).tasks(); }
workflow_status workflow_run::wait() const { return engine(e_).wait(); }
bool workflow_run::wait_for_ns(std::chrono::nanoseconds d) const { return engine(e_).wait_for(d); }
std::string workflow_run::result_bytes(std::string_view step) const { return engine(e_).result_bytes(step); }
bool workflow_run::cancel() {
  engine(e_);
  return e_->cancel();
}
bool workflow_run::interrupt() {
  engine(e_);
  return e_->interrupt();
}

}  // namespace dx
