// A small synchronous WebSocket client (Boost.Beast) for the tests and benchmarks of the head's
// GET /api/events: connects (optionally with a tiny receive buffer, to play a slow reader), reads
// one text message with a timeout, and reports how the server closed. Not dx code.
//
//   dx_support::ws::client c("127.0.0.1:8080", "/api/events?token=t");
//   if (!c.accepted()) std::cout << c.status();          // the HTTP answer to the upgrade (401, 503)
//   auto m = c.read(std::chrono::seconds(1));           // a message, or nullopt after a second
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace dx_support::ws {

class client {
 public:
  /// Connects to ws://`endpoint``target` ("127.0.0.1:8080", "/api/events"), sending `headers` with
  /// the upgrade. `receive_buffer`: the socket's SO_RCVBUF when not 0 (set before connecting, so
  /// the window stays that small). A refused upgrade is no error: accepted() is false and
  /// status() says what the server answered. Throws boost::system::system_error when it cannot
  /// connect.
  client(const std::string& endpoint, const std::string& target,
         std::vector<std::pair<std::string, std::string>> headers = {}, int receive_buffer = 0)
      : ws_(ioc_) {
    namespace net = boost::asio;
    using tcp = net::ip::tcp;
    const auto colon = endpoint.rfind(':');
    const tcp::endpoint ep(net::ip::make_address(endpoint.substr(0, colon)),
                           static_cast<unsigned short>(std::stoi(endpoint.substr(colon + 1))));
    auto& sock = boost::beast::get_lowest_layer(ws_);
    sock.open(ep.protocol());
    if (receive_buffer > 0) sock.set_option(net::socket_base::receive_buffer_size(receive_buffer));
    sock.connect(ep);
    ws_.set_option(boost::beast::websocket::stream_base::decorator(
        [headers = std::move(headers)](boost::beast::websocket::request_type& req) {
          for (const auto& [k, v] : headers) req.set(k, v);
        }));
    // The asynchronous handshake keeps the server's answer when it refuses (the blocking one
    // drops it).
    handshake_error_ = boost::asio::error::timed_out;
    ws_.async_handshake(response_, endpoint, target,
                        [this](const boost::system::error_code& e) { handshake_error_ = e; });
    ioc_.run_for(std::chrono::seconds(10));
    accepted_ = !handshake_error_;
  }
  ~client() {
    boost::system::error_code ignored;
    boost::beast::get_lowest_layer(ws_).close(ignored);
  }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  bool accepted() const noexcept { return accepted_; }
  /// The status of the server's answer to the upgrade (101 when accepted).
  unsigned status() const noexcept { return response_.result_int(); }
  /// The answer's body (why an upgrade was refused).
  std::string body() const { return response_.body(); }

  /// The next text message, or nullopt when none came within `timeout` (a read left pending is
  /// continued by the next call). Throws boost::system::system_error once the connection ended:
  /// closed() and close_reason() then tell how.
  std::optional<std::string> read(std::chrono::milliseconds timeout) {
    if (!pending_) {
      pending_ = true;
      done_ = false;
      ws_.async_read(buffer_, [this](const boost::system::error_code& ec, std::size_t) {
        error_ = ec;
        done_ = true;
      });
    }
    ioc_.restart();
    ioc_.run_for(timeout);
    if (!done_) return std::nullopt;
    pending_ = false;
    if (error_) {
      ended_ = true;
      throw boost::system::system_error(error_);
    }
    std::string out = boost::beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    return out;
  }

  /// Whether the server closed with a close frame (not just cut the connection).
  bool closed_by_frame() const noexcept { return error_ == boost::beast::websocket::error::closed; }
  /// The close frame's code and reason (1008, "too slow").
  const boost::beast::websocket::close_reason& close_reason() const { return ws_.reason(); }
  bool ended() const noexcept { return ended_; }

  /// Sends a close frame and waits (at most `timeout`) for the server's.
  void close(std::chrono::milliseconds timeout = std::chrono::seconds(2)) {
    bool finished = false;
    ws_.async_close(boost::beast::websocket::close_code::normal,
                    [&](const boost::system::error_code&) { finished = true; });
    ioc_.restart();
    ioc_.run_for(timeout);
    (void)finished;
  }

 private:
  boost::asio::io_context ioc_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
  boost::beast::websocket::response_type response_;
  boost::beast::flat_buffer buffer_;
  boost::system::error_code handshake_error_;
  bool accepted_ = false;
  bool pending_ = false;
  bool done_ = false;
  bool ended_ = false;
  boost::system::error_code error_;
};

}  // namespace dx_support::ws
