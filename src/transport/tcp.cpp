// The TCP transport: frames over plain TCP or TLS, driven by one io_context on one thread that
// the transport owns (see tcp_parts.hpp for the shape of the code). This file: the engine
// (listening, accepting, connecting, stopping) and the transport object.
#include "transport/tcp_parts.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

namespace dx::transport {

void set_close_on_exec(int fd) noexcept {
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags >= 0 && !(flags & FD_CLOEXEC)) (void)::fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

}  // namespace dx::transport

namespace dx::transport::tcp_detail {

namespace {

/// Connects `s` to `ep` without waiting past `deadline`: the blocking connect used when
/// connect() is called on the io thread, which cannot wait for its own asynchronous work.
error_code connect_until(tcp::socket& s, const tcp::endpoint& ep, std::chrono::steady_clock::time_point deadline) {
  error_code ec;
  s.open(ep.protocol(), ec);
  if (ec) return ec;
  set_close_on_exec(s.native_handle());
  s.non_blocking(true, ec);
  if (ec) return ec;
  if (::connect(s.native_handle(), ep.data(), static_cast<socklen_t>(ep.size())) != 0) {
    if (errno != EINPROGRESS) return error_code(errno, boost::system::system_category());
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return asio::error::timed_out;
      pollfd p{s.native_handle(), POLLOUT, 0};
      const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, INT_MAX)));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return error_code(errno, boost::system::system_category());
      if (r == 0) return asio::error::timed_out;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return error_code(errno, boost::system::system_category());
      if (err != 0) return error_code(err, boost::system::system_category());
      break;
    }
  }
  s.non_blocking(false, ec);
  return ec;
}

}  // namespace

// ---- engine ---------------------------------------------------------------------------------

std::string engine::listen(const std::string& address, accept_fn on_accept) {
  auto fail = [&](const std::string& why) {
    detail::throw_error(detail::error_kind::generic, fmt::format("cannot listen on {}: {}", address, why));
  };
  if (stopped()) fail("the transport is stopped");
  const auto hp = parse_address(address);
  if (!hp) fail("expected host:port with a port from 0 to 65535");
  error_code ec;
  tcp::endpoint ep;
  if (hp->host.empty()) {
    ep = tcp::endpoint(tcp::v4(), static_cast<unsigned short>(std::stoul(hp->port)));
  } else {
    tcp::resolver resolver(io_);
    const auto results =
        resolver.resolve(hp->host, hp->port, tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec) fail(ec.message());
    if (results.empty()) fail("the host has no address");
    ep = results.begin()->endpoint();
  }
  auto l = std::make_shared<listener>(io_, std::move(on_accept));
  l->acceptor.open(ep.protocol(), ec);
  if (ec) fail(ec.message());
  set_close_on_exec(l->acceptor.native_handle());
  l->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (ec) fail(ec.message());
  l->acceptor.bind(ep, ec);
  if (ec) fail(ec.message());
  l->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.message());
  const tcp::endpoint bound = l->acceptor.local_endpoint(ec);
  if (ec) fail(ec.message());
  const bool posted = post([self = shared_from_this(), l] {
    if (self->stopped()) {
      error_code ignored;
      l->acceptor.close(ignored);
      return;
    }
    self->listeners_.push_back(l);
    self->accept_next(l);
  });
  if (!posted) fail("the transport is stopped");
  return endpoint_string(bound);
}

void engine::accept_next(const std::shared_ptr<listener>& l) {
  l->acceptor.async_accept(
      [self = shared_from_this(), l](const error_code& ec, tcp::socket s) { self->on_accepted(l, ec, std::move(s)); });
}

void engine::on_accepted(const std::shared_ptr<listener>& l, const error_code& ec, tcp::socket s) {
  if (ec == asio::error::operation_aborted || stopped() || !l->acceptor.is_open()) return;
  if (ec) {
    // Out of descriptors and the like: try again shortly rather than spin on the error.
    log_limited(log_level::warn, "accepting a connection failed: {}", ec.message());
    l->retry.expires_after(std::chrono::milliseconds(100));
    l->retry.async_wait([self = shared_from_this(), l](const error_code& ec) {
      if (!ec && !self->stopped()) self->accept_next(l);
    });
    return;
  }
  error_code opt_ec;
  set_close_on_exec(s.native_handle());
  s.set_option(tcp::no_delay(true), opt_ec);
  const tcp::endpoint remote = s.remote_endpoint(opt_ec);
  std::string host;
  if (!opt_ec && cfg_.untrusted_frame_limit > 0) {
    host = remote.address().to_string();
    std::size_t& from_host = untrusted_by_host_[host];
    if (from_host >= cfg_.max_untrusted_per_host || untrusted_ >= cfg_.max_untrusted) {
      log_limited(log_level::warn,
                  "refused a connection from {}: {} connections from it and {} in all have not completed the "
                  "handshake (the caps: {} and {})",
                  endpoint_string(remote), from_host, untrusted_, cfg_.max_untrusted_per_host, cfg_.max_untrusted);
      if (from_host == 0) untrusted_by_host_.erase(host);
      error_code ignored;
      s.close(ignored);
      return accept_next(l);
    }
    ++from_host;
    ++untrusted_;
  }
  if (!opt_ec) {
    auto c = std::make_shared<tcp_connection>(shared_from_this(), std::move(s), nullptr, endpoint_string(remote),
                                              tls_context());
    add(c);
    if (!host.empty()) c->mark_untrusted(host, cfg_.handshake_timeout);
    if (c->is_tls()) {
      c->handshake(asio::ssl::stream_base::server, "", cfg_.handshake_timeout,
                   [self = shared_from_this(), l, c](std::optional<std::string> failed) {
                     if (!failed) return self->hand_over(l, c);
                     if (self->stopped()) return c->force_close("transport stopped");  // not a refusal
                     log_limited(log_level::warn, "refused a TLS connection from {}: {}", c->remote_address(), *failed);
                     c->force_close(*failed);
                   });
    } else {
      hand_over(l, c);
    }
  }
  accept_next(l);
}

void engine::release_untrusted(const std::string& host) {
  auto it = untrusted_by_host_.find(host);
  if (it == untrusted_by_host_.end()) return;
  if (--it->second == 0) untrusted_by_host_.erase(it);
  if (untrusted_ > 0) --untrusted_;
}

void engine::hand_over(const std::shared_ptr<listener>& l, const std::shared_ptr<tcp_connection>& c) {
  if (stopped() || !l->acceptor.is_open()) return c->force_close("transport stopped");
  if (auto what = call_user([&] { l->on_accept(c); })) {
    log(log_level::warn, "the accept handler threw: {}", *what);
    c->force_close(fmt::format("the accept handler threw: {}", *what));
  } else {
    c->start();
  }
}

std::shared_ptr<connection> engine::connect(const std::string& address, std::shared_ptr<handler> h) {
  auto fail = [&](const std::string& why) {
    detail::throw_error(detail::error_kind::generic, fmt::format("cannot connect to {}: {}", address, why));
  };
  if (stopped()) fail("the transport is stopped");
  const auto hp = parse_address(address);
  if (!hp || hp->host.empty()) fail("expected host:port");
  if (on_io_thread()) return connect_here(address, *hp, std::move(h));

  auto op = std::make_shared<connect_op>(io_);
  op->conn =
      std::make_shared<tcp_connection>(shared_from_this(), tcp::socket(io_), std::move(h), address, tls_context());
  if (!post([self = shared_from_this(), op, hp = *hp] { self->begin_connect(op, hp); }))
    fail("the transport is stopped");
  std::unique_lock lk(op->m);
  // The io thread's timer ends the attempt; this wait only guards against an io thread kept busy
  // by a callback.
  const auto backstop = cfg_.connect_timeout + std::chrono::seconds(2);
  if (!op->cv.wait_for(lk, backstop, [&] { return op->st != connect_op::state::pending; })) {
    op->st = connect_op::state::abandoned;
    fail(fmt::format("timed out after {} ms", cfg_.connect_timeout.count()));
  }
  if (op->st != connect_op::state::connected) fail(op->error);
  return op->conn;
}

void engine::begin_connect(const std::shared_ptr<connect_op>& op, const host_port& hp) {
  if (stopped()) return finish_connect(op, "the transport is stopped");
  connecting_.insert(op);
  op->timer.expires_after(cfg_.connect_timeout);
  op->timer.async_wait([self = shared_from_this(), op](const error_code& ec) {
    if (ec || op->finished) return;
    self->finish_connect(op, fmt::format("timed out after {} ms", self->cfg_.connect_timeout.count()));
  });
  op->resolver.async_resolve(
      hp.host, hp.port,
      [self = shared_from_this(), op, host = hp.host](const error_code& ec,
                                                      const tcp::resolver::results_type& results) {
        if (op->finished) return;
        if (ec) return self->finish_connect(op, ec.message());
        asio::async_connect(op->conn->socket(), results, [self, op, host](const error_code& ec, const tcp::endpoint&) {
          if (op->finished) return;
          if (ec || !op->conn->is_tls())
            return self->finish_connect(op, ec ? std::optional<std::string>(ec.message()) : std::nullopt);
          // The connect timeout, already running, bounds the handshake too.
          op->conn->handshake(asio::ssl::stream_base::client, host, std::chrono::milliseconds(0),
                              [self, op](std::optional<std::string> failed) {
                                if (op->finished) return;
                                if (failed) *failed = "TLS: " + *failed;
                                self->finish_connect(op, std::move(failed));
                              });
        });
      });
}

void engine::finish_connect(const std::shared_ptr<connect_op>& op, std::optional<std::string> error) {
  op->finished = true;
  connecting_.erase(op);
  op->timer.cancel();
  op->resolver.cancel();
  bool started = false;
  {
    std::lock_guard lk(op->m);
    if (op->st == connect_op::state::abandoned && !error) error = "abandoned by the caller";
    error_code ec;
    if (!error) {
      set_close_on_exec(op->conn->socket().native_handle());
      op->conn->socket().set_option(tcp::no_delay(true), ec);
      const tcp::endpoint remote = op->conn->socket().remote_endpoint(ec);
      if (ec)
        error = ec.message();
      else
        op->conn->set_remote(endpoint_string(remote));
    }
    if (error) {
      error_code ignored;
      op->conn->socket().close(ignored);
      if (op->st == connect_op::state::pending) {
        op->st = connect_op::state::failed;
        op->error = *error;
      }
    } else {
      op->st = connect_op::state::connected;
      add(op->conn);
      started = true;
    }
  }
  op->cv.notify_all();
  if (started) op->conn->start();
}

std::shared_ptr<connection> engine::connect_here(const std::string& address, const host_port& hp,
                                                 std::shared_ptr<handler> h) {
  auto fail = [&](const std::string& why) {
    detail::throw_error(detail::error_kind::generic, fmt::format("cannot connect to {}: {}", address, why));
  };
  error_code ec;
  tcp::resolver resolver(io_);
  const auto results = resolver.resolve(hp.host, hp.port, ec);
  if (ec) fail(ec.message());
  auto c = std::make_shared<tcp_connection>(shared_from_this(), tcp::socket(io_), std::move(h), address, tls_context());
  const auto deadline = std::chrono::steady_clock::now() + cfg_.connect_timeout;
  ec = asio::error::host_not_found;
  for (const auto& entry : results) {
    error_code ignored;
    c->socket().close(ignored);
    ec = connect_until(c->socket(), entry.endpoint(), deadline);
    if (!ec) break;
  }
  if (!ec) {
    c->socket().set_option(tcp::no_delay(true), ec);
    if (!ec) c->set_remote(endpoint_string(c->socket().remote_endpoint(ec)));
  }
  if (ec) {
    error_code ignored;
    c->socket().close(ignored);
    if (ec == asio::error::timed_out) fail(fmt::format("timed out after {} ms", cfg_.connect_timeout.count()));
    fail(ec.message());
  }
  add(c);
  if (!c->is_tls()) {
    c->start();
    return c;
  }
  // This thread cannot wait for its own handshake: frames sent meanwhile wait for it, and a
  // failure closes the connection with the reason (the handler's on_closed).
  c->handshake(asio::ssl::stream_base::client, hp.host, cfg_.connect_timeout, [c](std::optional<std::string> failed) {
    if (failed) return c->handshake_failed("TLS: " + *failed);
    c->start();
  });
  return c;
}

void engine::stop() {
  // acq_rel: the winner's release pairs with stopped()'s acquire; only the winner posts.
  if (!stopped_.exchange(true, std::memory_order_acq_rel)) {
    // Always accepted: posts are refused only after run() returns, which needs work_ reset.
    post([self = shared_from_this()] { self->close_all(); });
    work_.reset();
  }
  // On the io thread (stop() from a callback) the thread cannot join itself: it finishes the
  // posted close_all and leaves; the destructor on another thread joins it.
  if (on_io_thread()) return;
  std::lock_guard lk(join_mutex_);
  if (thread_.joinable()) thread_.join();
}

void engine::close_all() {
  for (const auto& l : listeners_) {
    error_code ignored;
    l->acceptor.close(ignored);
    l->retry.cancel();
  }
  listeners_.clear();
  const auto pending = connecting_;
  for (const auto& op : pending) finish_connect(op, std::string("the transport is stopped"));
  const auto conns = std::move(conns_);
  conns_.clear();
  for (const auto& [ptr, c] : conns) c->force_close("transport stopped");
}

class tcp_transport final : public transport {
 public:
  explicit tcp_transport(const config& cfg) : engine_(std::make_shared<engine>(cfg)) { engine_->start_thread(); }
  ~tcp_transport() override { engine_->stop(); }

  std::string listen(const std::string& address, accept_fn on_accept) override {
    return engine_->listen(address, std::move(on_accept));
  }
  std::shared_ptr<connection> connect(const std::string& address, std::shared_ptr<handler> h) override {
    return engine_->connect(address, std::move(h));
  }
  void post(std::function<void()> f) override {
    engine_->post([f = std::move(f)] {
      if (auto what = call_user(f)) log(log_level::warn, "a function posted to the transport threw: {}", *what);
    });
  }
  void stop() override { engine_->stop(); }

 private:
  std::shared_ptr<engine> engine_;
};

}  // namespace dx::transport::tcp_detail

namespace dx::transport {

/// Connections are shared_ptr, and every pending operation holds its connection, so a transport
/// may be stopped or destroyed with reads and writes in flight. connect() called on the
/// transport's own thread (from a callback) connects synchronously, blocking that thread for up
/// to the connect timeout. stop() from a callback does not wait for the thread (it cannot);
/// destroying the transport on another thread does. Frames queued but not yet written when
/// stop() runs are dropped; close() first sends them.
std::unique_ptr<transport> make_tcp_transport(const config& cfg) {
  return std::make_unique<tcp_detail::tcp_transport>(cfg);
}

}  // namespace dx::transport