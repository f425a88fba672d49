// The durable journal of workflow runs: every state change of a run and its tasks, the results of
// finished tasks, and an append-only log of transitions. journal is the interface a head writes
// and reads through; open() picks the backend from the location: a file path is an SQLite file
// (WAL mode; this file describes it), "redis://host:port/db" a Redis database shared by a head
// and its standbys (redis_journal.hpp says what it promises). A head
// records changes as they happen and calls commit() once per scheduler tick: the group becomes
// one transaction with one fsync, so a head killed at any instant loses nothing that commit()
// returned for, and a restarted head reloads finished tasks and their results instead of running
// them again. Read-only openers (status views, `dx list`) work alongside the one writer, and so do
// requesters (`dx cancel`), which write requests to the writer and read its answers.
//
//   auto j = journal::open(resolve_journal_path(), journal::open_mode::write);
//   const std::string run = j->create_run("nightly", definition_json);
//   j->record(run, {.key = "load", .status = "RUNNING", .assigned_to = "w1"});
//   j->store_result(run, "load", bytes);
//   j->record(run, {.key = "load", .status = "SUCCEEDED", .cache_key = hash});
//   j->commit();                                  // durable from here on
//   ...
//   run_state s = j->load(run);                   // after a restart
//   std::optional<std::string> r = j->result(run, "load");
//
// What survives what:
// - A crash of the process (kill -9) or of the machine at any instant: every group whose commit()
//   returned is there in full; the group being committed is there in full or not at all. Result
//   files are on disk before their group's transaction begins, so a committed row never points to
//   a file that was not written; a crash or a failed commit can leave a result file no row names
//   (never read, harmless).
// - A -wal file cut at any byte (a torn write, a copy taken mid-write): the journal opens with the
//   groups committed before the cut (SQLite checks each WAL frame's checksum and keeps only whole
//   transactions); the torn tail is dropped.
// - A main database file cut short, or with pages overwritten: open() (or the first query to reach
//   a lost page) throws a dx::error naming the file and saying it is damaged; SQLite checks each
//   page's structure and the file's page count. A file cut to zero bytes is indistinguishable from
//   a new journal and opens empty. SQLite keeps no checksum of its pages, so a few bytes changed
//   inside a stored value (not its page's structure) read back changed; results are the exception,
//   checked against their SHA-256.
// - A result file changed, cut or removed: result() throws a dx::error naming the file; the caller
//   treats that result as lost and runs its task again.
// - A writer that died keeps no lock: the next writer opens the journal with no manual step. (A
//   child it forked without exec shares the lock until that child exits too.) Runs it left
//   RUNNING stay so until the next head marks them (INTERRUPTED, or RUNNING again as it resumes
//   them): the journal records statuses, it does not decide them.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dx::detail {

/// A run of a workflow. Statuses: CREATED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED
/// (its head stopped or died while it ran; resumable). Times are milliseconds since the Unix
/// epoch.
struct run_record {
  std::string id;  ///< "r-<UTC time>-<random hex>", stable for the run's life.
  std::string name;
  std::string definition;  ///< The workflow definition, JSON text, as given to create_run().
  std::string status;
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::int64_t head_pid = 0;  ///< The process that last created or set the status of the run.
};

/// Where a task's result is, and what it must hash to.
struct result_ref {
  std::string run;
  std::string key;
  std::uint64_t size = 0;
  std::string sha256;          ///< 64 lowercase hex digits.
  std::filesystem::path file;  ///< The file holding it; empty when the bytes are in the database.
};

/// The state of one task of a run: a step, or a subtask "step#<chunk index>" of a split step.
/// Statuses: PENDING, READY, RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED, SKIPPED, CACHED.
struct task_record {
  std::string key;
  std::string status;
  std::int64_t attempts = 0;
  std::string assigned_to;  ///< The worker's name, or empty.
  std::string parent;       ///< The key of the step a subtask belongs to, or empty.
  bool is_subtask = false;
  double progress = 0;               ///< 0 to 1.
  std::string error;                 ///< The failure's text, or empty.
  std::string cache_key;             ///< Hex hash of what determines the result, or empty (not cacheable).
  std::string parameters;            ///< JSON: a subtask's chunk ({"start":..,"end":..}), or empty.
  std::int64_t updated_ms = 0;       ///< Set by the journal (when record() was called); read back by load().
  std::optional<result_ref> result;  ///< Filled by load() when a result is stored; ignored by record().
};

/// A run and all its tasks, in the order they were first recorded.
struct run_state {
  run_record run;
  std::vector<task_record> tasks;
};

/// One row of a run's transition log.
struct transition {
  std::int64_t seq = 0;  ///< Increases with every row of the journal (across runs); never reused.
  std::string run;
  std::string key;  ///< A task's key, or empty for a change of the run's own status.
  std::string status;
  std::int64_t time_ms = 0;
  std::string detail;
};

/// A request to the head of a run from another process (`dx cancel`), as the journal keeps it.
/// The asker writes it; the head running the run reads it and records its answer.
struct run_request {
  std::int64_t id = 0;  ///< Increases with every request of the journal; never reused.
  std::string run;
  std::string what;               ///< "cancel".
  std::int64_t requested_ms = 0;  ///< When it was made.
  std::int64_t requested_by = 0;  ///< The asking process's pid.
  std::int64_t answered_ms = 0;   ///< When it was answered (or withdrawn); 0 while it is open.
  std::string answer;             ///< What came of it: "cancelled", why not, "withdrawn: ...".
};

/// True for the run statuses listed at run_record. Thread-safe; does not block.
bool is_run_status(std::string_view status) noexcept;
/// True for SUCCEEDED, FAILED and CANCELLED: runs a resume has nothing left to do for.
bool is_finished_run_status(std::string_view status) noexcept;
/// True for the task statuses listed at task_record. Thread-safe; does not block.
bool is_task_status(std::string_view status) noexcept;

/// A new run's id, "r-<UTC time>-<8 random hex digits>": two runs started in the same second, by
/// one head or by two heads on journals later merged, still differ. Thread-safe; does not block.
std::string new_run_id();

/// The journal file to use: $DX_JOURNAL when set and not empty, else `explicit_path` when not
/// empty, else $XDG_STATE_HOME/dx/journal.sqlite, else $HOME/.local/state/dx/journal.sqlite.
/// Throws dx::error when none of these is available. Reads the environment (not thread-safe
/// against setenv); does not block.
std::filesystem::path resolve_journal_path(const std::filesystem::path& explicit_path = {});

/// What a writer's journal can say of its store beyond a commit's success (Redis journals: the
/// store may be away for a while). A plain value.
struct journal_health {
  /// Commits are held in this process because the store cannot be reached; they reach it, in
  /// order, when it is back.
  bool degraded = false;
  /// Another head took the journal over (its lease): this writer can never commit again.
  bool fenced = false;
  std::size_t held_groups = 0;  ///< groups committed locally, not yet in the store
  std::string reason;           ///< why degraded or fenced, in a sentence; empty when neither
};

/// True when `location` names a Redis journal ("redis://..."), not a file. Does not block.
bool is_redis_location(std::string_view location) noexcept;

/// An open journal. Not thread-safe: one thread at a time (the head calls it under its own lock).
/// Changes are buffered in memory and are neither durable nor visible to queries (of this object
/// or any other) until commit() returns. Every backend keeps one record of each fact: the same
/// calls give the same answers whichever store is behind them.
class journal {
 public:
  enum class open_mode {
    write,      ///< The one writer: takes "<path>.lock"; creates the file and its folders.
    read_only,  ///< Any number, alongside the writer; sees each commit whole, as it lands.
    /// Any number, alongside the writer: a process that asks the writer something (dx cancel).
    /// Takes no lock; writes requests only (ask, withdraw), each in a transaction of its own; the
    /// journal must exist, with a schema that has requests.
    request,
  };

  /// Results up to this size live in the database; bigger ones in files beside it.
  static constexpr std::size_t inline_result_limit = 64 * 1024;

  /// Opens the journal at `path`: "redis://host:port/db" opens a Redis journal (redis_journal.hpp;
  /// a dx built without hiredis throws dx::error saying so); anything else a file. For a file:
  /// opens (write: creates if missing, with its parent folders) the journal at `path`. An empty
  /// file (what a writer killed before its first commit leaves) opens read-only as a journal
  /// without runs, and is made a journal when opened to write. Throws
  /// dx::error naming the path and the problem: a folder that cannot be created, a journal
  /// another live process holds for writing (naming its pid), a missing journal (read_only), a
  /// file that is not SQLite, another application's database, a newer schema, a damaged file.
  /// Blocks on file I/O. `lock_wait` bounds every wait of this journal for SQLite's own locks
  /// (held briefly by readers starting, by a checkpoint, or by a foreign program holding the
  /// file): past it a call throws dx::error instead of waiting on. The default is long enough
  /// for any commit or checkpoint to finish, short enough that a wedged peer is an error, not a
  /// hang.
  static std::unique_ptr<journal> open(const std::filesystem::path& path, open_mode mode,
                                       std::chrono::milliseconds lock_wait = std::chrono::seconds(5));

  /// Closes the journal, dropping anything not committed, and releases the writer's lock.
  virtual ~journal() = default;
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;

  /// Adds a run with status CREATED (buffered) and returns its new id. Throws dx::error when
  /// read-only. Does not block.
  virtual std::string create_run(std::string_view name, std::string_view definition_json) = 0;

  /// Sets a run's status (buffered), records this process as its head and logs a transition with
  /// an empty key. Throws dx::error for an unknown run or status, or when read-only. Does not
  /// block unless the run was not created by this object (one indexed read then).
  virtual void set_run_status(std::string_view run, std::string_view status, std::string_view detail = {}) = 0;

  /// Inserts or replaces task `task.key` of `run` (buffered), and logs a transition when its status
  /// differs from the one last recorded for it, or when `detail` is not empty (so progress
  /// updates do not fill the log). `task.updated_ms` and `task.result` are ignored. Throws
  /// dx::error for an unknown run or status, an empty key, or when read-only. Does not block
  /// unless the run was not created by this object (one indexed read then).
  void record(std::string_view run, const task_record& task, std::string_view detail = {});

  /// record() for a task never recorded in `run` before (a run's tasks as it is created): its
  /// transition is logged without looking for an earlier record. Throws as record().
  void record_new(std::string_view run, const task_record& task);

  /// Stores the result of task `key` of `run` (buffered; copies `bytes`), replacing any earlier
  /// one. Results over inline_result_limit are written to their own file by commit(), before its
  /// transaction. Throws dx::error for an unknown run or when read-only. Does not block (beyond
  /// hashing the bytes) unless the run was not created by this object.
  virtual void store_result(std::string_view run, std::string_view key, std::string_view bytes) = 0;

  /// Makes everything buffered durable as one group: writes big results' files, then one
  /// transaction, returning after its fsync. Does nothing when nothing is buffered. On failure
  /// throws dx::error and the group is dropped whole (nothing of it is committed). Blocks.
  virtual void commit() = 0;

  /// True when changes wait for commit(). Does not block.
  virtual bool has_uncommitted() const noexcept = 0;

  /// From now on commit() leaves the write-ahead log as it is, however long it grows (SQLite
  /// otherwise copies it into the database, with an fsync, in whichever commit takes it past 1000
  /// pages, so that one commit in many takes a checkpoint's time): the caller calls checkpoint()
  /// instead, from a thread where its cost does not matter. Throws dx::error when read-only.
  virtual void take_over_checkpoints() {}
  /// When the write-ahead log holds at least `pages` pages (4 KiB each), copies what no reader
  /// still needs of it into the database (SQLite's PASSIVE checkpoint: it never waits for readers
  /// or writers), so that later commits write it from its start again. Throws dx::error when
  /// SQLite fails. Blocks on I/O.
  virtual void checkpoint([[maybe_unused]] std::size_t pages = 1000) {}
  /// The pages in the write-ahead log after the last commit (0 until one is made). Does not block.
  virtual std::size_t wal_pages() const noexcept { return 0; }

  /// All runs (or those not SUCCEEDED, FAILED or CANCELLED), oldest first. Blocks. Throws
  /// dx::error on a damaged file.
  virtual std::vector<run_record> runs(bool unfinished_only = false) = 0;

  /// The run `run`, without its tasks, or nullopt when the journal has no such run. Blocks for one
  /// indexed read. Throws dx::error on a damaged file.
  virtual std::optional<run_record> find_run(std::string_view run) = 0;

  /// A run and all its task records. Throws dx::error naming the run and the journal when there
  /// is no such run, or on a damaged file. Blocks.
  virtual run_state load(std::string_view run) = 0;
  /// The run's own record, without its tasks. Throws as load(). Blocks.
  run_record run(std::string_view run);

  /// The state of the store behind a writer (always healthy for a file). Thread-safe; does not
  /// block.
  virtual journal_health health() const { return {}; }

  /// The result stored for task `key` of `run`, or nullopt when none is. Throws dx::error naming
  /// the file when a result file is missing, unreadable or does not match its SHA-256 (the caller
  /// then treats the result as lost and runs the task again). Blocks.
  virtual std::optional<std::string> result(std::string_view run, std::string_view key) = 0;

  /// The result of the most recently updated task, in any run, whose status is SUCCEEDED or
  /// CACHED, whose cache key is `cache_key` and which has a stored result; nullopt when none.
  /// Read it with result(ref.run, ref.key). Blocks.
  virtual std::optional<result_ref> cached(std::string_view cache_key) = 0;

  /// Calls `fn` with the cache key of every task that has one (each task once, in no particular
  /// order): what a writer needs to know which keys cached() may find. Blocks.
  virtual void each_cache_key(const std::function<void(std::string_view)>& fn) = 0;

  /// Up to `limit` rows of `run`'s transition log with seq > `after_seq`, in seq order: pass the
  /// last seq seen to page on. Blocks.
  virtual std::vector<transition> transitions(std::string_view run, std::int64_t after_seq = 0,
                                              std::size_t limit = 1000) = 0;

  /// Records a request (`what`: "cancel") to the head running `run`, in a transaction of its own,
  /// and returns its id. Request mode only. Throws dx::error for another mode, an unknown run, or
  /// a journal that cannot take it. Blocks (up to the lock wait, if the writer is committing).
  virtual std::int64_t ask(std::string_view run, std::string_view what) = 0;
  /// Closes request `id` unanswered, with the answer "withdrawn: <why>", in a transaction of its
  /// own; false when it was answered first (read its answer with request()). Request mode only.
  /// Throws dx::error. Blocks.
  virtual bool withdraw(std::int64_t id, std::string_view why) = 0;
  /// Request `id`, or nullopt (no such request, or a journal older than requests). Blocks.
  virtual std::optional<run_request> request(std::int64_t id) = 0;
  /// The requests not answered yet, oldest first (none in a journal older than requests). Blocks
  /// for one indexed read.
  virtual std::vector<run_request> open_requests() = 0;
  /// The highest request id so far (0 for none). Blocks for one indexed read.
  virtual std::int64_t last_request_id() = 0;
  /// Records `answer` to request `id` (buffered), unless it was answered or withdrawn first.
  /// Write mode only. Throws dx::error for another mode. Does not block.
  virtual void answer(std::int64_t id, std::string_view answer) = 0;

  /// The database file, as given to open(). Does not block.
  virtual const std::filesystem::path& path() const noexcept = 0;
  /// How the journal was opened. Does not block.
  virtual open_mode mode() const noexcept = 0;

 protected:
  journal() = default;
  /// record() and record_new(): `is_new` says the task has no earlier record.
  virtual void record_task(std::string_view run, const task_record& task, std::string_view detail, bool is_new) = 0;
};

}  // namespace dx::detail
