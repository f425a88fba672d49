// The events of GET /api/events: queued by the runs, written out in batches (run_events.hpp).
#include "workflow/run_events.hpp"

#include "observe/runtime_stats.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

namespace dx::detail {

void run_event_feed::push(run_event e) {
  if (e.error.size() > max_error_bytes) e.error.resize(max_error_bytes);
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    if (pending_.size() >= max_pending) {
      ++lost_;
      lost_total_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    pending_.push_back(std::move(e));
    if (pending_.size() >= batch_events && !woken_ && wake_) {
      woken_ = true;
      wake = wake_;
    }
  }
  pushed_.fetch_add(1, std::memory_order_relaxed);
  if (wake) wake();
}

void run_event_feed::drain(std::vector<std::string>& out) {
  std::vector<run_event> events;
  std::uint64_t lost = 0;
  {
    std::lock_guard lock(mutex_);
    events.swap(pending_);
    lost = lost_;
    lost_ = 0;
    woken_ = false;
  }
  if (events.empty() && lost == 0) return;
  for (std::size_t first = 0; first < events.size(); first += batch_events) {
    std::string& m = out.emplace_back();
    write_run_events(events, first, std::min(events.size(), first + batch_events), m);
  }
  if (lost > 0) out.push_back(fmt::format(R"({{"events":[{{"type":"lost","count":{}}}]}})", lost));
}

void run_event_feed::listeners(std::size_t n) {
  listeners_.store(n, std::memory_order_relaxed);
  if (n == 0) {  // nobody reads what waits
    std::lock_guard lock(mutex_);
    pending_.clear();
    lost_ = 0;
  }
}

void run_event_feed::set_wake(std::function<void()> wake) {
  std::lock_guard lock(mutex_);
  wake_ = std::move(wake);
}

void write_run_events(const std::vector<run_event>& events, std::size_t first, std::size_t last, std::string& out) {
  using observe::json_escape_into;
  out.reserve(out.size() + 16 + (last - first) * 110);
  out += R"({"events":[)";
  for (std::size_t i = first; i < last; ++i) {
    const run_event& e = events[i];
    if (i != first) out += ',';
    switch (e.kind) {
      case run_event::type::run:
        out += R"({"type":"run","run":")";
        json_escape_into(out, e.run ? std::string_view(*e.run) : std::string_view());
        out += R"(","status":")";
        out += to_string(static_cast<workflow_status>(e.status));
        out += "\"}";
        continue;
      case run_event::type::task:
        out += R"({"type":"task","run":")";
        break;
      case run_event::type::attempt_start:
      case run_event::type::attempt_end:
        out += R"({"type":"attempt","run":")";
        break;
    }
    json_escape_into(out, e.run ? std::string_view(*e.run) : std::string_view());
    out += R"(","key":")";
    json_escape_into(out, e.key);
    if (e.kind == run_event::type::task) {
      out += R"(","status":")";
      out += to_string(static_cast<task_status>(e.status));
      fmt::format_to(std::back_inserter(out), R"(","attempts":{},"worker":)", e.attempts);
    } else {
      out += e.kind == run_event::type::attempt_start ? R"(","phase":"start")"
             : e.ok                                   ? R"(","phase":"end","ok":true)"
                                                      : R"(","phase":"end","ok":false)";
      fmt::format_to(std::back_inserter(out), R"(,"attempt":{},"worker":)", e.attempts);
    }
    if (e.worker.empty()) {
      out += "null";
    } else {
      out += '"';
      json_escape_into(out, e.worker);
      out += '"';
    }
    if (!e.error.empty()) {
      out += R"(,"error":")";
      json_escape_into(out, e.error);
      out += '"';
    }
    out += '}';
  }
  out += "]}";
}

}  // namespace dx::detail
