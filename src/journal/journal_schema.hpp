// The journal's tables and the checks that a file is a journal this dx can use: SQLite's
// application_id marks the file as dx's, user_version is the schema's version. A fresh file gets
// the schema in one transaction, so a crash while creating it leaves an empty file (which is
// created again), never half a schema.
#pragma once

#include <cstdint>

namespace dx::detail {

class sqlite_db;

/// "DXJN" in ASCII: PRAGMA application_id of every dx journal.
inline constexpr std::int64_t journal_application_id = 0x44584a4e;
/// PRAGMA user_version of the schema this dx writes. A journal with a greater one is refused
/// (a newer dx wrote it); a writer migrates an older one (a reader reads it as it is).
inline constexpr std::int64_t journal_schema_version = 2;

/// Checks that `db` is a dx journal of a known schema, creating the schema when the file is new
/// and `writable`, and sets the connection's modes (WAL, synchronous=FULL for a writer;
/// query_only for a reader). Throws dx::error naming the file and the problem: not an SQLite
/// file, another application's database, a newer schema, a damaged or truncated file, or (read
/// only) a journal never created. Blocks (up to the busy timeout on another writer's locks).
/// Returns the schema version the file now has.
std::int64_t prepare_journal_schema(sqlite_db& db, bool writable);

}  // namespace dx::detail
