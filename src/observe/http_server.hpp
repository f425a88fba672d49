// A small HTTP/1.1 server (Boost.Beast) for the head's endpoints: GET, HEAD and POST, one thread,
// bounded requests and connections. It knows nothing of dx: a handler maps a request to a
// response.
//
// Limits, each failing only the request that breaks it: request line and headers 8 KiB (431),
// a body at most 4 MiB with POST and 1 KiB otherwise (413, refused from its Content-Length before
// anything is read or allocated), a body needs Content-Length (411: no chunked uploads), other
// methods 405 with Allow, 64 connections at once (503), and 10 s for a request to arrive whole
// (from its first byte: a slow sender cannot stretch it) and 10 s for the answer to leave.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dx::detail {

enum class http_method : std::uint8_t { get, head, post };

struct http_request {
  http_method method = http_method::get;
  std::string path;                          // decoded, without the query
  std::map<std::string, std::string> query;  // decoded; the last of repeated keys wins
  /// Request headers by lower-case name (a repeated header keeps its last value).
  std::map<std::string, std::string> headers;
  std::string body;
  std::string peer;            // the client's address ("127.0.0.1:53211")
  bool peer_loopback = false;  // whether that address is a loopback one

  /// The value of header `lower_case_name`, or "" when it is absent.
  const std::string& header(const std::string& lower_case_name) const;
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  /// Further headers (ETag, Allow, Location, WWW-Authenticate).
  std::vector<std::pair<std::string, std::string>> headers = {};
  /// How the request is counted in dx_http_requests_total when it is not its path: a route with
  /// parameters names its pattern ("/api/runs/{id}"), so the label's values stay few.
  std::string route = {};
};

/// Counts of what the server answered, for dx_http_requests_total.
struct http_counts {
  std::map<std::pair<std::string, unsigned>, std::uint64_t> by_path_and_code;
};

/// The limits above, for tests and documentation.
struct http_limits {
  static constexpr std::size_t header_bytes = 8192;
  static constexpr std::size_t post_body_bytes = std::size_t{4} << 20;
  static constexpr std::size_t other_body_bytes = 1024;
  static constexpr std::size_t connections = 64;
};

class http_server {
 public:
  using handler = std::function<http_response(const http_request&)>;
  /// Listens at "host:port" (port 0: any) and serves on its own thread. Throws dx::error naming
  /// the address when it cannot listen. `h` runs on that thread, one request at a time.
  /// `deadline`: how long a request may take to arrive whole, and an answer to leave.
  http_server(const std::string& address, handler h, std::chrono::milliseconds deadline = std::chrono::seconds(10));
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// The bound address, "127.0.0.1:8787".
  std::string endpoint() const;
  http_counts counts() const;
  /// Closes the listener and every connection; waits for the thread. Idempotent.
  void stop();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace dx::detail
