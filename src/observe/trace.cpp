#include "observe/runtime_stats.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace dx::detail::observe {

const char* to_string(attempt_end e) noexcept {
  switch (e) {
    case attempt_end::done:
      return "done";
    case attempt_end::failed:
      return "failed";
    case attempt_end::lost:
      return "lost";
    case attempt_end::superseded:
      return "superseded";
  }
  return "?";
}

void json_escape_into(std::string& out, std::string_view s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

namespace {

// Lanes of a worker process in the trace: its threads by index, then these.
constexpr std::uint32_t lost_lane = 100000;      // attempts lost with no thread known
constexpr std::uint32_t transfer_lane = 100001;  // results it received

std::uint32_t pid_of(std::uint32_t worker) { return worker == no_worker ? 0 : worker + 1; }

}  // namespace

void write_chrome_trace(const trace_input& in, std::string& out) {
  auto name_of_worker = [&](std::uint32_t w) -> std::string_view {
    if (w == no_worker || w >= in.workers.size()) return "head";
    return in.workers[w];
  };
  out += "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  bool first = true;
  auto begin_event = [&] {
    if (!first) out += ",\n";
    first = false;
  };
  // Names of processes (workers) and threads (lanes) first, so viewers label the lanes.
  std::set<std::uint32_t> pids;
  std::set<std::pair<std::uint32_t, std::uint32_t>> lanes;
  for (const task_event& e : in.tasks) {
    pids.insert(pid_of(e.worker));
    lanes.insert({pid_of(e.worker), e.thread == unknown_thread ? lost_lane : e.thread});
  }
  for (const transfer_event& e : in.transfers) {
    pids.insert(pid_of(e.to));
    lanes.insert({pid_of(e.to), transfer_lane});
  }
  for (std::uint32_t pid : pids) {
    begin_event();
    out += fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"tid":0,"args":{{"name":")", pid);
    json_escape_into(out, pid == 0 ? std::string_view("head") : name_of_worker(pid - 1));
    out += "\"}}";
    begin_event();
    out += fmt::format(R"({{"ph":"M","name":"process_sort_index","pid":{},"tid":0,"args":{{"sort_index":{}}}}})", pid,
                       pid);
  }
  for (const auto& [pid, tid] : lanes) {
    begin_event();
    const std::string lane = tid == lost_lane       ? std::string("lost (thread unknown)")
                             : tid == transfer_lane ? std::string("transfers in")
                                                    : fmt::format("thread {}", tid);
    out += fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":"{}"}}}})", pid, tid, lane);
  }
  for (std::size_t i = 0; i < in.tasks.size(); ++i) {
    const task_event& e = in.tasks[i];
    const std::string_view kind = e.kind < in.kinds.size() ? std::string_view(in.kinds[e.kind]) : "?";
    const std::string_view label = i < in.labels.size() ? std::string_view(in.labels[i]) : std::string_view();
    begin_event();
    // A labelled task (a workflow's step or chunk) is named by its label; its kind stays in args.
    out += R"({"ph":"X","cat":")";
    out += label.empty() ? "task" : "workflow";
    out += R"(","name":")";
    json_escape_into(out, label.empty() ? kind : label);
    const double ts = in.epoch_unix_us + e.start * 1e6;
    fmt::format_to(
        std::back_inserter(out),
        R"(","ts":{:.3f},"dur":{:.3f},"pid":{},"tid":{},"args":{{"task":{},"attempt":{},"status":"{}","worker":")", ts,
        std::max(0.0, static_cast<double>(e.duration) * 1e6), pid_of(e.worker),
        e.thread == unknown_thread ? lost_lane : e.thread, e.task, e.attempt, to_string(e.status));
    json_escape_into(out, name_of_worker(e.worker));
    if (!label.empty()) {
      out += R"(","kind":")";
      json_escape_into(out, kind);
    }
    out += "\"}}";
  }
  for (const transfer_event& e : in.transfers) {
    begin_event();
    out += R"({"ph":"X","cat":"transfer","name":"result of task )";
    fmt::format_to(std::back_inserter(out), "{}", e.task);
    const double ts = in.epoch_unix_us + e.start * 1e6;
    fmt::format_to(std::back_inserter(out),
                   R"(","ts":{:.3f},"dur":{:.3f},"pid":{},"tid":{},"args":{{"task":{},"bytes":{},"from":")", ts,
                   std::max(0.0, static_cast<double>(e.duration) * 1e6), pid_of(e.to), transfer_lane, e.task, e.bytes);
    json_escape_into(out, name_of_worker(e.from));
    out += R"(","to":")";
    json_escape_into(out, name_of_worker(e.to));
    out += "\"}}";
  }
  out += "\n]}\n";
}

}  // namespace dx::detail::observe
