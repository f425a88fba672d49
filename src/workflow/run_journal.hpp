// The journal a process's workflow runs write to: one writer per journal file, shared by every run
// of the process that names it. Runs queue their changes; a thread of its own applies each batch
// and commits it as one group (one transaction, one fsync), so a run records a change without
// waiting for the disk or for the group being committed. The same thread takes the requests other
// processes write to the journal for the runs this process runs (dx cancel): it looks for new
// ones a few times a second while a run is watched.
#pragma once

#include "journal/journal.hpp"
#include "workflow/cache_filter.hpp"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
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
  /// What a watched run does with a request ("cancel"); returns the answer recorded for it.
  using request_fn = std::function<std::string(const std::string& what)>;
  /// Takes the requests made for `run` from now on: the committing thread calls `on_request`
  /// with each (holding no lock of the journal, so it may change the journal and flush it) within
  /// request_poll of the request, and records the answer. Requests made before the call were made
  /// of an earlier head of the run: they are answered as dropped. Thread-safe; blocks for a read.
  void watch(const std::string& run, request_fn on_request);
  /// Stops taking requests for `run`. Thread-safe; does not block on I/O.
  void unwatch(const std::string& run);
  /// How often the committing thread looks for requests while a run is watched.
  static constexpr std::chrono::milliseconds request_poll{250};

  /// Remembers that the journal holds (or is about to hold) a task with this cache key, so that
  /// may_hold_cache_key answers true for it. Thread-safe; does not block.
  void remember_cache_key(std::string_view key) noexcept { cache_keys_.add(key); }
  /// False when no task of the journal has this cache key (its lookup would find nothing); true
  /// when one may. Thread-safe; does not block (no query, no wait for a commit).
  bool may_hold_cache_key(std::string_view key) const noexcept { return cache_keys_.may_hold(key); }
  /// Groups committed so far, and the seconds their commits took (for metrics). Thread-safe.
  std::uint64_t groups_committed() const noexcept;
  double commit_seconds() const noexcept;
  const std::filesystem::path& path() const noexcept;

  /// Called on the committing thread when the store's health changes (commits held while it is
  /// away, every held commit written again, the lease lost): `reason` says what happened.
  using health_fn = std::function<void(const journal_health&)>;
  /// Adds `fn` under `key` (one listener per key however many times it is added: the runs of one
  /// cluster share its alerts), until forget_health(key) was called as many times. Thread-safe.
  void on_health(const void* key, health_fn fn);
  void forget_health(const void* key);

 private:
  /// The journal, its queue and its watches, shared with the committing thread: the last owner
  /// of the writer may let go on that thread (inside a request's callback), which then ends on
  /// its own instead of being joined.
  class core;
  run_journal(std::shared_ptr<core> c, cache_filter keys);

  std::shared_ptr<core> core_;
  cache_filter cache_keys_;  // the keys of the journal's tasks (loaded at open) and of those recorded since
  std::thread committer_;
};

}  // namespace dx::detail
