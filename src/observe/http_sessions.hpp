// The connections of the HTTP server (http_server.cpp) and the state they share with it: an
// HTTP/1.1 session and a WebSocket client, each a template on its stream (plain TCP, or TLS over
// TCP), so that https and wss keep every limit and deadline of http and ws by construction.
//
// With TLS a connection first completes its handshake (the context is the one the credentials
// hold when it is accepted), under the deadline its first request then shares: a client that
// stalls in the handshake holds the connection no longer than one that stalls in its request.
#pragma once

#include "common/log.hpp"
#include "observe/http_server.hpp"
#include "transport/address.hpp"
#include "transport/asio.hpp"
#include "transport/tls.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <atomic>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <vector>

namespace dx::detail {

namespace http_detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using plain_stream = beast::tcp_stream;
using tls_stream = beast::ssl_stream<beast::tcp_stream>;

/// Splits a request target ("/api/tasks?since=10") into a decoded path and query, or nullopt.
std::optional<http_request> parse_target(std::string_view target);
/// The words of a 4xx the server answers on its own.
const char* reason_text(unsigned status);
std::string lower_case(std::string_view s);

/// A WebSocket client as the server's feeds see it, whatever its stream.
struct ws_client {
  virtual ~ws_client() = default;
  /// Queues a message (or drops a client that reads too slowly).
  virtual void push(const std::shared_ptr<const std::string>& m) = 0;
  /// Ends the connection at once.
  virtual void end() = 0;
  std::shared_ptr<websocket_feed> feed;
  bool joined = false;  // among its feed's clients
};

/// An HTTP connection as stop() and the connection limit see it.
struct http_connection {
  virtual ~http_connection() = default;
  virtual void close() = 0;
  /// Since when it has waited for its next request after answering one; nullopt while it reads
  /// its first request, serves one, or writes an answer. The server's thread only.
  std::optional<std::chrono::steady_clock::time_point> idle_since;
};

}  // namespace http_detail

struct http_server::impl : std::enable_shared_from_this<impl> {
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  asio::ip::tcp::acceptor acceptor{io};
  handler serve;
  std::chrono::milliseconds deadline{10'000};
  std::shared_ptr<transport::tls_credentials> tls;  // null: plain HTTP
  std::string bound;
  std::thread thread;
  std::atomic<std::size_t> open_connections{0};
  std::mutex mutex;  // counts and sessions
  http_counts counts;
  std::vector<std::weak_ptr<http_detail::http_connection>> sessions;
  std::map<std::string, std::size_t> per_client;  // open connections by client address
  std::once_flag stop_once;
  bool loopback = true;

  // WebSocket clients. `feeds` and `ticking` belong to the server's thread; the counts are read by
  // metrics from any thread (relaxed: they are reports, nothing is ordered by them).
  websocket_settings ws;
  struct feed_clients {
    std::shared_ptr<websocket_feed> feed;
    std::vector<std::shared_ptr<http_detail::ws_client>> clients;
  };
  std::vector<feed_clients> feeds;
  std::vector<std::weak_ptr<http_detail::ws_client>> ws_sessions;  // every one, joined or still in its handshake
  std::optional<asio::steady_timer> tick_timer;
  bool ticking = false;
  bool stopped = false;  // the server's thread: stop() ran, no client joins any more
  std::atomic<std::size_t> ws_clients{0};
  std::atomic<std::uint64_t> ws_dropped{0};
  /// What a feed's wake function reaches: the server until it stops (then nothing), so that a
  /// wake from another thread never posts to an io_context that is gone.
  struct waker {
    std::mutex mutex;
    http_server::impl* server = nullptr;  // null once the server stopped
    std::atomic<bool> posted{false};      // a drain is posted and has not run yet
  };
  std::shared_ptr<waker> wake = std::make_shared<waker>();

  void count(const std::string& path, unsigned status) {
    std::lock_guard lock(mutex);
    ++counts.by_path_and_code[{path, status}];
  }
  void accept_next();
  void join(const std::shared_ptr<http_detail::ws_client>& s);
  void leave(http_detail::ws_client* s);
  void tick();
  void drain_feeds();
};

namespace http_detail {

/// One WebSocket client: a bounded queue of messages shared with the feed's other clients, one
/// write at a time, and a read always pending (for the close frame, pongs and the idle timeout).
template <class Stream>
struct ws_session final : ws_client, std::enable_shared_from_this<ws_session<Stream>> {
  ws_session(std::shared_ptr<http_server::impl> s, Stream stream, std::shared_ptr<websocket_feed> f,
             std::shared_ptr<asio::ssl::context> context)
      : server(std::move(s)), tls_context(std::move(context)), ws(std::move(stream)) {
    feed = std::move(f);
  }

  std::shared_ptr<http_server::impl> server;
  std::shared_ptr<asio::ssl::context> tls_context;  // the stream's, kept as long as it
  websocket::stream<Stream> ws;
  beast::flat_buffer in;
  std::deque<std::shared_ptr<const std::string>> queue;  // the front is being written while `writing`
  std::size_t queued = 0;                                // bytes in `queue`
  bool writing = false;
  bool closing = false;  // dropped: nothing more is queued; a close frame follows the write under way
  bool left = false;
  std::optional<asio::steady_timer> cut_timer;

  std::shared_ptr<ws_session> self() { return this->shared_from_this(); }

  void start(http::request<http::string_body> req) {
    // The WebSocket stream keeps its own timeouts: the HTTP deadline must not cut it later.
    beast::get_lowest_layer(ws).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = server->deadline;
    t.idle_timeout = server->ws.idle_timeout;
    t.keep_alive_pings = true;
    ws.set_option(t);
    ws.set_option(
        websocket::stream_base::decorator([](websocket::response_type& res) { res.set(http::field::server, "dx"); }));
    ws.read_message_max(4096);  // clients have nothing to say; a large message ends the connection
    ws.async_accept(req, [s = self()](const error_code& ec) {
      if (ec) return s->end();
      s->joined = true;
      s->server->join(s);
      s->read();
    });
  }

  void read() {
    ws.async_read(in, [s = self()](const error_code& ec, std::size_t) {
      if (ec) return s->end();
      s->in.consume(s->in.size());
      s->read();
    });
  }

  void push(const std::shared_ptr<const std::string>& m) override {
    if (closing || left) return;
    // An empty queue takes any message (a batch may be larger than a small limit).
    if (!queue.empty() && queued + m->size() > server->ws.queue_bytes) return drop();
    queue.push_back(m);
    queued += m->size();
    if (!writing) write_next();
  }

  void write_next() {
    writing = true;
    ws.text(true);
    ws.async_write(asio::buffer(*queue.front()),
                   [s = self()](const error_code& ec, std::size_t) { s->on_written(ec); });
  }

  void on_written(const error_code& ec) {
    writing = false;
    if (!queue.empty()) {
      queued -= queue.front()->size();
      queue.pop_front();
    }
    if (ec) return end();
    if (closing) return send_close();
    if (!queue.empty()) write_next();
  }

  /// The client reads too slowly: what waits for it is freed now, a close frame follows the
  /// message being written, and the connection is cut if that does not happen soon.
  void drop() {
    closing = true;
    server->ws_dropped.fetch_add(1, std::memory_order_relaxed);
    while (queue.size() > (writing ? 1u : 0u)) {
      queued -= queue.back()->size();
      queue.pop_back();
    }
    cut_timer.emplace(server->io);
    cut_timer->expires_after(std::chrono::seconds(2));
    cut_timer->async_wait([s = self()](const error_code& ec) {
      if (!ec) s->cut();
    });
    if (!writing) send_close();
  }

  void send_close() {
    writing = true;  // a close frame is a write: nothing else is written after it
    ws.async_close(websocket::close_reason(websocket::close_code::policy_error, "too slow"),
                   [s = self()](const error_code&) { s->end(); });
  }

  /// The connection is over (closed, failed, timed out or cut).
  void end() override {
    if (cut_timer) cut_timer->cancel();
    cut();
    if (!left) {
      left = true;
      queue.clear();
      queued = 0;
      server->leave(this);
    }
  }

  void cut() {
    error_code ignored;
    auto& sock = beast::get_lowest_layer(ws).socket();
    sock.shutdown(tcp::socket::shutdown_both, ignored);
    sock.close(ignored);
  }
};

/// Whether `ec` ends the connection without an answer (the peer went away, said nothing in time,
/// or broke its TLS stream, on which no answer could be read); otherwise the request was
/// malformed and is answered with a 4xx.
inline bool silent_end(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
         ec == http::error::partial_message || ec == asio::error::connection_reset || ec == asio::error::eof ||
         ec.category() == asio::error::get_ssl_category() || transport::is_tls_truncation(ec);
}

/// One HTTP connection: requests read one at a time under the limits of http_server.hpp, each
/// handed to the handler, its answer written, until the client or an error closes it or it asks
/// for a WebSocket (which then takes the stream over).
template <class Stream>
struct http_session final : http_connection, std::enable_shared_from_this<http_session<Stream>> {
  static constexpr bool tls = std::is_same_v<Stream, tls_stream>;

  http_session(std::shared_ptr<http_server::impl> s, Stream st, std::shared_ptr<asio::ssl::context> context)
      : server(std::move(s)), tls_context(std::move(context)), stream(std::move(st)) {
    ++server->open_connections;
    error_code ec;
    const tcp::endpoint remote = socket().remote_endpoint(ec);
    if (!ec) {
      client = remote.address().to_string();
      std::lock_guard lock(server->mutex);
      ++server->per_client[client];
    }
    if (!ec) {
      peer = transport::endpoint_string(remote);
      peer_loopback = remote.address().is_loopback() ||
                      (remote.address().is_v6() && remote.address().to_v6().is_v4_mapped() &&
                       asio::ip::make_address_v4(asio::ip::v4_mapped, remote.address().to_v6()).is_loopback());
    }
  }
  ~http_session() override {
    --server->open_connections;
    if (client.empty()) return;
    std::lock_guard lock(server->mutex);
    auto it = server->per_client.find(client);
    if (it != server->per_client.end() && --it->second == 0) server->per_client.erase(it);
  }

  std::shared_ptr<http_server::impl> server;
  std::shared_ptr<asio::ssl::context> tls_context;  // the stream's, kept as long as it
  Stream stream;
  beast::flat_buffer buffer;
  std::optional<http::request_parser<http::string_body>> parser;
  http::response<http::string_body> full;
  http::response<http::empty_body> headers_only;
  // A streamed answer (http_response::stream): the response, its serializer, the producer and
  // the piece being written.
  std::optional<http::response<http::buffer_body>> streamed;
  std::optional<http::response_serializer<http::buffer_body>> streamer;
  std::function<bool(std::string&)> produce;
  std::string piece;
  std::string peer;
  std::string client;  // the peer's address without its port: what per_client counts
  bool peer_loopback = false;

  std::shared_ptr<http_session> self() { return this->shared_from_this(); }
  tcp::socket& socket() { return beast::get_lowest_layer(stream).socket(); }

  /// Serves the connection; `busy`: over the connection limit, it is answered 503 and closed (with
  /// TLS, once the handshake has passed: the answer could not be read before).
  void start(std::optional<std::string> busy) {
    if constexpr (tls) {
      beast::get_lowest_layer(stream).expires_after(server->deadline);
      stream.async_handshake(asio::ssl::stream_base::server,
                             [s = self(), busy = std::move(busy)](const error_code& ec) { s->on_handshake(ec, busy); });
    } else {
      begin(busy, true);
    }
  }

  void on_handshake(const error_code& ec, const std::optional<std::string>& busy) {
    if (!ec) return begin(busy, false);
    if (!server->stopped && ec != asio::error::operation_aborted) {
      const std::string why = ec == beast::error::timeout
                                  ? fmt::format("no TLS handshake within {} ms", server->deadline.count())
                                  : transport::describe_tls_error(ec, stream.native_handle());
      log_limited(log_level::warn, "refused a TLS connection from {}: {}", peer.empty() ? "(unknown)" : peer, why);
    }
    close();
  }

  void begin(const std::optional<std::string>& busy, bool renew_deadline) {
    if (!busy) return read(renew_deadline);
    server->count("(busy)", 503);
    write(http_response{503, "text/plain; charset=utf-8", *busy + "\n"}, false, 11, false);
  }

  /// The next request on a kept-alive connection: it waits idle, briefly when the server is near
  /// its connection limit (and may be closed to make room for a new connection).
  void read_next() {
    idle_since = std::chrono::steady_clock::now();
    const bool crowded = server->open_connections * 4 >= http_limits::connections * 3;
    beast::get_lowest_layer(stream).expires_after(crowded ? std::min(server->deadline, http_limits::busy_idle_timeout)
                                                          : server->deadline);
    read(false);
  }

  void read(bool renew_deadline = true) {
    parser.emplace();
    parser->header_limit(http_limits::header_bytes);
    // The largest body any request may have: a larger Content-Length fails as the header ends,
    // before the body is read or its buffer reserved. The method's own limit is checked next.
    parser->body_limit(http_limits::post_body_bytes);
    // One deadline for the whole request, headers and body: it is not renewed as bytes trickle
    // in, so a slow sender cannot hold the connection longer.
    if (renew_deadline) beast::get_lowest_layer(stream).expires_after(server->deadline);
    http::async_read_header(stream, buffer, *parser,
                            [s = self()](const error_code& ec, std::size_t) { s->on_header(ec); });
  }

  void reply_read_error(const error_code& ec) {
    const unsigned status = ec == http::error::header_limit ? 431 : ec == http::error::body_limit ? 413 : 400;
    if (status == 413)
      return reply_error(413, fmt::format("{}: at most {} bytes\n", reason_text(413), http_limits::post_body_bytes),
                         "(malformed)");
    reply_error(status, fmt::format("{}: {}\n", reason_text(status), ec.message()), "(malformed)");
  }

  void on_header(const error_code& ec) {
    idle_since.reset();
    if (ec && silent_end(ec)) return close();
    if (ec) return reply_read_error(ec);
    const auto& req = parser->get();
    const auto verb = req.method();
    if (verb != http::verb::get && verb != http::verb::head && verb != http::verb::post)
      return reply_error(405, "only GET, HEAD and POST are served\n", "(method)", {{"Allow", "GET, HEAD, POST"}});
    if (parser->chunked())
      return reply_error(411, "a request's body needs a Content-Length (chunked bodies are not read)\n", "(malformed)");
    const std::size_t limit = verb == http::verb::post ? http_limits::post_body_bytes : http_limits::other_body_bytes;
    if (const auto length = parser->content_length(); length && *length > limit)
      return reply_error(413,
                         fmt::format("{}: {} bytes, at most {} with {}\n", reason_text(413), *length, limit,
                                     std::string_view(req.method_string().data(), req.method_string().size())),
                         "(malformed)");
    if (parser->is_done()) return on_request();
    http::async_read(stream, buffer, *parser, [s = self()](const error_code& e, std::size_t) {
      if (e && silent_end(e)) return s->close();
      if (e) return s->reply_read_error(e);
      s->on_request();
    });
  }

  void on_request() {
    auto& req = parser->get();
    const bool head = req.method() == http::verb::head;
    auto target = parse_target(std::string_view(req.target().data(), req.target().size()));
    if (!target) return reply_error(400, "malformed request target\n", "(malformed)");
    target->method = head ? http_method::head : req.method() == http::verb::post ? http_method::post : http_method::get;
    for (const auto& field : req)
      target->headers[lower_case(std::string_view(field.name_string().data(), field.name_string().size()))] =
          std::string(field.value().data(), field.value().size());
    target->body = std::move(req.body());
    target->peer = peer;
    target->peer_loopback = peer_loopback;
    target->websocket = !head && websocket::is_upgrade(req);
    http_response r;
    try {
      r = server->serve(*target);
    } catch (const std::exception& e) {
      r = http_response{500, "text/plain; charset=utf-8", fmt::format("internal error: {}\n", e.what())};
    }
    const std::string label = r.status == 404 ? std::string("(unknown)") : !r.route.empty() ? r.route : target->path;
    if (r.websocket) {
      if (!target->websocket) {
        r = http_response{426,
                          "text/plain; charset=utf-8",
                          "this route is a WebSocket: ask to upgrade\n",
                          {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}};
      } else if (server->stopped || server->ws_clients.load(std::memory_order_relaxed) >= server->ws.max_clients) {
        r = http_response{503, "text/plain; charset=utf-8",
                          fmt::format("too many WebSocket clients (at most {})\n", server->ws.max_clients)};
      } else {
        server->count(label, 101);
        server->ws_clients.fetch_add(1, std::memory_order_relaxed);
        auto ws = std::make_shared<ws_session<Stream>>(server, std::move(stream), std::move(r.websocket), tls_context);
        std::erase_if(server->ws_sessions, [](const auto& w) { return w.expired(); });
        server->ws_sessions.push_back(ws);
        ws->start(parser->release());
        return;  // this session is done: the WebSocket has the connection
      }
    }
    server->count(label, r.status);
    write(std::move(r), head, req.version(), req.keep_alive());
  }

  /// Answers a request that cannot be served and closes the connection (what is left of the
  /// request is not read).
  void reply_error(unsigned status, std::string body, const char* path_label,
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
    server->count(path_label, status);
    write(http_response{status, "text/plain; charset=utf-8", std::move(body), std::move(headers)}, false, 11, false);
  }

  void write(http_response r, bool head, unsigned version, bool keep_alive) {
    auto fill = [&](auto& res) {
      res.version(version);
      res.result(r.status);
      res.set(http::field::server, "dx");
      res.set(http::field::content_type, r.content_type);
      res.set(http::field::cache_control, "no-store");
      for (const auto& [name, value] : r.headers) res.set(name, value);
      res.keep_alive(keep_alive);
    };
    beast::get_lowest_layer(stream).expires_after(server->deadline);
    if (r.stream && head) {
      // HEAD: the length of what GET would send, made and dropped piece by piece.
      std::size_t length = 0;
      for (bool more = true; more;) {
        std::string part;
        more = r.stream(part);
        length += part.size();
      }
      r.body.clear();
      r.stream = nullptr;
      headers_only = {};
      fill(headers_only);
      headers_only.content_length(length);
      http::async_write(stream, headers_only, [s = self(), keep_alive](const error_code& ec, std::size_t) {
        s->after_write(ec, keep_alive);
      });
      return;
    }
    if (r.stream) {
      streamed.emplace();
      fill(*streamed);
      streamed->chunked(true);
      streamed->body().data = nullptr;
      streamed->body().more = true;
      produce = std::move(r.stream);
      streamer.emplace(*streamed);
      return write_piece(keep_alive);
    }
    if (head) {
      headers_only = {};
      fill(headers_only);
      headers_only.content_length(r.body.size());
      http::async_write(stream, headers_only, [s = self(), keep_alive](const error_code& ec, std::size_t) {
        s->after_write(ec, keep_alive);
      });
    } else {
      full = {};
      fill(full);
      full.body() = std::move(r.body);  // a large answer (a trace) is held once, not twice
      full.prepare_payload();
      http::async_write(stream, full, [s = self(), keep_alive](const error_code& ec, std::size_t) {
        s->after_write(ec, keep_alive);
      });
    }
  }

  /// The next piece of a streamed answer, each under the write deadline.
  void write_piece(bool keep_alive) {
    piece.clear();
    bool more = false;
    try {
      more = produce(piece);
    } catch (const std::exception& e) {
      log(log_level::warn, "an HTTP answer to {} failed while it was sent: {}", peer, e.what());
      return close();  // the status line has left: cutting the chunked body tells the client
    }
    streamed->body().data = piece.empty() ? nullptr : piece.data();
    streamed->body().size = piece.size();
    streamed->body().more = more;
    beast::get_lowest_layer(stream).expires_after(server->deadline);
    http::async_write(stream, *streamer, [s = self(), keep_alive](error_code ec, std::size_t) {
      if (ec == http::error::need_buffer) ec = {};
      if (ec || s->streamer->is_done()) {
        s->streamer.reset();
        s->streamed.reset();
        s->produce = nullptr;
        s->piece = std::string();
        return s->after_write(ec, keep_alive);
      }
      s->write_piece(keep_alive);
    });
  }

  void after_write(const error_code& ec, bool keep_alive) {
    if (ec) return close();
    if (!keep_alive) return finish();
    read_next();
  }

  /// The last answer has left: with TLS, a close_notify tells the client the answer is whole
  /// (bounded by the deadline: a client that never answers it is cut).
  void finish() {
    if constexpr (tls) {
      beast::get_lowest_layer(stream).expires_after(server->deadline);
      stream.async_shutdown([s = self()](const error_code&) { s->close(); });
    } else {
      close();
    }
  }

  void close() override {
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
  }
};

}  // namespace http_detail

}  // namespace dx::detail
