// What the WebSocket GET /api/events pushes: the changes of a cluster's workflow runs (a run's
// status, a task's status, an attempt sent or ended), gathered by the runs as they happen and
// written out as JSON in batches by the HTTP server's thread (docs/http-api.md).
//
// A run copies a small event under its own lock (never the head's) and only while a client
// listens; the serialisation happens on the server's thread, outside every run's lock.
#pragma once

#include "observe/http_server.hpp"

#include <dx/workflow.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace dx::detail {

/// One change of a run, as /api/events sends it.
struct run_event {
  enum class type : std::uint8_t { run, task, attempt_start, attempt_end };
  type kind = type::task;
  std::uint8_t status = 0;  // a workflow_status (run) or task_status (task)
  bool ok = true;           // attempt_end: whether the attempt gave a result
  std::uint32_t attempts = 0;
  std::shared_ptr<const std::string> run;  // the run's id, shared by its events
  std::string key;                         // task and attempts: the step, or step#chunk
  std::string worker;                      // empty: none
  std::string error;                       // a task's: why it failed, was skipped or is retried
};

/// The events of a cluster's runs, waiting for the next batch. push() is thread-safe and does not
/// block beyond a short lock; the rest is called on the HTTP server's thread.
class run_event_feed final : public websocket_feed {
 public:
  /// At most this many events in one message.
  static constexpr std::size_t batch_events = 1024;
  /// At most this many events wait between two drains; more are counted, not kept, and the next
  /// message says how many were lost ({"type": "lost", "count": N}: the client refetches).
  static constexpr std::size_t max_pending = 1 << 16;
  /// An error text is cut to this many bytes in an event.
  static constexpr std::size_t max_error_bytes = 512;

  /// Whether a client listens (no event need be made otherwise). Relaxed: a run that reads a
  /// stale value makes an event nobody reads, or misses one made as the first client joins,
  /// which the client's first fetch covers.
  bool wanted() const noexcept { return listeners_.load(std::memory_order_relaxed) > 0; }
  /// Queues `e` for the next batch; wakes the server when a batch is full. Thread-safe.
  void push(run_event e);

  void drain(std::vector<std::string>& out) override;
  void listeners(std::size_t n) override;
  void set_wake(std::function<void()> wake) override;
  /// {"events": []}: the client is subscribed, every change after it is sent.
  std::string greeting() const override { return R"({"events":[]})"; }

  /// Events pushed and lost (over max_pending) since the feed was made. Thread-safe.
  std::uint64_t pushed() const noexcept { return pushed_.load(std::memory_order_relaxed); }
  std::uint64_t lost() const noexcept { return lost_total_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> listeners_{0};
  std::atomic<std::uint64_t> pushed_{0}, lost_total_{0};
  mutable std::mutex mutex_;  // pending_, lost_, wake_, woken_
  std::vector<run_event> pending_;
  std::uint64_t lost_ = 0;
  std::function<void()> wake_;
  bool woken_ = false;  // a full batch asked for a drain that has not happened yet
};

/// Writes `events` as one message: {"events": [...]}. (run_events.cpp)
void write_run_events(const std::vector<run_event>& events, std::size_t first, std::size_t last, std::string& out);

}  // namespace dx::detail
