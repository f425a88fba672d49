// The submission of a run's tasks: a step's arguments (its parameters, its inputs' results, its
// chunk) or its command line, sent as a registered function's call to the cluster's workers (a
// raw result the engine stores without decoding, with the head's notes of where it runs and
// when it is retried), or, with no workers, called on the local threads.
#include "workflow/run_engine.hpp"

#include "cluster/cluster_access.hpp"
#include "workflow/arguments.hpp"
#include "workflow/run_status.hpp"
#include "workflow/workflow_impl.hpp"

#include <dx/command.hpp>
#include <dx/error.hpp>
#include <dx/retry.hpp>
#include <dx/stop_token.hpp>

#include <fmt/format.h>

#include <chrono>
#include <thread>

namespace dx::detail {

namespace {

/// A remote task's result as raw bytes: the engine stores and forwards them without decoding.
class raw_result final : public shared_state<std::string>, public remote_result {
 public:
  raw_result(std::weak_ptr<run_engine> e, std::size_t task, std::uint64_t sending)
      : engine_(std::move(e)), task_(task), sending_(sending) {
    this->lazy_ = true;
    wants_notes = true;
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
    if (auto e = engine_.lock()) e->finished(task_, sending_, std::move(copy), produced_by, run_seconds);
  }
  void fail(std::exception_ptr e) noexcept override {
    this->set_error(e);
    if (auto en = engine_.lock()) en->failed(task_, sending_, e);
  }
  void on_note(const note& n) noexcept override {
    auto e = engine_.lock();
    if (!e) return;
    try {
      if (n.what == note::kind::sent) {
        e->sent(task_, sending_, n.attempt, n.worker);
      } else {
        e->retrying(task_, sending_, n.attempt, n.worker, n.message);
      }
    } catch (...) {  // information only: a note lost for want of memory changes nothing
    }
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

/// Tells the engine how a task on the local threads ended when a stop settled it (a cancel, an
/// interrupt, a time limit): the call may never run (a task stopped before it started does not),
/// or end later, and the engine must not wait for it. An outcome the call itself reported first
/// wins; a later one is ignored by the engine.
struct local_outcome final : continuation {
  std::weak_ptr<run_engine> engine;
  std::size_t task = 0;
  std::uint64_t sending = 0;
  state_base* state = nullptr;  // one reference
  static void on_fire(continuation* c) noexcept {
    auto* self = static_cast<local_outcome*>(c);
    if (self->state->has_error())
      if (auto e = self->engine.lock()) e->failed(self->task, self->sending, self->state->error());
    self->state->release();
    delete self;
  }
};

/// Sleeps `pause` in short slices, returning early (false) when the running task is asked to stop.
bool pause_unless_stopped(std::chrono::nanoseconds pause) {
  const auto until = std::chrono::steady_clock::now() + pause;
  while (std::chrono::steady_clock::now() < until) {
    if (this_task::stop_requested()) return false;
    std::this_thread::sleep_for(
        std::min<std::chrono::nanoseconds>(std::chrono::milliseconds(10), until - std::chrono::steady_clock::now()));
  }
  return !this_task::stop_requested();
}

}  // namespace

void run_engine::send_queued(bool pump) {
  // The pump launches what launch_ready_locked left, a slice at a time, sending each before the
  // next: a task of the local executor. Never a thread that reports outcomes (the transport's):
  // while it launched, no frame would be read or sent, and workers would take the head for dead;
  // nor the thread that starts the run, which would wait for the whole run to be launched.
  struct pump_guard {
    run_engine& e;
    bool& pump;
    ~pump_guard() {
      if (!pump) return;
      std::lock_guard lock(e.mutex_);
      e.pumping_ = false;
    }
  } guard{*this, pump};
  for (;;) {
    std::vector<queued_submission> batch;
    std::vector<continuation*> outcomes;
    bool stopping = false, hand_over = false;
    // The pump launches no faster than the journal records: it waits while the journal is behind.
    if (pump && journal_) journal_->wait_for_room(journal_lag);
    {
      std::lock_guard lock(mutex_);
      if (pump && queued_.empty() && !ready_.empty() && !stopping_) {
        launch_ready_locked(true);  // the next slice
        finish_if_done_locked();
      }
      batch.swap(queued_);
      outcomes.swap(local_outcomes_);
      stopping = stopping_;
      if (batch.empty() && outcomes.empty()) {
        if (pump && !ready_.empty() && !stopping_) continue;  // launched steps that sent nothing
        if (pump) pumping_ = pump = false;
        hand_over = !ready_.empty() && !stopping_ && !pumping_;
        if (hand_over) pumping_ = true;
      }
    }
    for (continuation* c : outcomes) static_cast<local_outcome*>(c)->state->on_ready(c);
    if (hand_over) {
      hand_pump_over();
      return;
    }
    if (batch.empty()) {
      if (outcomes.empty()) return;
      continue;
    }
    std::vector<std::pair<std::uint64_t, std::uint32_t>> submitted;  // the head's task id -> ours
    submitted.reserve(batch.size());
    for (auto& q : batch) {
      auto* state = static_cast<raw_result*>(q.state);
      if (stopping) {
        // Cancelled or interrupted before the head saw it: it ends here, as a stopped task would.
        state->fail(make_error(error_kind::cancelled, "the workflow run stopped before the task was sent"));
      } else {
        head_->submit(q.options, *q.function, std::move(q.args), *state);
        if (state->task_id != 0) submitted.emplace_back(state->task_id, static_cast<std::uint32_t>(q.task));
        state->want();
      }
      state->release();  // the creation reference: the engine keeps its own
    }
    if (!submitted.empty()) {
      std::lock_guard lock(mutex_);
      for (const auto& [head_task, k] : submitted) head_tasks_[head_task] = k;
    }
  }
}

void run_engine::hand_pump_over() {
  try {
    cl_.local().post(priority::high, [weak = weak_from_this()] {
      if (auto e = weak.lock()) e->send_queued(true);
    });
  } catch (...) {  // the executor is stopping: so is the cluster, which interrupts the run
    std::lock_guard lock(mutex_);
    pumping_ = false;
  }
}

void run_engine::submit_locked(std::size_t k, const std::string& function, std::vector<std::string> args,
                               const task_options& opts) {
  task& t = tasks_[k];
  const remote_function* rf = find_remote(function);
  if (!rf)
    throw_error(error_kind::workflow,
                fmt::format("step '{}': function '{}' is not registered", steps_[t.step].name, function));
  // On the cluster's workers it is READY until the head sends it to one (its note makes it
  // RUNNING there); the local threads start it as soon as one is free.
  t.status = head_ ? task_status::ready : task_status::running;
  t.attempts_before = t.attempts;
  ++t.attempts;
  t.sending = next_sending_++;
  ++in_flight_;
  journal_task_locked(t);
  const std::uint64_t sending = t.sending;
  if (head_) {
    auto* state = new raw_result(weak_from_this(), k, sending);
    state->add_ref();  // the engine's, until the task's outcome is in
    t.running = state;
    queued_submission q;
    q.task = k;
    q.sending = sending;
    q.state = state;
    q.function = rf;
    q.args.resize(args.size());
    for (std::size_t i = 0; i < args.size(); ++i) q.args[i].bytes = std::move(args[i]);
    q.options = opts;
    queued_.push_back(std::move(q));
    return;
  }
  // No workers: the local threads call the registered function on the same bytes (as the
  // running task, so that a cancel or a time limit reaches its stop token), and run it again
  // after an exception as its retry rules say.
  auto fut = cl_.local().submit(local_priority(opts.priority), [weak = weak_from_this(), rf, k, sending,
                                                                retries = opts.retries, args = std::move(args)] {
    std::vector<byte_view> views;
    for (const auto& a : args) views.emplace_back(a.data(), a.size());
    for (std::uint32_t failures = 1;; ++failures) {
      auto e = weak.lock();
      if (!e) return;
      std::exception_ptr error;
      const auto began = std::chrono::steady_clock::now();
      try {
        std::string bytes = rf->invoke(views);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
        e->finished(k, sending, std::move(bytes), "head", seconds);
        return;
      } catch (...) {
        error = std::current_exception();
      }
      std::chrono::nanoseconds pause{0};
      if (!retries || this_task::stop_requested() || !retry_after(*retries, error, failures, pause)) {
        e->failed(k, sending, error);
        return;
      }
      e->retrying(k, sending, failures, "head", describe(error));
      e.reset();
      if (!pause_unless_stopped(pause)) {
        if (auto again = weak.lock()) again->failed(k, sending, error);
        return;
      }
      if (auto again = weak.lock()) again->sent(k, sending, failures + 1, "head");
    }
  });
  if (opts.timeout.count() > 0)
    stop_after(future_access::state(fut).get(), opts.timeout.count(), ("step '" + steps_[t.step].name + "'").c_str());
  if (t.status == task_status::running && t.sending == sending) {  // it may have finished already
    t.running = future_access::state(fut).get();
    t.running->add_ref();
    auto* outcome = new local_outcome;
    outcome->fire = &local_outcome::on_fire;
    outcome->engine = weak_from_this();
    outcome->task = k;
    outcome->sending = sending;
    outcome->state = t.running;
    outcome->state->add_ref();
    // Registered by send_queued, without the lock: a state settled already fires it at once, and
    // its report takes the lock.
    local_outcomes_.push_back(outcome);
  }
}

std::vector<std::string> run_engine::function_args_locked(const workflow_step& s, const std::string* chunk_bytes) {
  std::vector<std::string> out;
  for (auto& a : encode_step_arguments(s)) {
    if (a.chunk) {
      out.push_back(chunk_bytes ? *chunk_bytes : std::string());
    } else if (!a.input.empty()) {
      const std::string* in = result_locked(runs_[step_index_.at(a.input)].task);
      if (!in)
        throw_error(error_kind::workflow, fmt::format("step '{}': step '{}' has no result to pass", s.name, a.input));
      out.push_back(*in);
    } else {
      out.push_back(std::move(a.bytes));
    }
  }
  return out;
}

std::string run_engine::command_args_locked(const workflow_step& s, const chunk* c) {
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
      const std::string* r = result_locked(runs_[step_index_.at(in->second)].task);
      if (!r) return std::nullopt;
      try {
        return read_value<std::string>(std::span<const char>(r->data(), r->size()));
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

}  // namespace dx::detail
