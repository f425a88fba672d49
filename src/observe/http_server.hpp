// A small HTTP/1.1 server (Boost.Beast) for the head's endpoints: GET, HEAD and POST, one thread,
// bounded requests and connections. It knows nothing of dx: a handler maps a request to a
// response.
//
// Limits, each failing only the request that breaks it: request line and headers 8 KiB (431),
// a body at most 4 MiB with POST and 1 KiB otherwise (413, refused from its Content-Length before
// anything is read or allocated), a body needs Content-Length (411: no chunked uploads), other
// methods 405 with Allow, 64 connections at once and 16 from one client address (503), and 10 s
// for a request to arrive whole (from its first byte: a slow sender cannot stretch it) and 10 s
// for the answer to leave (a client that reads too slowly is cut). Idle keep-alive connections
// yield to new ones: at the connection limit the one idle longest is closed to make room, and
// once three quarters of the limit are open an idle keep-alive connection is kept 1 s only, so
// that clients holding connections they do not use cannot shut others out.
//
// With TLS credentials every connection is https (and a WebSocket wss): its TLS handshake passes
// before a byte of HTTP is read, within the deadline of its first request, and the client must
// show a certificate of the cluster's authority when tls_options::require_client_certificate says
// so. A failed handshake closes that connection alone and is logged with its reason.
//
// A handler may also accept a WebSocket upgrade by answering with a websocket_feed: the server
// then pushes that feed's messages to the client (websocket_settings says how often, how many
// clients, and how many bytes a client may leave unread before it is dropped).
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

namespace dx::transport {
class tls_credentials;
}  // namespace dx::transport

namespace dx::detail {

enum class http_method : std::uint8_t { get, head, post };

class websocket_feed;

struct http_request {
  http_method method = http_method::get;
  std::string path;                          // decoded, without the query
  std::map<std::string, std::string> query;  // decoded; the last of repeated keys wins
  /// Request headers by lower-case name (a repeated header keeps its last value).
  std::map<std::string, std::string> headers;
  std::string body;
  std::string peer;            // the client's address ("127.0.0.1:53211")
  bool peer_loopback = false;  // whether that address is a loopback one
  bool websocket = false;      // a GET asking to upgrade to a WebSocket

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
  /// Set on the answer to a WebSocket upgrade (http_request::websocket): the server accepts it
  /// (status and body are then not sent) and pushes this feed's messages to the client. Over the
  /// client limit the answer is 503 instead; a request that is no upgrade gets 426.
  std::shared_ptr<websocket_feed> websocket = {};
  /// A large body made as the client reads it, instead of `body`: each call appends the next
  /// piece to its (empty) argument and returns false with the last one. Sent chunked, each piece
  /// under the write deadline, so that a client that reads slowly holds one piece, not the whole
  /// answer. Called on the server's thread.
  std::function<bool(std::string& piece)> stream = {};
};

/// Text messages that every WebSocket client of a route receives, from the moment it joins. The
/// server drains the feed once a tick while it has a client (and at once when the feed wakes it),
/// and sends each message drained to each of its clients.
class websocket_feed {
 public:
  virtual ~websocket_feed() = default;
  /// Appends the messages gathered since the last call to `out`, each one WebSocket text message.
  /// Called on the server's thread.
  virtual void drain(std::vector<std::string>& out) = 0;
  /// `n` clients listen now (0: nothing need be gathered). Called on the server's thread.
  virtual void listeners(std::size_t n) = 0;
  /// Gives the feed a function that asks the server to drain it soon, before the next tick (a
  /// batch is full). That function is thread-safe, does not block, and may be called under the
  /// caller's locks; it does nothing once the server stopped. Called on the server's thread,
  /// before the feed's first client is accepted.
  virtual void set_wake(std::function<void()> wake) = 0;
  /// The first message a client receives, once it is among the listeners (empty: none): from it
  /// on, the client receives every message drained. Called on the server's thread.
  virtual std::string greeting() const { return {}; }
};

/// How the server treats WebSocket clients.
struct websocket_settings {
  /// Clients at once (over: the upgrade is answered 503).
  std::size_t max_clients = 16;
  /// Bytes of messages a client may have waiting to be sent (the one being written included; a
  /// client with nothing waiting takes a message of any size); one more message and the client is
  /// dropped (its waiting messages freed, a close frame "too slow" (1008) after the message being
  /// written, the connection cut if that does not leave within 2 s).
  std::size_t queue_bytes = std::size_t{8} << 20;
  /// How often the feeds are drained.
  std::chrono::milliseconds tick{50};
  /// A client that sends nothing (not even the answer to a ping, which the server sends after
  /// half of it) for this long is closed.
  std::chrono::milliseconds idle_timeout{30'000};
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
  static constexpr std::size_t connections_per_client = 16;
  /// How long an idle keep-alive connection is kept once three quarters of `connections` are open.
  static constexpr std::chrono::milliseconds busy_idle_timeout{1000};
};

class http_server {
 public:
  using handler = std::function<http_response(const http_request&)>;
  /// Listens at "host:port" (port 0: any) and serves on its own thread. Throws dx::error naming
  /// the address when it cannot listen. `h` runs on that thread, one request at a time.
  /// `deadline`: how long a request may take to arrive whole, and an answer to leave. `tls`: the
  /// certificates every connection is served with (null: plain HTTP); the context they hold when
  /// a connection is accepted is the one it uses, so files replaced on disk serve new connections.
  http_server(const std::string& address, handler h, std::chrono::milliseconds deadline = std::chrono::seconds(10),
              websocket_settings ws = {}, std::shared_ptr<transport::tls_credentials> tls = nullptr);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// The bound address, "127.0.0.1:8787".
  std::string endpoint() const;
  /// Whether the bound address is a loopback one (127.0.0.0/8, ::1): only this machine reaches
  /// it. "0.0.0.0" is not. Thread-safe.
  bool loopback() const noexcept;
  /// Whether connections are served over TLS (https, wss).
  bool tls() const noexcept;
  http_counts counts() const;
  /// WebSocket clients connected now, and those dropped so far for reading too slowly.
  /// Thread-safe.
  std::size_t websocket_clients() const noexcept;
  std::uint64_t websocket_dropped() const noexcept;
  /// Closes the listener and every connection; waits for the thread. Idempotent.
  void stop();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace dx::detail
