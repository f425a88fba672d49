// One workflow run: steps become dx tasks once their dependencies succeeded, split steps become a
// subtask per chunk, aggregates reduce the chunks' results level by level in chunk order, and
// every change goes to the run's journal (results included), so a resumed run starts from what
// was committed.
#include "workflow/run_engine.hpp"

#include "cluster/cluster_access.hpp"
#include "journal/result_store.hpp"
#include "workflow/arguments.hpp"
#include "workflow/workflow_impl.hpp"

#include <dx/command.hpp>
#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

namespace dx::detail {

namespace {

std::string upper(task_status s) { return std::string(to_string(s)); }

bool succeeded(task_status s) { return s == task_status::succeeded || s == task_status::cached; }
bool ended(task_status s) {
  return succeeded(s) || s == task_status::failed || s == task_status::skipped || s == task_status::cancelled;
}

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

/// A remote task's result as raw bytes: the engine stores and forwards them without decoding.
class raw_result final : public shared_state<std::string>, public remote_result {
 public:
  raw_result(std::weak_ptr<run_engine> e, std::size_t task, std::uint64_t sending)
      : engine_(std::move(e)), task_(task), sending_(sending) {
    this->lazy_ = true;
  }
  ~raw_result() override { released(); }
  void deliver(byte_view bytes) noexcept override {
    std::string copy;
    try {
      copy.assign(bytes.data(), bytes.size());
    } catch (...) {
      fail(std::current_exception());
      return;
    }
    if (!this->claim()) return;
    this->publish();
    if (auto e = engine_.lock()) e->finished(task_, sending_, std::move(copy));
  }
  void fail(std::exception_ptr e) noexcept override {
    this->set_error(e);
    if (auto en = engine_.lock()) en->failed(task_, sending_, e);
  }
  state_base& state() noexcept override { return *this; }
  bool request_stop(std::exception_ptr outcome) noexcept override {
    shared_state<std::string>::request_stop(nullptr);
    return stop_remote(std::move(outcome));
  }
  void want() noexcept { request_value(); }

 protected:
  void demand() noexcept override { request_value(); }

 private:
  std::weak_ptr<run_engine> engine_;
  std::size_t task_;
  std::uint64_t sending_;
};

std::vector<chunk> plan_chunks(const split& sp, std::size_t count) {
  std::vector<std::string> items = sp.items;
  if (sp.by == split::kind::lines) {
    std::ifstream in(sp.path);
    if (!in) throw_error(error_kind::workflow, "cannot read the lines of '" + sp.path + "'");
    for (std::string line; std::getline(in, line);) items.push_back(line);
  }
  const std::int64_t n = sp.by == split::kind::range ? std::max<std::int64_t>(0, sp.end - sp.start)
                                                     : static_cast<std::int64_t>(items.size());
  std::int64_t per = sp.chunk;
  if (count > 0) per = (n + static_cast<std::int64_t>(count) - 1) / static_cast<std::int64_t>(count);
  if (per <= 0) per = 1;
  std::vector<chunk> out;
  for (std::int64_t at = 0; at < n; at += per) {
    chunk c;
    c.start = (sp.by == split::kind::range ? sp.start : 0) + at;
    c.end = c.start + std::min(per, n - at);
    if (sp.by != split::kind::range)
      c.items.assign(items.begin() + at, items.begin() + static_cast<std::ptrdiff_t>(at + (c.end - c.start)));
    out.push_back(std::move(c));
  }
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i].index = i;
    out[i].count = out.size();
  }
  return out;
}

}  // namespace

// ---- the host --------------------------------------------------------------------------------------

void workflow_host::add(const std::shared_ptr<run_engine>& run) {
  std::lock_guard lock(mutex_);
  if (closed_) throw_error(error_kind::workflow, "the cluster is stopping: no workflow can start");
  std::erase_if(runs_, [](const auto& w) { return w.expired(); });
  runs_.push_back(run);
}

void workflow_host::shutdown() noexcept {
  std::vector<std::shared_ptr<run_engine>> runs;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    for (auto& w : runs_)
      if (auto r = w.lock()) runs.push_back(std::move(r));
  }
  for (auto& r : runs) r->interrupt();
}

// ---- creating and resuming -------------------------------------------------------------------------

run_engine::run_engine(cluster& cl, std::shared_ptr<run_journal> writer)
    : cl_(cl), head_(cluster_access::head(cl)), journal_(std::move(writer)) {}

void run_engine::load_steps(const workflow& wf) {
  steps_ = wf.steps();
  runs_.resize(steps_.size());
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    step_index_[steps_[i].name] = i;
    runs_[i].task = add_task(steps_[i].name, i);
  }
}

std::size_t run_engine::add_task(std::string key, std::size_t step) {
  task& t = tasks_.emplace_back();
  t.key = std::move(key);
  t.step = step;
  task_index_[t.key] = tasks_.size() - 1;
  return tasks_.size() - 1;
}

std::shared_ptr<run_engine> run_engine::create(cluster& cl, const workflow& wf, std::shared_ptr<run_journal> writer) {
  wf.validate();
  std::shared_ptr<run_engine> e(new run_engine(cl, std::move(writer)));
  e->load_steps(wf);
  const std::string definition = wf.to_json(-1);
  if (e->journal_) {
    // The run exists, durably, before any of its tasks runs; a journal that cannot take it fails
    // the start.
    e->journal_->change_now([&](journal& j) {
      e->id_ = j.create_run(wf.name(), definition);
      for (const task& t : e->tasks_) {
        task_record r;
        r.key = t.key;
        r.status = "PENDING";
        j.record(e->id_, r);
      }
    });
  } else {
    e->id_ = fmt::format("r-unjournaled-{}", static_cast<const void*>(e.get()));
  }
  return e;
}

std::shared_ptr<run_engine> run_engine::resume(cluster& cl, std::string_view id, std::shared_ptr<run_journal> writer) {
  run_state state;
  writer->read([&](journal& j) { state = j.load(id); });
  if (is_finished_run_status(state.run.status))
    throw_error(error_kind::workflow,
                fmt::format("run {} ended {}: there is nothing to resume", state.run.id, state.run.status));
  const workflow wf = workflow::from_json(state.run.definition);
  std::shared_ptr<run_engine> e(new run_engine(cl, std::move(writer)));
  e->id_ = state.run.id;
  e->load_steps(wf);
  for (auto& t : state.tasks) e->resumed_[t.key] = std::move(t);
  return e;
}

// ---- scheduling ------------------------------------------------------------------------------------

void run_engine::start() {
  std::lock_guard lock(mutex_);
  set_run_status_locked(workflow_status::running);
  schedule_locked();
  finish_if_done_locked();
}

bool run_engine::deps_done_locked(const workflow_step& s) const {
  for (const auto& d : s.depends_on) {
    const task& t = tasks_[runs_[step_index_.at(d)].task];
    if (!succeeded(t.status)) return false;
  }
  return true;
}

bool run_engine::deps_failed_locked(const workflow_step& s, std::string& why) const {
  for (const auto& d : s.depends_on) {
    const task& t = tasks_[runs_[step_index_.at(d)].task];
    if (t.status == task_status::failed || t.status == task_status::skipped || t.status == task_status::cancelled) {
      why = fmt::format("step '{}' {}", d, t.status == task_status::failed ? "failed" : "did not run");
      return true;
    }
  }
  return false;
}

void run_engine::schedule_locked() {
  if (stopping_) return;
  bool changed = true;
  while (changed) {
    changed = false;
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      task& t = tasks_[runs_[i].task];
      if (t.status != task_status::pending) continue;
      std::string why;
      if (deps_failed_locked(steps_[i], why)) {
        t.status = task_status::skipped;
        t.error = why;
        journal_task_locked(t, why);
        changed = true;
      } else if (deps_done_locked(steps_[i])) {
        launch_locked(i);
        changed = changed || ended(t.status);
      }
    }
  }
}

void run_engine::launch_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  task& t = tasks_[runs_[step].task];
  // Finished before the head stopped: its result is in the journal.
  if (auto r = resumed_.find(t.key);
      r != resumed_.end() && !s.split && (r->second.status == "SUCCEEDED" || r->second.status == "CACHED")) {
    std::optional<std::string> bytes;
    try {
      journal_->read([&](journal& j) { bytes = j.result(id_, t.key); });
    } catch (const std::exception&) {
      bytes.reset();  // lost or damaged: it runs again
    }
    if (bytes) {
      t.status = r->second.status == "CACHED" ? task_status::cached : task_status::succeeded;
      t.result = std::move(*bytes);
      t.attempts = static_cast<std::uint32_t>(r->second.attempts);
      return;
    }
  }
  if (s.split) {
    plan_split_locked(step);
    return;
  }
  if (s.aggregate) {
    launch_aggregate_locked(step);
    return;
  }
  if (try_cache_locked(step)) return;
  try {
    if (!s.command.empty()) {
      submit_locked(runs_[step].task, "dx.command", {command_args_locked(s, nullptr)});
    } else {
      submit_locked(runs_[step].task, s.function, function_args_locked(s, nullptr));
    }
  } catch (const std::exception& e) {
    task_failed_locked(runs_[step].task, e.what(), task_status::failed);
  }
}

void run_engine::plan_split_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  step_run& r = runs_[step];
  task& parent = tasks_[r.task];
  parent.status = task_status::running;
  journal_task_locked(parent);
  // A resumed split keeps the chunks it was cut into (their results are keyed by index).
  std::size_t count = 0;
  while (resumed_.count(fmt::format("{}#{}", s.name, count))) ++count;
  if (count == 0 && s.split->chunk == 0 && !std::any_of(s.command.begin(), s.command.end(), [](const std::string& a) {
        return a.find("{item}") != std::string::npos;
      })) {
    std::size_t threads = 0;
    for (const auto& w : cl_.workers())
      if (w.state != worker_state::gone) threads += w.threads;
    count = std::max<std::size_t>(1, 4 * std::max<std::size_t>(1, threads));
  }
  split plan = *s.split;
  // A command with {item} runs once per item: a chunk of one item each.
  const bool per_item = std::any_of(s.command.begin(), s.command.end(),
                                    [](const std::string& a) { return a.find("{item}") != std::string::npos; });
  if (per_item && count == 0) plan.chunk = 1;
  if (per_item && count > 0) plan.chunk = 0;
  std::vector<chunk> chunks;
  try {
    chunks = plan_chunks(plan, per_item && count == 0 ? 0 : count);
  } catch (const std::exception& e) {
    task_failed_locked(r.task, e.what(), task_status::failed);
    return;
  }
  for (const chunk& c : chunks) {
    const std::size_t k = add_task(fmt::format("{}#{}", s.name, c.index), step);
    r.subtasks.push_back(k);
    task& sub = tasks_[k];
    sub.chunk = static_cast<std::int64_t>(c.index);
    if (auto old = resumed_.find(sub.key); old != resumed_.end() && old->second.status == "SUCCEEDED") {
      std::optional<std::string> bytes;
      try {
        journal_->read([&](journal& j) { bytes = j.result(id_, sub.key); });
      } catch (const std::exception&) {
      }
      if (bytes) {
        sub.status = task_status::succeeded;
        sub.result = std::move(*bytes);
        continue;
      }
    }
    ++r.open;
    journal_task_locked(sub);
    try {
      if (!s.command.empty()) {
        submit_locked(k, "dx.command", {command_args_locked(s, &c)});
      } else {
        const std::string bytes = encode_chunk(c);
        submit_locked(k, s.function, function_args_locked(s, &bytes));
      }
    } catch (const std::exception& e) {
      task_failed_locked(k, e.what(), task_status::failed);
    }
  }
  if (r.open == 0 && parent.status == task_status::running) step_done_locked(step);
}

void run_engine::launch_aggregate_locked(std::size_t step) {
  step_run& r = runs_[step];
  const step_run& of = runs_[step_index_.at(steps_[step].aggregate->of)];
  task& t = tasks_[r.task];
  t.status = task_status::running;
  journal_task_locked(t);
  for (std::size_t k : of.subtasks) r.to_reduce.push_back(k);
  if (r.to_reduce.empty()) {
    task_failed_locked(r.task, "there are no chunks to aggregate", task_status::failed);
    return;
  }
  reduce_more_locked(step);
}

void run_engine::reduce_more_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  step_run& r = runs_[step];
  if (r.open > 0 || tasks_[r.task].status != task_status::running) return;  // a level at a time, in chunk order
  const auto& agg = *s.aggregate;
  if (!agg.command.empty() && !r.subtasks.empty()) {  // the command that read every result has run
    tasks_[r.task].result = tasks_[r.subtasks.back()].result;
    step_done_locked(step);
    return;
  }
  if (r.to_reduce.size() == 1 && agg.command.empty()) {
    task& t = tasks_[r.task];
    t.result = tasks_[r.to_reduce.front()].result;
    r.to_reduce.clear();
    step_done_locked(step);
    return;
  }
  if (!agg.command.empty()) {
    // One command reads every result, one per line, in chunk order.
    dx::command c;
    c.argv = agg.command;
    for (std::size_t k : r.to_reduce) {
      const std::string& b = *tasks_[k].result;
      std::string line;
      try {
        line = read_value<std::string>(std::span<const char>(b.data(), b.size()));
      } catch (...) {
        line = b;
      }
      c.stdin_data += line;
      if (c.stdin_data.empty() || c.stdin_data.back() != '\n') c.stdin_data += '\n';
    }
    r.to_reduce.clear();
    const std::size_t k = add_task(fmt::format("{}#0", s.name), step);
    r.subtasks.push_back(k);
    ++r.open;
    std::string bytes;
    write_value(bytes, c);
    submit_locked(k, "dx.command", {std::move(bytes)});
    return;
  }
  std::deque<std::size_t> level;
  level.swap(r.to_reduce);
  while (level.size() >= 2) {
    const std::size_t a = level.front();
    level.pop_front();
    const std::size_t b = level.front();
    level.pop_front();
    const std::size_t k = add_task(fmt::format("{}#{}", s.name, r.subtasks.size()), step);
    r.subtasks.push_back(k);
    ++r.open;
    r.to_reduce.push_back(k);
    submit_locked(k, agg.function, {*tasks_[a].result, *tasks_[b].result});
  }
  if (!level.empty()) r.to_reduce.push_back(level.front());  // the odd one moves up as it is
}

std::vector<std::string> run_engine::function_args_locked(const workflow_step& s,
                                                          const std::string* chunk_bytes) const {
  std::vector<std::string> out;
  for (auto& a : encode_step_arguments(s)) {
    if (a.chunk) {
      out.push_back(chunk_bytes ? *chunk_bytes : std::string());
    } else if (!a.input.empty()) {
      const task& in = tasks_[runs_[step_index_.at(a.input)].task];
      if (!in.result)
        throw_error(error_kind::workflow, fmt::format("step '{}': step '{}' has no result to pass", s.name, a.input));
      out.push_back(*in.result);
    } else {
      out.push_back(std::move(a.bytes));
    }
  }
  return out;
}

std::string run_engine::command_args_locked(const workflow_step& s, const chunk* c) const {
  ordered_json params;
  std::string error;
  if (!parse_json(s.parameters, params, error)) throw_error(error_kind::workflow, "step '" + s.name + "': " + error);
  auto value_of = [&](const std::string& name) -> std::optional<std::string> {
    if (c) {
      if (name == "start") return std::to_string(c->start);
      if (name == "end") return std::to_string(c->end);
      if (name == "index") return std::to_string(c->index);
      if (name == "count") return std::to_string(c->count);
      if (name == "item") return c->items.empty() ? std::string() : c->items.front();
    }
    if (auto in = s.inputs.find(name); in != s.inputs.end()) {
      const task& t = tasks_[runs_[step_index_.at(in->second)].task];
      if (!t.result) return std::nullopt;
      try {
        return read_value<std::string>(std::span<const char>(t.result->data(), t.result->size()));
      } catch (...) {
        return std::nullopt;
      }
    }
    if (params.is_object() && params.contains(name)) {
      const auto& v = params[name];
      return v.is_string() ? v.get<std::string>() : v.dump();
    }
    return std::nullopt;
  };
  dx::command cmd;
  for (const std::string& arg : s.command) {
    std::string out;
    for (std::size_t i = 0; i < arg.size();) {
      if (arg.compare(i, 2, "{{") == 0 || arg.compare(i, 2, "}}") == 0) {  // a literal brace
        out += arg[i];
        i += 2;
        continue;
      }
      const std::size_t close = arg[i] == '{' ? arg.find('}', i) : std::string::npos;
      if (close == std::string::npos) {
        out += arg[i++];
        continue;
      }
      const std::string name = arg.substr(i + 1, close - i - 1);
      std::optional<std::string> v;
      if (name == "items_file" && c) {
        // The chunk's items reach the command on its standard input, which it reads as a file.
        v = "/dev/stdin";
        for (const auto& item : c->items) cmd.stdin_data += item + "\n";
      } else {
        v = value_of(name);
      }
      if (!v) throw_error(error_kind::workflow, fmt::format("step '{}': nothing fills {{{}}}", s.name, name));
      out += *v;
      i = close + 1;
    }
    cmd.argv.push_back(std::move(out));
  }
  std::string bytes;
  write_value(bytes, cmd);
  return bytes;
}

void run_engine::submit_locked(std::size_t k, const std::string& function, std::vector<std::string> args) {
  task& t = tasks_[k];
  const workflow_step& s = steps_[t.step];
  const remote_function* rf = find_remote(function);
  if (!rf)
    throw_error(error_kind::workflow, fmt::format("step '{}': function '{}' is not registered", s.name, function));
  t.status = task_status::running;
  ++t.attempts;
  t.sending = next_sending_++;
  ++in_flight_;
  journal_task_locked(t);
  const std::uint64_t sending = t.sending;
  if (head_) {
    auto* state = new raw_result(weak_from_this(), k, sending);
    state->add_ref();  // the engine's, until the task's outcome is in
    t.running = state;
    std::vector<remote_arg> remote(args.size());
    for (std::size_t i = 0; i < args.size(); ++i) remote[i].bytes = std::move(args[i]);
    head_->submit(s.options, *rf, std::move(remote), *state);
    state->want();
    state->release();  // the creation reference: the engine keeps its own
    return;
  }
  // No workers: the local threads call the registered function on the same bytes (as the
  // running task, so a cancel reaches its stop token).
  auto fut = cl_.local().submit(local_priority(s.options.priority),
                                [weak = weak_from_this(), rf, k, sending, args = std::move(args)] {
                                  std::vector<byte_view> views;
                                  for (const auto& a : args) views.emplace_back(a.data(), a.size());
                                  auto e = weak.lock();
                                  if (!e) return;
                                  try {
                                    std::string bytes = rf->invoke(views);
                                    e->finished(k, sending, std::move(bytes));
                                  } catch (...) {
                                    e->failed(k, sending, std::current_exception());
                                  }
                                });
  if (t.status == task_status::running && t.sending == sending) {  // it may have finished already
    t.running = future_access::state(fut).get();
    t.running->add_ref();
  }
}

// ---- outcomes --------------------------------------------------------------------------------------

bool run_engine::outcome_current_locked(std::size_t k, std::uint64_t sending, state_base*& drop) {
  if (k >= tasks_.size() || tasks_[k].sending != sending || tasks_[k].status != task_status::running) return false;
  drop = std::exchange(tasks_[k].running, nullptr);
  --in_flight_;
  return true;
}

void run_engine::finished(std::size_t k, std::uint64_t sending, std::string bytes) {
  state_base* drop = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (!outcome_current_locked(k, sending, drop)) return;
    if (!stopping_) {
      task_succeeded_locked(k, std::move(bytes));
      schedule_locked();
    }
    finish_if_done_locked();
  }
  if (drop) drop->release();
}

void run_engine::failed(std::size_t k, std::uint64_t sending, std::exception_ptr e) {
  state_base* drop = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (!outcome_current_locked(k, sending, drop)) return;
    task& t = tasks_[k];
    if (!stopping_ || status_ == workflow_status::cancelled) {
      try {
        std::rethrow_exception(e);
      } catch (const remote_error& r) {
        t.assigned_to = r.worker();
      } catch (...) {
      }
      bool was_cancel = false;
      try {
        std::rethrow_exception(e);
      } catch (const cancelled&) {
        was_cancel = true;
      } catch (...) {
      }
      task_failed_locked(k, describe(e), was_cancel ? task_status::cancelled : task_status::failed);
      schedule_locked();
    }
    finish_if_done_locked();
  }
  if (drop) drop->release();
}

void run_engine::task_succeeded_locked(std::size_t k, std::string bytes) {
  task& t = tasks_[k];
  t.status = task_status::succeeded;
  t.result = std::move(bytes);
  const workflow_step& s = steps_[t.step];
  const bool own = runs_[t.step].task == k;
  if (own) t.cache_key = s.cache ? cache_key_locked(s) : std::string();
  if (journal_) {
    const bool keep = own || t.chunk >= 0;  // reductions are recomputed from the chunks on resume
    journal_->change([&](journal& j) {
      if (keep) j.store_result(id_, t.key, *t.result);
    });
  }
  journal_task_locked(t);
  if (own) return;
  // A subtask of a split or an aggregate.
  const std::size_t step = t.step;
  step_run& r = runs_[step];
  --r.open;
  task& parent = tasks_[r.task];
  if (s.aggregate) {
    reduce_more_locked(step);
    return;
  }
  if (r.open == 0 && parent.status == task_status::running) step_done_locked(step);
}

void run_engine::step_done_locked(std::size_t step) {
  task& t = tasks_[runs_[step].task];
  const workflow_step& s = steps_[step];
  t.status = task_status::succeeded;
  if (s.cache && !s.split) t.cache_key = cache_key_locked(s);
  if (journal_ && t.result) journal_->change([&](journal& j) { j.store_result(id_, t.key, *t.result); });
  journal_task_locked(t);
}

void run_engine::task_failed_locked(std::size_t k, const std::string& why, task_status how) {
  task& t = tasks_[k];
  t.status = how;
  t.error = why;
  journal_task_locked(t, why);
  if (runs_[t.step].task == k) return;
  // A subtask failed: its step fails with it; the others still running are asked to stop.
  task& parent = tasks_[runs_[t.step].task];
  if (parent.status == task_status::running) {
    parent.status = how;
    parent.error = fmt::format("{}: {}", t.key, why);
    journal_task_locked(parent, parent.error);
  }
}

void run_engine::finish_if_done_locked() {
  if (in_flight_ > 0 || status_ == workflow_status::succeeded || status_ == workflow_status::failed ||
      status_ == workflow_status::interrupted)
    return;
  if (status_ == workflow_status::cancelled) {
    done_cv_.notify_all();
    return;
  }
  bool failed = false, all = true;
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const task_status st = tasks_[runs_[i].task].status;
    failed = failed || st == task_status::failed || st == task_status::skipped;
    all = all && ended(st);
  }
  if (!all && !failed) return;  // something can still run
  if (!all) {
    // What is left waits on a failure: it is skipped.
    schedule_locked();
  }
  set_run_status_locked(failed ? workflow_status::failed : workflow_status::succeeded);
  if (journal_) journal_->flush();
  done_cv_.notify_all();
}

void run_engine::set_run_status_locked(workflow_status s, const std::string& detail) {
  status_ = s;
  if (journal_) journal_->change([&](journal& j) { j.set_run_status(id_, to_string(s), detail); });
}

void run_engine::journal_task_locked(const task& t, const std::string& detail) {
  if (!journal_) return;
  task_record r;
  r.key = t.key;
  r.status = upper(t.status);
  r.attempts = t.attempts;
  r.assigned_to = t.assigned_to;
  r.is_subtask = runs_[t.step].task != task_index_.at(t.key);
  r.parent = r.is_subtask ? steps_[t.step].name : std::string();
  r.error = t.error;
  r.cache_key = t.cache_key;
  r.progress = progress_locked(task_index_.at(t.key));
  journal_->change([&](journal& j) { j.record(id_, r, detail); });
}

double run_engine::progress_locked(std::size_t k) const {
  const task& t = tasks_[k];
  if (succeeded(t.status)) return 1;
  const step_run& sr = runs_[t.step];
  if (sr.task != k || sr.subtasks.empty()) return 0;
  std::size_t done = 0;
  for (std::size_t j : sr.subtasks) done += succeeded(tasks_[j].status) ? 1 : 0;
  return static_cast<double>(done) / static_cast<double>(sr.subtasks.size());
}

std::string run_engine::cache_key_locked(const workflow_step& s) const {
  std::string material = s.hash;
  for (const auto& d : s.depends_on) {
    const task& in = tasks_[runs_[step_index_.at(d)].task];
    material += '|';
    material += in.result ? sha256_hex(*in.result) : std::string("-");
  }
  return sha256_hex(material);
}

bool run_engine::try_cache_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  if (!journal_ || !s.cache) return false;
  const std::string key = cache_key_locked(s);
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
  journal_->change([&](journal& j) { j.store_result(id_, t.key, *t.result); });
  journal_task_locked(t);
  return true;
}

// ---- control and views -----------------------------------------------------------------------------

void run_engine::interrupt() {
  std::lock_guard lock(mutex_);
  if (status_ != workflow_status::running) return;
  stopping_ = true;
  set_run_status_locked(workflow_status::interrupted, "the cluster stopped");
  if (journal_) journal_->flush();
  done_cv_.notify_all();
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

std::vector<task_state> run_engine::tasks() const {
  std::lock_guard lock(mutex_);
  std::vector<task_state> out;
  for (std::size_t k = 0; k < tasks_.size(); ++k) {
    const task& t = tasks_[k];
    task_state s;
    s.key = t.key;
    s.is_subtask = runs_[t.step].task != k;
    s.parent = s.is_subtask ? steps_[t.step].name : std::string();
    s.status = t.status;
    s.attempts = t.attempts;
    s.assigned_to = t.assigned_to;
    s.error = t.error;
    s.progress = progress_locked(k);
    out.push_back(std::move(s));
  }
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

std::string run_engine::result_bytes(std::string_view step) const {
  std::lock_guard lock(mutex_);
  auto it = step_index_.find(std::string(step));
  if (it == step_index_.end()) throw_error(error_kind::workflow, fmt::format("run {} has no step '{}'", id_, step));
  const task& t = tasks_[runs_[it->second].task];
  if (!succeeded(t.status) || !t.result)
    throw_error(error_kind::workflow,
                fmt::format("step '{}' of run {} has no result (it is {}{})", step, id_, to_string(t.status),
                            steps_[it->second].split ? ", a split step" : ""));
  const workflow_step& s = steps_[it->second];
  if (!s.command.empty() || (s.aggregate && !s.aggregate->command.empty())) {
    // A command's result is its standard output.
    try {
      return read_value<std::string>(std::span<const char>(t.result->data(), t.result->size()));
    } catch (...) {
    }
  }
  return *t.result;
}

}  // namespace dx::detail
