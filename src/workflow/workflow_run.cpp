// dx::workflow_run and the cluster's part in it: starting a run, resuming one, listing the runs of
// a journal. The engine behind a run is run_engine.
#include <dx/cluster.hpp>
#include <dx/workflow_run.hpp>

#include "workflow/run_engine.hpp"

#include <filesystem>

namespace dx {

namespace {

std::shared_ptr<detail::run_journal> journal_for(const run_options& opts) {
  if (!opts.journaled) return nullptr;
  return detail::run_journal::at(opts.journal);
}

detail::workflow_host& host_of(cluster& cl) {
  auto ext = detail::cluster_extensions::get_or_make(cl, [] { return std::make_shared<detail::workflow_host>(); });
  return static_cast<detail::workflow_host&>(*ext);
}

workflow_status parse_run_status(const std::string& s) {
  return parse_workflow_status(s).value_or(workflow_status::created);
}

}  // namespace

workflow_run cluster::start(const workflow& wf) { return start(wf, run_options{}); }

workflow_run cluster::start(const workflow& wf, const run_options& opts) {
  auto e = detail::run_engine::create(*this, wf, journal_for(opts));
  host_of(*this).add(e);
  e->start();
  return workflow_run(std::move(e));
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
  if (!std::filesystem::exists(path)) return out;  // no run was ever recorded there
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

workflow_run workflow_run::resume(cluster& cl, std::string_view id, const run_options& opts) {
  if (!opts.journaled) detail::throw_error(detail::error_kind::workflow, "a run without a journal cannot be resumed");
  auto e = detail::run_engine::resume(cl, id, detail::run_journal::at(opts.journal));
  host_of(cl).add(e);
  e->start();
  return workflow_run(std::move(e));
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
