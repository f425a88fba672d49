#include "observe/http_server.hpp"

#include "common/log.hpp"
#include "transport/address.hpp"
#include "transport/asio.hpp"

#include <dx/error.hpp>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace dx::detail {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
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

  void count(const std::string& path, unsigned status) {
    std::lock_guard lock(mutex);
    ++counts.by_path_and_code[{path, status}];
  }
  void accept_next();
};

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
    http_response r;
    try {
      r = server->serve(*target);
    } catch (const std::exception& e) {
      r = http_response{500, "text/plain; charset=utf-8", fmt::format("internal error: {}\n", e.what())};
    }
    server->count(r.status == 404 ? std::string("(unknown)") : !r.route.empty() ? r.route : target->path, r.status);
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

http_server::http_server(const std::string& address, handler h, std::chrono::milliseconds deadline)
    : impl_(std::make_shared<impl>()) {
  impl_->deadline = deadline;
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
  if (!ep.address().is_loopback())
    log(log_level::warn,
        "the HTTP endpoint at {} is reachable from other machines: its pages and read routes need no "
        "authentication",
        impl_->bound);
  impl_->accept_next();
  impl_->thread = std::thread([i = impl_.get()] { i->io.run(); });
}

http_server::~http_server() { stop(); }

std::string http_server::endpoint() const { return impl_->bound; }

http_counts http_server::counts() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->counts;
}

void http_server::stop() {
  std::call_once(impl_->stop_once, [this] {
    // Closing the acceptor and every socket ends all pending operations; the thread returns once
    // their handlers have run, and no session is left behind.
    asio::post(impl_->io, [i = impl_] {
      error_code ignored;
      i->acceptor.close(ignored);
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
