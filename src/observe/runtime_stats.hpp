// What the head counts about its tasks, workers and links for metrics, the dashboard and traces.
// Plain data updated under the head's lock: an update is an increment, never an allocation on
// the common path.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dx::detail::observe {

/// Bucket bounds (seconds) of task and transfer duration histograms.
inline constexpr std::array<double, 13> duration_bounds = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1,
                                                           0.5,    1,      5,     10,    50,   100};

struct duration_histogram {
  std::array<std::uint64_t, duration_bounds.size() + 1> counts{};
  double sum = 0;

  void observe(double seconds) noexcept {
    std::size_t i = 0;
    while (i < duration_bounds.size() && seconds > duration_bounds[i]) ++i;
    ++counts[i];
    sum += seconds;
  }
  std::uint64_t count() const noexcept {
    std::uint64_t n = 0;
    for (auto c : counts) n += c;
    return n;
  }
};

/// Counts of one task kind (function name); per-worker counts are indexed by scheduler worker id.
struct kind_stats {
  std::string name;
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;
  std::uint64_t failed = 0;
  std::uint64_t retried = 0;     // run again after a lost worker, input or result, or an exception (with_retries)
  std::uint64_t pausing = 0;     // now waiting out a retry's pause
  std::uint64_t moved = 0;       // taken back from a worker's queue to run elsewhere
  std::uint64_t recomputed = 0;  // finished, then run again because its result was lost
  duration_histogram durations;
  std::vector<std::uint64_t> completed_on;
  std::vector<std::uint64_t> failed_on;
  std::uint64_t failed_nowhere = 0;  // failed before reaching a worker (an input failed, cancelled)
  std::uint64_t cancelled = 0;       // given up at the caller's request (not counted as failed)
  std::uint64_t timed_out = 0;       // past their time limit (also counted as failed)

  /// Tasks of this kind not finished: at the head or on a worker.
  std::uint64_t open() const noexcept { return submitted + recomputed - completed - failed - cancelled; }

  static void count_on(std::vector<std::uint64_t>& v, std::uint32_t worker) {
    if (v.size() <= worker) v.resize(worker + 1);
    ++v[worker];
  }
};

enum class attempt_end : std::uint8_t {
  done,
  failed,
  lost,        // its worker died or stopped answering while it had the task
  superseded,  // ran, but another attempt had been started meanwhile: its result was not used
};
const char* to_string(attempt_end e) noexcept;

inline constexpr std::uint32_t unknown_thread = 0xffff;
inline constexpr std::uint32_t no_worker = ~std::uint32_t{0};

/// One finished attempt of a task. Times are seconds since the head started.
struct task_event {
  std::uint64_t task = 0;
  double start = 0;
  float duration = 0;
  std::uint32_t kind = 0;
  std::uint32_t worker = no_worker;
  std::uint16_t thread = unknown_thread;
  std::uint16_t attempt = 0;
  attempt_end status = attempt_end::done;
};

/// A result moved from `from` to `to` (scheduler worker ids; the head fetching is `to` = its own
/// receiving side, see head_side).
struct transfer_event {
  std::uint64_t task = 0;
  double start = 0;
  float duration = 0;
  std::uint32_t from = no_worker;
  std::uint32_t to = no_worker;  // no_worker: the head itself fetched it
  std::uint64_t bytes = 0;
};

/// What a history held when snapshot() was called: its events by sequence number, shared with
/// the history (no event is copied), so that a reader renders them without the writer's lock.
template <class E>
class history_snapshot {
 public:
  history_snapshot() = default;
  history_snapshot(std::vector<std::shared_ptr<const std::vector<E>>> chunks, std::size_t chunk_events,
                   std::uint64_t base, std::uint64_t first, std::uint64_t next)
      : chunks_(std::move(chunks)), chunk_events_(chunk_events), base_(base), first_(first), next_(next) {}

  std::uint64_t first() const noexcept { return first_; }
  std::uint64_t next() const noexcept { return next_; }
  const E& at(std::uint64_t seq) const {
    const std::uint64_t off = seq - base_;
    return (*chunks_[static_cast<std::size_t>(off / chunk_events_)])[static_cast<std::size_t>(off % chunk_events_)];
  }
  /// The events from the oldest kept, by position (0 is first()).
  std::size_t size() const noexcept { return static_cast<std::size_t>(next_ - first_); }
  bool empty() const noexcept { return next_ == first_; }
  const E& operator[](std::size_t i) const { return at(first_ + i); }

  class iterator {
   public:
    iterator(const history_snapshot* s, std::uint64_t seq) : s_(s), seq_(seq) {}
    const E& operator*() const { return s_->at(seq_); }
    iterator& operator++() {
      ++seq_;
      return *this;
    }
    bool operator!=(const iterator& o) const noexcept { return seq_ != o.seq_; }

   private:
    const history_snapshot* s_;
    std::uint64_t seq_;
  };
  iterator begin() const { return iterator(this, first_); }
  iterator end() const { return iterator(this, next_); }

 private:
  std::vector<std::shared_ptr<const std::vector<E>>> chunks_;
  std::size_t chunk_events_ = 1;
  std::uint64_t base_ = 0, first_ = 0, next_ = 0;
};

/// The latest `capacity` events, numbered from 0 in the order they were pushed. Memory grows
/// with the events kept, up to capacity (and one chunk of 4096 events). Events live in chunks
/// shared with snapshots: snapshot() copies a pointer per chunk, and a push copies the chunk it
/// writes only when a snapshot still holds it.
template <class E>
class history {
 public:
  static constexpr std::size_t chunk_events = 4096;

  explicit history(std::size_t capacity) : capacity_(capacity) {}
  void push(const E& e) {
    if (capacity_ == 0) return;
    if (chunks_.empty() || chunks_.back()->size() == chunk_events) {
      chunks_.push_back(std::make_shared<std::vector<E>>());
    } else if (chunks_.back().use_count() > 1) {
      chunks_.back() = std::make_shared<std::vector<E>>(*chunks_.back());  // a snapshot holds it
    }
    chunks_.back()->push_back(e);
    ++next_;
    // The front chunk goes once none of its events is among the latest `capacity`.
    while (!chunks_.empty() && base_ + chunk_events <= first()) {
      chunks_.erase(chunks_.begin());
      base_ += chunk_events;
    }
  }
  /// The oldest sequence number kept, and the one the next event gets.
  std::uint64_t first() const noexcept { return next_ - std::min<std::uint64_t>(next_ - base_, capacity_); }
  std::uint64_t next() const noexcept { return next_; }
  const E& at(std::uint64_t seq) const {
    const std::uint64_t off = seq - base_;
    return (*chunks_[static_cast<std::size_t>(off / chunk_events)])[static_cast<std::size_t>(off % chunk_events)];
  }
  std::size_t capacity() const noexcept { return capacity_; }
  /// The events kept now, sharing their storage: O(events / 4096).
  history_snapshot<E> snapshot() const {
    std::vector<std::shared_ptr<const std::vector<E>>> chunks(chunks_.begin(), chunks_.end());
    return history_snapshot<E>(std::move(chunks), chunk_events, base_, first(), next_);
  }

 private:
  std::size_t capacity_;
  std::vector<std::shared_ptr<std::vector<E>>> chunks_;
  std::uint64_t base_ = 0;  // the sequence number of the front chunk's first event
  std::uint64_t next_ = 0;
};

struct link_stats {
  std::uint64_t bytes = 0;  // results moved between workers (head links are counted by connection)
  duration_histogram durations;
};

/// Chrome trace-event JSON (Perfetto, chrome://tracing) of task attempts and transfers: one
/// process per worker, one thread per worker thread, transfers on a lane of their receiver.
/// `epoch_unix_us`: the head's start as microseconds since 1970 (timestamps are absolute).
struct trace_input {
  history_snapshot<task_event> tasks;
  history_snapshot<transfer_event> transfers;
  std::vector<std::string> kinds;    // by kind index
  std::vector<std::string> workers;  // by scheduler worker id
  double epoch_unix_us = 0;
  /// What to call each task event (by position in `tasks`; missing or empty: its kind), such as
  /// a workflow task's key ("fit", "parts#12").
  std::vector<std::string> labels;
};
void write_chrome_trace(const trace_input& in, std::string& out);

/// The same JSON piece by piece, so that a large trace is sent as it is made (a slow reader
/// holds a piece, not the whole document).
class chrome_trace_writer {
 public:
  explicit chrome_trace_writer(trace_input in);
  /// Appends the next events to `out` until it holds at least `at_least` bytes or the trace
  /// ends; returns false once the last piece (the closing bracket) has been appended.
  bool next(std::string& out, std::size_t at_least);

 private:
  std::string_view name_of_worker(std::uint32_t w) const;
  void begin_event(std::string& out);
  void write_names(std::string& out);
  void write_task(std::size_t i, std::string& out);
  void write_transfer(std::size_t i, std::string& out);

  trace_input in_;
  bool named_ = false, ended_ = false, first_ = true;
  std::size_t task_ = 0, transfer_ = 0;
};

/// Escapes `s` as the inside of a JSON string.
void json_escape_into(std::string& out, std::string_view s);

}  // namespace dx::detail::observe
