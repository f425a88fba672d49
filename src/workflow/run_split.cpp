// Split steps and aggregates of a workflow run. A split is cut into chunks in order, "step#0",
// "step#1", ..., each a subtask over a part of the range or the items. With "chunk": "auto" the
// size is the one the cost model predicts to take the target duration (2 s a command, 200 ms a
// function, and at least 4 chunks per worker thread); while the model does not know the step's
// kind, a few small chunks go first and the rest is cut from how long they took. The chunks'
// parts are journaled, so a resumed run cuts the rest the same way and keeps what finished. An
// aggregate reduces the chunks' results level by level in chunk order.
#include "workflow/run_engine.hpp"

#include "cluster/chunk_sizing.hpp"
#include "cluster/cluster_access.hpp"
#include "common/log.hpp"
#include "workflow/arguments.hpp"
#include "workflow/run_status.hpp"

#include <dx/command.hpp>
#include <dx/error.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace dx::detail {

namespace {

constexpr double command_chunk_seconds = 2.0;
constexpr double function_chunk_seconds = 0.2;
constexpr std::int64_t chunks_per_thread = 4;

bool runs_per_item(const workflow_step& s) {
  return std::any_of(s.command.begin(), s.command.end(),
                     [](const std::string& a) { return a.find("{item}") != std::string::npos; });
}

/// What the cost model learns a step's chunks as: its function's, or its command line's (as
/// written, placeholders and all), so that later runs of the same step start calibrated.
std::string chunk_kind(const workflow_step& s) {
  if (!s.options.kind.empty()) return s.options.kind + "/split";
  if (s.command.empty()) return s.function + "/split";
  std::string line = "command";
  for (const auto& a : s.command) {
    if (line.size() > 80) break;
    line += ' ';
    line += a;
  }
  return line + "/split";
}

/// A journaled chunk's part, {"start":S,"end":E}; false when it does not read as one.
bool read_part(const std::string& parameters, std::int64_t& first, std::int64_t& last) {
  const auto j = nlohmann::json::parse(parameters, nullptr, false);
  if (!j.is_object() || !j.contains("start") || !j.contains("end") || !j["start"].is_number_integer() ||
      !j["end"].is_number_integer())
    return false;
  first = j["start"].get<std::int64_t>();
  last = j["end"].get<std::int64_t>();
  return first < last;
}

}  // namespace

std::size_t run_engine::worker_threads() const {
  std::size_t threads = 0;
  if (head_) {
    for (const auto& w : cl_.workers())
      if (w.state == worker_state::active) threads += w.threads;
  } else {
    threads = cl_.local().num_threads();
  }
  return std::max<std::size_t>(1, threads);
}

void run_engine::plan_split_locked(std::size_t step) {
  const workflow_step& s = steps_[step];
  step_run& r = runs_[step];
  task& parent = tasks_[r.task];
  // Every input must be at hand before any chunk goes (a lost one runs again first).
  for (const auto& d : s.depends_on) result_locked(runs_[step_index_.at(d)].task);

  split_cut& c = r.cut;
  c = split_cut{};
  const split& sp = *s.split;
  c.items = sp.items;
  if (sp.by == split::kind::lines) {
    std::ifstream in(sp.path);
    if (!in) {
      task_failed_locked(r.task, "cannot read the lines of '" + sp.path + "'", task_status::failed);
      return;
    }
    for (std::string line; std::getline(in, line);) c.items.push_back(line);
  }
  c.total = sp.by == split::kind::range ? std::max<std::int64_t>(0, sp.end - sp.start)
                                        : static_cast<std::int64_t>(c.items.size());
  c.base = sp.by == split::kind::range ? sp.start : 0;
  c.per_item = runs_per_item(s);
  c.kind = chunk_kind(s);
  c.target = s.command.empty() ? function_chunk_seconds : command_chunk_seconds;
  const auto slots = static_cast<std::int64_t>(worker_threads()) * chunks_per_thread;
  c.most = std::max<std::int64_t>(1, (c.total + slots - 1) / slots);
  c.planned = true;
  parent.status = task_status::running;
  journal_task_locked(parent);

  // The chunks journaled before a resume, in order: they must tile [0, next) to be kept.
  std::vector<const task_record*> old;
  for (std::size_t i = 0;; ++i) {
    auto it = resumed_.find(fmt::format("{}#{}", s.name, i));
    if (it == resumed_.end()) break;
    old.push_back(&it->second);
  }
  std::int64_t at = 0;
  for (const task_record* o : old) {
    std::int64_t first = 0, last = 0;
    if (!read_part(o->parameters, first, last) || first != at || last > c.total) {
      old.clear();  // cut some other way (or damaged): cut afresh
      break;
    }
    at = last;
  }
  std::vector<std::size_t> again;
  for (const task_record* o : old) {
    const std::size_t k = add_task(o->key, step);
    r.subtasks.push_back(k);
    task& sub = tasks_[k];
    sub.chunk = static_cast<std::int64_t>(r.subtasks.size() - 1);
    read_part(o->parameters, sub.first, sub.last);
    sub.attempts = static_cast<std::uint32_t>(o->attempts);
    sub.assigned_to = o->assigned_to;
    c.next = sub.last;
    std::optional<std::string> bytes;
    if (o->status == "SUCCEEDED" && o->result) {
      try {
        journal_->read([&](journal& j) { bytes = j.result(id_, sub.key); });
      } catch (const std::exception& e) {
        log(log_level::warn, "workflow run {}: chunk {} runs again: {}", id_, sub.key, e.what());
      }
    }
    if (bytes) {
      sub.status = task_status::succeeded;
      sub.result = std::move(*bytes);
      ++r.done;
      r.done_positions += sub.last - sub.first;
    } else {
      again.push_back(k);
    }
  }
  if (!old.empty()) {
    // Go on in the size the run was using (the model's answer, when it has one, wins).
    c.size = known_chunk_size_locked(step);
    if (c.size == 0)
      c.size = std::clamp<std::int64_t>(tasks_[r.subtasks.back()].last - tasks_[r.subtasks.back()].first, 1, c.most);
  }
  cut_more_locked(step);
  for (std::size_t k : again) {
    ++r.open;
    journal_task_locked(tasks_[k]);
    submit_chunk_locked(k);
  }
  if (r.open == 0 && c.next >= c.total && parent.status == task_status::running) step_done_locked(step);
}

std::int64_t run_engine::known_chunk_size_locked(std::size_t step) const {
  const split_cut& c = runs_[step].cut;
  if (c.per_item) return 1;
  if (steps_[step].split->chunk > 0) return steps_[step].split->chunk;
  if (head_)
    if (const std::size_t n = chunk_size_from_model(*head_, c.kind, c.target, static_cast<std::size_t>(c.most)))
      return static_cast<std::int64_t>(n);
  return 0;
}

void run_engine::cut_more_locked(std::size_t step) {
  step_run& r = runs_[step];
  split_cut& c = r.cut;
  if (c.next >= c.total) return;
  if (c.size == 0) {
    c.size = known_chunk_size_locked(step);
    if (c.size == 0) {  // not known yet: measure on small chunks first
      c.probing = true;
      c.size = std::max<std::int64_t>(1, c.most / 16);
    }
  }
  if (c.probing) {  // one small chunk per worker thread; the rest waits for the first to finish
    const std::size_t threads = worker_threads();
    for (std::size_t i = 0; i < threads && c.next < c.total; ++i)
      cut_chunk_locked(step, c.next, std::min(c.total, c.next + c.size));
    return;
  }
  c.count = static_cast<std::int64_t>(r.subtasks.size()) + (c.total - c.next + c.size - 1) / c.size;
  while (c.next < c.total) cut_chunk_locked(step, c.next, std::min(c.total, c.next + c.size));
}

void run_engine::cut_chunk_locked(std::size_t step, std::int64_t first, std::int64_t last) {
  step_run& r = runs_[step];
  const std::size_t k = add_task(fmt::format("{}#{}", steps_[step].name, r.subtasks.size()), step);
  r.subtasks.push_back(k);
  task& sub = tasks_[k];
  sub.chunk = static_cast<std::int64_t>(r.subtasks.size() - 1);
  sub.first = first;
  sub.last = last;
  r.cut.next = last;
  ++r.open;
  journal_task_locked(sub);
  submit_chunk_locked(k);
}

chunk run_engine::chunk_of_locked(const task& t) const {
  const split_cut& c = runs_[t.step].cut;
  chunk out;
  out.index = static_cast<std::uint64_t>(t.chunk);
  out.count = static_cast<std::uint64_t>(c.count);
  out.start = c.base + t.first;
  out.end = c.base + t.last;
  if (steps_[t.step].split->by != split::kind::range)
    out.items.assign(c.items.begin() + t.first, c.items.begin() + t.last);
  return out;
}

void run_engine::submit_chunk_locked(std::size_t k) {
  task& t = tasks_[k];
  const workflow_step& s = steps_[t.step];
  const chunk part = chunk_of_locked(t);
  task_options opts = s.options;
  opts.kind = runs_[t.step].cut.kind;
  opts.hint.size = static_cast<double>(t.last - t.first);
  try {
    if (!s.command.empty()) {
      submit_locked(k, "dx.command", {command_args_locked(s, &part)}, opts);
    } else {
      const std::string bytes = encode_chunk(part);
      submit_locked(k, s.function, function_args_locked(s, &bytes), opts);
    }
  } catch (const lost_result&) {
    task_failed_locked(k, "the result of an input was lost from the journal", task_status::failed);
  } catch (const std::exception& e) {
    task_failed_locked(k, e.what(), task_status::failed);
  }
}

void run_engine::chunk_measured_locked(std::size_t k, double seconds) {
  const task& t = tasks_[k];
  split_cut& c = runs_[t.step].cut;
  const std::int64_t n = t.last - t.first;
  if (!c.probing || n != c.size) return;  // sized already, or a probe of an earlier size
  const double estimate = seconds > 0 ? c.target * static_cast<double>(n) / seconds : static_cast<double>(c.most);
  if (seconds > 0 && seconds < c.target / 40 && estimate > 8.0 * static_cast<double>(n) && c.size < c.most) {
    // Too short to tell the work from the overhead: measure again on chunks 8 times bigger.
    c.size = std::min(c.most, 8 * n);
    cut_more_locked(t.step);
    return;
  }
  c.size = std::clamp<std::int64_t>(std::llround(estimate), 1, c.most);
  c.probing = false;
  cut_more_locked(t.step);
}

void run_engine::subtask_succeeded_locked(std::size_t k) {
  const task& t = tasks_[k];
  const std::size_t step = t.step;
  step_run& r = runs_[step];
  --r.open;
  ++r.done;
  if (t.chunk >= 0 && steps_[step].split) r.done_positions += t.last - t.first;
  task& parent = tasks_[r.task];
  if (parent.status != task_status::running) return;
  // The parent's progress in the journal, at each whole percent.
  const int percent = static_cast<int>(progress_locked(r.task) * 100);
  if (percent != r.shown_percent) {
    r.shown_percent = percent;
    journal_task_locked(parent);
  }
  if (steps_[step].aggregate) {
    reduce_more_locked(step);
    return;
  }
  if (r.open == 0 && !r.cut.probing && r.cut.next >= r.cut.total) step_done_locked(step);
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
    tasks_[r.task].result = tasks_[r.to_reduce.front()].result;
    r.to_reduce.clear();
    step_done_locked(step);
    return;
  }
  try {
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
      submit_locked(k, "dx.command", {std::move(bytes)}, s.options);
      return;
    }
    std::vector<std::size_t> level;
    level.swap(r.to_reduce);
    std::size_t next = 0;
    while (level.size() - next >= 2) {
      const std::size_t a = level[next++];
      const std::size_t b = level[next++];
      const std::size_t k = add_task(fmt::format("{}#{}", s.name, r.subtasks.size()), step);
      r.subtasks.push_back(k);
      ++r.open;
      r.to_reduce.push_back(k);
      submit_locked(k, agg.function, {*tasks_[a].result, *tasks_[b].result}, s.options);
    }
    if (next < level.size()) r.to_reduce.push_back(level[next]);  // the odd one moves up as it is
  } catch (const std::exception& e) {
    task_failed_locked(r.task, e.what(), task_status::failed);
  }
}

}  // namespace dx::detail
