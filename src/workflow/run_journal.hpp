// The journal a process's workflow runs write to: one writer per journal file, shared by every run
// of the process that names it. Runs queue their changes; a thread of its own applies each batch
// and commits it as one group (one transaction, one fsync), so a run records a change without
// waiting for the disk or for the group being committed.
#pragma once

#include "journal/journal.hpp"
#include "workflow/cache_filter.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

namespace dx::detail {

class run_journal {
 public:
  /// The writer of the journal at `path` (resolved as resolve_journal_path does), opened on first
  /// use and shared while anyone holds it. Throws dx::error as journal::open does. Blocks on I/O.
  static std::shared_ptr<run_journal> at(const std::filesystem::path& path);

  ~run_journal();
  run_journal(const run_journal&) = delete;
  run_journal& operator=(const run_journal&) = delete;

  using change_fn = std::function<void(journal&)>;

  /// Queues `change` (it must own what it records: it runs later, on the committer's thread, in
  /// the order changes were queued) to be committed with the next group, within a few
  /// milliseconds. A change that throws is logged, not passed on (runs report from threads that
  /// cannot take an exception). Thread-safe; never waits for the disk.
  void change(change_fn change) noexcept;
  /// Blocks while more than `most` changes wait to be applied, so that a run launching work
  /// faster than the journal records it waits for the journal rather than letting it fall
  /// behind (what a crash loses, and the queue's memory, stay bounded). Thread-safe.
  void wait_for_room(std::size_t most);
  /// Applies what is queued, then `change`, and commits them, returning after the fsync. Throws
  /// what the change or the commit throws (dx::error). Thread-safe; blocks.
  void change_now(const change_fn& change);
  /// Runs `query` on the journal once every change queued before it is applied (so it sees
  /// them, committed or not). Thread-safe; blocks on I/O.
  void read(const change_fn& query);
  /// Commits everything queued now and returns after its fsync; a commit that fails is logged
  /// (its changes are lost, as in the background commits). Thread-safe; blocks.
  void flush() noexcept;
  /// Remembers that the journal holds (or is about to hold) a task with this cache key, so that
  /// may_hold_cache_key answers true for it. Thread-safe; does not block.
  void remember_cache_key(std::string_view key) noexcept { cache_keys_.add(key); }
  /// False when no task of the journal has this cache key (its lookup would find nothing); true
  /// when one may. Thread-safe; does not block (no query, no wait for a commit).
  bool may_hold_cache_key(std::string_view key) const noexcept { return cache_keys_.may_hold(key); }
  /// Groups committed so far, and the seconds their commits took (for metrics). Thread-safe.
  std::uint64_t groups_committed() const noexcept { return groups_.load(std::memory_order_relaxed); }
  double commit_seconds() const noexcept;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  run_journal(std::unique_ptr<journal> j, cache_filter keys);
  void commit_loop();
  /// Applies the queued changes in order (db_mutex_ held).
  void apply_queued_locked() noexcept;
  /// Commits what was applied (db_mutex_ held); logs a failure.
  void commit_locked() noexcept;

  std::filesystem::path path_;
  std::mutex db_mutex_;  // the journal itself: applying, committing, reading
  std::unique_ptr<journal> journal_;
  std::mutex queue_mutex_;           // the queue only: never held across I/O
  std::condition_variable cv_;       // the committer waits for changes
  std::condition_variable room_cv_;  // wait_for_room waits for the committer to take them
  std::vector<change_fn> queue_;
  bool stop_ = false;
  cache_filter cache_keys_;  // the keys of the journal's tasks (loaded at open) and of those recorded since
  std::atomic<std::uint64_t> groups_{0};
  std::atomic<std::uint64_t> commit_ns_{0};
  std::thread committer_;
};

}  // namespace dx::detail
