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
///   1: runs, tasks, results, transitions.
///   2: tasks.parameters (a chunk's part of its split).
///   3: requests (another process asking the head of a run to cancel it).
inline constexpr std::int64_t journal_schema_version = 3;
/// The first schema with the requests table.
inline constexpr std::int64_t journal_requests_version = 3;

/// What a connection does with the journal.
enum class schema_use {
  write,    ///< the one writer: creates the schema in a new file, migrates an older one
  read,     ///< a reader: reads any known version as it is (query_only)
  request,  ///< a process asking the writer something: writes requests only, needs version 3
};

/// Checks that `db` is a dx journal of a known schema, creating or migrating the schema for a
/// writer, and sets the connection's modes (WAL and synchronous=FULL for a writer or a requester;
/// query_only for a reader). Throws dx::error naming the file and the problem: not an SQLite
/// file, another application's database, a newer schema, a damaged or truncated file, a journal
/// never created (reader, requester), a schema too old to take requests (requester). Blocks (up
/// to the busy timeout on another writer's locks). Returns the schema version the file now has:
/// 0 for an empty file a reader opened (a journal without runs: it has no tables).
std::int64_t prepare_journal_schema(sqlite_db& db, schema_use use);

}  // namespace dx::detail
