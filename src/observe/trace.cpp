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

chrome_trace_writer::chrome_trace_writer(trace_input in) : in_(std::move(in)) {}

std::string_view chrome_trace_writer::name_of_worker(std::uint32_t w) const {
  if (w == no_worker || w >= in_.workers.size()) return "head";
  return in_.workers[w];
}

void chrome_trace_writer::begin_event(std::string& out) {
  if (!first_) out += ",\n";
  first_ = false;
}

void chrome_trace_writer::write_names(std::string& out) {
  out += "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  // Names of processes (workers) and threads (lanes) first, so viewers label the lanes.
  std::set<std::uint32_t> pids;
  std::set<std::pair<std::uint32_t, std::uint32_t>> lanes;
  for (const task_event& e : in_.tasks) {
    pids.insert(pid_of(e.worker));
    lanes.insert({pid_of(e.worker), e.thread == unknown_thread ? lost_lane : e.thread});
  }
  for (const transfer_event& e : in_.transfers) {
    pids.insert(pid_of(e.to));
    lanes.insert({pid_of(e.to), transfer_lane});
  }
  for (std::uint32_t pid : pids) {
    begin_event(out);
    out += fmt::format(R"({{"ph":"M","name":"process_name","pid":{},"tid":0,"args":{{"name":")", pid);
    json_escape_into(out, pid == 0 ? std::string_view("head") : name_of_worker(pid - 1));
    out += "\"}}";
    begin_event(out);
    out += fmt::format(R"({{"ph":"M","name":"process_sort_index","pid":{},"tid":0,"args":{{"sort_index":{}}}}})", pid,
                       pid);
  }
  for (const auto& [pid, tid] : lanes) {
    begin_event(out);
    const std::string lane = tid == lost_lane       ? std::string("lost (thread unknown)")
                             : tid == transfer_lane ? std::string("transfers in")
                                                    : fmt::format("thread {}", tid);
    out += fmt::format(R"({{"ph":"M","name":"thread_name","pid":{},"tid":{},"args":{{"name":"{}"}}}})", pid, tid, lane);
  }
}

void chrome_trace_writer::write_task(std::size_t i, std::string& out) {
  const task_event& e = in_.tasks[i];
  const std::string_view kind = e.kind < in_.kinds.size() ? std::string_view(in_.kinds[e.kind]) : "?";
  const std::string_view label = i < in_.labels.size() ? std::string_view(in_.labels[i]) : std::string_view();
  begin_event(out);
  // A labelled task (a workflow's step or chunk) is named by its label; its kind stays in args.
  out += R"({"ph":"X","cat":")";
  out += label.empty() ? "task" : "workflow";
  out += R"(","name":")";
  json_escape_into(out, label.empty() ? kind : label);
  const double ts = in_.epoch_unix_us + e.start * 1e6;
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

void chrome_trace_writer::write_transfer(std::size_t i, std::string& out) {
  const transfer_event& e = in_.transfers[i];
  begin_event(out);
  out += R"({"ph":"X","cat":"transfer","name":"result of task )";
  fmt::format_to(std::back_inserter(out), "{}", e.task);
  const double ts = in_.epoch_unix_us + e.start * 1e6;
  fmt::format_to(std::back_inserter(out),
                 R"(","ts":{:.3f},"dur":{:.3f},"pid":{},"tid":{},"args":{{"task":{},"bytes":{},"from":")", ts,
                 std::max(0.0, static_cast<double>(e.duration) * 1e6), pid_of(e.to), transfer_lane, e.task, e.bytes);
  json_escape_into(out, name_of_worker(e.from));
  out += R"(","to":")";
  json_escape_into(out, name_of_worker(e.to));
  out += "\"}}";
}

bool chrome_trace_writer::next(std::string& out, std::size_t at_least) {
  if (!named_) {
    write_names(out);
    named_ = true;
  }
  while (out.size() < at_least && task_ < in_.tasks.size()) write_task(task_++, out);
  while (out.size() < at_least && transfer_ < in_.transfers.size()) write_transfer(transfer_++, out);
  if (task_ < in_.tasks.size() || transfer_ < in_.transfers.size()) return true;
  if (!ended_) {
    out += "\n]}\n";
    ended_ = true;
  }
  return false;
}

void write_chrome_trace(const trace_input& in, std::string& out) {
  chrome_trace_writer w(in);
  while (w.next(out, std::size_t{1} << 20)) {
  }
}

}  // namespace dx::detail::observe
