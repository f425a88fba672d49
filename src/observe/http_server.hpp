// A small HTTP/1.1 server (Boost.Beast) for the head's observability endpoints: GET and HEAD
// only, one thread, bounded requests and connections. It knows nothing of dx: a handler maps a
// request to a response.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace dx::detail {

struct http_request {
  std::string path;                          // decoded, without the query
  std::map<std::string, std::string> query;  // decoded; the last of repeated keys wins
};

struct http_response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// Counts of what the server answered, for dx_http_requests_total.
struct http_counts {
  std::map<std::pair<std::string, unsigned>, std::uint64_t> by_path_and_code;
};

class http_server {
 public:
  using handler = std::function<http_response(const http_request&)>;
  /// Listens at "host:port" (port 0: any) and serves on its own thread. Throws dx::error naming
  /// the address when it cannot listen.
  http_server(const std::string& address, handler h);
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
