// Small TLS clients (Asio SSL, Boost.Beast) for the tests of the head's HTTP endpoint over TLS:
// one HTTPS request on a connection of its own, and a WebSocket over TLS (wss) that reads text
// messages with a timeout. Every step is bounded; nothing here throws for what a server refuses:
// the reply says what happened. Not dx code.
//
//   auto r = dx_support::https::request("127.0.0.1:8443", pki.options("worker"), "GET", "/metrics");
//   if (r.status == 0) std::cout << r.error;   // the handshake or the read failed, and why
//   dx_support::https::wss_client c("127.0.0.1:8443", pki.options("worker"), "/api/events");
//   auto m = c.read(std::chrono::seconds(1));  // a message, or nullopt
#pragma once

#include <dx/tls.hpp>

#include <utility>  // before Asio: Boost 1.74 needs std::exchange declared

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace dx_support::https {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using stream = beast::ssl_stream<beast::tcp_stream>;

struct reply {
  unsigned status = 0;  // 0: no answer (error says why)
  std::string body;
  std::string error;  // what failed: connecting, the handshake, writing or reading
};

/// A client context trusting `own.ca`, presenting `own.certificate` when it names one.
inline std::shared_ptr<net::ssl::context> client_context(const dx::tls_options& own) {
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
  ctx->load_verify_file(own.ca);
  if (!own.certificate.empty()) {
    ctx->use_certificate_chain_file(own.certificate);
    ctx->use_private_key_file(own.private_key, net::ssl::context::pem);
  }
  ctx->set_verify_mode(net::ssl::verify_peer);
  return ctx;
}

inline tcp::endpoint parse(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  return {net::ip::make_address(endpoint.substr(0, colon)),
          static_cast<unsigned short>(std::stoi(endpoint.substr(colon + 1)))};
}

/// Runs `io` until `done` or `limit`; false when time ran out.
inline bool run_until(net::io_context& io, const bool& done, std::chrono::milliseconds limit) {
  io.restart();
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!done && std::chrono::steady_clock::now() < end) io.run_one_for(std::chrono::milliseconds(20));
  return done;
}

/// Connects and completes the TLS handshake; "" on success, else what failed.
inline std::string open(net::io_context& io, stream& s, const std::string& endpoint, std::chrono::milliseconds limit) {
  error_code ec;
  bool done = false;
  beast::get_lowest_layer(s).expires_after(limit);
  beast::get_lowest_layer(s).async_connect(parse(endpoint), [&](const error_code& e) {
    ec = e;
    done = true;
  });
  if (!run_until(io, done, limit)) return "connect timed out";
  if (ec) return "connect: " + ec.message();
  done = false;
  s.async_handshake(net::ssl::stream_base::client, [&](const error_code& e) {
    ec = e;
    done = true;
  });
  if (!run_until(io, done, limit)) return "handshake timed out";
  if (ec) return "handshake: " + ec.message();
  return {};
}

/// One request on a connection of its own (Connection: close), every step within `limit`.
inline reply request(const std::string& endpoint, const dx::tls_options& own, const std::string& method,
                     const std::string& target, const std::string& body = {},
                     std::vector<std::pair<std::string, std::string>> headers = {},
                     std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  namespace http = beast::http;
  reply out;
  net::io_context io;
  auto ctx = client_context(own);
  stream s(io, *ctx);
  out.error = open(io, s, endpoint, limit);
  if (!out.error.empty()) return out;
  http::request<http::string_body> req(http::string_to_verb(method), target, 11);
  req.set(http::field::host, endpoint);
  req.set(http::field::connection, "close");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (method == "POST") req.prepare_payload();
  error_code ec;
  bool done = false;
  http::async_write(s, req, [&](const error_code& e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(io, done, limit)) return out.error = "write timed out", out;
  if (ec) return out.error = "write: " + ec.message(), out;
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  done = false;
  http::async_read(s, buffer, res, [&](const error_code& e, std::size_t) {
    ec = e;
    done = true;
  });
  if (!run_until(io, done, limit)) return out.error = "read timed out", out;
  if (ec) return out.error = "read: " + ec.message(), out;
  out.status = res.result_int();
  out.body = res.body();
  return out;
}

/// A WebSocket over TLS. accepted() says whether the upgrade passed; error() why not.
class wss_client {
 public:
  wss_client(const std::string& endpoint, const dx::tls_options& own, const std::string& target,
             std::chrono::milliseconds limit = std::chrono::seconds(5))
      : ctx_(client_context(own)), ws_(io_, *ctx_) {
    error_ = open(io_, ws_.next_layer(), endpoint, limit);
    if (!error_.empty()) return;
    beast::get_lowest_layer(ws_).expires_never();  // the WebSocket keeps its own time
    error_code ec;
    bool done = false;
    ws_.async_handshake(endpoint, target, [&](const error_code& e) {
      ec = e;
      done = true;
    });
    if (!run_until(io_, done, limit))
      error_ = "upgrade timed out";
    else if (ec)
      error_ = "upgrade: " + ec.message();
    accepted_ = error_.empty();
  }
  ~wss_client() {
    error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }
  wss_client(const wss_client&) = delete;
  wss_client& operator=(const wss_client&) = delete;

  bool accepted() const noexcept { return accepted_; }
  const std::string& error() const noexcept { return error_; }

  /// The next text message, or nullopt when none came within `timeout` or the connection ended
  /// (ended() then says so); a read left pending is continued by the next call.
  std::optional<std::string> read(std::chrono::milliseconds timeout) {
    if (ended_) return std::nullopt;
    if (!pending_) {
      pending_ = true;
      done_ = false;
      ws_.async_read(buffer_, [this](const error_code& ec, std::size_t) {
        read_error_ = ec;
        done_ = true;
      });
    }
    if (!run_until(io_, done_, timeout)) return std::nullopt;
    pending_ = false;
    if (read_error_) {
      ended_ = true;
      return std::nullopt;
    }
    std::string out = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    return out;
  }
  bool ended() const noexcept { return ended_; }

 private:
  net::io_context io_;
  std::shared_ptr<net::ssl::context> ctx_;
  beast::websocket::stream<stream> ws_;
  beast::flat_buffer buffer_;
  std::string error_;
  error_code read_error_;
  bool accepted_ = false;
  bool pending_ = false;
  bool done_ = false;
  bool ended_ = false;
};

}  // namespace dx_support::https
