// The journal a process's workflow runs write to: one writer per journal file, shared by every run
// of the process that names it, committed in groups by a thread of its own (one transaction and
// one fsync per group), so runs record their changes without waiting for the disk.
#pragma once

#include "journal/journal.hpp"

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace dx::detail {

class run_journal {
 public:
  /// The writer of the journal at `path` (resolved as resolve_journal_path does), opened on first
  /// use and shared while anyone holds it. Throws dx::error as journal::open does. Blocks on I/O.
  static std::shared_ptr<run_journal> at(const std::filesystem::path& path);

  ~run_journal();
  run_journal(const run_journal&) = delete;
  run_journal& operator=(const run_journal&) = delete;

  /// Runs `change` on the journal under its lock; what it records is committed with the next
  /// group (within a few milliseconds). A change that throws is logged, not passed on (runs
  /// report from threads that cannot take an exception). Thread-safe; does not wait for the disk.
  void change(const std::function<void(journal&)>& change) noexcept;
  /// Runs `change` and commits it with everything buffered, returning after the fsync. Throws
  /// what the change or the commit throws (dx::error). Thread-safe; blocks.
  void change_now(const std::function<void(journal&)>& change);
  /// Runs `query` on the journal under its lock. Thread-safe; blocks on I/O.
  void read(const std::function<void(journal&)>& query);
  /// Commits what is buffered now and returns after its fsync; a commit that fails is logged
  /// (its changes are lost, as in the background commits). Thread-safe; blocks.
  void flush() noexcept;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  explicit run_journal(std::unique_ptr<journal> j);
  void commit_loop();

  std::filesystem::path path_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::unique_ptr<journal> journal_;
  bool dirty_ = false;
  bool stop_ = false;
  std::thread committer_;
};

}  // namespace dx::detail
