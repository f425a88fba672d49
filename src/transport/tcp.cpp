// The TCP transport: frames over plain TCP sockets, driven by one io_context on one thread that
// the transport owns. Every callback (accept, on_frame, on_closed, post) runs on that thread.
//
// Shape of the code:
// - `engine` owns the io_context, its thread, the listeners and the open connections. It is held
//   by shared_ptr: by the public transport object, by the thread while it runs, and by every
//   connection, so that no socket can outlive the io_context it belongs to.
// - `tcp_connection` reads a header, checks it, then reads the archive and the payload straight
//   into the frame's own buffers. Writes gather every queued frame into one vector of buffers
//   that point at the frames themselves (payloads are never copied) and hand it to writev, up
//   to Asio's 64 buffers per call.
// - Everything but send(), close(), set_handler() and remote_address() runs on the io thread,
//   so per-connection state needs no lock; the outbox is the one piece shared with senders.
// - With TLS (config::tls), a connection is an SSL stream over its socket: an accepted one is
//   handed to on_accept only once its handshake has passed (a peer whose certificate fails is
//   refused and logged with the reason); an opened one completes its handshake before connect()
//   returns, or, when connect() runs on the io thread, before its first frame goes out. Small
//   pieces of a write are gathered into one record.
#include "transport/transport.hpp"

#include "common/log.hpp"
#include "transport/address.hpp"
#include "transport/asio.hpp"
#include "transport/tls.hpp"
#include "wire/frame.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace dx::transport {
namespace {

using tcp = asio::ip::tcp;
using tls_stream = asio::ssl::stream<tcp::socket>;
using handshake_done = std::function<void(std::optional<std::string>)>;
using boost::system::error_code;
using detail::log;
using detail::log_level;

/// How long a connection closed with close() may take to send what was queued before it and
/// to see the peer's end of stream, before the socket is closed regardless.
constexpr std::chrono::seconds linger_timeout{5};

/// With TLS, the pieces of a write smaller than this are copied into one buffer, so that frame
/// headers and small bodies travel as one record rather than one record each.
constexpr std::size_t tls_gather_below = 16384;

/// Bytes a single read may ask for: the destination buffer bounds it anyway; Asio's default
/// (64 KiB per call) would split a large payload into thousands of reads.
struct read_fully {
  std::size_t operator()(const error_code& ec, std::size_t) const noexcept { return ec ? 0 : std::size_t{1} << 30; }
};

/// Runs a user callback; an exception from it must not unwind through io_context::run().
template <class F>
std::optional<std::string> call_user(F&& f) noexcept {
  try {
    std::forward<F>(f)();
    return std::nullopt;
  } catch (const std::exception& e) {
    return std::string(e.what());
  } catch (...) {
    return std::string("unknown exception");
  }
}

/// Connects `s` to `ep` without waiting past `deadline`: the blocking connect used when
/// connect() is called on the io thread, which cannot wait for its own asynchronous work.
error_code connect_until(tcp::socket& s, const tcp::endpoint& ep, std::chrono::steady_clock::time_point deadline) {
  error_code ec;
  s.open(ep.protocol(), ec);
  if (ec) return ec;
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

class engine;

/// A frame waiting to be written, with its encoded header kept beside it so that the write can
/// point at both.
struct out_entry {
  std::array<char, wire::header_size> header;
  wire::frame frame;
};

/// A window of a buffer vector, so that writev gets up to Asio's limit of buffers at once.
struct buffer_window {
  const asio::const_buffer* first;
  const asio::const_buffer* last;
  const asio::const_buffer* begin() const noexcept { return first; }
  const asio::const_buffer* end() const noexcept { return last; }
};

enum class close_mode {
  graceful,  // close(): send what is queued, then end the stream; frames not yet delivered are dropped
  abort,     // stop() or a failing handler: close the socket now
  failed,    // peer or protocol: deliver frames already received, then close the socket now
};

class tcp_connection final : public connection, public std::enable_shared_from_this<tcp_connection> {
 public:
  tcp_connection(std::shared_ptr<engine> e, tcp::socket socket, std::shared_ptr<handler> h, std::string remote,
                 std::shared_ptr<asio::ssl::context> tls);

  void send(wire::frame f) override;
  void close(const std::string& reason) override;
  std::string remote_address() const override { return remote_; }
  void set_handler(std::shared_ptr<handler> h) override;

  // The rest runs on the io thread only.
  tcp::socket& socket() noexcept { return tls_ ? tls_->next_layer() : socket_; }
  bool is_tls() const noexcept { return tls_ != nullptr; }
  /// Runs the TLS handshake of a connected socket; nothing is written before it passes. `done`
  /// gets the reason it failed, or nothing. A zero `limit`: the caller's own deadline bounds it.
  void handshake(asio::ssl::stream_base::handshake_type type, const std::string& host, std::chrono::milliseconds limit,
                 handshake_done done);
  /// A handshake of a connection that already has its handler failed: closes it with `reason`.
  void handshake_failed(const std::string& reason) { do_close(reason, close_mode::failed, log_level::warn); }

  // What asio::async_read needs of a stream, over the socket or the TLS stream.
  struct stream_adapter {
    tcp_connection* c;
    using executor_type = tcp::socket::executor_type;
    executor_type get_executor() { return c->socket().get_executor(); }
    template <class Buffers, class Handler>
    void async_read_some(const Buffers& b, Handler&& h) {
      if (c->tls_)
        c->tls_->async_read_some(b, std::forward<Handler>(h));
      else
        c->socket_.async_read_some(b, std::forward<Handler>(h));
    }
  };
  void set_remote(std::string remote) { remote_ = std::move(remote); }
  /// Starts the read loop of a connection registered with the engine.
  void start() { read_header(); }
  /// stop(): closes at once and delivers on_closed if it was not yet.
  void force_close(const std::string& reason);

 private:
  void read_header();
  void on_header(const error_code& ec);
  void on_body(const error_code& ec);
  void on_read_error(const error_code& ec);
  void discard_input(const error_code& ec);

  void deliver(wire::frame&& f);
  void invoke_on_frame(wire::frame&& f);
  void attach(std::shared_ptr<handler> h, bool may_drain_now);
  void drain();
  void deliver_closed(const std::string& reason);

  void start_flush();
  void gather_small_pieces();
  void write_window();
  void on_written(const error_code& ec, std::size_t n);

  void do_close(const std::string& reason, close_mode mode, log_level level = log_level::info);
  void close_socket();

  std::shared_ptr<engine> engine_;
  tcp::socket socket_;                               // unused (never opened) with TLS: the stream owns the socket
  std::shared_ptr<asio::ssl::context> tls_context_;  // kept for the life of the stream
  std::unique_ptr<tls_stream> tls_;
  stream_adapter stream_{this};
  asio::steady_timer linger_timer_;
  asio::steady_timer handshake_timer_;
  // Written before the connection is handed to anyone, read-only afterwards.
  std::string remote_;

  // Set by close(), stop() or a throwing handler: no frame is delivered after it. Read on the io
  // thread, written from any thread; acquire/release so the io thread sees it with the close
  // request it belongs to (the request itself travels through post(), which also orders it).
  std::atomic<bool> close_requested_{false};

  // io thread only.
  std::shared_ptr<handler> handler_;
  std::deque<wire::frame> held_;               // received before set_handler, or while a drain is pending
  std::optional<std::string> pending_closed_;  // on_closed waiting for set_handler
  bool closed_ = false;                        // do_close ran: nothing more is read or delivered
  bool closed_delivered_ = false;
  bool lingering_ = false;
  bool socket_closed_ = false;
  std::array<char, wire::header_size> in_header_{};
  wire::frame in_frame_;
  std::shared_ptr<std::string> in_payload_;
  std::chrono::steady_clock::time_point body_started_{};  // when the frame being read had its header
  std::unique_ptr<char[]> discard_buffer_;
  bool ready_ = true;  // false while a TLS handshake runs: writes wait for it
  std::vector<out_entry> writing_;
  std::string gathered_;  // TLS: the small pieces of the write in progress, copied together
  std::vector<asio::const_buffer> write_buffers_;
  std::size_t write_pos_ = 0;

  std::mutex out_mutex_;
  std::vector<out_entry> outbox_;  // guarded by out_mutex_
  bool write_in_flight_ = false;   // guarded by out_mutex_: a flush is posted or running
  bool sends_closed_ = false;      // guarded by out_mutex_
};

struct listener {
  listener(asio::io_context& io, accept_fn f) : acceptor(io), retry(io), on_accept(std::move(f)) {}
  tcp::acceptor acceptor;
  asio::steady_timer retry;
  accept_fn on_accept;
};

/// One connect() in progress on the io thread, and the rendezvous with its caller.
struct connect_op {
  explicit connect_op(asio::io_context& io) : resolver(io), timer(io) {}
  enum class state { pending, connected, failed, abandoned };
  tcp::resolver resolver;
  asio::steady_timer timer;
  std::shared_ptr<tcp_connection> conn;
  bool finished = false;  // io thread only
  std::mutex m;
  std::condition_variable cv;
  state st = state::pending;  // guarded by m
  std::string error;          // guarded by m
};

class engine : public std::enable_shared_from_this<engine> {
 public:
  explicit engine(const config& cfg) : cfg_(cfg) {}

  ~engine() {
    // The last reference may be dropped by the io thread itself as it finishes (after a stop()
    // from inside a callback); it cannot join itself, and it has left run() by then.
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id())
        thread_.detach();
      else
        thread_.join();
    }
  }

  void start_thread() {
    work_.emplace(io_.get_executor());
    thread_ = std::thread([self = shared_from_this()] { self->run(); });
  }

  const config& cfg() const noexcept { return cfg_; }
  const tls_options& tls_settings() const noexcept { return cfg_.tls->options(); }
  /// The TLS context a new connection is made with; null without TLS.
  std::shared_ptr<asio::ssl::context> tls_context() { return cfg_.tls ? cfg_.tls->current() : nullptr; }
  asio::io_context& io() noexcept { return io_; }
  bool on_io_thread() noexcept { return io_.get_executor().running_in_this_thread(); }
  // acquire: pairs with the release in stop(); listen/connect also recheck it on the io thread.
  bool stopped() const noexcept { return stopped_.load(std::memory_order_acquire); }

  /// Queues `f` on the io thread; false once the thread has finished for good.
  template <class F>
  bool post(F&& f) {
    std::lock_guard lk(post_mutex_);
    if (!accepting_posts_) return false;
    asio::post(io_, std::forward<F>(f));
    return true;
  }

  void add(const std::shared_ptr<tcp_connection>& c) { conns_.emplace(c.get(), c); }
  void remove(tcp_connection* c) { conns_.erase(c); }

  std::string listen(const std::string& address, accept_fn on_accept);
  std::shared_ptr<connection> connect(const std::string& address, std::shared_ptr<handler> h);
  void stop();

 private:
  void run() {
    io_.run();
    // Anything posted before this point still runs (and may find everything closed); nothing
    // posted after it is queued, so no handler is left in the io_context holding a connection,
    // which holds this engine.
    {
      std::lock_guard lk(post_mutex_);
      accepting_posts_ = false;
    }
    io_.restart();
    io_.run();
  }

  void accept_next(const std::shared_ptr<listener>& l);
  void on_accepted(const std::shared_ptr<listener>& l, const error_code& ec, tcp::socket s);
  void hand_over(const std::shared_ptr<listener>& l, const std::shared_ptr<tcp_connection>& c);
  void begin_connect(const std::shared_ptr<connect_op>& op, const host_port& hp);
  void finish_connect(const std::shared_ptr<connect_op>& op, std::optional<std::string> error);
  std::shared_ptr<connection> connect_here(const std::string& address, const host_port& hp, std::shared_ptr<handler> h);
  void close_all();

  const config cfg_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::mutex join_mutex_;  // serialises joins by several stopping threads
  std::atomic<bool> stopped_{false};
  std::mutex post_mutex_;
  bool accepting_posts_ = true;  // guarded by post_mutex_

  // io thread only. Declared after io_ so that they go first.
  std::vector<std::shared_ptr<listener>> listeners_;
  std::unordered_map<tcp_connection*, std::shared_ptr<tcp_connection>> conns_;
  std::unordered_set<std::shared_ptr<connect_op>> connecting_;
};

// ---- tcp_connection -------------------------------------------------------------------------

tcp_connection::tcp_connection(std::shared_ptr<engine> e, tcp::socket socket, std::shared_ptr<handler> h,
                               std::string remote, std::shared_ptr<asio::ssl::context> tls)
    : engine_(std::move(e)),
      socket_(engine_->io()),
      tls_context_(std::move(tls)),
      linger_timer_(engine_->io()),
      handshake_timer_(engine_->io()),
      remote_(std::move(remote)),
      handler_(std::move(h)) {
  if (tls_context_)
    tls_ = std::make_unique<tls_stream>(std::move(socket), *tls_context_);
  else
    socket_ = std::move(socket);
}

void tcp_connection::handshake(asio::ssl::stream_base::handshake_type type, const std::string& host,
                               std::chrono::milliseconds limit, handshake_done done) {
  ready_ = false;
  if (type == asio::ssl::stream_base::client) {
    error_code not_an_address;
    (void)asio::ip::make_address(host, not_an_address);
    if (!host.empty() && not_an_address) SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());  // SNI
    if (engine_->cfg().tls && engine_->tls_settings().verify_peer_name && !host.empty())
      tls_->set_verify_callback(asio::ssl::host_name_verification(host));
  }
  auto timed_out = std::make_shared<bool>(false);
  if (limit.count() > 0) {
    handshake_timer_.expires_after(limit);
    handshake_timer_.async_wait([self = shared_from_this(), timed_out](const error_code& ec) {
      if (ec || self->ready_ || self->socket_closed_) return;
      *timed_out = true;
      error_code ignored;
      self->socket().cancel(ignored);
    });
  }
  tls_->async_handshake(type,
                        [self = shared_from_this(), limit, timed_out, done = std::move(done)](const error_code& ec) {
                          self->handshake_timer_.cancel();
                          if (ec) {
                            if (*timed_out) return done(fmt::format("no TLS handshake within {} ms", limit.count()));
                            return done(describe_tls_error(ec, self->tls_->native_handle()));
                          }
                          self->ready_ = true;
                          done(std::nullopt);
                          // Frames sent while the handshake ran go out now.
                          bool pending = false;
                          {
                            std::lock_guard lk(self->out_mutex_);
                            pending = self->write_in_flight_;
                          }
                          if (pending) self->start_flush();
                        });
}

void tcp_connection::send(wire::frame f) {
  if (f.archive.size() > UINT32_MAX) {
    close(fmt::format("cannot send a frame archive of {} bytes (the limit is 4 GiB)", f.archive.size()));
    return;
  }
  if (close_requested_.load(std::memory_order_acquire)) return;
  count_sent(f);
  out_entry e{wire::encode_header(f), std::move(f)};
  {
    std::lock_guard lk(out_mutex_);
    if (sends_closed_) return;
    outbox_.push_back(std::move(e));
    if (write_in_flight_) return;  // the running flush picks this frame up when it completes
    write_in_flight_ = true;
  }
  engine_->post([self = shared_from_this()] { self->start_flush(); });
}

void tcp_connection::close(const std::string& reason) {
  if (close_requested_.exchange(true, std::memory_order_acq_rel)) return;
  // If the post is refused the transport has stopped, and stop() closed this connection already.
  engine_->post([self = shared_from_this(), reason] { self->do_close(reason, close_mode::graceful); });
}

void tcp_connection::set_handler(std::shared_ptr<handler> h) {
  if (!h) return;
  if (engine_->on_io_thread())
    attach(std::move(h), false);
  else
    engine_->post([self = shared_from_this(), h = std::move(h)]() mutable { self->attach(std::move(h), true); });
}

void tcp_connection::force_close(const std::string& reason) {
  close_requested_.store(true, std::memory_order_release);
  do_close(reason, close_mode::abort);
}

void tcp_connection::read_header() {
  asio::async_read(stream_, asio::buffer(in_header_),
                   [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_header(ec); });
}

void tcp_connection::on_header(const error_code& ec) {
  if (closed_) return discard_input(ec);
  if (ec) return on_read_error(ec);
  const wire::frame_header h = wire::decode_header(in_header_.data());
  if (!tls_ && in_header_[0] == 0x16 && in_header_[1] == 0x03) {  // a TLS handshake record
    const std::string why = "a TLS client on a plain TCP port (give this side TLS too: options::tls, --tls-cert)";
    log(log_level::warn, "closing the connection with {}: {}", remote_, why);
    return do_close(why, close_mode::failed, log_level::off);
  }
  if (auto why = wire::check_header(h, engine_->cfg().max_frame_size)) {
    log(log_level::warn, "closing the connection with {}: {}", remote_, *why);
    return do_close(*why, close_mode::failed, log_level::off);
  }
  in_frame_ = wire::frame{};
  in_frame_.type = h.type;
  in_frame_.flags = h.flags;
  try {
    in_frame_.archive.resize(h.archive_size);
    if (h.payload_size > 0) {
      // The payload is read straight into the string the frame will carry: one allocation, no copy.
      in_payload_ = std::make_shared<std::string>();
      in_payload_->resize(static_cast<std::size_t>(h.payload_size));
    }
  } catch (const std::bad_alloc&) {
    const auto why = fmt::format("cannot allocate a frame body of {} bytes", h.archive_size + h.payload_size);
    log(log_level::warn, "closing the connection with {}: {}", remote_, why);
    return do_close(why, close_mode::failed, log_level::off);
  }
  if (h.archive_size == 0 && h.payload_size == 0) return on_body(error_code{});
  body_started_ = std::chrono::steady_clock::now();
  set_receiving(h.archive_size + h.payload_size);
  const std::array<asio::mutable_buffer, 2> body{asio::buffer(in_frame_.archive),
                                                 in_payload_ ? asio::buffer(*in_payload_) : asio::mutable_buffer{}};
  asio::async_read(stream_, body, read_fully{},
                   [self = shared_from_this()](const error_code& ec, std::size_t) { self->on_body(ec); });
}

void tcp_connection::on_body(const error_code& ec) {
  if (closed_) return discard_input(ec);
  if (ec) return on_read_error(ec);
  wire::frame f = std::move(in_frame_);
  f.payload = std::move(in_payload_);
  in_frame_ = wire::frame{};
  set_receiving(0);
  if (f.body_size() > 0)
    f.receive_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - body_started_)
            .count());
  count_received(f);
  deliver(std::move(f));
  if (!closed_) return read_header();
  if (!socket_closed_) discard_input(error_code{});
}

void tcp_connection::on_read_error(const error_code& ec) {
  if (ec == asio::error::eof || is_tls_truncation(ec)) return do_close("connection closed by peer", close_mode::failed);
  if (ec.category() == asio::error::get_ssl_category())
    return do_close(fmt::format("connection lost: TLS: {}", describe_tls_error(ec, nullptr)), close_mode::failed);
  do_close(fmt::format("connection lost: {}", ec.message()), close_mode::failed);
}

// After a graceful close the read side only waits for the peer's end of stream, so that closing
// does not reset a connection whose peer is still reading what was sent before close().
void tcp_connection::discard_input(const error_code& ec) {
  if (socket_closed_) return;
  if (ec) return close_socket();
  if (!discard_buffer_) discard_buffer_ = std::make_unique<char[]>(16384);
  stream_.async_read_some(asio::buffer(discard_buffer_.get(), 16384),
                          [self = shared_from_this()](const error_code& ec, std::size_t) { self->discard_input(ec); });
}

void tcp_connection::deliver(wire::frame&& f) {
  if (closed_ || close_requested_.load(std::memory_order_acquire)) return;
  if (!handler_ || !held_.empty()) {
    held_.push_back(std::move(f));
    return;
  }
  invoke_on_frame(std::move(f));
}

void tcp_connection::invoke_on_frame(wire::frame&& f) {
  auto h = handler_;  // on_frame may replace the handler; keep this one alive until it returns
  if (auto what = call_user([&] { h->on_frame(*this, std::move(f)); })) {
    close_requested_.store(true, std::memory_order_release);
    do_close(fmt::format("the frame handler threw: {}", *what), close_mode::abort, log_level::warn);
  }
}

void tcp_connection::attach(std::shared_ptr<handler> h, bool may_drain_now) {
  if (closed_delivered_) return;
  handler_ = std::move(h);
  if (held_.empty() && !pending_closed_) return;
  // Called from inside some other callback: deliver from a handler of our own instead, so that
  // callbacks never nest. Frames arriving meanwhile queue behind the held ones.
  if (may_drain_now)
    drain();
  else
    engine_->post([self = shared_from_this()] { self->drain(); });
}

void tcp_connection::drain() {
  while (handler_ && !held_.empty() && !close_requested_.load(std::memory_order_acquire)) {
    wire::frame f = std::move(held_.front());
    held_.pop_front();
    invoke_on_frame(std::move(f));
  }
  if (handler_ && pending_closed_) {
    const std::string reason = std::move(*pending_closed_);
    pending_closed_.reset();
    deliver_closed(reason);
  }
}

void tcp_connection::deliver_closed(const std::string& reason) {
  if (closed_delivered_) return;
  if (!handler_) {
    pending_closed_ = reason;
    return;
  }
  closed_delivered_ = true;
  held_.clear();
  // Released after on_closed: the handler commonly owns this connection, and this breaks the cycle.
  const std::shared_ptr<handler> h = std::move(handler_);
  if (auto what = call_user([&] { h->on_closed(*this, reason); }))
    log(log_level::warn, "the close handler of the connection with {} threw: {}", remote_, *what);
}

void tcp_connection::start_flush() {
  if (!ready_) return;  // the handshake's end calls again; write_in_flight_ stays set meanwhile
  bool idle = false;
  {
    std::lock_guard lk(out_mutex_);
    if (outbox_.empty() || socket_closed_) {
      outbox_.clear();
      write_in_flight_ = false;
      idle = true;
    } else {
      writing_.swap(outbox_);
    }
  }
  if (idle) {
    // A graceful close waits for the queued frames, then ends the stream.
    if (lingering_ && !socket_closed_) {
      error_code ignored;
      socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    return;
  }
  write_buffers_.clear();
  for (const out_entry& e : writing_) {
    write_buffers_.push_back(asio::buffer(e.header));
    if (!e.frame.archive.empty()) write_buffers_.push_back(asio::buffer(e.frame.archive));
    if (e.frame.payload && !e.frame.payload->empty()) write_buffers_.push_back(asio::buffer(*e.frame.payload));
  }
  if (tls_) gather_small_pieces();
  write_pos_ = 0;
  write_window();
}

void tcp_connection::gather_small_pieces() {
  std::size_t small = 0;
  for (const auto& b : write_buffers_)
    if (b.size() < tls_gather_below) small += b.size();
  gathered_.clear();
  gathered_.reserve(small);  // reserved once: the buffers below point into it
  std::vector<asio::const_buffer> out;
  out.reserve(write_buffers_.size());
  std::size_t run = std::string::npos;  // where the run of small pieces being gathered starts
  auto end_run = [&] {
    if (run == std::string::npos) return;
    out.push_back(asio::buffer(gathered_.data() + run, gathered_.size() - run));
    run = std::string::npos;
  };
  for (const auto& b : write_buffers_) {
    if (b.size() >= tls_gather_below) {
      end_run();
      out.push_back(b);
      continue;
    }
    if (run == std::string::npos) run = gathered_.size();
    gathered_.append(static_cast<const char*>(b.data()), b.size());
  }
  end_run();
  write_buffers_.swap(out);
}

void tcp_connection::write_window() {
  const asio::const_buffer* first = write_buffers_.data() + write_pos_;
  const asio::const_buffer* last = write_buffers_.data() + write_buffers_.size();
  auto done = [self = shared_from_this()](const error_code& ec, std::size_t n) { self->on_written(ec, n); };
  if (tls_)
    tls_->async_write_some(buffer_window{first, last}, std::move(done));
  else
    socket_.async_write_some(buffer_window{first, last}, std::move(done));
}

void tcp_connection::on_written(const error_code& ec, std::size_t n) {
  if (!ec) {
    while (n > 0 && write_pos_ < write_buffers_.size()) {
      asio::const_buffer& b = write_buffers_[write_pos_];
      if (n < b.size()) {
        b += n;
        n = 0;
      } else {
        n -= b.size();
        ++write_pos_;
      }
    }
    if (write_pos_ < write_buffers_.size()) return write_window();
  }
  writing_.clear();
  write_buffers_.clear();
  gathered_.clear();
  if (ec) {
    if (!closed_)
      do_close(fmt::format("connection lost: {}", ec.message()), close_mode::failed);
    else
      close_socket();
    std::lock_guard lk(out_mutex_);
    outbox_.clear();
    write_in_flight_ = false;
    return;
  }
  start_flush();
}

void tcp_connection::do_close(const std::string& reason, close_mode mode, log_level level) {
  if (closed_) {
    if (mode != close_mode::graceful) close_socket();
    return;
  }
  if (mode == close_mode::failed) drain();  // frames received before the failure still count
  closed_ = true;
  bool flush_first = false;
  {
    std::lock_guard lk(out_mutex_);
    sends_closed_ = true;
    flush_first = mode == close_mode::graceful && write_in_flight_;
    if (mode != close_mode::graceful) outbox_.clear();
  }
  if (mode == close_mode::graceful && !socket_closed_) {
    lingering_ = true;
    if (!flush_first) {
      error_code ignored;
      socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    linger_timer_.expires_after(linger_timeout);
    linger_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (!ec) self->close_socket();
    });
  } else {
    close_socket();
  }
  log(level, "connection with {} closed: {}", remote_, reason);
  deliver_closed(reason);
}

void tcp_connection::close_socket() {
  if (socket_closed_) return;
  socket_closed_ = true;
  linger_timer_.cancel();
  handshake_timer_.cancel();
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
  engine_->remove(this);
}

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
    log(log_level::warn, "accepting a connection failed: {}", ec.message());
    l->retry.expires_after(std::chrono::milliseconds(100));
    l->retry.async_wait([self = shared_from_this(), l](const error_code& ec) {
      if (!ec && !self->stopped()) self->accept_next(l);
    });
    return;
  }
  error_code opt_ec;
  s.set_option(tcp::no_delay(true), opt_ec);
  const tcp::endpoint remote = s.remote_endpoint(opt_ec);
  if (!opt_ec) {
    auto c = std::make_shared<tcp_connection>(shared_from_this(), std::move(s), nullptr, endpoint_string(remote),
                                              tls_context());
    add(c);
    if (c->is_tls()) {
      c->handshake(asio::ssl::stream_base::server, "", cfg_.handshake_timeout,
                   [self = shared_from_this(), l, c](std::optional<std::string> failed) {
                     if (!failed) return self->hand_over(l, c);
                     if (self->stopped()) return c->force_close("transport stopped");  // not a refusal
                     log(log_level::warn, "refused a TLS connection from {}: {}", c->remote_address(), *failed);
                     c->force_close(*failed);
                   });
    } else {
      hand_over(l, c);
    }
  }
  accept_next(l);
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

}  // namespace

/// Connections are shared_ptr, and every pending operation holds its connection, so a transport
/// may be stopped or destroyed with reads and writes in flight. connect() called on the
/// transport's own thread (from a callback) connects synchronously, blocking that thread for up
/// to the connect timeout. stop() from a callback does not wait for the thread (it cannot);
/// destroying the transport on another thread does. Frames queued but not yet written when
/// stop() runs are dropped; close() first sends them.
std::unique_ptr<transport> make_tcp_transport(const config& cfg) { return std::make_unique<tcp_transport>(cfg); }

}  // namespace dx::transport
