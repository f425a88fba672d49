#include "observe/http_server.hpp"

#include "common/log.hpp"
#include "transport/address.hpp"
#include "transport/asio.hpp"

#include <dx/error.hpp>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace dx::detail {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr std::size_t max_header_bytes = http_limits::header_bytes;  // request line and fields
constexpr std::size_t max_connections = http_limits::connections;

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Percent-decodes `s` ('+' is a space in a query); nullopt on a broken escape.
std::optional<std::string> url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_digit(s[i + 1]);
      const int lo = hex_digit(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

/// Splits a request target ("/api/tasks?since=10") into a decoded path and query, or nullopt.
std::optional<http_request> parse_target(std::string_view target) {
  if (target.empty() || target.front() != '/') return std::nullopt;
  http_request r;
  const auto q = target.find('?');
  auto path = url_decode(target.substr(0, q), false);
  if (!path) return std::nullopt;
  r.path = std::move(*path);
  if (q == std::string_view::npos) return r;
  std::string_view rest = target.substr(q + 1);
  const auto hash = rest.find('#');
  if (hash != std::string_view::npos) rest = rest.substr(0, hash);
  while (!rest.empty()) {
    const auto amp = rest.find('&');
    const std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto key = url_decode(part.substr(0, eq), true);
    auto value = url_decode(eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1), true);
    if (!key || !value) return std::nullopt;
    r.query[std::move(*key)] = std::move(*value);
  }
  return r;
}

const char* reason_text(unsigned status) {
  switch (status) {
    case 400:
      return "malformed request";
    case 413:
      return "the request's body is over the limit";
    case 431:
      return "the request line and headers are over 8 KiB";
    default:
      return "";
  }
}

std::string lower_case(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace

const std::string& http_request::header(const std::string& lower_case_name) const {
  static const std::string none;
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? none : it->second;
}

struct http_server::impl : std::enable_shared_from_this<impl> {
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  tcp::acceptor acceptor{io};
  handler serve;
  std::chrono::milliseconds deadline{10'000};
  std::string bound;
  std::thread thread;
  std::atomic<std::size_t> open_connections{0};
  std::mutex mutex;  // counts and sessions
  http_counts counts;
  std::vector<std::weak_ptr<struct http_session>> sessions;
  std::once_flag stop_once;
  bool loopback = true;

  // WebSocket clients. `feeds` and `ticking` belong to the server's thread; the counts are read by
  // metrics from any thread (relaxed: they are reports, nothing is ordered by them).
  websocket_settings ws;
  struct feed_clients {
    std::shared_ptr<websocket_feed> feed;
    std::vector<std::shared_ptr<struct ws_session>> clients;
  };
  std::vector<feed_clients> feeds;
  std::vector<std::weak_ptr<struct ws_session>> ws_sessions;  // every one, joined or still in its handshake
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
  void join(const std::shared_ptr<struct ws_session>& s);
  void leave(struct ws_session* s);
  void tick();
  void drain_feeds();
};

/// One WebSocket client: a bounded queue of messages shared with the feed's other clients, one
/// write at a time, and a read always pending (for the close frame, pongs and the idle timeout).
struct ws_session : std::enable_shared_from_this<ws_session> {
  ws_session(std::shared_ptr<http_server::impl> s, beast::tcp_stream stream, std::shared_ptr<websocket_feed> f)
      : server(std::move(s)), ws(std::move(stream)), feed(std::move(f)) {}

  std::shared_ptr<http_server::impl> server;
  websocket::stream<beast::tcp_stream> ws;
  std::shared_ptr<websocket_feed> feed;
  beast::flat_buffer in;
  std::deque<std::shared_ptr<const std::string>> queue;  // the front is being written while `writing`
  std::size_t queued = 0;                                // bytes in `queue`
  bool writing = false;
  bool closing = false;  // dropped: nothing more is queued; a close frame follows the write under way
  bool joined = false;   // among its feed's clients
  bool left = false;
  std::optional<asio::steady_timer> cut_timer;

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
    ws.async_accept(req, [self = shared_from_this()](const error_code& ec) {
      if (ec) return self->end();
      self->joined = true;
      self->server->join(self);
      self->read();
    });
  }

  void read() {
    ws.async_read(in, [self = shared_from_this()](const error_code& ec, std::size_t) {
      if (ec) return self->end();
      self->in.consume(self->in.size());
      self->read();
    });
  }

  void push(const std::shared_ptr<const std::string>& m) {
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
                   [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_written(ec); });
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
    cut_timer->async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec) self->cut();
    });
    if (!writing) send_close();
  }

  void send_close() {
    writing = true;  // a close frame is a write: nothing else is written after it
    ws.async_close(websocket::close_reason(websocket::close_code::policy_error, "too slow"),
                   [self = shared_from_this()](const error_code&) { self->end(); });
  }

  /// The connection is over (closed, failed, timed out or cut).
  void end() {
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

void http_server::impl::join(const std::shared_ptr<ws_session>& s) {
  if (stopped) return s->cut();
  auto it = std::find_if(feeds.begin(), feeds.end(), [&](const feed_clients& f) { return f.feed == s->feed; });
  if (it == feeds.end()) {
    it = feeds.insert(feeds.end(), feed_clients{s->feed, {}});
    s->feed->set_wake([w = wake] {
      std::lock_guard lock(w->mutex);
      if (!w->server || w->posted.exchange(true, std::memory_order_acq_rel)) return;
      asio::post(w->server->io, [server = w->server] {
        server->wake->posted.store(false, std::memory_order_release);
        server->drain_feeds();
      });
    });
  }
  it->clients.push_back(s);
  it->feed->listeners(it->clients.size());
  if (std::string hello = it->feed->greeting(); !hello.empty())
    s->push(std::make_shared<const std::string>(std::move(hello)));
  if (!ticking) {
    ticking = true;
    tick();
  }
}

void http_server::impl::leave(ws_session* s) {
  ws_clients.fetch_sub(1, std::memory_order_relaxed);
  if (!s->joined) return;
  for (auto& f : feeds) {
    const auto before = f.clients.size();
    std::erase_if(f.clients, [&](const auto& c) { return c.get() == s; });
    if (f.clients.size() != before) f.feed->listeners(f.clients.size());
  }
}

void http_server::impl::drain_feeds() {
  std::vector<std::string> messages;
  for (std::size_t i = 0; i < feeds.size(); ++i) {
    if (feeds[i].clients.empty()) continue;
    messages.clear();
    feeds[i].feed->drain(messages);
    if (messages.empty()) continue;
    // A client may leave while it is pushed to (a write fails at once): push to a copy.
    const auto clients = feeds[i].clients;
    for (auto& m : messages) {
      const auto shared = std::make_shared<const std::string>(std::move(m));
      for (const auto& c : clients) c->push(shared);
    }
  }
}

void http_server::impl::tick() {
  drain_feeds();
  const bool any = std::any_of(feeds.begin(), feeds.end(), [](const feed_clients& f) { return !f.clients.empty(); });
  if (!any || stopped) {
    ticking = false;
    return;
  }
  if (!tick_timer) tick_timer.emplace(io);
  tick_timer->expires_after(ws.tick);
  tick_timer->async_wait([this](const error_code& ec) {
    if (ec) {
      ticking = false;
      return;
    }
    tick();
  });
}

struct http_session : std::enable_shared_from_this<http_session> {
  http_session(std::shared_ptr<http_server::impl> s, tcp::socket sock) : server(std::move(s)), stream(std::move(sock)) {
    ++server->open_connections;
    error_code ec;
    const tcp::endpoint remote = stream.socket().remote_endpoint(ec);
    if (!ec) {
      peer = transport::endpoint_string(remote);
      peer_loopback = remote.address().is_loopback() ||
                      (remote.address().is_v6() && remote.address().to_v6().is_v4_mapped() &&
                       asio::ip::make_address_v4(asio::ip::v4_mapped, remote.address().to_v6()).is_loopback());
    }
  }
  ~http_session() { --server->open_connections; }

  std::shared_ptr<http_server::impl> server;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<http::request_parser<http::string_body>> parser;
  http::response<http::string_body> full;
  http::response<http::empty_body> headers_only;
  std::string peer;
  bool peer_loopback = false;

  void read() {
    parser.emplace();
    parser->header_limit(max_header_bytes);
    // The largest body any request may have: a larger Content-Length fails as the header ends,
    // before the body is read or its buffer reserved. The method's own limit is checked next.
    parser->body_limit(http_limits::post_body_bytes);
    // One deadline for the whole request, headers and body: it is not renewed as bytes trickle
    // in, so a slow sender cannot hold the connection longer.
    stream.expires_after(server->deadline);
    http::async_read_header(stream, buffer, *parser,
                            [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_header(ec); });
  }

  /// Whether `ec` ends the connection without an answer (the peer went away, or said nothing in
  /// time); otherwise the request was malformed and is answered with a 4xx.
  static bool silent_end(const error_code& ec) {
    return ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
           ec == http::error::partial_message || ec == asio::error::connection_reset || ec == asio::error::eof;
  }

  void reply_read_error(const error_code& ec) {
    const unsigned status = ec == http::error::header_limit ? 431 : ec == http::error::body_limit ? 413 : 400;
    if (status == 413)
      return reply_error(413, fmt::format("{}: at most {} bytes\n", reason_text(413), http_limits::post_body_bytes),
                         "(malformed)");
    reply_error(status, fmt::format("{}: {}\n", reason_text(status), ec.message()), "(malformed)");
  }

  void on_header(const error_code& ec) {
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
    http::async_read(stream, buffer, *parser, [self = shared_from_this()](const error_code& e, std::size_t) {
      if (e && silent_end(e)) return self->close();
      if (e) return self->reply_read_error(e);
      self->on_request();
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
        auto feed = std::move(r.websocket);
        auto ws = std::make_shared<ws_session>(server, std::move(stream), std::move(feed));
        std::erase_if(server->ws_sessions, [](const auto& w) { return w.expired(); });
        server->ws_sessions.push_back(ws);
        ws->start(parser->release());
        return;  // this session is done: the WebSocket has the connection
      }
    }
    server->count(label, r.status);
    write(r, head, req.version(), req.keep_alive());
  }

  /// Answers a request that cannot be served and closes the connection (what is left of the
  /// request is not read).
  void reply_error(unsigned status, std::string body, const char* path_label,
                   std::vector<std::pair<std::string, std::string>> headers = {}) {
    server->count(path_label, status);
    write(http_response{status, "text/plain; charset=utf-8", std::move(body), std::move(headers)}, false, 11, false);
  }

  void write(const http_response& r, bool head, unsigned version, bool keep_alive) {
    auto fill = [&](auto& res) {
      res.version(version);
      res.result(r.status);
      res.set(http::field::server, "dx");
      res.set(http::field::content_type, r.content_type);
      res.set(http::field::cache_control, "no-store");
      for (const auto& [name, value] : r.headers) res.set(name, value);
      res.keep_alive(keep_alive);
    };
    stream.expires_after(server->deadline);
    if (head) {
      headers_only = {};
      fill(headers_only);
      headers_only.content_length(r.body.size());
      http::async_write(stream, headers_only,
                        [self = shared_from_this(), keep_alive](const error_code& ec, std::size_t) {
                          self->after_write(ec, keep_alive);
                        });
    } else {
      full = {};
      fill(full);
      full.body() = r.body;
      full.prepare_payload();
      http::async_write(stream, full, [self = shared_from_this(), keep_alive](const error_code& ec, std::size_t) {
        self->after_write(ec, keep_alive);
      });
    }
  }

  void after_write(const error_code& ec, bool keep_alive) {
    if (ec || !keep_alive) return close();
    read();
  }

  void close() {
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
  }
};

void http_server::impl::accept_next() {
  acceptor.async_accept([self = shared_from_this()](const error_code& ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) {
      auto session = std::make_shared<http_session>(self, std::move(s));
      if (self->open_connections > max_connections) {
        self->count("(busy)", 503);
        session->write(http_response{503, "text/plain; charset=utf-8", "too many connections\n"}, false, 11, false);
      } else {
        {
          std::lock_guard lock(self->mutex);
          std::erase_if(self->sessions, [](const auto& w) { return w.expired(); });
          self->sessions.push_back(session);
        }
        session->read();
      }
    }
    self->accept_next();
  });
}

http_server::http_server(const std::string& address, handler h, std::chrono::milliseconds deadline,
                         websocket_settings ws)
    : impl_(std::make_shared<impl>()) {
  impl_->deadline = deadline;
  impl_->ws = ws;
  impl_->wake->server = impl_.get();
  auto fail = [&](const std::string& why) {
    throw_error(error_kind::generic, fmt::format("cannot serve HTTP on {}: {}", address, why));
  };
  const auto hp = transport::parse_address(address);
  if (!hp) fail("expected host:port with a port from 0 to 65535");
  impl_->serve = std::move(h);
  error_code ec;
  tcp::resolver resolver(impl_->io);
  const auto results = resolver.resolve(hp->host.empty() ? "127.0.0.1" : hp->host, hp->port,
                                        tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec) fail(ec.message());
  if (results.empty()) fail("the host has no address");
  const tcp::endpoint ep = results.begin()->endpoint();
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.message());
  impl_->bound = transport::endpoint_string(impl_->acceptor.local_endpoint());
  impl_->loopback = ep.address().is_loopback();
  impl_->accept_next();
  impl_->thread = std::thread([i = impl_.get()] { i->io.run(); });
}

http_server::~http_server() { stop(); }

std::string http_server::endpoint() const { return impl_->bound; }
bool http_server::loopback() const noexcept { return impl_->loopback; }
std::size_t http_server::websocket_clients() const noexcept {
  return impl_->ws_clients.load(std::memory_order_relaxed);
}
std::uint64_t http_server::websocket_dropped() const noexcept {
  return impl_->ws_dropped.load(std::memory_order_relaxed);
}

http_counts http_server::counts() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->counts;
}

void http_server::stop() {
  std::call_once(impl_->stop_once, [this] {
    // Closing the acceptor and every socket ends all pending operations; the thread returns once
    // their handlers have run, and no session is left behind.
    {
      // No wake posts to the io_context from now on (it may be gone once this returns).
      std::lock_guard lock(impl_->wake->mutex);
      impl_->wake->server = nullptr;
    }
    asio::post(impl_->io, [i = impl_] {
      error_code ignored;
      i->acceptor.close(ignored);
      i->stopped = true;
      if (i->tick_timer) i->tick_timer->cancel();
      for (auto& w : i->ws_sessions)
        if (auto c = w.lock()) c->end();
      i->ws_sessions.clear();
      std::vector<std::shared_ptr<http_session>> open;
      {
        std::lock_guard lock(i->mutex);
        for (auto& w : i->sessions)
          if (auto s = w.lock()) open.push_back(std::move(s));
        i->sessions.clear();
      }
      for (auto& s : open) s->close();
      i->work.reset();
    });
    if (impl_->thread.joinable()) impl_->thread.join();
  });
}

}  // namespace dx::detail
