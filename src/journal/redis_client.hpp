// A Redis connection for the journal: the location's parts (redis://[:password@]host:port/db), one
// blocking connection with a deadline on every call, and replies as plain values, so that hiredis
// stays inside redis_client.cpp. A call that cannot reach Redis throws redis_unreachable (the
// journal holds its commits locally then); an error reply comes back as a value for the caller
// to name.
//
//   redis_client c(parse_redis_location("redis://127.0.0.1:6379/0"), std::chrono::seconds(2));
//   redis_value v = c.call({"GET", "dx:epoch"});
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct redisContext;

namespace dx::detail {

/// Where a Redis journal lives, from its location text.
struct redis_location {
  std::string text;  ///< as given, without the password (for messages and metrics)
  std::string host;
  int port = 6379;
  int db = 0;
  std::string password;   ///< empty: no AUTH
  int wait_replicas = 0;  ///< ?wait=N: commit() waits for N replicas to acknowledge each group
};

/// Parses "redis://[:password@]host[:port][/db][?wait=N]". Throws dx::error naming the location and
/// what is wrong with it. Does not block.
redis_location parse_redis_location(std::string_view text);

/// Redis could not be reached (connect, send or receive failed, or timed out).
class redis_unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One reply.
struct redis_value {
  enum class type { nil, integer, string, array, status, error };
  type kind = type::nil;
  std::int64_t integer = 0;
  std::string text;  ///< string, status and error replies
  std::vector<redis_value> elements;

  bool is_nil() const noexcept { return kind == type::nil; }
  bool is_error() const noexcept { return kind == type::error; }
};

/// One connection, opened on first use and again after a failure. Not thread-safe.
class redis_client {
 public:
  /// `timeout` bounds connecting and every call. Does not block (no connection yet).
  redis_client(redis_location where, std::chrono::milliseconds timeout);
  ~redis_client();
  redis_client(const redis_client&) = delete;
  redis_client& operator=(const redis_client&) = delete;

  /// Sends one command and returns its reply (an error reply too). Throws redis_unreachable when
  /// Redis cannot be reached in time (the connection is closed, and opened again by the next
  /// call), or answers that it cannot serve yet (LOADING its files after a restart, BUSY,
  /// MASTERDOWN, TRYAGAIN). Blocks up to the timeout.
  redis_value call(const std::vector<std::string_view>& args);
  /// call(), throwing dx::error "<what> in journal <location>: <Redis's message>" for an error
  /// reply.
  redis_value call_checked(const std::vector<std::string_view>& args, std::string_view what);
  /// Closes the connection (the next call opens another). Does not block.
  void disconnect() noexcept;

  const redis_location& where() const noexcept { return where_; }

 private:
  void connect();

  redis_location where_;
  std::chrono::milliseconds timeout_;
  redisContext* context_ = nullptr;
};

}  // namespace dx::detail
