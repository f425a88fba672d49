// The journal's thin RAII layer over the SQLite C API: a connection and prepared statements whose
// every failure becomes a dx::error naming the database file and SQLite's own explanation, so no
// caller ever sees a bare result code.
//
//   sqlite_db db(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
//   db.exec("PRAGMA journal_mode=WAL");
//   sqlite_statement s(db, "SELECT name FROM runs WHERE id = ?");
//   s.bind(1, id);
//   while (s.step()) use(s.text(0));
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace dx::detail {

/// One SQLite connection. Not thread-safe: the journal that owns it serialises its use.
class sqlite_db {
 public:
  /// Opens `path` with SQLite's open `flags` and a busy timeout, so that a lock held by another
  /// connection makes a call wait up to `busy_timeout_ms` and then fail, never hang. Throws
  /// dx::error naming the path when SQLite cannot open it.
  sqlite_db(std::filesystem::path path, int flags, int busy_timeout_ms);
  ~sqlite_db();
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;

  /// Runs one or more statements that return no rows of interest. Blocks. Throws dx::error.
  void exec(const char* sql);
  /// The single integer a query such as "PRAGMA user_version" returns. Blocks. Throws dx::error.
  std::int64_t query_int(const char* sql);
  /// Throws dx::error "<what> in journal <path>: <SQLite's message>" for result code `rc`.
  [[noreturn]] void fail(int rc, std::string_view what) const;

  sqlite3* handle() const noexcept { return db_; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
};

/// A prepared statement, reset for reuse after each run. Not thread-safe.
class sqlite_statement {
 public:
  /// Prepares `sql` on `db` (which must outlive the statement). Throws dx::error.
  sqlite_statement(sqlite_db& db, const char* sql);
  ~sqlite_statement();
  sqlite_statement(const sqlite_statement&) = delete;
  sqlite_statement& operator=(const sqlite_statement&) = delete;

  // Parameters are numbered from 1, as in SQLite. Text and blobs are copied by SQLite
  // (SQLITE_TRANSIENT), so the arguments need not outlive the call.
  void bind(int index, std::string_view text);
  void bind_blob(int index, std::string_view bytes);
  void bind_null(int index);
  void bind(int index, std::int64_t value);
  void bind(int index, double value);
  /// bind() without the copy (SQLITE_STATIC): SQLite reads `text` where it is, so it must stay
  /// valid and unchanged until the statement has run or been reset. For the journal's hot loop,
  /// which binds a dozen strings per record.
  void bind_in_place(int index, std::string_view text);
  void bind_blob_in_place(int index, std::string_view bytes);

  /// Advances to the next row: true when there is one, false when done (the statement is then
  /// reset and its bindings cleared). Blocks on I/O and, up to the busy timeout, on other
  /// connections' locks. Throws dx::error naming the file on any failure.
  bool step();
  /// Runs a statement that returns no rows. Throws dx::error.
  void run();
  /// Resets the statement and clears its bindings; after an early exit from a step() loop.
  void reset() noexcept;

  // Columns of the current row, numbered from 0.
  std::string text(int column) const;
  std::string blob(int column) const;
  std::int64_t integer(int column) const;
  double real(int column) const;
  bool is_null(int column) const;

 private:
  sqlite_db& db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// Runs a group of statements in one transaction, committed by commit(), rolled back by the
/// destructor when commit() was not reached.
class sqlite_transaction {
 public:
  enum class kind {
    write,  ///< BEGIN IMMEDIATE: the write lock is taken up front, so the group cannot fail
            ///< half-way for want of it.
    read,   ///< BEGIN: one snapshot for several queries.
  };
  explicit sqlite_transaction(sqlite_db& db, kind k = kind::write);
  ~sqlite_transaction();
  sqlite_transaction(const sqlite_transaction&) = delete;
  sqlite_transaction& operator=(const sqlite_transaction&) = delete;
  /// Commits; with synchronous=FULL this returns after the fsync. Throws dx::error (the
  /// transaction is then rolled back).
  void commit();

 private:
  sqlite_db& db_;
  bool open_ = true;
};

}  // namespace dx::detail
