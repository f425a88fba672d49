// The SQLite connection, statement and transaction wrappers of the journal (sqlite_db.hpp): every
// SQLite failure becomes a dx::error that names the journal's file.
#include "journal/sqlite_db.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <sqlite3.h>

#include <utility>

namespace dx::detail {

namespace {

/// What a reader of the message needs beyond SQLite's own words: whether the file is damaged or
/// not a database at all.
std::string_view explain(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
      return " (the file is damaged)";
    case SQLITE_NOTADB:
      return " (not an SQLite database)";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return " (another connection held its lock past the busy timeout)";
    default:
      return "";
  }
}

}  // namespace

sqlite_db::sqlite_db(std::filesystem::path path, int flags, int busy_timeout_ms) : path_(std::move(path)) {
  const int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw_error(error_kind::generic, fmt::format("cannot open journal {}: {}{}", path_.string(), message, explain(rc)));
  }
  // Extended codes tell a short read (a truncated file) from other I/O errors in messages.
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, busy_timeout_ms);
}

sqlite_db::~sqlite_db() { sqlite3_close(db_); }

void sqlite_db::fail(int rc, std::string_view what) const {
  throw_error(error_kind::generic,
              fmt::format("{} in journal {}: {}{}", what, path_.string(), sqlite3_errmsg(db_), explain(rc)));
}

void sqlite_db::exec(const char* sql) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  if (rc != SQLITE_OK) {
    const std::string text = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    throw_error(error_kind::generic,
                fmt::format("cannot run \"{}\" in journal {}: {}{}", sql, path_.string(), text, explain(rc)));
  }
}

std::int64_t sqlite_db::query_int(const char* sql) {
  sqlite_statement s(*this, sql);
  if (!s.step()) fail(SQLITE_ERROR, fmt::format("no value from \"{}\"", sql));
  const std::int64_t value = s.integer(0);
  s.reset();
  return value;
}

sqlite_statement::sqlite_statement(sqlite_db& db, const char* sql) : db_(db) {
  const int rc = sqlite3_prepare_v3(db_.handle(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) db_.fail(rc, fmt::format("cannot prepare \"{}\"", sql));
}

sqlite_statement::~sqlite_statement() { sqlite3_finalize(stmt_); }

void sqlite_statement::bind(int index, std::string_view text) {
  // An empty view may have a null data(), which SQLite would bind as NULL rather than "".
  const char* data = text.empty() ? "" : text.data();
  const int rc = sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

void sqlite_statement::bind_blob(int index, std::string_view bytes) {
  // A zero-length blob would bind as NULL through a null pointer; "" keeps it an empty blob.
  const char* data = bytes.empty() ? "" : bytes.data();
  const int rc = sqlite3_bind_blob64(stmt_, index, data, bytes.size(), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

void sqlite_statement::bind_in_place(int index, std::string_view text) {
  const char* data = text.empty() ? "" : text.data();
  const int rc = sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_STATIC, SQLITE_UTF8);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

void sqlite_statement::bind_blob_in_place(int index, std::string_view bytes) {
  const char* data = bytes.empty() ? "" : bytes.data();
  const int rc = sqlite3_bind_blob64(stmt_, index, data, bytes.size(), SQLITE_STATIC);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

void sqlite_statement::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

void sqlite_statement::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

void sqlite_statement::bind(int index, double value) {
  const int rc = sqlite3_bind_double(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, "cannot bind a value");
}

bool sqlite_statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) {
    reset();
    return false;
  }
  reset();
  db_.fail(rc, "cannot read or write");
}

void sqlite_statement::run() {
  while (step()) {
  }
}

void sqlite_statement::reset() noexcept {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string sqlite_statement::text(int column) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  const int n = sqlite3_column_bytes(stmt_, column);
  return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

std::string sqlite_statement::blob(int column) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  const int n = sqlite3_column_bytes(stmt_, column);
  return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
}

std::int64_t sqlite_statement::integer(int column) const { return sqlite3_column_int64(stmt_, column); }

double sqlite_statement::real(int column) const { return sqlite3_column_double(stmt_, column); }

bool sqlite_statement::is_null(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }

sqlite_transaction::sqlite_transaction(sqlite_db& db, kind k) : db_(db) {
  db_.exec(k == kind::write ? "BEGIN IMMEDIATE" : "BEGIN");
}

sqlite_transaction::~sqlite_transaction() {
  // A failed COMMIT may already have ended the transaction; ROLLBACK's error is moot then.
  if (open_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void sqlite_transaction::commit() {
  db_.exec("COMMIT");
  open_ = false;
}

}  // namespace dx::detail
