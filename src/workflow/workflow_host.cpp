// The runs of a cluster (workflow_host): starting and resuming them, keeping them while they go
// on, and what the head shows of them: the HTTP routes under /api/runs (docs/http-api.md), the
// dx_workflow_* metrics, and the names of their tasks in traces.
#include "workflow/run_engine.hpp"

#include "cluster/cluster_access.hpp"
#include "common/log.hpp"
#include "workflow/run_status.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <set>

#include <signal.h>
#include <unistd.h>

namespace dx::detail {

namespace {

/// Every cluster gets a workflow host: made as the cluster starts when it serves HTTP (so that
/// POST /api/runs works before any run), else on its first run.
const bool registered = [] {
  extension_slot::register_factory([](cluster& cl) { return std::make_shared<workflow_host>(cl); });
  return true;
}();

std::shared_ptr<run_journal> journal_for(const run_options& opts) {
  if (!opts.journaled) return nullptr;
  return run_journal::at(opts.journal);
}

}  // namespace

workflow_host::workflow_host(cluster& cl) : cl_(cl) { (void)registered; }

std::shared_ptr<run_engine> workflow_host::start(const workflow& wf, const run_options& opts) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) throw_error(error_kind::workflow, "the cluster is stopping: no workflow can start");
  }
  auto e = run_engine::create(cl_, wf, journal_for(opts));
  add(e);
  e->start();
  return e;
}

std::shared_ptr<run_engine> workflow_host::resume(std::string_view id, const run_options& opts) {
  if (!opts.journaled) throw_error(error_kind::workflow, "a run without a journal cannot be resumed");
  return resume_from(id, run_journal::at(opts.journal), find(id));
}

std::shared_ptr<run_engine> workflow_host::resume_from(std::string_view id, std::shared_ptr<run_journal> journal,
                                                       const std::shared_ptr<run_engine>& old) {
  if (old && !old->has_ended())
    throw_error(error_kind::workflow,
                fmt::format("run {} is {} here: there is nothing to resume", id, to_string(old->status())));
  auto e = run_engine::resume(cl_, id, std::move(journal));
  // The engine that ran it before takes no more requests from the journal, and leaves the list:
  // the run is listed once, as the new engine has it.
  if (old) old->retire();
  add(e);
  e->start();
  return e;
}

void workflow_host::alert_on_journal(const std::shared_ptr<run_journal>& journal) {
  if (!journal) return;
  {
    std::lock_guard lock(mutex_);
    if (!alerted_journals_.emplace(journal.get(), journal).second) return;
  }
  // The journal's store away, back, or taken over: an alert of this cluster, on the committing
  // thread (raise() never calls back).
  journal->on_health(
      this, [&alerts = cluster_access::alerts(cl_), where = journal->path().string()](const journal_health& h) {
        alert a;
        a.kind = alert_kind::journal_unavailable;
        a.subject = where;
        a.message = h.reason;
        a.value = static_cast<double>(h.held_groups);
        a.time = std::chrono::system_clock::now();
        alerts.raise(std::move(a));
      });
}

void workflow_host::stop_alerting() noexcept {
  std::map<const run_journal*, std::weak_ptr<run_journal>> journals;
  {
    std::lock_guard lock(mutex_);
    journals.swap(alerted_journals_);
  }
  for (auto& [key, weak] : journals)
    if (auto j = weak.lock()) j->forget_health(this);
}

workflow_host::~workflow_host() { stop_alerting(); }

void workflow_host::add(const std::shared_ptr<run_engine>& run) {
  alert_on_journal(run->journal_writer());
  run->count_into(counters_);
  run->publish_to(events_);
  std::vector<std::shared_ptr<run_engine>> released;
  {
    std::lock_guard lock(mutex_);
    if (closed_) throw_error(error_kind::workflow, "the cluster is stopping: no workflow can start");
    for (auto& e : runs_) {
      auto r = e.run.lock();
      if (r && r->id() == run->id()) {
        released.push_back(std::move(e.held));
        e.run.reset();
      }
    }
    std::erase_if(runs_, [](const entry& e) { return !e.held && e.run.expired(); });
    auto pruned = prune_locked();
    released.insert(released.end(), pruned.begin(), pruned.end());
    runs_.push_back({run, run});
  }
}

std::vector<std::shared_ptr<run_engine>> workflow_host::prune_locked() const {
  std::vector<std::shared_ptr<run_engine>> released;  // let go of after the lock (a run may be big)
  std::erase_if(runs_, [](const entry& e) { return !e.held && e.run.expired(); });
  std::size_t ended_kept = 0;
  for (auto it = runs_.rbegin(); it != runs_.rend(); ++it) {
    if (!it->held || !it->held->has_ended()) continue;
    if (++ended_kept > kept_ended) released.push_back(std::move(it->held));
  }
  return released;
}

void workflow_host::shutdown() noexcept {
  std::vector<std::shared_ptr<run_engine>> runs;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    for (auto& e : runs_)
      if (auto r = e.run.lock()) runs.push_back(std::move(r));
  }
  for (auto& r : runs) r->interrupt();
  stop_alerting();
}

std::vector<std::shared_ptr<run_engine>> workflow_host::runs() const {
  std::vector<std::shared_ptr<run_engine>> out, released;
  std::lock_guard lock(mutex_);
  released = prune_locked();
  for (const auto& e : runs_)
    if (auto r = e.run.lock()) out.push_back(std::move(r));
  return out;
}

std::shared_ptr<run_engine> workflow_host::find(std::string_view id) const {
  std::lock_guard lock(mutex_);
  for (const auto& e : runs_)
    if (auto r = e.run.lock(); r && r->id() == id) return r;
  return nullptr;
}

// ---- HTTP ------------------------------------------------------------------------------------------

namespace {

using json = nlohmann::ordered_json;

constexpr const char* json_type = "application/json";

http_response json_answer(unsigned status, std::string body, std::string route) {
  http_response r{status, json_type, std::move(body)};
  r.route = std::move(route);
  return r;
}

http_response json_error(unsigned status, const std::string& why, std::string route, json extra = json::object()) {
  extra["error"] = why;
  return json_answer(status, extra.dump(-1, ' ', false, json::error_handler_t::replace), std::move(route));
}

http_response method_not_allowed(const char* allow, std::string route) {
  http_response r = json_error(405, fmt::format("this route is used with {}", allow), std::move(route));
  r.headers.emplace_back("Allow", allow);
  return r;
}

/// Whether an If-None-Match header ("\"a\", W/\"b\"" or "*") names `etag`.
bool etag_matches(const std::string& if_none_match, const std::string& etag) {
  if (if_none_match.empty()) return false;
  std::string_view rest(if_none_match);
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view one = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    if (one.rfind("W/", 0) == 0) one.remove_prefix(2);
    if (one == "*" || one == etag) return true;
  }
  return false;
}

/// The answer to a GET whose body is a function of `etag`: 304 when the client has it.
http_response conditional(const http_request& r, const std::string& etag, std::string route,
                          const std::function<std::string()>& body) {
  http_response out = etag_matches(r.header("if-none-match"), etag) ? json_answer(304, {}, std::move(route))
                                                                    : json_answer(200, body(), std::move(route));
  out.headers.emplace_back("ETag", etag);
  return out;
}

/// A query parameter as a non-negative integer: `fallback` when absent, nullopt when malformed.
std::optional<std::uint64_t> query_number(const http_request& r, const char* key, std::uint64_t fallback) {
  auto it = r.query.find(key);
  if (it == r.query.end()) return fallback;
  const std::string& s = it->second;
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

/// The problems a workflow_error lists, one per line after its first ("  - ...").
std::vector<std::string> problems_of(const std::string& what) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while ((at = what.find("\n  - ", at)) != std::string::npos) {
    at += 5;
    const auto end = what.find("\n  - ", at);
    out.push_back(what.substr(at, end == std::string::npos ? std::string::npos : end - at));
  }
  if (out.empty()) out.push_back(what);
  return out;
}

/// The body parsed as JSON, or the 400 that names where it is not JSON: the byte, line and column
/// of the first error (nlohmann's position: the byte read when the error was found, 1-based).
std::optional<http_response> not_json(const std::string& body, const std::string& route) {
  try {
    [[maybe_unused]] const json parsed = json::parse(body);
    return std::nullopt;
  } catch (const json::parse_error& e) {
    const std::size_t byte = std::min<std::size_t>(e.byte, body.size() + 1);
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i + 1 < byte && i < body.size(); ++i) {
      if (body[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 2:
    // syntax error while parsing value - invalid literal; last read: '{x'"; the part after the
    // position says what was wrong.
    std::string what = e.what();
    if (const auto colon = what.find(": "); colon != std::string::npos) what = what.substr(colon + 2);
    const std::string why =
        fmt::format("the body is not JSON: at byte {} (line {}, column {}): {}", byte, line, column, what);
    return json_error(400, why, route,
                      json{{"valid", false},
                           {"problems", json::array({why})},
                           {"position", {{"byte", byte}, {"line", line}, {"column", column}}}});
  }
}

/// Whether process `pid` of this machine still runs.
bool process_alive(std::int64_t pid) { return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM); }

/// The workflow in `body` (into `wf`, when it parses) and every problem found in it: what
/// POST /api/runs and POST /api/workflows/validate check.
std::vector<std::string> read_workflow(const std::string& body, std::optional<workflow>& wf) {
  try {
    wf.emplace(workflow::from_json_unchecked(body));
    return wf->problems();
  } catch (const workflow_error& e) {
    return problems_of(e.what());
  }
}

constexpr const char* runs_route = "/api/runs";
constexpr const char* run_route = "/api/runs/{id}";
constexpr const char* cancel_route = "/api/runs/{id}/cancel";
constexpr const char* resume_route = "/api/runs/{id}/resume";
constexpr const char* validate_route = "/api/workflows/validate";
constexpr const char* events_route = "/api/events";

}  // namespace

std::optional<http_response> workflow_host::serve_http(const http_request& r, const http_write_access& access) {
  // Reading runs follows the head's read rule as writing follows its write rule.
  const bool runs_path = r.path == runs_route || r.path.rfind("/api/runs/", 0) == 0;
  if (runs_path && r.method != http_method::post && !access.allowed)
    return json_error(access.status, access.reason,
                      r.path == runs_route || r.path == "/api/runs/" ? runs_route : run_route);
  if (r.path == events_route) {
    if (r.method == http_method::post) return method_not_allowed("GET", events_route);
    if (!access.allowed) return json_error(access.status, access.reason, events_route);
    http_response out = json_answer(200, {}, events_route);
    out.websocket = events_;
    return out;
  }
  if (r.path == validate_route) {
    if (r.method != http_method::post) return method_not_allowed("POST", validate_route);
    if (!access.allowed) return json_error(access.status, access.reason, validate_route);
    return validate_over_http(r);
  }
  if (r.path == "/api/runs" || r.path == "/api/runs/") {
    if (r.method != http_method::post) {
      std::vector<run_summary_view> views;
      for (const auto& run : runs()) views.push_back(run->summary());
      // The list's tag: every run's id and version, hashed (FNV-1a).
      std::uint64_t h = 14695981039346656037ull;
      auto mix = [&](std::string_view s) {
        for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
      };
      for (const auto& v : views) {
        mix(v.id);
        mix(std::to_string(v.version));
      }
      return conditional(r, fmt::format("\"{:016x}-{}\"", h, views.size()), runs_route,
                         [&] { return runs_json(views); });
    }
    if (!access.allowed) return json_error(access.status, access.reason, runs_route);
    return start_over_http(r);
  }
  if (r.path.rfind("/api/runs/", 0) != 0) return std::nullopt;
  std::string rest = r.path.substr(10);
  static constexpr std::string_view cancel_suffix = "/cancel";
  if (rest.size() > cancel_suffix.size() &&
      rest.compare(rest.size() - cancel_suffix.size(), std::string::npos, cancel_suffix) == 0) {
    if (r.method != http_method::post) return method_not_allowed("POST", cancel_route);
    if (!access.allowed) return json_error(access.status, access.reason, cancel_route);
    const std::string id = rest.substr(0, rest.size() - cancel_suffix.size());
    auto run = find(id);
    if (!run) return json_error(404, fmt::format("this cluster has no run '{}'", id), cancel_route);
    if (!run->cancel()) {
      const workflow_status now = run->status();
      return json_error(409, fmt::format("run {} is {}: there is nothing to cancel", id, to_string(now)), cancel_route,
                        json{{"id", id}, {"status", to_string(now)}});
    }
    return json_answer(200, json{{"id", id}, {"status", to_string(run->status())}}.dump(), cancel_route);
  }
  static constexpr std::string_view resume_suffix = "/resume";
  if (rest.size() > resume_suffix.size() &&
      rest.compare(rest.size() - resume_suffix.size(), std::string::npos, resume_suffix) == 0) {
    if (r.method != http_method::post) return method_not_allowed("POST", resume_route);
    if (!access.allowed) return json_error(access.status, access.reason, resume_route);
    return resume_over_http(rest.substr(0, rest.size() - resume_suffix.size()));
  }
  if (rest.empty() || rest.find('/') != std::string::npos)
    return json_error(404, fmt::format("no route at {}: see /api/runs and /api/runs/{{id}}", r.path), run_route);
  if (r.method == http_method::post) return method_not_allowed("GET, HEAD", run_route);
  auto run = find(rest);
  if (!run) return json_error(404, fmt::format("this cluster has no run '{}'", rest), run_route);

  std::optional<subtask_query> q;
  if (auto it = r.query.find("subtasks"); it != r.query.end()) {
    q.emplace();
    q->step = it->second;
    const auto offset = query_number(r, "offset", 0);
    if (!offset) return json_error(400, "offset must be a non-negative integer", run_route);
    const auto limit = query_number(r, "limit", default_subtask_page);
    if (!limit || *limit == 0 || *limit > max_subtask_page)
      return json_error(400, fmt::format("limit must be an integer from 1 to {}", max_subtask_page), run_route);
    q->offset = *offset;
    q->limit = *limit;
    if (auto st = r.query.find("status"); st != r.query.end()) {
      q->status = parse_task_status(st->second);
      if (!q->status)
        return json_error(400,
                          fmt::format("status '{}' is not a task status (PENDING, RUNNING, FAILED, ...)", st->second),
                          run_route);
    }
  } else if (r.query.count("offset") || r.query.count("limit") || r.query.count("status")) {
    return json_error(400, "offset, limit and status page the subtasks of a step: add subtasks=STEP", run_route);
  }
  run_detail_view view = run->detail(q ? &*q : nullptr);
  if (q && !view.subtasks) return json_error(404, fmt::format("run {} has no step '{}'", rest, q->step), run_route);
  // ?step=NAME: that step's result too (its size and a preview), once it succeeded.
  if (auto it = r.query.find("step"); it != r.query.end()) {
    auto s =
        std::find_if(view.steps.begin(), view.steps.end(), [&](const step_view& v) { return v.name == it->second; });
    if (s == view.steps.end())
      return json_error(404, fmt::format("run {} has no step '{}'", rest, it->second), run_route);
    if (succeeded(s->status)) {
      try {
        s->result = result_view_of(*s, run->result_bytes(s->name));
      } catch (const std::exception&) {
        // Lost with a worker, or not kept: the panel shows the step without it.
      }
    }
  }
  return conditional(r, fmt::format("\"{}{}\"", view.run.version, r.query.count("step") ? "-s" : ""), run_route,
                     [&] { return run_json(view); });
}

http_response workflow_host::start_over_http(const http_request& r) {
  if (r.body.empty())
    return json_error(400, "the body must be a workflow in JSON (docs/workflow-format.md)", runs_route,
                      json{{"problems", json::array({"the request has no body"})}});
  if (auto bad = not_json(r.body, runs_route)) return std::move(*bad);
  std::optional<workflow> wf;
  const std::vector<std::string> problems = read_workflow(r.body, wf);
  if (!problems.empty())
    return json_error(400,
                      problems.size() == 1 ? std::string("the workflow is not valid: 1 problem")
                                           : fmt::format("the workflow is not valid: {} problems", problems.size()),
                      runs_route, json{{"problems", problems}});
  {
    std::lock_guard lock(mutex_);
    if (closed_) return json_error(503, "the cluster is stopping: no workflow can start", runs_route);
  }
  std::shared_ptr<run_engine> run;
  try {
    run = start(*wf, run_options{});
  } catch (const workflow_error& e) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return json_error(503, "the cluster is stopping: no workflow can start", runs_route);
    }
    return json_error(400, e.what(), runs_route, json{{"problems", problems_of(e.what())}});
  } catch (const std::exception& e) {
    log(log_level::warn, "a workflow sent over HTTP could not start: {}", e.what());
    return json_error(500, fmt::format("the run could not start: {}", e.what()), runs_route);
  }
  const std::string url = "/api/runs/" + run->id();
  http_response out = json_answer(
      201, json{{"id", run->id()}, {"name", run->name()}, {"status", to_string(run->status())}, {"url", url}}.dump(),
      runs_route);
  out.headers.emplace_back("Location", url);
  return out;
}

http_response workflow_host::validate_over_http(const http_request& r) {
  if (r.body.empty())
    return json_error(400, "the body must be a workflow in JSON (docs/workflow-format.md)", validate_route,
                      json{{"valid", false}, {"problems", json::array({"the request has no body"})}});
  if (auto bad = not_json(r.body, validate_route)) return std::move(*bad);
  // The checks POST /api/runs makes, against this process's registry; nothing is started.
  std::optional<workflow> wf;
  const std::vector<std::string> problems = read_workflow(r.body, wf);
  json out{{"valid", problems.empty()}};
  if (wf) {
    out["name"] = wf->name();
    out["steps"] = wf->size();
  }
  out["problems"] = problems;
  return json_answer(200, out.dump(-1, ' ', false, json::error_handler_t::replace), validate_route);
}

http_response workflow_host::resume_over_http(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return json_error(503, "the cluster is stopping: no run can be resumed", resume_route);
  }
  auto refuse = [&](const std::string& why, std::string_view status) {
    return json_error(409, why, resume_route, json{{"id", id}, {"status", status}});
  };
  std::shared_ptr<run_engine> old = find(id);
  std::shared_ptr<run_journal> journal;
  try {
    if (old) {
      const workflow_status now = old->status();
      if (now == workflow_status::running || now == workflow_status::created)
        return refuse(fmt::format("run {} is {}: there is nothing to resume", id, to_string(now)), to_string(now));
      if (now == workflow_status::succeeded)
        return refuse(fmt::format("run {} SUCCEEDED: there is nothing to resume", id), to_string(now));
      journal = old->journal_writer();
      if (!journal) return refuse(fmt::format("run {} has no journal: it cannot be resumed", id), to_string(now));
    } else {
      // A run of the default journal (where POST /api/runs writes) that this cluster does not have.
      const auto path = resolve_journal_path();
      if (!is_redis_location(path.native()) && !std::filesystem::exists(path))
        return json_error(
            404, fmt::format("this cluster has no run '{}' (and there is no journal at {})", id, path.string()),
            resume_route);
      journal = run_journal::at(path);
      std::optional<run_record> rec;
      journal->read([&](detail::journal& j) { rec = j.find_run(id); });
      if (!rec)
        return json_error(404, fmt::format("neither this cluster nor the journal {} has a run '{}'", path.string(), id),
                          resume_route);
      if (rec->status == "SUCCEEDED")
        return refuse(fmt::format("run {} SUCCEEDED: there is nothing to resume", id), rec->status);
      if ((rec->status == "RUNNING" || rec->status == "CREATED") && rec->head_pid != ::getpid() &&
          process_alive(rec->head_pid))
        return refuse(fmt::format("run {} is {} in another process ({})", id, rec->status, rec->head_pid), rec->status);
    }
  } catch (const std::exception& e) {
    return json_error(500, fmt::format("the journal cannot be read: {}", e.what()), resume_route);
  }
  std::shared_ptr<run_engine> run;
  try {
    run = resume_from(id, std::move(journal), old);
  } catch (const workflow_error& e) {
    {
      std::lock_guard lock(mutex_);
      if (closed_) return json_error(503, "the cluster is stopping: no run can be resumed", resume_route);
    }
    auto now = find(id);
    return refuse(e.what(), now ? to_string(now->status()) : std::string_view("UNKNOWN"));
  } catch (const std::exception& e) {
    log(log_level::warn, "run {} could not be resumed over HTTP: {}", id, e.what());
    return json_error(500, fmt::format("the run could not be resumed: {}", e.what()), resume_route);
  }
  return json_answer(200, json{{"id", run->id()}, {"status", to_string(run->status())}}.dump(), resume_route);
}

// ---- metrics and traces ----------------------------------------------------------------------------

void workflow_host::collect(exposition& out) const {
  const auto all = runs();
  constexpr std::size_t statuses = 9;
  if (out.family("dx_workflow_runs", metric_type::gauge, "Workflow runs of this cluster, by status.")) {
    std::array<std::uint64_t, statuses> by{};
    for (const auto& r : all) ++by[static_cast<std::size_t>(r->status())];
    for (std::size_t i = 0; i < statuses; ++i)
      out.sample("dx_workflow_runs", {{"status", to_string(static_cast<workflow_status>(i))}},
                 static_cast<double>(by[i]));
  }
  if (out.family("dx_workflow_tasks", metric_type::gauge,
                 "Tasks (steps and their subtasks) of the workflow runs going on, by status.")) {
    status_counts by;
    for (const auto& r : all)
      if (r->status() == workflow_status::running) r->count_tasks(by);
    for (std::size_t i = 0; i < statuses; ++i)
      out.sample("dx_workflow_tasks", {{"status", to_string(static_cast<task_status>(i))}},
                 static_cast<double>(by.by[i]));
  }
  if (out.family("dx_workflow_tasks_finished_total", metric_type::counter,
                 "Workflow tasks (steps and subtasks) that ended in this cluster, by how they ended.")) {
    for (task_status s : {task_status::succeeded, task_status::cached, task_status::failed, task_status::skipped,
                          task_status::cancelled})
      out.sample("dx_workflow_tasks_finished_total", {{"status", to_string(s)}},
                 static_cast<double>(counters_->finished[static_cast<std::size_t>(s)].load(std::memory_order_relaxed)));
  }
  std::set<const run_journal*> journals;
  std::vector<const run_journal*> order;
  for (const auto& r : all)
    if (const auto& j = r->journal_writer(); j && journals.insert(j.get()).second) order.push_back(j.get());
  if (out.family("dx_workflow_journal_commits_total", metric_type::counter,
                 "Groups of workflow changes committed to a journal (one transaction and fsync each) since this "
                 "process opened it."))
    for (const run_journal* j : order)
      out.sample("dx_workflow_journal_commits_total", {{"journal", j->path().string()}},
                 static_cast<double>(j->groups_committed()));
  if (out.family("dx_workflow_journal_commit_seconds_total", metric_type::counter,
                 "Seconds spent committing those groups (their fsyncs included)."))
    for (const run_journal* j : order)
      out.sample("dx_workflow_journal_commit_seconds_total", {{"journal", j->path().string()}}, j->commit_seconds());
}

std::vector<std::string> workflow_host::task_labels(std::span<const std::uint64_t> head_tasks) const {
  std::vector<std::string> labels(head_tasks.size());
  for (const auto& r : runs()) r->label_tasks(head_tasks, labels);
  return labels;
}

}  // namespace dx::detail
