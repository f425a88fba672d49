// The views of a run for the head's HTTP routes: copied from the engine's records under its lock
// (the definition, which never changes, after it), and written as JSON once the lock is released.
#include "workflow/run_views.hpp"

#include "workflow/run_engine.hpp"
#include "workflow/run_status.hpp"
#include "workflow/workflow_impl.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace dx::detail {

std::uint64_t status_counts::total() const noexcept {
  std::uint64_t n = 0;
  for (auto v : by) n += v;
  return n;
}

// ---- copies, under the engine's lock ---------------------------------------------------------------

run_summary_view run_engine::summary() const {
  run_summary_view v;
  std::lock_guard lock(mutex_);
  summary_locked(v);
  return v;
}

void run_engine::summary_locked(run_summary_view& v) const {
  v.id = id_;
  v.name = name_;
  v.status = status_;
  v.created_ms = created_ms_;
  v.updated_ms = updated_ms_;
  v.version = version_;
  double progress = 0;
  for (const step_run& r : runs_) {
    v.steps.add(tasks_[r.task].status);
    progress += progress_locked(r.task);
  }
  v.progress = runs_.empty() ? 0.0 : progress / static_cast<double>(runs_.size());
}

run_detail_view run_engine::detail(const subtask_query* q) const {
  run_detail_view v;
  v.steps.resize(steps_.size());
  std::optional<std::size_t> paged;
  if (q) {
    if (auto it = step_index_.find(q->step); it != step_index_.end()) paged = it->second;
  }
  {
    std::lock_guard lock(mutex_);
    summary_locked(v.run);
    for (std::size_t i = 0; i < steps_.size(); ++i) {
      const step_run& r = runs_[i];
      const task& t = tasks_[r.task];
      step_view& s = v.steps[i];
      s.status = t.status;
      s.progress = progress_locked(r.task);
      s.attempts = t.attempts;
      s.assigned_to = t.assigned_to;
      s.error = t.error;
      s.subtasks = r.subtasks.size();
      for (std::size_t k : r.subtasks) s.subtask_status.add(tasks_[k].status);
      if (r.cut.planned && r.cut.count > 0) s.chunks_planned = static_cast<std::uint64_t>(r.cut.count);
    }
    if (paged) {
      subtask_page& p = v.subtasks.emplace();
      p.step = q->step;
      p.offset = q->offset;
      p.limit = q->limit;
      p.status = q->status;
      const std::vector<std::size_t>& subs = runs_[*paged].subtasks;
      if (!q->status) {
        p.total = subs.size();
        for (std::uint64_t i = q->offset; i < subs.size() && p.items.size() < q->limit; ++i)
          p.items.push_back(task_view_locked(subs[i]));
      } else {
        for (std::size_t k : subs) {
          if (tasks_[k].status != *q->status) continue;
          if (p.total >= q->offset && p.items.size() < q->limit) p.items.push_back(task_view_locked(k));
          ++p.total;
        }
      }
    }
  }
  // The definition never changes once the run exists: read without the lock.
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const workflow_step& d = steps_[i];
    step_view& s = v.steps[i];
    s.name = d.name;
    s.kind = d.aggregate ? "aggregate" : d.command.empty() ? "function" : "command";
    s.function = d.aggregate ? d.aggregate->function : d.function;
    s.command = d.aggregate ? d.aggregate->command : d.command;
    s.dependencies = d.depends_on;
    s.split = d.split.has_value();
    if (d.aggregate) s.aggregate_of = d.aggregate->of;
  }
  return v;
}

task_state run_engine::task_view_locked(std::size_t k) const {
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
  if (t.chunk >= 0 && steps_[t.step].split) s.parameters = fmt::format(R"({{"start":{},"end":{}}})", t.first, t.last);
  return s;
}

void run_engine::count_tasks(status_counts& counts) const {
  std::lock_guard lock(mutex_);
  for (const task& t : tasks_) counts.add(t.status);
}

void run_engine::label_tasks(std::span<const std::uint64_t> head_tasks, std::vector<std::string>& labels) const {
  std::lock_guard lock(mutex_);
  if (head_tasks_.empty()) return;
  for (std::size_t i = 0; i < head_tasks.size() && i < labels.size(); ++i) {
    if (!labels[i].empty()) continue;
    if (auto it = head_tasks_.find(head_tasks[i]); it != head_tasks_.end()) labels[i] = tasks_[it->second].key;
  }
}

void run_engine::count_into(std::shared_ptr<workflow_counters> counters) {
  std::lock_guard lock(mutex_);
  counters_ = std::move(counters);
}

// ---- JSON, without any lock ------------------------------------------------------------------------

namespace {

using json = nlohmann::ordered_json;

json counts_json(const status_counts& c) {
  json j = json::object();
  for (std::size_t i = 0; i < c.by.size(); ++i)
    if (c.by[i]) j[std::string(to_string(static_cast<task_status>(i)))] = c.by[i];
  return j;
}

json summary_json(const run_summary_view& r) {
  return json{{"id", r.id},
              {"name", r.name},
              {"status", to_string(r.status)},
              {"created_ms", r.created_ms},
              {"updated_ms", r.updated_ms},
              {"progress", r.progress},
              {"steps", r.steps.total()},
              {"steps_by_status", counts_json(r.steps)}};
}

/// A subtask's part as JSON ({"start":S,"end":E}), or null.
json part_json(const std::string& parameters) {
  if (parameters.empty()) return nullptr;
  json j = json::parse(parameters, nullptr, false);
  return j.is_discarded() ? json(nullptr) : j;
}

json task_json(const task_state& t) {
  return json{{"key", t.key},
              {"status", to_string(t.status)},
              {"progress", t.progress},
              {"attempts", t.attempts},
              {"assigned_to", t.assigned_to.empty() ? json(nullptr) : json(t.assigned_to)},
              {"error", t.error.empty() ? json(nullptr) : json(t.error)},
              {"is_subtask", t.is_subtask},
              {"parent_task_id", t.is_subtask ? json(t.parent) : json(nullptr)},
              {"part", part_json(t.parameters)}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string runs_json(const std::vector<run_summary_view>& runs) {
  json list = json::array();
  for (const auto& r : runs) list.push_back(summary_json(r));
  return dump(json{{"runs", std::move(list)}});
}

step_view::result_view result_view_of(const step_view& s, const std::string& bytes) {
  // Enough for a glance in the step's panel; the whole result is the API's (workflow_run::result).
  constexpr std::size_t limit = 2048;
  step_view::result_view r;
  r.bytes = bytes.size();
  if (!s.command.empty()) {
    // A command's output: its end is what one looks at, as in a log.
    r.tail = true;
    r.truncated = bytes.size() > limit;
    std::size_t from = r.truncated ? bytes.size() - limit : 0;
    while (from < bytes.size() && (static_cast<unsigned char>(bytes[from]) & 0xC0) == 0x80) ++from;
    r.preview = bytes.substr(from);
    return r;
  }
  if (const remote_function* f = find_remote(s.function); f && f->preview) {
    try {
      r.preview = f->preview(std::span<const char>(bytes.data(), bytes.size()), limit);
      r.truncated = r.preview->size() >= limit;
    } catch (const std::exception&) {
      r.preview.reset();  // shown as binary: its size alone
    }
  }
  return r;
}

std::string run_json(const run_detail_view& v) {
  json j = summary_json(v.run);
  json steps = json::array();
  for (const step_view& s : v.steps) {
    json sj{{"name", s.name},
            {"kind", s.kind},
            {"status", to_string(s.status)},
            {"progress", s.progress},
            {"attempts", s.attempts},
            {"assigned_to", s.assigned_to.empty() ? json(nullptr) : json(s.assigned_to)},
            {"error", s.error.empty() ? json(nullptr) : json(s.error)},
            {"dependencies", s.dependencies},
            {"is_subtask", false},
            {"parent_task_id", nullptr}};
    if (!s.function.empty()) sj["function"] = s.function;
    if (!s.command.empty()) sj["command"] = s.command;
    if (!s.aggregate_of.empty()) sj["aggregate_of"] = s.aggregate_of;
    sj["split"] = s.split;
    if (s.split || s.subtasks > 0) {
      sj["subtasks"] = {{"count", s.subtasks},
                        {"planned", s.split && s.chunks_planned ? json(s.chunks_planned) : json(nullptr)},
                        {"by_status", counts_json(s.subtask_status)}};
    }
    if (s.result) {
      sj["result"] = {{"bytes", s.result->bytes},
                      {"preview", s.result->preview ? json(*s.result->preview) : json(nullptr)},
                      {"truncated", s.result->truncated},
                      {"tail", s.result->tail}};
    }
    steps.push_back(std::move(sj));
  }
  j["steps"] = std::move(steps);
  if (v.subtasks) {
    const subtask_page& p = *v.subtasks;
    json items = json::array();
    for (const task_state& t : p.items) items.push_back(task_json(t));
    j["subtasks"] = {{"step", p.step},     {"status", p.status ? json(to_string(*p.status)) : json(nullptr)},
                     {"offset", p.offset}, {"limit", p.limit},
                     {"total", p.total},   {"items", std::move(items)}};
  }
  return dump(j);
}

}  // namespace dx::detail
