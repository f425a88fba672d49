// The shared, group-committed journal writer of a process's workflow runs, and the requests of
// other processes it takes for them.
#include "workflow/run_journal.hpp"

#include "common/log.hpp"

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

namespace dx::detail {

namespace {

std::mutex open_mutex;
std::condition_variable closed_cv;  // a writer whose last holder let go has closed its journal
std::map<std::filesystem::path, std::weak_ptr<run_journal>>& open_journals() {
  static std::map<std::filesystem::path, std::weak_ptr<run_journal>> m;
  return m;
}

}  // namespace

class run_journal::core {
 public:
  core(std::unique_ptr<journal> j, std::filesystem::path path) : path_(std::move(path)), journal_(std::move(j)) {}

  void change(change_fn change) noexcept {
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

  void wait_for_room(std::size_t most) {
    std::unique_lock lock(queue_mutex_);
    room_cv_.wait(lock, [&] { return queue_.size() <= most || stop_; });
  }

  void change_now(const change_fn& change) {
    std::lock_guard lock(db_mutex_);
    apply_queued_locked();
    change(*journal_);
    journal_->commit();
  }

  void read(const change_fn& query) {
    std::lock_guard lock(db_mutex_);
    apply_queued_locked();
    query(*journal_);
  }

  void flush() noexcept {
    std::lock_guard lock(db_mutex_);
    apply_queued_locked();
    commit_locked();
  }

  void watch(const std::string& run, request_fn on_request) {
    std::int64_t since = 0;
    try {
      read([&](journal& j) { since = j.last_request_id(); });
    } catch (const std::exception& e) {  // the run goes on; requests made before may be taken for it
      log(log_level::warn, "workflow journal {}: cannot read its requests: {}", path_.string(), e.what());
    }
    {
      std::lock_guard lock(queue_mutex_);
      watched_[run] = watched{std::move(on_request), since};
    }
    cv_.notify_all();
  }

  void unwatch(const std::string& run) {
    std::lock_guard lock(queue_mutex_);
    watched_.erase(run);
  }

  void stop() noexcept {
    {
      std::lock_guard lock(queue_mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    room_cv_.notify_all();
  }

  /// The committing thread: a group per burst of changes, and the requests of watched runs.
  void commit_loop() {
    using clock = std::chrono::steady_clock;
    auto next_poll = clock::now();
    for (;;) {
      bool poll = false;
      {
        std::unique_lock lock(queue_mutex_);
        const auto work = [&] { return !queue_.empty() || stop_; };
        if (catching_up_.load(
                std::memory_order_relaxed)) {  // groups held while the store is away: tried again without new changes
          cv_.wait_for(lock, catch_up_every, work);
        } else if (watched_.empty()) {
          cv_.wait(lock, [&] { return work() || !watched_.empty(); });
        } else {
          cv_.wait_until(lock, next_poll, work);
        }
        // A short wait gathers the changes of one burst (a scheduler tick's completions) into a
        // group; a queue that is long already (the journal is behind) is a group as it is.
        if (!queue_.empty() && !stop_ && queue_.size() < 1024)
          cv_.wait_for(lock, std::chrono::milliseconds(2), [&] { return stop_; });
        poll = !stop_ && !watched_.empty() && clock::now() >= next_poll;
      }
      if (poll) {
        take_requests();
        next_poll = clock::now() + request_poll;
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
      if (stop) break;
    }
    close();
  }

  double commit_seconds() const noexcept {
    return static_cast<double>(commit_ns_.load(std::memory_order_relaxed)) * 1e-9;
  }
  std::uint64_t groups_committed() const noexcept { return groups_.load(std::memory_order_relaxed); }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  void apply_queued_locked() noexcept {
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

  void commit_locked() noexcept {
    if (!journal_->has_uncommitted()) return;
    struct health_check {
      core& c;
      ~health_check() { c.check_health_locked(); }
    } check_after{*this};
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

  /// Notices a change of the store's health (held commits, a lost lease) and tells the listeners.
  void check_health_locked() noexcept {
    journal_health h;
    try {
      h = journal_->health();
    } catch (...) {
      return;
    }
    catching_up_.store(h.held_groups > 0 && !h.fenced, std::memory_order_relaxed);
    const bool bad = h.degraded || h.fenced;
    if (bad == unhealthy_ && (!bad || h.fenced == fenced_)) return;
    const bool recovered = unhealthy_ && !bad;
    unhealthy_ = bad;
    fenced_ = h.fenced;
    if (recovered)
      h.reason = fmt::format("journal {}: the store is back and every held commit is written", path_.string());
    std::vector<health_fn> listeners;
    // Held while they run: forget_health() returns only once no call of the forgotten one is
    // going on, so that what it reaches (a cluster's alerts) may go away after it.
    std::lock_guard calling(listeners_calling_);
    {
      std::lock_guard lock(queue_mutex_);
      for (const auto& [key, l] : health_listeners_) listeners.push_back(l.fn);
    }
    for (const auto& fn : listeners) {
      try {
        fn(h);
      } catch (...) {  // a listener's failure does not stop the journal
      }
    }
  }

 public:
  void on_health(const void* key, health_fn fn) {
    std::lock_guard lock(queue_mutex_);
    auto& l = health_listeners_[key];
    if (l.users++ == 0) l.fn = std::move(fn);
  }
  void forget_health(const void* key) {
    std::lock_guard calling(listeners_calling_);
    std::lock_guard lock(queue_mutex_);
    const auto it = health_listeners_.find(key);
    if (it != health_listeners_.end() && --it->second.users == 0) health_listeners_.erase(it);
  }

 private:
  /// Closes the file (releasing its lock) and lets a writer waiting in at() open it again.
  void close() noexcept {
    {
      std::lock_guard lock(db_mutex_);
      journal_.reset();
    }
    {
      std::lock_guard lock(open_mutex);
      const auto it = open_journals().find(path_);
      if (it != open_journals().end() && it->second.expired()) open_journals().erase(it);
    }
    closed_cv.notify_all();
  }

  /// Answers the open requests of watched runs (committing thread, no lock held while a run's
  /// callback runs: it may change and flush the journal).
  void take_requests() noexcept {
    std::vector<run_request> open;
    try {
      std::lock_guard lock(db_mutex_);
      open = journal_->open_requests();
    } catch (const std::exception& e) {
      log(log_level::warn, "workflow journal {}: cannot read its requests: {}", path_.string(), e.what());
      return;
    }
    // Answers queued before and committed since are no longer open: forget them.
    std::set<std::int64_t> still_open;
    for (const auto& r : open) still_open.insert(r.id);
    std::erase_if(answered_, [&](std::int64_t id) { return still_open.count(id) == 0; });
    for (const auto& r : open) {
      if (answered_.count(r.id)) continue;
      request_fn on_request;
      bool earlier = false;
      {
        std::lock_guard lock(queue_mutex_);
        auto w = watched_.find(r.run);
        if (w == watched_.end()) continue;  // not a run of this process: its asker withdraws it
        on_request = w->second.on_request;
        earlier = r.id <= w->second.since;
      }
      std::string answer;
      if (earlier) {
        answer = "dropped: it was made of an earlier head of the run";
      } else {
        try {
          answer = on_request(r.what);
        } catch (const std::exception& e) {
          answer = std::string("failed: ") + e.what();
        }
      }
      log(log_level::info, "workflow run {}: request {} ({}) from process {}: {}", r.run, r.id, r.what, r.requested_by,
          answer);
      answered_.insert(r.id);
      change([id = r.id, answer = std::move(answer)](journal& j) { j.answer(id, answer); });
    }
  }

  struct health_listener {
    health_fn fn;
    std::size_t users = 0;
  };
  /// How often held commits are tried again while nothing new arrives.
  static constexpr std::chrono::milliseconds catch_up_every{250};

  struct watched {
    request_fn on_request;
    std::int64_t since = 0;  // requests up to this id were made before the watch began
  };

  const std::filesystem::path path_;
  std::mutex db_mutex_;  // the journal itself: applying, committing, reading
  std::unique_ptr<journal> journal_;
  std::mutex queue_mutex_;           // the queue and the watches only: never held across I/O or a callback
  std::condition_variable cv_;       // the committer waits for changes
  std::condition_variable room_cv_;  // wait_for_room waits for the committer to take them
  std::vector<change_fn> queue_;
  bool stop_ = false;
  std::map<std::string, watched> watched_;
  std::set<std::int64_t> answered_;  // answers queued, perhaps not committed yet (committing thread only)
  std::map<const void*, health_listener> health_listeners_;  // under queue_mutex_
  std::mutex listeners_calling_;  // taken before queue_mutex_, never while waiting for the journal
  // Groups wait in the journal for its store: the loop wakes to try them again. Written under
  // db_mutex_ by whichever thread committed, read by the loop under queue_mutex_ only: relaxed, as a
  // late read costs one wait of catch_up_every at most.
  std::atomic<bool> catching_up_{false};
  bool unhealthy_ = false;  // under db_mutex_
  bool fenced_ = false;     // under db_mutex_
  std::atomic<std::uint64_t> groups_{0};
  std::atomic<std::uint64_t> commit_ns_{0};
};

std::shared_ptr<run_journal> run_journal::at(const std::filesystem::path& path) {
  const std::filesystem::path located = resolve_journal_path(path);
  // A Redis journal's location is not a file name: it stays as it is.
  const std::filesystem::path resolved =
      is_redis_location(located.native()) ? located : std::filesystem::absolute(located);
  std::unique_lock lock(open_mutex);
  for (;;) {
    const auto it = open_journals().find(resolved);
    if (it == open_journals().end()) break;
    if (auto existing = it->second.lock()) return existing;
    // Its last holder let go and its committing thread is closing it (a run's last reference can
    // go on any thread): the file's lock is free once that is done.
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
  std::shared_ptr<run_journal> j(new run_journal(std::make_shared<core>(std::move(opened), resolved), std::move(keys)));
  open_journals()[resolved] = j;
  return j;
}

run_journal::run_journal(std::shared_ptr<core> c, cache_filter keys)
    : core_(std::move(c)), cache_keys_(std::move(keys)) {
  committer_ = std::thread([c = core_] { c->commit_loop(); });
}

run_journal::~run_journal() {
  core_->stop();
  if (committer_.get_id() == std::this_thread::get_id()) {
    // Let go inside a request's callback on the committing thread: it cannot join itself. It
    // commits what is queued and ends on its own, holding the core until then.
    committer_.detach();
  } else {
    committer_.join();
  }
}

void run_journal::change(change_fn change) noexcept { core_->change(std::move(change)); }
void run_journal::wait_for_room(std::size_t most) { core_->wait_for_room(most); }
void run_journal::change_now(const change_fn& change) { core_->change_now(change); }
void run_journal::read(const change_fn& query) { core_->read(query); }
void run_journal::flush() noexcept { core_->flush(); }
void run_journal::watch(const std::string& run, request_fn on_request) { core_->watch(run, std::move(on_request)); }
void run_journal::unwatch(const std::string& run) { core_->unwatch(run); }
std::uint64_t run_journal::groups_committed() const noexcept { return core_->groups_committed(); }
double run_journal::commit_seconds() const noexcept { return core_->commit_seconds(); }
const std::filesystem::path& run_journal::path() const noexcept { return core_->path(); }
void run_journal::on_health(const void* key, health_fn fn) { core_->on_health(key, std::move(fn)); }
void run_journal::forget_health(const void* key) { core_->forget_health(key); }

}  // namespace dx::detail
