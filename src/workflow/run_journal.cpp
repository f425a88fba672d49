// The shared, group-committed journal writer of a process's workflow runs.
#include "workflow/run_journal.hpp"

#include "common/log.hpp"

#include <chrono>
#include <map>

namespace dx::detail {

namespace {

std::mutex open_mutex;
std::map<std::filesystem::path, std::weak_ptr<run_journal>>& open_journals() {
  static std::map<std::filesystem::path, std::weak_ptr<run_journal>> m;
  return m;
}

}  // namespace

std::shared_ptr<run_journal> run_journal::at(const std::filesystem::path& path) {
  const std::filesystem::path resolved = std::filesystem::absolute(resolve_journal_path(path));
  std::lock_guard lock(open_mutex);
  if (auto existing = open_journals()[resolved].lock()) return existing;
  std::unique_ptr<journal> opened = journal::open(resolved, journal::open_mode::write);
  // One writer at a time holds a journal: a run still CREATED or RUNNING when it is opened for
  // writing lost its head (killed, or the machine stopped). It waits for a resume.
  for (const auto& r : opened->runs(true))
    if (r.status == "CREATED" || r.status == "RUNNING")
      opened->set_run_status(r.id, "INTERRUPTED", "its head (pid " + std::to_string(r.head_pid) + ") is gone");
  opened->commit();
  std::shared_ptr<run_journal> j(new run_journal(std::move(opened)));
  j->path_ = resolved;
  open_journals()[resolved] = j;
  return j;
}

run_journal::run_journal(std::unique_ptr<journal> j) : journal_(std::move(j)) {
  committer_ = std::thread([this] { commit_loop(); });
}

run_journal::~run_journal() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  committer_.join();
}

void run_journal::change(const std::function<void(journal&)>& change) noexcept {
  std::lock_guard lock(mutex_);
  try {
    change(*journal_);
  } catch (const std::exception& e) {  // a run is not stopped by its record: the loss is logged
    log(log_level::error, "workflow journal {}: a change was not recorded: {}", path_.string(), e.what());
  }
  if (!dirty_) {
    dirty_ = true;
    cv_.notify_all();
  }
}

void run_journal::change_now(const std::function<void(journal&)>& change) {
  std::lock_guard lock(mutex_);
  dirty_ = false;
  change(*journal_);
  journal_->commit();
}

void run_journal::read(const std::function<void(journal&)>& query) {
  std::lock_guard lock(mutex_);
  query(*journal_);
}

void run_journal::flush() noexcept {
  std::lock_guard lock(mutex_);
  dirty_ = false;
  try {
    journal_->commit();
  } catch (const std::exception& e) {  // as in the commit loop: the runs go on, the loss is logged
    log(log_level::error, "workflow journal {}: a group of changes was lost: {}", path_.string(), e.what());
  }
}

void run_journal::commit_loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return dirty_ || stop_; });
    // A short wait gathers the changes of one burst (a scheduler tick's completions) into a group.
    if (!stop_) cv_.wait_for(lock, std::chrono::milliseconds(2), [&] { return stop_; });
    dirty_ = false;
    try {
      journal_->commit();
    } catch (const std::exception& e) {
      log(log_level::error, "workflow journal {}: a group of changes was lost: {}", path_.string(), e.what());
    }
    if (stop_) return;
  }
}

}  // namespace dx::detail
