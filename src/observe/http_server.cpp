// Owns the HTTP server of the head's endpoints (http_server.hpp): listening and accepting (with
// TLS when credentials are given), the connection limit, the WebSocket feeds' clients and their
// ticks, and stopping. The connections themselves are in http_sessions.hpp.
#include "observe/http_server.hpp"

#include "observe/http_sessions.hpp"
#include "transport/transport.hpp"

#include <dx/error.hpp>

#include <algorithm>

namespace dx::detail {

namespace http_detail {

namespace {

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

}  // namespace

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

}  // namespace http_detail

using http_detail::error_code;
using tcp = asio::ip::tcp;

const std::string& http_request::header(const std::string& lower_case_name) const {
  static const std::string none;
  auto it = headers.find(lower_case_name);
  return it == headers.end() ? none : it->second;
}

void http_server::impl::join(const std::shared_ptr<http_detail::ws_client>& s) {
  if (stopped) return s->end();
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

void http_server::impl::leave(http_detail::ws_client* s) {
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

namespace {

/// Serves an accepted connection: with TLS, over a stream made with the context the credentials
/// hold now, so that certificates replaced on disk serve the connections that come after.
template <class Stream>
void serve_connection(const std::shared_ptr<http_server::impl>& server, Stream stream,
                      std::shared_ptr<asio::ssl::context> context) {
  auto session = std::make_shared<http_detail::http_session<Stream>>(server, std::move(stream), std::move(context));
  std::optional<std::string> busy;
  std::shared_ptr<http_detail::http_connection> idlest;
  {
    // A connection over the limit too: with TLS its 503 waits for a handshake that stop() cuts.
    std::lock_guard lock(server->mutex);
    std::erase_if(server->sessions, [](const auto& w) { return w.expired(); });
    const auto from_client = session->client.empty() ? 0 : server->per_client[session->client];
    if (from_client > http_limits::connections_per_client) {
      busy = fmt::format("too many connections from {} (at most {})", session->client,
                         http_limits::connections_per_client);
    } else if (server->open_connections > http_limits::connections) {
      // Room is made by closing the connection idle longest; with none idle the limit holds.
      for (const auto& w : server->sessions)
        if (auto c = w.lock(); c && c->idle_since && (!idlest || *c->idle_since < *idlest->idle_since))
          idlest = std::move(c);
      if (!idlest) busy = fmt::format("too many connections (at most {})", http_limits::connections);
    }
    server->sessions.push_back(session);
  }
  if (idlest) {
    idlest->idle_since.reset();
    idlest->close();
  }
  session->start(std::move(busy));
}

}  // namespace

void http_server::impl::accept_next() {
  acceptor.async_accept([self = shared_from_this()](const error_code& ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
    if (!ec) transport::set_close_on_exec(s.native_handle());
    if (!ec && self->tls) {
      auto context = self->tls->current();
      http_detail::tls_stream stream(http_detail::plain_stream(std::move(s)), *context);
      serve_connection(self, std::move(stream), std::move(context));
    } else if (!ec) {
      serve_connection(self, http_detail::plain_stream(std::move(s)), nullptr);
    }
    self->accept_next();
  });
}

http_server::http_server(const std::string& address, handler h, std::chrono::milliseconds deadline,
                         websocket_settings ws, std::shared_ptr<transport::tls_credentials> tls)
    : impl_(std::make_shared<impl>()) {
  impl_->deadline = deadline;
  impl_->tls = std::move(tls);
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
  if (!ec) transport::set_close_on_exec(impl_->acceptor.native_handle());
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
bool http_server::tls() const noexcept { return impl_->tls != nullptr; }
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
      std::vector<std::shared_ptr<http_detail::http_connection>> open;
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
