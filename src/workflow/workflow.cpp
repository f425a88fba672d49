// dx::workflow: building a definition in C++, reading and writing its JSON form, statuses and
// durations. The checks live in analyse.cpp.
#include <dx/workflow.hpp>

#include "workflow/workflow_impl.hpp"

#include <dx/remote.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>
#include <string>
#include <utility>

namespace dx {

namespace {

constexpr std::array<std::string_view, 9> workflow_status_names{
    "CREATED", "VALIDATED", "SUBMITTED", "SPLITTING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED"};
constexpr std::array<std::string_view, 9> task_status_names{"PENDING", "READY",     "RUNNING", "RETRYING", "SUCCEEDED",
                                                            "FAILED",  "CANCELLED", "SKIPPED", "CACHED"};

using detail::ordered_json;

[[noreturn]] void fail(const std::string& what) { detail::throw_error(detail::error_kind::workflow, what); }

std::string list_problems(const std::vector<std::string>& problems) {
  std::string what = problems.size() == 1
                         ? "the workflow is not valid: 1 problem"
                         : "the workflow is not valid: " + std::to_string(problems.size()) + " problems";
  for (const auto& p : problems) what += "\n  - " + p;
  return what;
}

ordered_json split_json(const split& s) {
  ordered_json j = ordered_json::object();
  switch (s.by) {
    case split::kind::range:
      j["range"] = ordered_json::array({s.start, s.end});
      break;
    case split::kind::items:
      j["items"] = s.items;
      break;
    case split::kind::lines:
      j["lines"] = s.path;
      break;
  }
  if (s.chunk > 0) j["chunk"] = s.chunk;
  return j;
}

// The JSON form analyse() reads back into an equal dx::replicate (max_copies 0, dx's choice, is
// left out).
ordered_json replicate_json(const replicate& r) {
  ordered_json j = ordered_json::object();
  j["copies"] = r.copies;
  j["quorum"] = r.quorum;
  if (r.max_copies != 0) j["max_copies"] = r.max_copies;
  switch (r.compare.kind) {
    case comparison::kind_t::exact:
      j["compare"] = "exact";
      break;
    case comparison::kind_t::tolerance:
      j["compare"] = {{"tolerance", {{"rel", r.compare.relative}, {"abs", r.compare.absolute}}}};
      break;
    case comparison::kind_t::named:
      j["compare"] = {{"comparator", r.compare.name}};
      break;
  }
  j["distinct_hosts"] = r.distinct_hosts;
  j["adaptive"] = r.adaptive;
  return j;
}

// A hard deadline is written in whole milliseconds, rounded up, as a timeout is.
ordered_json deadline_json(const deadline& d) {
  ordered_json j = ordered_json::object();
  j["soft_factor"] = d.soft_factor;
  j["hard"] = detail::format_workflow_duration(d.hard);
  return j;
}

ordered_json parse_fragment(const std::string& text) {
  ordered_json v;
  std::string error;
  if (!detail::parse_json(text, v, error)) fail("a step argument is not JSON: " + error);
  return v;
}

}  // namespace

std::string_view to_string(workflow_status s) noexcept {
  const auto i = static_cast<std::size_t>(s);
  return i < workflow_status_names.size() ? workflow_status_names[i] : std::string_view("UNKNOWN");
}

std::string_view to_string(task_status s) noexcept {
  const auto i = static_cast<std::size_t>(s);
  return i < task_status_names.size() ? task_status_names[i] : std::string_view("UNKNOWN");
}

std::optional<workflow_status> parse_workflow_status(std::string_view name) noexcept {
  for (std::size_t i = 0; i < workflow_status_names.size(); ++i) {
    if (workflow_status_names[i] == name) return static_cast<workflow_status>(i);
  }
  return std::nullopt;
}

std::optional<task_status> parse_task_status(std::string_view name) noexcept {
  for (std::size_t i = 0; i < task_status_names.size(); ++i) {
    if (task_status_names[i] == name) return static_cast<task_status>(i);
  }
  return std::nullopt;
}

namespace detail {

std::optional<std::chrono::nanoseconds> parse_workflow_duration(std::string_view text) noexcept {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 15) return std::nullopt;
  std::int64_t n = 0;
  std::from_chars(text.data(), text.data() + digits, n);
  const std::string_view unit = text.substr(digits);
  std::int64_t scale = 0;
  if (unit == "ms") {
    scale = 1'000'000;
  } else if (unit == "s") {
    scale = 1'000'000'000;
  } else if (unit == "m") {
    scale = 60'000'000'000;
  } else if (unit == "h") {
    scale = 3'600'000'000'000;
  } else {
    return std::nullopt;
  }
  if (n > std::numeric_limits<std::int64_t>::max() / scale) return std::nullopt;
  return std::chrono::nanoseconds(n * scale);
}

std::string format_workflow_duration(std::chrono::nanoseconds d) {
  std::int64_t ms = (d.count() + 999'999) / 1'000'000;
  if (ms <= 0) return "0ms";
  if (ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace detail

workflow::workflow(std::string name) : impl_(std::make_unique<detail::workflow_impl>()) {
  impl_->top["name"] = std::move(name);
}
workflow::workflow(const workflow& other)
    : impl_(std::make_unique<detail::workflow_impl>(other.impl_ ? *other.impl_ : detail::workflow_impl{})) {}
workflow& workflow::operator=(const workflow& other) {
  if (this != &other)
    impl_ = std::make_unique<detail::workflow_impl>(other.impl_ ? *other.impl_ : detail::workflow_impl{});
  return *this;
}
workflow::workflow(workflow&& other) noexcept : impl_(std::move(other.impl_)) {}
workflow& workflow::operator=(workflow&& other) noexcept {
  impl_ = std::move(other.impl_);
  return *this;
}
workflow::~workflow() = default;

workflow workflow::parse(std::string_view text) {
  ordered_json doc;
  std::string error;
  if (!detail::parse_json(text, doc, error)) fail(list_problems({error}));
  if (!doc.is_object()) fail(list_problems({std::string("a workflow is a JSON object, got ") + doc.type_name()}));
  workflow wf{""};
  wf.impl_->top = ordered_json::object();
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (it.key() != "steps") wf.impl_->top[it.key()] = std::move(it.value());
  }
  if (auto s = doc.find("steps"); s != doc.end()) {
    if (s->is_array()) {
      for (auto& step : *s) wf.impl_->steps.push_back(std::move(step));
    } else {
      wf.impl_->top["steps"] = std::move(*s);  // kept so that the check reports it
    }
  }
  return wf;
}

workflow workflow::from_json(std::string_view text) {
  workflow wf = parse(text);
  wf.validate();
  return wf;
}

workflow workflow::from_json_unchecked(std::string_view text) {
  workflow wf = parse(text);
  auto shape = detail::analyse(*wf.impl_, false, {});
  if (!shape.problems.empty()) fail(list_problems(shape.problems));
  return wf;
}

std::string workflow::to_json(int indent) const {
  ordered_json out = impl_ ? impl_->top : ordered_json::object();
  out.erase("steps");
  ordered_json steps = ordered_json::array();
  if (impl_) {
    for (const auto& s : impl_->steps) steps.push_back(s);
  }
  out["steps"] = std::move(steps);
  return out.dump(indent < 0 ? -1 : indent, ' ', false, ordered_json::error_handler_t::replace);
}

const std::string& workflow::name() const noexcept {
  static const std::string none;
  if (!impl_) return none;
  auto it = impl_->top.find("name");
  return it != impl_->top.end() && it->is_string() ? it->get_ref<const std::string&>() : none;
}

workflow& workflow::describe(std::string text) {
  impl_->top["description"] = std::move(text);
  return *this;
}

workflow& workflow::set_priority(int p) {
  impl_->top["priority"] = p;
  return *this;
}

workflow& workflow::tag(std::string t) {
  auto& tags = impl_->top["tags"];
  if (!tags.is_array()) tags = ordered_json::array();
  tags.push_back(std::move(t));
  return *this;
}

namespace {
void check_new_name(detail::workflow_impl& wf, const std::string& name) {
  if (name.empty()) fail("a step needs a name");
  if (wf.find_step(name)) fail("step '" + name + "' is defined twice");
}
}  // namespace

step_ref workflow::add_function_step(std::string name, void (*fn)(), std::vector<detail::step_argument> args,
                                     const split* s, std::size_t chunk_at) {
  check_new_name(*impl_, name);
  const detail::remote_function* rf = detail::find_remote_by_address(fn);
  if (!rf) fail("step '" + name + "': its function is not registered (DX_REMOTE)");
  if (s && chunk_at == static_cast<std::size_t>(-1)) {
    fail("step '" + name + "' is split, but function '" + rf->name + "' has no dx::chunk parameter to receive a chunk");
  }
  ordered_json step = ordered_json::object();
  step["name"] = name;
  step["function"] = rf->name;
  // An array by position while the inputs all come last; otherwise an object keyed by position.
  std::size_t given = 0;
  while (given < args.size() && args[given].input.empty() && !(s && given == chunk_at)) ++given;
  bool array_form = true;
  for (std::size_t i = given; i < args.size(); ++i) {
    if (args[i].input.empty() && !(s && i == chunk_at)) array_form = false;
  }
  ordered_json params = array_form ? ordered_json::array() : ordered_json::object();
  ordered_json inputs = ordered_json::object();
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (s && i == chunk_at) continue;
    if (!args[i].input.empty()) {
      inputs[std::to_string(i)] = args[i].input;
    } else if (array_form) {
      params.push_back(parse_fragment(args[i].json));
    } else {
      params[std::to_string(i)] = parse_fragment(args[i].json);
    }
  }
  if (!params.empty()) step["parameters"] = std::move(params);
  if (!inputs.empty()) step["inputs"] = std::move(inputs);
  if (s) step["split"] = split_json(*s);
  impl_->steps.push_back(std::move(step));
  return step_ref(impl_.get(), std::move(name));
}

step_ref workflow::add_reduce(std::string name, void (*fn)(), const std::string& of, std::vector<std::string> argv) {
  check_new_name(*impl_, name);
  ordered_json agg = ordered_json::object();
  agg["of"] = of;
  if (fn) {
    const detail::remote_function* rf = detail::find_remote_by_address(fn);
    if (!rf) fail("step '" + name + "': its function is not registered (DX_REMOTE)");
    agg["function"] = rf->name;
  } else {
    agg["command"] = std::move(argv);
  }
  ordered_json step = ordered_json::object();
  step["name"] = name;
  step["aggregate"] = std::move(agg);
  impl_->steps.push_back(std::move(step));
  return step_ref(impl_.get(), std::move(name));
}

step_ref workflow::command(std::string name, std::vector<std::string> argv,
                           std::map<std::string, std::string> parameters) {
  check_new_name(*impl_, name);
  ordered_json step = ordered_json::object();
  step["name"] = name;
  step["command"] = std::move(argv);
  if (!parameters.empty()) step["parameters"] = std::move(parameters);
  impl_->steps.push_back(std::move(step));
  return step_ref(impl_.get(), std::move(name));
}

step_ref workflow::command(std::string name, std::vector<std::string> argv, const split& s,
                           std::map<std::string, std::string> parameters) {
  step_ref r = command(std::move(name), std::move(argv), std::move(parameters));
  impl_->steps.back()["split"] = split_json(s);
  return r;
}

void workflow::validate(const std::vector<std::map<std::string, double>>& worker_capacities) const {
  auto found = problems(worker_capacities);
  if (!found.empty()) fail(list_problems(found));
}

std::vector<std::string> workflow::problems(const std::vector<std::map<std::string, double>>& worker_capacities) const {
  if (!impl_) return {"the workflow was moved from"};
  return detail::analyse(*impl_, true, worker_capacities).problems;
}

std::vector<workflow_step> workflow::steps() const {
  if (!impl_) fail("the workflow was moved from");
  auto a = detail::analyse(*impl_, true, {});
  if (!a.problems.empty()) fail(list_problems(a.problems));
  // Into topological order in place (position j takes step order[j]), cycle by cycle: a second
  // vector of 100,000 steps costs more than moving the few that are out of place.
  std::vector<workflow_step>& out = a.steps;
  std::vector<bool> placed(out.size(), false);
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (placed[i] || a.order[i] == i) continue;
    workflow_step first = std::move(out[i]);
    std::size_t j = i;
    while (a.order[j] != i) {
      out[j] = std::move(out[a.order[j]]);
      placed[j] = true;
      j = a.order[j];
    }
    out[j] = std::move(first);
    placed[j] = true;
  }
  return std::move(out);
}

std::size_t workflow::size() const noexcept { return impl_ ? impl_->steps.size() : 0; }

// ---- step_ref ---------------------------------------------------------------------------------

namespace {
ordered_json& step_of(detail::workflow_impl* wf, const std::string& name) {
  if (ordered_json* s = wf->find_step(name)) return *s;
  fail("step '" + name + "' is not in this workflow");
}
}  // namespace

void step_ref::add_after(const step_ref& other) {
  auto& after = step_of(wf_, name_)["after"];
  if (!after.is_array()) after = ordered_json::array();
  if (std::find(after.begin(), after.end(), other.name()) == after.end()) after.push_back(other.name());
}

step_ref& step_ref::with(const task_options& o) {
  if (!o.kind.empty()) fail("step '" + name_ + "': a workflow step's kind is its function; with() takes no kind");
  if (o.hint.size != 0) fail("step '" + name_ + "': a workflow cannot hold a size hint");
  if (o.retries && (!o.retries->only.empty() || !o.retries->never.empty())) {
    fail("step '" + name_ + "': retry_on / never_retry_on filters cannot be written in a workflow; use a retry policy");
  }
  auto& s = step_of(wf_, name_);
  if (o.priority != 0) s["priority"] = o.priority;
  if (!o.resources.empty()) s["resources"] = o.resources.amounts;
  if (o.timeout.count() > 0) s["timeout"] = detail::format_workflow_duration(o.timeout);
  if (o.retries && o.retries->policy_set) {
    const retry_policy& p = o.retries->policy;
    ordered_json r = ordered_json::object();
    r["max_attempts"] = p.max_attempts;
    r["backoff"] = detail::format_workflow_duration(p.initial_backoff);
    r["factor"] = p.factor;
    r["max_backoff"] = detail::format_workflow_duration(p.max_backoff);
    s["retries"] = std::move(r);
  }
  if (o.replication) s["replicate"] = replicate_json(*o.replication);
  if (o.deadlines) s["deadline"] = deadline_json(*o.deadlines);
  return *this;
}

step_ref& step_ref::cache(bool enabled) {
  step_of(wf_, name_)["cache"] = enabled;
  return *this;
}

}  // namespace dx
