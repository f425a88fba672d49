// The shared, group-committed journal writer of a process's workflow runs.
#include "workflow/run_journal.hpp"

#include "common/log.hpp"

#include <chrono>
#include <map>

namespace dx::detail {

namespace {

std::mutex open_mutex;
std::condition_variable closed_cv;  // a writer whose last holder let go has closed its journal
std::map<std::filesystem::path, std::weak_ptr<run_journal>>& open_journals() {
  static std::map<std::filesystem::path, std::weak_ptr<run_journal>> m;
  return m;
}

}  // namespace

std::shared_ptr<run_journal> run_journal::at(const std::filesystem::path& path) {
  const std::filesystem::path resolved = std::filesystem::absolute(resolve_journal_path(path));
  std::unique_lock lock(open_mutex);
  for (;;) {
    const auto it = open_journals().find(resolved);
    if (it == open_journals().end()) break;
    if (auto existing = it->second.lock()) return existing;
    // Its last holder let go and is closing it on another thread (a run's last reference can go
    // on any thread): the file's lock is free once that is done.
    closed_cv.wait(lock);
  }
  std::unique_ptr<journal> opened = journal::open(resolved, journal::open_mode::write);
  // Checkpoints are the committer's: never in a run's start, resume or final flush.
  opened->take_over_checkpoints();
  // One writer at a time holds a journal: a run still CREATED or RUNNING when it is opened for
  // writing lost its head (killed, or the machine stopped). It waits for a resume.
  for (const auto& r : opened->runs(true))
    if (r.status == "CREATED" || r.status == "RUNNING")
      opened->set_run_status(r.id, "INTERRUPTED", "its head (pid " + std::to_string(r.head_pid) + ") is gone");
  opened->commit();
  cache_filter keys;
  opened->each_cache_key([&](std::string_view key) { keys.add(key); });
  std::shared_ptr<run_journal> j(new run_journal(std::move(opened), std::move(keys)));
  j->path_ = resolved;
  open_journals()[resolved] = j;
  return j;
}

run_journal::run_journal(std::unique_ptr<journal> j, cache_filter keys)
    : journal_(std::move(j)), cache_keys_(std::move(keys)) {
  committer_ = std::thread([this] { commit_loop(); });
}

run_journal::~run_journal() {
  {
    std::lock_guard lock(queue_mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  room_cv_.notify_all();
  committer_.join();
  journal_.reset();  // closes the file and releases its lock
  if (path_.empty()) return;
  {
    std::lock_guard lock(open_mutex);
    const auto it = open_journals().find(path_);
    if (it != open_journals().end() && it->second.expired()) open_journals().erase(it);
  }
  closed_cv.notify_all();
}

void run_journal::change(change_fn change) noexcept {
  bool wake = false;
  {
    std::lock_guard lock(queue_mutex_);
    try {
      queue_.push_back(std::move(change));
    } catch (const std::exception& e) {  // no memory for the queue: the loss is logged
      log(log_level::error, "workflow journal {}: a change was not recorded: {}", path_.string(), e.what());
      return;
    }
    wake = queue_.size() == 1;
  }
  if (wake) cv_.notify_one();
}

void run_journal::wait_for_room(std::size_t most) {
  std::unique_lock lock(queue_mutex_);
  room_cv_.wait(lock, [&] { return queue_.size() <= most || stop_; });
}

void run_journal::apply_queued_locked() noexcept {
  std::vector<change_fn> batch;
  {
    std::lock_guard lock(queue_mutex_);
    batch.swap(queue_);
  }
  room_cv_.notify_all();
  for (auto& c : batch) {
    try {
      c(*journal_);
    } catch (const std::exception& e) {  // a run is not stopped by its record: the loss is logged
      log(log_level::error, "workflow journal {}: a change was not recorded: {}", path_.string(), e.what());
    }
  }
}

void run_journal::commit_locked() noexcept {
  if (!journal_->has_uncommitted()) return;
  const auto began = std::chrono::steady_clock::now();
  try {
    journal_->commit();
  } catch (const std::exception& e) {
    log(log_level::error, "workflow journal {}: a group of changes was lost: {}", path_.string(), e.what());
  }
  groups_.fetch_add(1, std::memory_order_relaxed);
  commit_ns_.fetch_add(
      static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - began).count()),
      std::memory_order_relaxed);
}

double run_journal::commit_seconds() const noexcept {
  return static_cast<double>(commit_ns_.load(std::memory_order_relaxed)) * 1e-9;
}

void run_journal::change_now(const change_fn& change) {
  std::lock_guard lock(db_mutex_);
  apply_queued_locked();
  change(*journal_);
  journal_->commit();
}

void run_journal::read(const change_fn& query) {
  std::lock_guard lock(db_mutex_);
  apply_queued_locked();
  query(*journal_);
}

void run_journal::flush() noexcept {
  std::lock_guard lock(db_mutex_);
  apply_queued_locked();
  commit_locked();
}

void run_journal::commit_loop() {
  for (;;) {
    {
      std::unique_lock lock(queue_mutex_);
      cv_.wait(lock, [&] { return !queue_.empty() || stop_; });
      // A short wait gathers the changes of one burst (a scheduler tick's completions) into a group;
      // a queue that is long already (the journal is behind) is a group as it is.
      if (!stop_ && queue_.size() < 1024) cv_.wait_for(lock, std::chrono::milliseconds(2), [&] { return stop_; });
    }
    bool stop = false;
    {
      std::lock_guard lock(db_mutex_);
      apply_queued_locked();
      commit_locked();
      try {
        journal_->checkpoint();
      } catch (const std::exception& e) {  // the log grows until a later checkpoint succeeds
        log(log_level::warn, "workflow journal {}: {}", path_.string(), e.what());
      }
    }
    {
      std::lock_guard lock(queue_mutex_);
      stop = stop_ && queue_.empty();
    }
    if (stop) return;
  }
}

}  // namespace dx::detail
