// A journal in a Redis database ("redis://host:port/db"), shared by a head and the standbys that
// can replace it: the same calls and answers as the SQLite journal (journal.hpp), with these
// differences a user must know.
//
// Writing: open_mode::write needs the journal's lease (redis_lease.hpp): the one this process
// took (dx serve takes it before it starts, a standby when it takes over) or, when it has none,
// one taken now (refused, naming the holder, while another head has it). Each commit() is one Lua
// script: Redis runs it whole, with no other client's command in between, and it first checks the
// lease's epoch, so a head that lost the lease has every later commit refused ("another head took
// the journal over") and writes nothing. Every value the script writes was checked before it was
// sent, so it does not stop half-way on bad input.
//
// Durability: commit() returns once Redis has applied the group. What survives then is what
// Redis's configuration promises: with appendonly yes and appendfsync always the group is on
// Redis's disk when commit() returns (as the SQLite journal's fsync); with appendfsync everysec
// (Redis's default when appendonly is on) a crash of Redis's machine may lose the last second;
// without persistence a restart of Redis loses the journal. "?wait=N" in the location makes each
// commit also wait (up to a second) for N replicas to acknowledge it (Redis's WAIT), logging a
// warning when fewer did. A writer logs Redis's persistence settings when it opens the journal.
//
// Results live in Redis (a hash per run) with their size and SHA-256; result() checks both and
// throws dx::error when they disagree. Redis keeps everything in memory: results count against
// its maxmemory.
//
// Redis away: a commit() that cannot reach Redis keeps its group in this process (health() says
// so; the workflow layer raises an alert) and returns; later commits queue behind it and every
// commit() (or a call with nothing new) tries again, at most every half second, sending the groups
// in order, each still fenced by the epoch. Reads throw dx::error while Redis is away. What is held
// is lost if this process dies before Redis returns (those tasks run again on resume); and if a
// standby took the lease meanwhile, the held groups are refused when Redis returns.
//
// Keys (database of the location): dx:epoch, dx:lease, dx:seq, dx:runs (ids, oldest first),
// dx:run:<id> (hash), dx:tasks:<run>, dx:task_status:<run>, dx:task_order:<run>, dx:results:<run>,
// dx:result_meta:<run>, dx:transitions:<run> (sorted by seq), dx:cache:<key>, dx:cache_keys,
// dx:request_seq, dx:request:<id>, dx:requests_open. A single Redis server (and its replicas), not
// Redis Cluster: a commit touches keys of many runs.
#pragma once

#include "journal/journal.hpp"

#include <chrono>
#include <memory>
#include <string_view>

namespace dx::detail {

/// Opens the Redis journal at `location`. `call_timeout` bounds each call to Redis. Throws
/// dx::error for a bad location, a dx built without hiredis, or (write) a lease another head holds;
/// a Redis that cannot be reached is an error for read_only and request modes, and for a writer
/// without its lease. Blocks for a few round trips.
std::unique_ptr<journal> open_redis_journal(std::string_view location, journal::open_mode mode,
                                            std::chrono::milliseconds call_timeout);

}  // namespace dx::detail
