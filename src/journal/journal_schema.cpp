// The journal's schema (journal_schema.hpp): its tables, and the checks run when a file is opened.
#include "journal/journal_schema.hpp"

#include "journal/sqlite_db.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <sqlite3.h>

#include <string>
#include <system_error>

namespace dx::detail {

namespace {

// Times are milliseconds since the Unix epoch. Empty strings rather than NULLs for absent text, so
// that every column reads back the same way. tasks keeps its rowid: it orders tasks as they were
// first recorded, which is the order views show them in. results are apart from tasks so that
// records (many, small, rewritten often) never carry result bytes.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE runs(
  id TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  definition TEXT NOT NULL,
  status TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  head_pid INTEGER NOT NULL);
CREATE TABLE tasks(
  run TEXT NOT NULL,
  key TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  assigned_to TEXT NOT NULL,
  parent TEXT NOT NULL,
  is_subtask INTEGER NOT NULL,
  progress REAL NOT NULL,
  error TEXT NOT NULL,
  cache_key TEXT NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY(run, key));
CREATE INDEX tasks_by_cache_key ON tasks(cache_key) WHERE cache_key <> '';
CREATE TABLE results(
  run TEXT NOT NULL,
  key TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  bytes BLOB,
  file TEXT,
  PRIMARY KEY(run, key)) WITHOUT ROWID;
CREATE TABLE transitions(
  seq INTEGER PRIMARY KEY,
  run TEXT NOT NULL,
  key TEXT NOT NULL,
  status TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  detail TEXT NOT NULL);
CREATE INDEX transitions_by_run ON transitions(run, seq);
)sql";

// Version 2: a task's parameters (a subtask's chunk as {"start":..,"end":..}, which a resumed run
// needs to cut its split the same way).
constexpr const char* schema_v2 = "ALTER TABLE tasks ADD COLUMN parameters TEXT NOT NULL DEFAULT '';";

// Version 3: requests from other processes to the head of a run (dx cancel). The head looks for
// open ones (answered_ms = 0) a few times a second, through the partial index; the table stays
// small (a request per command a user types).
constexpr const char* schema_v3 = R"sql(
CREATE TABLE requests(
  id INTEGER PRIMARY KEY,
  run TEXT NOT NULL,
  what TEXT NOT NULL,
  requested_ms INTEGER NOT NULL,
  requested_by INTEGER NOT NULL,
  answered_ms INTEGER NOT NULL DEFAULT 0,
  answer TEXT NOT NULL DEFAULT '');
CREATE INDEX requests_open ON requests(id) WHERE answered_ms = 0;
)sql";

std::int64_t read_int(sqlite_db& db, const char* sql) {
  sqlite_statement s(db, sql);
  if (!s.step()) db.fail(SQLITE_CORRUPT, fmt::format("no value from \"{}\"", sql));
  const std::int64_t value = s.integer(0);
  s.reset();
  return value;
}

std::string read_text(sqlite_db& db, const char* sql) {
  sqlite_statement s(db, sql);
  if (!s.step()) db.fail(SQLITE_CORRUPT, fmt::format("no value from \"{}\"", sql));
  std::string value = s.text(0);
  s.reset();
  return value;
}

[[noreturn]] void refuse(const sqlite_db& db, const std::string& problem) {
  throw_error(error_kind::generic, fmt::format("cannot open journal {}: {}", db.path().string(), problem));
}

/// A database file is whole pages; any other size means it was cut (or is not what it claims).
/// SQLite would notice only when a query reaches the missing page, so this says it up front.
void check_whole_pages(sqlite_db& db) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(db.path(), ec);
  if (ec || size == 0) return;
  const std::int64_t page = read_int(db, "PRAGMA page_size");
  if (page > 0 && size % static_cast<std::uintmax_t>(page) != 0) {
    refuse(db, fmt::format("the file is truncated or damaged: its size, {} bytes, is not a whole number of "
                           "{}-byte pages",
                           size, page));
  }
}

void create_schema(sqlite_db& db) {
  // WAL cannot be switched on inside a transaction, and it survives in the file's header.
  if (read_text(db, "PRAGMA journal_mode=WAL") != "wal") refuse(db, "SQLite cannot put it in WAL mode");
  sqlite_transaction t(db);
  // Another writer cannot race here (the journal's lock), but a file half made by a crashed one
  // holds nothing: the whole schema goes in with one commit.
  if (read_int(db, "SELECT count(*) FROM sqlite_master") != 0) refuse(db, "it changed while being created");
  db.exec(schema_v1);
  db.exec(schema_v2);
  db.exec(schema_v3);
  db.exec(
      fmt::format("PRAGMA application_id={}; PRAGMA user_version={}", journal_application_id, journal_schema_version)
          .c_str());
  t.commit();
}

/// The first read of the file, which tells a text file, random bytes or a damaged header apart
/// from a database and says which in plain words.
std::int64_t read_application_id(sqlite_db& db) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db.handle(), "PRAGMA application_id", -1, &stmt, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
  const std::int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
  const std::string message = sqlite3_errmsg(db.handle());
  sqlite3_finalize(stmt);
  if (rc == SQLITE_ROW) return id;
  switch (rc & 0xff) {
    case SQLITE_NOTADB:
      refuse(db, "it is not an SQLite database, so not a dx journal");
    case SQLITE_CORRUPT:
      refuse(db, fmt::format("the file is damaged (SQLite: {})", message));
    default:
      refuse(db, fmt::format("SQLite cannot read it: {}", message));
  }
}

}  // namespace

std::int64_t prepare_journal_schema(sqlite_db& db, schema_use use) {
  const bool writable = use == schema_use::write;
  const std::int64_t application_id = read_application_id(db);
  const std::int64_t version = read_int(db, "PRAGMA user_version");
  const std::int64_t objects = read_int(db, "SELECT count(*) FROM sqlite_master");
  check_whole_pages(db);

  if (application_id == 0 && version == 0 && objects == 0) {
    if (use == schema_use::read) {
      // An empty file: what a writer killed before its first commit leaves, or a journal about to
      // be created. A reader sees a journal without runs.
      db.exec("PRAGMA query_only=1");
      return 0;
    }
    if (!writable) refuse(db, "it holds no journal yet (no run was ever recorded there)");
    create_schema(db);
  } else if (application_id != journal_application_id) {
    refuse(db, application_id == 0
                   ? std::string("it is an SQLite database but not a dx journal (it has no application id)")
                   : fmt::format("it is an SQLite database of another application (application id {:#x}), not a "
                                 "dx journal",
                                 application_id));
  } else if (version > journal_schema_version) {
    refuse(db, fmt::format("its schema version is {}, newer than the version {} this dx reads; use the dx that "
                           "wrote it, or a newer one",
                           version, journal_schema_version));
  } else if (version < 1) {
    refuse(db, fmt::format("it is damaged: schema version {} is not one dx ever wrote", version));
  }
  std::int64_t now_version = objects == 0 ? journal_schema_version : version;
  // A writer migrates one version at a time, each in a transaction of its own: a crash between
  // two leaves a journal of the version before, which the next writer takes on from there.
  if (writable && now_version == 1) {
    sqlite_transaction t(db);
    db.exec(schema_v2);
    db.exec("PRAGMA user_version=2");
    t.commit();
    now_version = 2;
  }
  if (writable && now_version == 2) {
    sqlite_transaction t(db);
    db.exec(schema_v3);
    db.exec("PRAGMA user_version=3");
    t.commit();
    now_version = 3;
  }
  if (use == schema_use::request && now_version < journal_requests_version) {
    refuse(db, fmt::format("its schema version is {}, which takes no requests: the dx that writes it is older than "
                           "this one and cannot be asked to cancel a run",
                           now_version));
  }

  if (writable) {
    if (read_text(db, "PRAGMA journal_mode=WAL") != "wal") refuse(db, "SQLite cannot put it in WAL mode");
    // FULL: a commit returns after the WAL is on disk, so what commit() reported survives power
    // loss, not only a crash of the process.
    db.exec("PRAGMA synchronous=FULL");
  } else if (use == schema_use::request) {
    // The writer put the file in WAL mode; a requester writes alongside it, never alone.
    if (read_text(db, "PRAGMA journal_mode") != "wal") refuse(db, "it is not in WAL mode, so no dx is writing it");
    db.exec("PRAGMA synchronous=FULL");
  } else {
    db.exec("PRAGMA query_only=1");
  }
  // Reads every table's root page: a file cut short usually fails here rather than in a query.
  read_int(db,
           "SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM (SELECT 1 FROM tasks LIMIT 1)) + "
           "(SELECT count(*) FROM (SELECT 1 FROM results LIMIT 1)) + coalesce((SELECT max(seq) FROM transitions), 0)");
  return now_version;
}

}  // namespace dx::detail
