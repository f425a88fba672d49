// One workflow run: steps become dx tasks once their dependencies succeeded (a counter per step),
// a failure skips what depends on it, and every change goes to the run's journal (results
// included), so a resumed run starts from what was committed. Splits and aggregates are in
// run_split.cpp, the submission of tasks in run_submit.cpp.
#include "workflow/run_engine.hpp"

#include "cluster/cluster_access.hpp"
#include "common/log.hpp"
#include "common/unix_time.hpp"
#include "journal/result_store.hpp"
#include "workflow/run_status.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <future>
#include <tuple>

namespace dx::detail {

// ---- creating and resuming -------------------------------------------------------------------------

run_engine::run_engine(cluster& cl, std::shared_ptr<run_journal> writer)
    : cl_(cl), head_(cluster_access::head(cl)), journal_(std::move(writer)) {}

void run_engine::load_steps(const workflow& wf) {
  steps_ = wf.steps();
  runs_.resize(steps_.size());
  step_index_.reserve(steps_.size());
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    step_index_[steps_[i].name] = i;
    runs_[i].task = add_task(steps_[i].name, i);
  }
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    for (const auto& d : steps_[i].depends_on) {
      runs_[step_index_.at(d)].dependents.push_back(i);
      ++runs_[i].unmet;
    }
  }
}

std::size_t run_engine::add_task(std::string key, std::size_t step) {
  task& t = tasks_.emplace_back();
  t.key = std::move(key);
  t.step = step;
  t.id = tasks_.size() - 1;
  return t.id;
}

std::shared_ptr<run_engine> run_engine::create(cluster& cl, const workflow& wf, std::shared_ptr<run_journal> writer) {
  std::shared_ptr<run_engine> e(new run_engine(cl, std::move(writer)));
  // steps() validates as it resolves (it throws what validate() would): one analysis, not two.
  e->load_steps(wf);
  e->name_ = wf.name();
  e->created_ms_ = e->updated_ms_ = unix_ms_now();
  if (e->journal_) {
    // The run exists, durably, before any of its tasks runs; a journal that cannot take it fails
    // the start. Its tasks' first records follow in the next group (a resume takes a task with
    // no record for a PENDING one), where a task that also runs and ends has its row written once.
    const std::string definition = wf.to_json(-1);
    e->journal_->change_now([&](journal& j) { e->id_ = j.create_run(wf.name(), definition); });
    std::vector<std::string> keys;
    keys.reserve(e->tasks_.size());
    for (const task& t : e->tasks_) keys.push_back(t.key);
    e->journal_->change([run = e->id_, keys = std::move(keys)](journal& j) {
      task_record r;
      r.status = "PENDING";
      for (const auto& key : keys) {
        r.key = key;
        j.record_new(run, r);
      }
    });
  } else {
    e->id_ = fmt::format("r-unjournaled-{}", static_cast<const void*>(e.get()));
  }
  return e;
}

std::shared_ptr<run_engine> run_engine::resume(cluster& cl, std::string_view id, std::shared_ptr<run_journal> writer) {
  run_record run;
  writer->read([&](journal& j) { run = j.run(id); });
  // A run that failed or was cancelled runs again what did not succeed; one that succeeded has
  // nothing left to run.
  if (run.status == "SUCCEEDED")
    throw_error(error_kind::workflow, fmt::format("run {} ended {}: there is nothing to resume", run.id, run.status));
  // The tasks' records are read (on a thread of their own) while the definition is analysed here:
  // the two take about as long, and nothing else runs yet. Nothing changes the run meanwhile: its
  // head is gone, and this process is the journal's one writer.
  using task_map = std::unordered_map<std::string, task_record>;
  auto records = std::async(std::launch::async, [&writer, id = run.id] {
    run_state state;
    writer->read([&](journal& j) { state = j.load(id); });
    auto tasks = std::make_shared<task_map>();
    tasks->reserve(state.tasks.size());
    for (auto& t : state.tasks) tasks->emplace(t.key, std::move(t));
    return std::make_pair(std::move(tasks), std::make_shared<run_state>(std::move(state)));
  });
  std::shared_ptr<run_engine> e;
  std::shared_ptr<const workflow> wf;
  try {
    // Not from_json: load_steps' steps() checks the definition as from_json would (against this
    // process's registry), and one analysis of a large workflow is what a resume waits for.
    wf = std::make_shared<const workflow>(workflow::parse(run.definition));
    e.reset(new run_engine(cl, writer));
    e->id_ = run.id;
    e->name_ = run.name;
    e->created_ms_ = run.created_ms;
    e->updated_ms_ = unix_ms_now();
    e->load_steps(*wf);
  } catch (...) {
    records.wait();  // it reads `writer`
    throw;
  }
  auto [tasks, state] = records.get();
  e->resumed_ = std::move(*tasks);
  // Freeing the definition's JSON and the records read (a tenth of a second for 100,000 steps)
  // waits until the first tasks are sent.
  e->leftovers_ = std::make_shared<std::tuple<std::shared_ptr<const workflow>, std::shared_ptr<run_state>, run_record>>(
      std::move(wf), std::move(state), std::move(run));
  return e;
}

// ---- scheduling ------------------------------------------------------------------------------------

run_engine::~run_engine() {
  bool watching = false;
  {
    std::lock_guard lock(mutex_);
    watching = std::exchange(watching_, false);
  }
  if (watching) journal_->unwatch(id_);
}

void run_engine::retire() {
  bool watching = false;
  {
    std::lock_guard lock(mutex_);
    retired_ = true;
    stopping_ = true;
    events_.reset();
    watching = std::exchange(watching_, false);
  }
  if (watching) journal_->unwatch(id_);  // outside the lock: a request being answered takes it
}

void run_engine::publish_to(std::shared_ptr<run_event_feed> feed) {
  std::lock_guard lock(mutex_);
  events_ = std::move(feed);
  shared_id_ = std::make_shared<const std::string>(id_);
}

void run_engine::start() {
  if (journal_) {
    {
      std::lock_guard lock(mutex_);
      watching_ = true;
    }
    // Another process asks through the journal (dx cancel); the journal's committing thread
    // calls this, holding none of its locks.
    journal_->watch(id_, [weak = weak_from_this()](const std::string& what) -> std::string {
      auto e = weak.lock();
      if (!e) return "not running: its head let it go";
      if (what != "cancel") return fmt::format("not understood: '{}' (this dx takes 'cancel')", what);
      if (e->cancel()) return "cancelled";
      return fmt::format("not running: it is {}", to_string(e->status()));
    });
  }
  {
    std::lock_guard lock(mutex_);
    set_run_status_locked(workflow_status::running);
    for (std::size_t i = 0; i < steps_.size(); ++i)
      if (runs_[i].unmet == 0) ready_.push_back(i);
    pumping_ = true;  // the first slice here, the rest by a pump task (see send_queued)
    launch_ready_locked(true);
    finish_if_done_locked();
  }
  send_queued();
  leftovers_.reset();
  {
    std::lock_guard lock(mutex_);
    if (ready_.empty() || stopping_) {
      pumping_ = false;
      return;
    }
  }
  hand_pump_over();
}

void run_engine::launch_ready_locked(bool pump) {
  if (launching_) return;         // the loop below, further up the stack, takes what was added
  if (pumping_ && !pump) return;  // the thread in send_queued's pump takes it in order
  launching_ = true;
  // A slice at a time: send_queued submits it and comes back for the next, so the first tasks of a
  // large run reach the workers while the rest are still being launched. A slice is launch_slice
  // submissions, or 16 times as many steps when most submit nothing (finished before a resume,
  // cached), which cost little.
  const std::size_t queued_before = queued_.size();
  for (std::size_t n = 0;
       queued_.size() - queued_before < launch_slice && n < 16 * launch_slice && !ready_.empty() && !stopping_; ++n) {
    const std::size_t step = ready_.front();
    ready_.pop_front();
    if (tasks_[runs_[step].task].status == task_status::pending) launch_locked(step);
  }
  launching_ = false;
}

void run_engine::step_ended_locked(std::size_t first) {
  // A worklist rather than recursion: a failure skips every step downstream, however deep.
  std::vector<std::size_t> work{first};
  while (!work.empty()) {
    const std::size_t step = work.back();
    work.pop_back();
    step_run& r = runs_[step];
    if (r.ended) continue;
    r.ended = true;
    ++ended_steps_;
    const task& t = tasks_[r.task];
    if (succeeded(t.status)) {
      for (std::size_t d : r.dependents)
        if (--runs_[d].unmet == 0) ready_.push_back(d);
      continue;
    }
    ++failed_steps_;
    const std::string why =
        fmt::format("step '{}' {}", steps_[step].name, t.status == task_status::failed ? "failed" : "did not run");
    for (std::size_t d : r.dependents) {
      task& dt = tasks_[runs_[d].task];
      if (dt.status != task_status::pending) continue;
      dt.status = task_status::skipped;
      dt.error = why;
      journal_task_locked(dt, why);
      work.push_back(d);
    }
  }
  launch_ready_locked();
}

bool run_engine::reuse_resumed_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  task& t = tasks_[runs_[step].task];
  // Finished before the head stopped: its result is in the journal, read when something needs it.
  // A split step is planned again instead, reloading the chunks that finished.
  auto r = resumed_.find(t.key);
  if (r == resumed_.end() || s.split || !r->second.result) return false;
  if (r->second.status != "SUCCEEDED" && r->second.status != "CACHED") return false;
  t.status = r->second.status == "CACHED" ? task_status::cached : task_status::succeeded;
  t.counted_end = true;  // it ended before the resume, not here
  changed_locked();
  t.result_in_journal = true;
  t.attempts = static_cast<std::uint32_t>(r->second.attempts);
  t.assigned_to = r->second.assigned_to;
  t.cache_key = r->second.cache_key;
  return true;
}

void run_engine::launch_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  const std::size_t k = runs_[step].task;
  if (reuse_resumed_locked(step)) {
    step_ended_locked(step);
    return;
  }
  try {
    if (s.split) {
      plan_split_locked(step);
      return;
    }
    if (s.aggregate) {
      launch_aggregate_locked(step);
      return;
    }
    if (try_cache_locked(step)) return;
    if (!s.command.empty()) {
      submit_locked(k, "dx.command", {command_args_locked(s, nullptr)}, s.options);
    } else {
      submit_locked(k, s.function, function_args_locked(s, nullptr), s.options);
    }
  } catch (const lost_result& lost) {
    // An input that finished before the resume cannot be read back: its step runs again, and
    // this one waits for it.
    task& in = tasks_[runs_[lost.step].task];
    log(log_level::warn, "workflow run {}: the result of step '{}' is lost from the journal; it runs again", id_,
        in.key);
    in.status = task_status::pending;
    changed_locked();
    in.result_in_journal = false;
    in.result.reset();
    runs_[lost.step].ended = false;
    --ended_steps_;
    for (std::size_t d : runs_[lost.step].dependents) ++runs_[d].unmet;
    resumed_.erase(in.key);
    ready_.push_back(lost.step);
    launch_ready_locked();
  } catch (const std::exception& e) {
    task_failed_locked(k, e.what(), task_status::failed);
  }
}

const std::string* run_engine::result_locked(std::size_t k) {
  task& t = tasks_[k];
  if (t.result) return &*t.result;
  if (!t.result_in_journal || !journal_) return nullptr;
  std::optional<std::string> bytes;
  try {
    journal_->read([&](journal& j) { bytes = j.result(id_, t.key); });
  } catch (const std::exception& e) {
    log(log_level::warn, "workflow run {}: {}", id_, e.what());
  }
  if (!bytes) {
    if (runs_[t.step].task == k) throw lost_result{t.step};
    return nullptr;
  }
  t.result = std::move(*bytes);
  t.result_in_journal = false;
  return &*t.result;
}

// ---- outcomes --------------------------------------------------------------------------------------

bool run_engine::outcome_current_locked(std::size_t k, std::uint64_t sending, state_base*& drop) {
  if (k >= tasks_.size() || tasks_[k].sending != sending) return false;
  const task_status now = tasks_[k].status;
  if (now != task_status::ready && now != task_status::running && now != task_status::retrying) return false;
  drop = std::exchange(tasks_[k].running, nullptr);
  --in_flight_;
  return true;
}

void run_engine::finished(std::size_t k, std::uint64_t sending, std::string bytes, const std::string& worker,
                          double seconds) {
  state_base* drop = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (!outcome_current_locked(k, sending, drop)) return;
    if (!worker.empty()) tasks_[k].assigned_to = worker;
    attempt_event_locked(tasks_[k], false, true);
    if (!stopping_) {
      if (drop && drop->is_ready() && drop->has_error()) {
        // On the local threads, a time limit settles the future while the call may still end
        // well: the limit decides.
        task_failed_locked(k, describe(drop->error()), task_status::failed);
      } else {
        if (tasks_[k].chunk >= 0) chunk_measured_locked(k, seconds);
        task_succeeded_locked(k, std::move(bytes));
        launch_ready_locked();
      }
    }
    finish_if_done_locked();
  }
  if (drop) drop->release();
  send_queued();
}

void run_engine::failed(std::size_t k, std::uint64_t sending, std::exception_ptr e) {
  state_base* drop = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (!outcome_current_locked(k, sending, drop)) return;
    task& t = tasks_[k];
    attempt_event_locked(t, false, false);
    if (!stopping_ || status_ == workflow_status::cancelled) {
      bool was_cancel = false;
      try {
        std::rethrow_exception(e);
      } catch (const remote_error& r) {
        t.assigned_to = r.worker();
      } catch (const cancelled&) {
        was_cancel = true;
      } catch (...) {
      }
      task_failed_locked(k, describe(e), was_cancel ? task_status::cancelled : task_status::failed);
    }
    finish_if_done_locked();
  }
  if (drop) drop->release();
  send_queued();
}

void run_engine::sent(std::size_t k, std::uint64_t sending, std::uint32_t attempt, const std::string& worker) {
  std::lock_guard lock(mutex_);
  if (k >= tasks_.size() || tasks_[k].sending != sending) return;
  task& t = tasks_[k];
  if (t.status != task_status::ready && t.status != task_status::running && t.status != task_status::retrying) return;
  const bool changed = t.status != task_status::running || t.assigned_to != worker;
  t.assigned_to = worker;
  t.attempts = std::max(t.attempts, t.attempts_before + attempt);
  changed_locked();
  t.status = task_status::running;
  attempt_event_locked(t, true, true);
  if (changed) journal_task_locked(t);
}

void run_engine::retrying(std::size_t k, std::uint64_t sending, std::uint32_t attempt, const std::string& worker,
                          const std::string& why) {
  std::lock_guard lock(mutex_);
  if (k >= tasks_.size() || tasks_[k].sending != sending) return;
  task& t = tasks_[k];
  if (t.status != task_status::running && t.status != task_status::ready) return;
  t.status = task_status::retrying;
  t.attempts = std::max(t.attempts, t.attempts_before + attempt);
  t.assigned_to = worker;
  t.error = why;
  journal_task_locked(t, why);
}

void run_engine::task_succeeded_locked(std::size_t k, std::string bytes) {
  task& t = tasks_[k];
  t.status = task_status::succeeded;
  t.error.clear();
  t.result = std::move(bytes);
  const std::size_t step = t.step;
  if (runs_[step].task != k) {                   // a subtask of a split or an aggregate
    if (t.chunk >= 0) journal_result_locked(t);  // reductions are recomputed from the chunks on resume
    journal_task_locked(t);
    subtask_succeeded_locked(k);
    return;
  }
  if (steps_[step].cache) {
    try {
      t.cache_key = cache_key_locked(step);
    } catch (...) {  // an input no longer readable: the result is kept, not offered to caches
      t.cache_key.clear();
    }
  }
  journal_result_locked(t);
  journal_task_locked(t);
  step_ended_locked(step);
}

void run_engine::step_done_locked(std::size_t step) {
  task& t = tasks_[runs_[step].task];
  const workflow_step& s = steps_[step];
  t.status = task_status::succeeded;
  if (s.cache && !s.split) {
    try {
      t.cache_key = cache_key_locked(step);
    } catch (...) {
      t.cache_key.clear();
    }
  }
  if (t.result) journal_result_locked(t);
  journal_task_locked(t);
  step_ended_locked(step);
}

void run_engine::task_failed_locked(std::size_t k, const std::string& why, task_status how) {
  task& t = tasks_[k];
  t.status = how;
  t.error = why;
  journal_task_locked(t, why);
  const std::size_t step = t.step;
  if (runs_[step].task == k) {
    step_ended_locked(step);
    return;
  }
  // A subtask failed: its step fails with it.
  task& parent = tasks_[runs_[step].task];
  if (parent.status == task_status::running) {
    parent.status = how;
    parent.error = fmt::format("{}: {}", t.key, why);
    journal_task_locked(parent, parent.error);
    step_ended_locked(step);
  }
}

void run_engine::finish_if_done_locked() {
  if (in_flight_ > 0 || status_ == workflow_status::succeeded || status_ == workflow_status::failed) return;
  if (status_ == workflow_status::cancelled || status_ == workflow_status::interrupted) {
    done_cv_.notify_all();
    return;
  }
  if (ended_steps_ < steps_.size()) {
    if (!ready_.empty() || launching_) return;
    // Nothing runs and nothing can start, yet steps have not ended: they wait on what will not
    // come. They fail rather than leave the run hanging.
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      task& t = tasks_[runs_[i].task];
      if (ended(t.status)) continue;
      log(log_level::error, "workflow run {}: step '{}' is {} with nothing left to run it", id_, t.key,
          to_string(t.status));
      t.status = task_status::failed;
      t.error = "it could not be run (nothing was left to run it)";
      journal_task_locked(t, t.error);
      if (!runs_[i].ended) {
        runs_[i].ended = true;
        ++ended_steps_;
        ++failed_steps_;
      }
    }
  }
  set_run_status_locked(failed_steps_ > 0 ? workflow_status::failed : workflow_status::succeeded);
  if (journal_) journal_->flush();
  done_cv_.notify_all();
}

void run_engine::changed_locked() {
  ++version_;
  updated_ms_ = unix_ms_now();
}

void run_engine::set_run_status_locked(workflow_status s, const std::string& detail) {
  status_ = s;
  changed_locked();
  if (retired_) return;
  if (events_ && events_->wanted()) {
    run_event e;
    e.kind = run_event::type::run;
    e.status = static_cast<std::uint8_t>(s);
    e.run = shared_id_;
    events_->push(std::move(e));
  }
  if (journal_)
    journal_->change(
        [run = id_, status = std::string(to_string(s)), detail](journal& j) { j.set_run_status(run, status, detail); });
}

void run_engine::attempt_event_locked(const task& t, bool start, bool ok) {
  if (!events_ || !events_->wanted()) return;
  run_event e;
  e.kind = start ? run_event::type::attempt_start : run_event::type::attempt_end;
  e.ok = ok;
  e.attempts = t.attempts;
  e.run = shared_id_;
  e.key = t.key;
  e.worker = t.assigned_to;
  events_->push(std::move(e));
}

void run_engine::journal_task_locked(task& t, const std::string& detail) {
  changed_locked();
  if (events_ && events_->wanted()) {
    run_event e;
    e.kind = run_event::type::task;
    e.status = static_cast<std::uint8_t>(t.status);
    e.attempts = t.attempts;
    e.run = shared_id_;
    e.key = t.key;
    e.worker = t.assigned_to;
    if (!t.error.empty() && !succeeded(t.status)) e.error = t.error;
    events_->push(std::move(e));
  }
  if (ended(t.status) && !t.counted_end) {
    t.counted_end = true;
    if (counters_) counters_->finished[static_cast<std::size_t>(t.status)].fetch_add(1, std::memory_order_relaxed);
  }
  if (!journal_ || retired_) return;
  const std::size_t k = t.id;
  task_record r;
  r.key = t.key;
  r.status = std::string(to_string(t.status));
  r.attempts = t.attempts;
  r.assigned_to = t.assigned_to;
  r.is_subtask = runs_[t.step].task != k;
  r.parent = r.is_subtask ? steps_[t.step].name : std::string();
  r.error = t.error;
  r.cache_key = t.cache_key;
  r.progress = progress_locked(k);
  if (t.chunk >= 0 && steps_[t.step].split) r.parameters = fmt::format(R"({{"start":{},"end":{}}})", t.first, t.last);
  if (succeeded(t.status) && !t.cache_key.empty()) journal_->remember_cache_key(t.cache_key);
  journal_->change([run = id_, r = std::move(r), detail](journal& j) { j.record(run, r, detail); });
}

void run_engine::journal_result_locked(const task& t) {
  if (!journal_ || retired_ || !t.result) return;
  journal_->change([run = id_, key = t.key, bytes = *t.result](journal& j) { j.store_result(run, key, bytes); });
}

double run_engine::progress_locked(std::size_t k) const {
  const task& t = tasks_[k];
  if (succeeded(t.status)) return 1;
  const step_run& sr = runs_[t.step];
  if (sr.task != k || sr.subtasks.empty()) return 0;
  if (steps_[t.step].split && sr.cut.total > 0)  // the share of the range (or items) done
    return static_cast<double>(sr.done_positions) / static_cast<double>(sr.cut.total);
  return static_cast<double>(sr.done) / static_cast<double>(sr.subtasks.size());
}

std::string run_engine::cache_key_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  std::string material = s.hash;
  for (const auto& d : s.depends_on) {
    const std::size_t k = runs_[step_index_.at(d)].task;
    task& in = tasks_[k];
    if (in.result_hash.empty()) {
      if (in.result_in_journal && !in.result) {
        if (auto r = resumed_.find(in.key); r != resumed_.end() && r->second.result)
          in.result_hash = r->second.result->sha256;
      }
      if (in.result_hash.empty()) {
        const std::string* bytes = result_locked(k);
        in.result_hash = bytes ? sha256_hex(*bytes) : std::string("-");
      }
    }
    material += '|';
    material += in.result_hash;
  }
  return sha256_hex(material);
}

bool run_engine::try_cache_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  if (!journal_ || !s.cache) return false;
  const std::string key = cache_key_locked(step);
  // New work, as a rule: known not to be in the journal without asking it (a query, and a wait
  // while a group is committed).
  if (!journal_->may_hold_cache_key(key)) return false;
  std::optional<std::string> bytes;
  try {
    journal_->read([&](journal& j) {
      if (auto ref = j.cached(key)) bytes = j.result(ref->run, ref->key);
    });
  } catch (const std::exception&) {
    bytes.reset();  // a lost cached result: the step runs
  }
  if (!bytes) return false;
  task& t = tasks_[runs_[step].task];
  t.status = task_status::cached;
  t.result = std::move(*bytes);
  t.cache_key = key;
  journal_result_locked(t);
  journal_task_locked(t);
  step_ended_locked(step);
  return true;
}

// ---- control and views -----------------------------------------------------------------------------

bool run_engine::interrupt() {
  std::vector<state_base*> stop;
  {
    std::lock_guard lock(mutex_);
    if (status_ != workflow_status::running) return false;
    stopping_ = true;
    set_run_status_locked(workflow_status::interrupted, "the cluster stopped");
    // Running tasks stay RUNNING in the journal (a resume runs them again); their work is
    // stopped so that the cluster need not wait for it, and their outcomes are ignored.
    for (task& t : tasks_) {
      if (!t.running) continue;
      t.running->add_ref();
      stop.push_back(t.running);
    }
    if (journal_) journal_->flush();
  }
  for (state_base* s : stop) {
    s->request_stop(make_error(error_kind::cancelled, "the workflow run was interrupted"));
    s->release();
  }
  std::lock_guard lock(mutex_);
  done_cv_.notify_all();
  return true;
}

bool run_engine::cancel() {
  std::vector<state_base*> stop;
  {
    std::lock_guard lock(mutex_);
    if (status_ != workflow_status::running) return false;
    stopping_ = true;
    status_ = workflow_status::cancelled;
    for (task& t : tasks_) {
      if (t.status == task_status::pending) {
        t.status = task_status::cancelled;
        journal_task_locked(t);
      } else if (t.running) {
        t.running->add_ref();
        stop.push_back(t.running);
      }
    }
    set_run_status_locked(workflow_status::cancelled);
  }
  // Outside the lock: stopping a task settles its future, which reports here.
  for (state_base* s : stop) {
    s->request_stop(make_error(error_kind::cancelled, "the workflow run was cancelled"));
    s->release();
  }
  std::lock_guard lock(mutex_);
  finish_if_done_locked();
  if (journal_) journal_->flush();
  done_cv_.notify_all();
  return true;
}

workflow_status run_engine::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

bool run_engine::has_ended() const {
  std::lock_guard lock(mutex_);
  return status_ != workflow_status::running && status_ != workflow_status::created && in_flight_ == 0;
}

std::vector<task_state> run_engine::tasks() const {
  std::lock_guard lock(mutex_);
  std::vector<task_state> out;
  out.reserve(tasks_.size());
  for (std::size_t k = 0; k < tasks_.size(); ++k) out.push_back(task_view_locked(k));
  return out;
}

workflow_status run_engine::wait() const {
  std::unique_lock lock(mutex_);
  done_cv_.wait(lock, [&] {
    return status_ != workflow_status::running && status_ != workflow_status::created && in_flight_ == 0;
  });
  return status_;
}

bool run_engine::wait_for(std::chrono::nanoseconds d) const {
  std::unique_lock lock(mutex_);
  return done_cv_.wait_for(lock, d, [&] {
    return status_ != workflow_status::running && status_ != workflow_status::created && in_flight_ == 0;
  });
}

std::string run_engine::result_bytes(std::string_view step) {
  std::lock_guard lock(mutex_);
  auto it = step_index_.find(std::string(step));
  if (it == step_index_.end()) throw_error(error_kind::workflow, fmt::format("run {} has no step '{}'", id_, step));
  const std::size_t k = runs_[it->second].task;
  const task& t = tasks_[k];
  const std::string* bytes = nullptr;
  if (succeeded(t.status)) {
    try {
      bytes = result_locked(k);
    } catch (const lost_result&) {
      bytes = nullptr;
    }
  }
  if (!bytes)
    throw_error(error_kind::workflow,
                fmt::format("step '{}' of run {} has no result (it is {}{})", step, id_, to_string(t.status),
                            steps_[it->second].split ? ", a split step" : ""));
  const workflow_step& s = steps_[it->second];
  if (!s.command.empty() || (s.aggregate && !s.aggregate->command.empty())) {
    // A command's result is its standard output.
    try {
      return read_value<std::string>(std::span<const char>(bytes->data(), bytes->size()));
    } catch (...) {
    }
  }
  return *bytes;
}

}  // namespace dx::detail
