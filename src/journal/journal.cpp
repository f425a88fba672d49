// The SQLite journal (journal.hpp): buffering of a group of changes, its commit as one
// transaction, and the queries that resume and views run; and journal::open, which picks the
// backend. The file format is journal_schema.cpp's, the lock
// journal_lock.cpp's, big results result_store.cpp's.
#include "journal/journal.hpp"

#include "common/unix_time.hpp"
#include "journal/journal_lock.hpp"
#include "journal/journal_schema.hpp"
#include "journal/redis_journal.hpp"
#include "journal/result_store.hpp"
#include "journal/sqlite_db.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <sqlite3.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <limits>
#include <optional>
#include <random>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>

namespace dx::detail {

namespace {

struct create_run_op {
  run_record run;
};
struct run_status_op {
  std::string run;
  std::string status;
  std::string detail;
  std::int64_t time_ms;
};
struct record_op {
  std::string run;
  task_record task;
  std::string detail;
  bool is_new = false;  // record_new: the task has no earlier record
};
struct result_op {
  std::string run;
  std::string key;
  std::string bytes;
  std::string sha256;
  std::string file;  // set by commit() for big results, before the transaction
};
struct answer_op {
  std::int64_t id;
  std::string answer;
  std::int64_t time_ms;
};
using buffered_op = std::variant<create_run_op, run_status_op, record_op, result_op, answer_op>;

constexpr const char* request_columns = "id, run, what, requested_ms, requested_by, answered_ms, answer";

run_request read_request(const sqlite_statement& s) {
  return run_request{s.integer(0), s.text(1), s.text(2), s.integer(3), s.integer(4), s.integer(5), s.text(6)};
}

int sqlite_flags(journal::open_mode m) {
  switch (m) {
    case journal::open_mode::write:
      return SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    case journal::open_mode::request:
      return SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    default:
      return SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX;
  }
}

schema_use schema_use_of(journal::open_mode m) {
  switch (m) {
    case journal::open_mode::write:
      return schema_use::write;
    case journal::open_mode::request:
      return schema_use::request;
    default:
      return schema_use::read;
  }
}

}  // namespace

/// A journal in an SQLite file: what journal.hpp describes.
class sqlite_journal final : public journal {
 public:
  struct impl;
  explicit sqlite_journal(std::unique_ptr<impl> state);
  ~sqlite_journal() override;

  std::string create_run(std::string_view name, std::string_view definition_json) override;
  void set_run_status(std::string_view run, std::string_view status, std::string_view detail) override;
  void store_result(std::string_view run, std::string_view key, std::string_view bytes) override;
  void commit() override;
  bool has_uncommitted() const noexcept override;
  void take_over_checkpoints() override;
  void checkpoint(std::size_t pages) override;
  std::size_t wal_pages() const noexcept override;
  std::vector<run_record> runs(bool unfinished_only) override;
  std::optional<run_record> find_run(std::string_view run) override;
  run_state load(std::string_view run) override;
  std::optional<std::string> result(std::string_view run, std::string_view key) override;
  std::optional<result_ref> cached(std::string_view cache_key) override;
  void each_cache_key(const std::function<void(std::string_view)>& fn) override;
  std::vector<transition> transitions(std::string_view run, std::int64_t after_seq, std::size_t limit) override;
  std::int64_t ask(std::string_view run, std::string_view what) override;
  bool withdraw(std::int64_t id, std::string_view why) override;
  std::optional<run_request> request(std::int64_t id) override;
  std::vector<run_request> open_requests() override;
  std::int64_t last_request_id() override;
  void answer(std::int64_t id, std::string_view answer) override;
  const std::filesystem::path& path() const noexcept override;
  open_mode mode() const noexcept override;

 private:
  void record_task(std::string_view run, const task_record& task, std::string_view detail, bool is_new) override;
  std::unique_ptr<impl> impl_;
};

struct sqlite_journal::impl {
  impl(const std::filesystem::path& p, open_mode m, std::unique_ptr<journal_lock> l, std::chrono::milliseconds wait)
      : path(p),
        mode(m),
        lock(std::move(l)),
        db(p, sqlite_flags(m),
           static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(wait.count(), 0, 3'600'000))),
        files(p.string() + ".results") {
    schema_version = prepare_journal_schema(db, schema_use_of(m));
  }

  std::filesystem::path path;
  open_mode mode;
  std::int64_t schema_version = 0;     // as the file has it (a reader does not migrate; 0: an empty file)
  std::unique_ptr<journal_lock> lock;  // before db: released after the connection closes
  sqlite_db db;
  result_store files;
  std::vector<buffered_op> buffer;
  /// Runs known to exist (committed or buffered), so record() checks its run without a query.
  std::unordered_set<std::string> known_runs;
  /// Files of results that the group being committed replaces; removed once it is committed.
  std::vector<std::string> replaced_files;
  /// Pages in the write-ahead log after the last commit, as SQLite's WAL hook reports them; set
  /// only once take_over_checkpoints() installed the hook.
  int wal_frames = 0;
  /// Runs this writer created and has stored no result file for: a result of theirs replaces no
  /// file, so storing one needs no look for an old one.
  std::unordered_set<std::string> runs_without_files;

  // Prepared once: a group of a thousand records runs these a thousand times.
  std::optional<sqlite_statement> insert_run, update_run_status, log_transition, log_if_changed, upsert_task,
      old_result_file, upsert_result, answer_request;

  void require_writable(std::string_view what) const { require_mode(open_mode::write, what); }

  void require_run(std::string_view run) {
    if (known_runs.count(std::string(run)) != 0) return;
    sqlite_statement s(db, "SELECT 1 FROM runs WHERE id = ?");
    s.bind(1, run);
    if (!s.step()) throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, path.string()));
    s.reset();
    known_runs.emplace(run);
  }

  void prepare_writes() {
    insert_run.emplace(db,
                       "INSERT INTO runs(id, name, definition, status, created_ms, updated_ms, head_pid) "
                       "VALUES(?1, ?2, ?3, ?4, ?5, ?5, ?6)");
    update_run_status.emplace(db, "UPDATE runs SET status = ?2, updated_ms = ?3, head_pid = ?4 WHERE id = ?1");
    log_transition.emplace(db, "INSERT INTO transitions(run, key, status, time_ms, detail) VALUES(?1, ?2, ?3, ?4, ?5)");
    log_if_changed.emplace(db,
                           "INSERT INTO transitions(run, key, status, time_ms, detail) "
                           "SELECT ?1, ?2, ?3, ?4, ?5 WHERE ?5 <> '' OR NOT EXISTS "
                           "(SELECT 1 FROM tasks WHERE run = ?1 AND key = ?2 AND status = ?3)");
    upsert_task.emplace(db,
                        "INSERT INTO tasks(run, key, status, attempts, assigned_to, parent, is_subtask, progress, "
                        "error, cache_key, updated_ms, parameters) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                        "?11, ?12) ON CONFLICT(run, key) DO UPDATE SET status = ?3, attempts = ?4, assigned_to = ?5, "
                        "parent = ?6, is_subtask = ?7, progress = ?8, error = ?9, cache_key = ?10, updated_ms = ?11, "
                        "parameters = ?12");
    old_result_file.emplace(db, "SELECT file FROM results WHERE run = ?1 AND key = ?2");
    upsert_result.emplace(db,
                          "INSERT OR REPLACE INTO results(run, key, size, sha256, bytes, file) "
                          "VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
    answer_request.emplace(db, "UPDATE requests SET answered_ms = ?2, answer = ?3 WHERE id = ?1 AND answered_ms = 0");
  }

  void require_mode(open_mode m, std::string_view what) const {
    if (mode != m) {
      throw_error(error_kind::generic, fmt::format("cannot {}: journal {} is open {}", what, path.string(),
                                                   mode == open_mode::read_only ? "read-only"
                                                   : mode == open_mode::write   ? "to write"
                                                                                : "to make requests"));
    }
  }

  // The apply functions bind strings in place: each statement runs (and is reset) while the op it
  // reads from is alive.
  void apply(const create_run_op& op) {
    auto& s = *insert_run;
    s.bind_in_place(1, op.run.id);
    s.bind_in_place(2, op.run.name);
    s.bind_in_place(3, op.run.definition);
    s.bind_in_place(4, op.run.status);
    s.bind(5, op.run.created_ms);
    s.bind(6, op.run.head_pid);
    s.run();
    auto& log = *log_transition;
    log.bind_in_place(1, op.run.id);
    log.bind_in_place(2, std::string_view());
    log.bind_in_place(3, op.run.status);
    log.bind(4, op.run.created_ms);
    log.bind_in_place(5, std::string_view());
    log.run();
  }

  void apply(const run_status_op& op) {
    auto& s = *update_run_status;
    s.bind_in_place(1, op.run);
    s.bind_in_place(2, op.status);
    s.bind(3, op.time_ms);
    s.bind(4, static_cast<std::int64_t>(::getpid()));
    s.run();
    auto& log = *log_transition;
    log.bind_in_place(1, op.run);
    log.bind_in_place(2, std::string_view());
    log.bind_in_place(3, op.status);
    log.bind(4, op.time_ms);
    log.bind_in_place(5, op.detail);
    log.run();
  }

  /// What the group being committed knows of a record before it is applied.
  struct record_context {
    /// The status the task had before this record: from an earlier record of the same group, or
    /// empty when the task is new (its run created in this group); null when only the database
    /// knows.
    const std::string* before = nullptr;
    /// The record whose values the task's row takes: the last of the group's records of the
    /// task (every record holds the whole row, and the group commits whole), written where the
    /// first is, so that tasks keep the order in which they were first recorded. Null for the
    /// later records, which only log their transitions.
    const task_record* row = nullptr;
  };

  void apply(const record_op& op, const record_context& c) {
    const task_record& t = op.task;
    // The log row first: it compares against the status recorded before this change.
    if (c.before == nullptr) {
      auto& log = *log_if_changed;
      log.bind_in_place(1, op.run);
      log.bind_in_place(2, t.key);
      log.bind_in_place(3, t.status);
      log.bind(4, t.updated_ms);
      log.bind_in_place(5, op.detail);
      log.run();
    } else if (!op.detail.empty() || *c.before != t.status) {
      auto& log = *log_transition;
      log.bind_in_place(1, op.run);
      log.bind_in_place(2, t.key);
      log.bind_in_place(3, t.status);
      log.bind(4, t.updated_ms);
      log.bind_in_place(5, op.detail);
      log.run();
    }
    if (c.row == nullptr) return;
    const task_record& r = *c.row;
    auto& s = *upsert_task;
    s.bind_in_place(1, op.run);
    s.bind_in_place(2, r.key);
    s.bind_in_place(3, r.status);
    s.bind(4, r.attempts);
    s.bind_in_place(5, r.assigned_to);
    s.bind_in_place(6, r.parent);
    s.bind(7, std::int64_t{r.is_subtask ? 1 : 0});
    s.bind(8, r.progress);
    s.bind_in_place(9, r.error);
    s.bind_in_place(10, r.cache_key);
    s.bind(11, r.updated_ms);
    s.bind_in_place(12, r.parameters);
    s.run();
  }

  void apply(const result_op& op) {
    if (!op.file.empty()) runs_without_files.erase(op.run);
    if (runs_without_files.count(op.run) == 0) {
      auto& old = *old_result_file;
      old.bind_in_place(1, op.run);
      old.bind_in_place(2, op.key);
      if (old.step()) {
        if (!old.is_null(0) && old.text(0) != op.file) replaced_files.push_back(old.text(0));
        old.reset();
      }
    }
    auto& s = *upsert_result;
    s.bind_in_place(1, op.run);
    s.bind_in_place(2, op.key);
    s.bind(3, static_cast<std::int64_t>(op.bytes.size()));
    s.bind_in_place(4, op.sha256);
    if (op.file.empty()) {
      s.bind_blob_in_place(5, op.bytes);
      s.bind_null(6);
    } else {
      s.bind_null(5);
      s.bind_in_place(6, op.file);
    }
    s.run();
  }

  void apply(const answer_op& op) {
    auto& s = *answer_request;
    s.bind(1, op.id);
    s.bind(2, op.time_ms);
    s.bind(3, op.answer);
    s.run();
  }

  result_ref read_ref(const sqlite_statement& s, int first_column) const {
    result_ref ref;
    ref.run = s.text(first_column);
    ref.key = s.text(first_column + 1);
    ref.size = static_cast<std::uint64_t>(s.integer(first_column + 2));
    ref.sha256 = s.text(first_column + 3);
    if (!s.is_null(first_column + 4)) ref.file = files.absolute(s.text(first_column + 4));
    return ref;
  }
};

sqlite_journal::sqlite_journal(std::unique_ptr<impl> state) : impl_(std::move(state)) {}

sqlite_journal::~sqlite_journal() = default;

std::unique_ptr<journal> journal::open(const std::filesystem::path& path, open_mode mode,
                                       std::chrono::milliseconds lock_wait) {
  if (path.empty()) throw_error(error_kind::generic, "cannot open a journal: its path is empty");
  if (is_redis_location(path.native())) return open_redis_journal(path.native(), mode, lock_wait);
  std::unique_ptr<journal_lock> lock;
  if (mode == open_mode::write) {
    const std::filesystem::path folder = path.parent_path();
    std::error_code ec;
    if (!folder.empty()) std::filesystem::create_directories(folder, ec);
    if (ec) {
      throw_error(error_kind::generic, fmt::format("cannot open journal {}: cannot create its folder {}: {}",
                                                   path.string(), folder.string(), ec.message()));
    }
    lock = std::make_unique<journal_lock>(path);
  } else {  // read-only or requests: the journal exists, a writer made it
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      throw_error(error_kind::generic, fmt::format("cannot open journal {}: no such file", path.string()));
    }
  }
  auto state = std::make_unique<sqlite_journal::impl>(path, mode, std::move(lock), lock_wait);
  if (mode == open_mode::write) state->prepare_writes();
  return std::make_unique<sqlite_journal>(std::move(state));
}

std::string sqlite_journal::create_run(std::string_view name, std::string_view definition_json) {
  impl_->require_writable("create a run");
  run_record run;
  do run.id = new_run_id();
  while (impl_->known_runs.count(run.id) != 0);
  run.name = name;
  run.definition = definition_json;
  run.status = "CREATED";
  run.created_ms = run.updated_ms = unix_ms_now();
  run.head_pid = ::getpid();
  impl_->known_runs.insert(run.id);
  impl_->runs_without_files.insert(run.id);
  std::string id = run.id;
  impl_->buffer.emplace_back(create_run_op{std::move(run)});
  return id;
}

void sqlite_journal::set_run_status(std::string_view run, std::string_view status, std::string_view detail) {
  impl_->require_writable("set a run's status");
  if (!is_run_status(status)) {
    throw_error(error_kind::generic, fmt::format("cannot set run {} to status \"{}\": not a run status "
                                                 "(CREATED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)",
                                                 run, status));
  }
  impl_->require_run(run);
  impl_->buffer.emplace_back(run_status_op{std::string(run), std::string(status), std::string(detail), unix_ms_now()});
}

void journal::record(std::string_view run, const task_record& task, std::string_view detail) {
  record_task(run, task, detail, false);
}

void journal::record_new(std::string_view run, const task_record& task) { record_task(run, task, {}, true); }

void sqlite_journal::record_task(std::string_view run, const task_record& task, std::string_view detail, bool is_new) {
  impl_->require_writable("record a task");
  if (task.key.empty()) throw_error(error_kind::generic, fmt::format("cannot record a task of run {}: empty key", run));
  if (!is_task_status(task.status)) {
    throw_error(error_kind::generic,
                fmt::format("cannot record task {} of run {} with status \"{}\": not a task status (PENDING, READY, "
                            "RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED, SKIPPED, CACHED)",
                            task.key, run, task.status));
  }
  impl_->require_run(run);
  record_op op{std::string(run), task, std::string(detail), is_new};
  op.task.updated_ms = unix_ms_now();
  op.task.result.reset();
  impl_->buffer.emplace_back(std::move(op));
}

void sqlite_journal::store_result(std::string_view run, std::string_view key, std::string_view bytes) {
  impl_->require_writable("store a result");
  if (key.empty()) throw_error(error_kind::generic, fmt::format("cannot store a result of run {}: empty key", run));
  impl_->require_run(run);
  impl_->buffer.emplace_back(result_op{std::string(run), std::string(key), std::string(bytes), sha256_hex(bytes), {}});
}

bool sqlite_journal::has_uncommitted() const noexcept { return !impl_->buffer.empty(); }

void sqlite_journal::take_over_checkpoints() {
  impl_->require_writable("manage its checkpoints");
  // Replaces SQLite's own hook (the one that checkpoints at 1000 pages) with one that only counts.
  sqlite3_wal_hook(
      impl_->db.handle(),
      [](void* frames, sqlite3*, const char*, int n) {
        *static_cast<int*>(frames) = n;
        return SQLITE_OK;
      },
      &impl_->wal_frames);
}

void sqlite_journal::checkpoint(std::size_t pages) {
  if (impl_->wal_frames <= 0 || static_cast<std::size_t>(impl_->wal_frames) < pages) return;
  const int rc = sqlite3_wal_checkpoint_v2(impl_->db.handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) impl_->db.fail(rc, "cannot checkpoint the write-ahead log");
  impl_->wal_frames = 0;  // counted again from the next commit
}

std::size_t sqlite_journal::wal_pages() const noexcept {
  return static_cast<std::size_t>(std::max(0, impl_->wal_frames));
}

void sqlite_journal::commit() {
  impl& s = *impl_;
  if (s.buffer.empty()) return;
  std::vector<buffered_op> group = std::move(s.buffer);
  s.buffer.clear();
  try {
    // Files first, each durable on its own, so that the transaction that names them commits only
    // after they are all on disk.
    for (auto& op : group) {
      if (auto* r = std::get_if<result_op>(&op); r != nullptr && r->bytes.size() > inline_result_limit) {
        r->file = s.files.write(r->run, r->key, r->bytes, r->sha256);
      }
    }
    s.replaced_files.clear();
    // A task recorded several times in one group (sent, then done, within a few milliseconds) has
    // its row written once, with its last record's values; every record still logs its
    // transition, compared with the record before it in the group when there is one (no query).
    std::unordered_map<std::string_view, std::size_t> last_record;  // "<run> <key>" -> op index
    std::vector<std::string> task_ids(group.size());
    std::unordered_set<std::string_view> created;
    for (std::size_t i = 0; i < group.size(); ++i) {
      if (const auto* r = std::get_if<record_op>(&group[i])) {
        task_ids[i] = r->run + ' ' + r->task.key;
        last_record[task_ids[i]] = i;
      } else if (const auto* c = std::get_if<create_run_op>(&group[i])) {
        created.insert(c->run.id);
      }
    }
    static const std::string new_task;  // the status of a task not recorded before: none
    std::unordered_map<std::string_view, const std::string*> status_before;
    sqlite_transaction transaction(s.db);
    for (std::size_t i = 0; i < group.size(); ++i) {
      if (const auto* r = std::get_if<record_op>(&group[i])) {
        impl::record_context c;
        auto [at, first] = status_before.try_emplace(task_ids[i], nullptr);
        c.before = first ? (r->is_new || created.count(r->run) ? &new_task : nullptr) : at->second;
        if (first) c.row = &std::get<record_op>(group[last_record[task_ids[i]]]).task;
        s.apply(*r, c);
        at->second = &r->task.status;
      } else {
        std::visit(
            [&s](const auto& o) {
              if constexpr (!std::is_same_v<std::decay_t<decltype(o)>, record_op>) s.apply(o);
            },
            group[i]);
      }
    }
    transaction.commit();
    // Only now are the old files unnamed by any committed row.
    for (const auto& name : s.replaced_files) s.files.remove(name);
  } catch (...) {
    // Runs created in the dropped group do not exist: forget them, and let require_run() ask the
    // database again for the others.
    s.known_runs.clear();
    s.runs_without_files.clear();
    throw;
  }
}

std::vector<run_record> sqlite_journal::runs(bool unfinished_only) {
  if (impl_->schema_version == 0) return {};
  sqlite_statement s(impl_->db, unfinished_only
                                    ? "SELECT id, name, definition, status, created_ms, updated_ms, head_pid FROM runs "
                                      "WHERE status NOT IN ('SUCCEEDED', 'FAILED', 'CANCELLED') "
                                      "ORDER BY created_ms, rowid"
                                    : "SELECT id, name, definition, status, created_ms, updated_ms, head_pid FROM runs "
                                      "ORDER BY created_ms, rowid");
  std::vector<run_record> out;
  while (s.step()) {
    out.push_back(run_record{s.text(0), s.text(1), s.text(2), s.text(3), s.integer(4), s.integer(5), s.integer(6)});
  }
  return out;
}

std::optional<run_record> sqlite_journal::find_run(std::string_view run) {
  if (impl_->schema_version == 0) return std::nullopt;
  sqlite_statement s(impl_->db,
                     "SELECT id, name, definition, status, created_ms, updated_ms, head_pid FROM runs WHERE id = ?");
  s.bind(1, run);
  if (!s.step()) return std::nullopt;
  run_record r{s.text(0), s.text(1), s.text(2), s.text(3), s.integer(4), s.integer(5), s.integer(6)};
  s.reset();
  return r;
}

run_record journal::run(std::string_view run) {
  auto found = find_run(run);
  if (!found) throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, path().string()));
  return std::move(*found);
}

run_state sqlite_journal::load(std::string_view run) {
  impl& j = *impl_;
  if (j.schema_version == 0)
    throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, j.path.string()));
  run_state state;
  // One read transaction: the run, its tasks and their results are of the same commit.
  sqlite_transaction snapshot(j.db, sqlite_transaction::kind::read);
  state.run = this->run(run);
  // One query, so that a run of 100,000 subtasks loads in one pass.
  const std::string query = std::string(
                                "SELECT t.key, t.status, t.attempts, t.assigned_to, t.parent, t.is_subtask, "
                                "t.progress, t.error, t.cache_key, t.updated_ms, r.run, r.key, r.size, r.sha256, "
                                "r.file, ") +
                            (j.schema_version >= 2 ? "t.parameters " : "'' ") +
                            "FROM tasks t LEFT JOIN results r ON r.run = t.run AND r.key = t.key "
                            "WHERE t.run = ? ORDER BY t.rowid";
  sqlite_statement s(j.db, query.c_str());
  s.bind(1, run);
  while (s.step()) {
    task_record t;
    t.key = s.text(0);
    t.status = s.text(1);
    t.attempts = s.integer(2);
    t.assigned_to = s.text(3);
    t.parent = s.text(4);
    t.is_subtask = s.integer(5) != 0;
    t.progress = s.real(6);
    t.error = s.text(7);
    t.cache_key = s.text(8);
    t.updated_ms = s.integer(9);
    if (!s.is_null(10)) t.result = j.read_ref(s, 10);
    t.parameters = s.text(15);
    state.tasks.push_back(std::move(t));
  }
  snapshot.commit();
  return state;
}

std::optional<std::string> sqlite_journal::result(std::string_view run, std::string_view key) {
  impl& j = *impl_;
  if (j.schema_version == 0) return std::nullopt;
  sqlite_statement s(j.db, "SELECT size, sha256, bytes, file FROM results WHERE run = ? AND key = ?");
  s.bind(1, run);
  s.bind(2, key);
  if (!s.step()) return std::nullopt;
  const auto size = static_cast<std::uint64_t>(s.integer(0));
  const std::string sha = s.text(1);
  const bool in_file = !s.is_null(3);
  const std::string file = in_file ? s.text(3) : std::string();
  std::string bytes = in_file ? std::string() : s.blob(2);
  s.reset();
  if (in_file) return j.files.read(file, size, sha);
  if (bytes.size() != size || sha256_hex(bytes) != sha) {
    throw_error(error_kind::generic,
                fmt::format("the result of task {} of run {} in journal {} does not match its SHA-256; the result is "
                            "lost",
                            key, run, j.path.string()));
  }
  return bytes;
}

std::optional<result_ref> sqlite_journal::cached(std::string_view cache_key) {
  if (impl_->schema_version == 0) return std::nullopt;
  if (cache_key.empty()) return std::nullopt;
  // "cache_key <> ''" lets SQLite use the partial index tasks_by_cache_key (it cannot tell that a
  // bound key is not empty); without it every lookup scans every task of every run.
  sqlite_statement s(impl_->db,
                     "SELECT r.run, r.key, r.size, r.sha256, r.file FROM tasks t "
                     "JOIN results r ON r.run = t.run AND r.key = t.key "
                     "WHERE t.cache_key = ?1 AND t.cache_key <> '' AND t.status IN ('SUCCEEDED', 'CACHED') "
                     "ORDER BY t.updated_ms DESC, t.rowid DESC LIMIT 1");
  s.bind(1, cache_key);
  if (!s.step()) return std::nullopt;
  result_ref ref = impl_->read_ref(s, 0);
  s.reset();
  return ref;
}

void sqlite_journal::each_cache_key(const std::function<void(std::string_view)>& fn) {
  // Read from the index alone (it holds every non-empty key).
  sqlite_statement s(impl_->db, "SELECT cache_key FROM tasks WHERE cache_key <> ''");
  while (s.step()) fn(s.text(0));
}

std::vector<transition> sqlite_journal::transitions(std::string_view run, std::int64_t after_seq, std::size_t limit) {
  if (impl_->schema_version == 0) return {};
  sqlite_statement s(impl_->db,
                     "SELECT seq, run, key, status, time_ms, detail FROM transitions "
                     "WHERE run = ? AND seq > ? ORDER BY seq LIMIT ?");
  s.bind(1, run);
  s.bind(2, after_seq);
  s.bind(3, static_cast<std::int64_t>(std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max())));
  std::vector<transition> out;
  while (s.step()) out.push_back(transition{s.integer(0), s.text(1), s.text(2), s.text(3), s.integer(4), s.text(5)});
  return out;
}

std::int64_t sqlite_journal::ask(std::string_view run, std::string_view what) {
  impl& j = *impl_;
  j.require_mode(open_mode::request, "make a request");
  sqlite_transaction t(j.db);
  {
    sqlite_statement known(j.db, "SELECT 1 FROM runs WHERE id = ?");
    known.bind(1, run);
    if (!known.step()) throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, j.path.string()));
    known.reset();
  }
  sqlite_statement s(j.db, "INSERT INTO requests(run, what, requested_ms, requested_by) VALUES(?, ?, ?, ?)");
  s.bind(1, run);
  s.bind(2, what);
  s.bind(3, unix_ms_now());
  s.bind(4, static_cast<std::int64_t>(::getpid()));
  s.run();
  const std::int64_t id = sqlite3_last_insert_rowid(j.db.handle());
  t.commit();
  return id;
}

bool sqlite_journal::withdraw(std::int64_t id, std::string_view why) {
  impl& j = *impl_;
  j.require_mode(open_mode::request, "withdraw a request");
  sqlite_transaction t(j.db);
  sqlite_statement s(j.db, "UPDATE requests SET answered_ms = ?2, answer = ?3 WHERE id = ?1 AND answered_ms = 0");
  s.bind(1, id);
  s.bind(2, unix_ms_now());
  s.bind(3, fmt::format("withdrawn: {}", why));
  s.run();
  const bool withdrawn = sqlite3_changes(j.db.handle()) > 0;
  t.commit();
  return withdrawn;
}

std::optional<run_request> sqlite_journal::request(std::int64_t id) {
  impl& j = *impl_;
  if (j.schema_version < journal_requests_version) return std::nullopt;
  sqlite_statement s(j.db, fmt::format("SELECT {} FROM requests WHERE id = ?", request_columns).c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  run_request r = read_request(s);
  s.reset();
  return r;
}

std::vector<run_request> sqlite_journal::open_requests() {
  impl& j = *impl_;
  std::vector<run_request> out;
  if (j.schema_version < journal_requests_version) return out;
  sqlite_statement s(j.db,
                     fmt::format("SELECT {} FROM requests WHERE answered_ms = 0 ORDER BY id", request_columns).c_str());
  while (s.step()) out.push_back(read_request(s));
  return out;
}

std::int64_t sqlite_journal::last_request_id() {
  impl& j = *impl_;
  if (j.schema_version < journal_requests_version) return 0;
  return j.db.query_int("SELECT coalesce(max(id), 0) FROM requests");
}

void sqlite_journal::answer(std::int64_t id, std::string_view answer) {
  impl_->require_mode(open_mode::write, "answer a request");
  impl_->buffer.emplace_back(answer_op{id, std::string(answer), unix_ms_now()});
}

const std::filesystem::path& sqlite_journal::path() const noexcept { return impl_->path; }

journal::open_mode sqlite_journal::mode() const noexcept { return impl_->mode; }

std::string new_run_id() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &utc);
  // Two runs started in the same second by two heads on two journals later merged, or by one head
  // twice, still differ: 32 random bits.
  std::random_device random;
  return fmt::format("r-{}-{:08x}", stamp, static_cast<std::uint32_t>(random()));
}

}  // namespace dx::detail
