// The TCP transport's parts, shared by its two files: a connection (tcp_connection.cpp) and
// the engine that owns the io thread, the listeners and the connections (tcp.cpp). Private to
// the transport layer.
//
// The transport runs frames over plain TCP or TLS, driven by one io_context on one thread that the
// transport owns. Every callback (accept, on_frame, on_closed, post) runs on that thread.
//
// Shape of the code:
// - `engine` owns the io_context, its thread, the listeners and the open connections. It is held
//   by shared_ptr: by the public transport object, by the thread while it runs, and by every
//   connection, so that no socket can outlive the io_context it belongs to.
// - `tcp_connection` reads a header, checks it, then reads the archive and the payload straight
//   into the frame's own buffers, which grow window by window as the bytes arrive (a header alone
//   never commits memory); a streamed frame's chunks are read straight into its buffers too.
//   Writes gather every queued frame into one vector of buffers that point at the frames
//   themselves (payloads are never copied) and hand it to writev, up to Asio's 64 buffers per call.
// - Everything but send(), close(), set_handler() and remote_address() runs on the io thread,
//   so per-connection state needs no lock; the outbox is the one piece shared with senders.
// - With TLS (config::tls), a connection is an SSL stream over its socket: an accepted one is
//   handed to on_accept only once its handshake has passed (a peer whose certificate fails is
//   refused and logged with the reason); an opened one completes its handshake before connect()
//   returns, or, when connect() runs on the io thread, before its first frame goes out. Small
//   pieces of a write are gathered into one record.
#pragma once

#include "transport/transport.hpp"

#include "common/log.hpp"
#include "transport/address.hpp"
#include "transport/asio.hpp"
#include "transport/tls.hpp"
#include "wire/frame.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

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

namespace dx::transport::tcp_detail {

using tcp = asio::ip::tcp;
using tls_stream = asio::ssl::stream<tcp::socket>;
using handshake_done = std::function<void(std::optional<std::string>)>;
using boost::system::error_code;
using detail::log;
using detail::log_level;
using detail::log_limited;

/// How long a connection closed with close() may take to send what was queued before it and
/// to see the peer's end of stream, before the socket is closed regardless.
constexpr std::chrono::seconds linger_timeout{5};

/// How long an untrusted connection that broke the handshake's frame limit is held, unread,
/// before it is closed (at most the handshake timeout).
constexpr std::chrono::milliseconds refusal_delay{1000};

/// A body is read in windows: the first this large, each next one as large as what has arrived
/// (doubling), up to body_window_max. The buffer grows only by the window about to be read.
constexpr std::size_t body_window_min = 64 * 1024;
constexpr std::size_t body_window_max = 4 * 1024 * 1024;

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

class engine;

/// A frame waiting to be written, with its encoded header kept beside it so that the write can
/// point at both.
struct out_entry {
  std::array<char, wire::header_size> header;
  wire::frame frame;
  /// A frame over max_frame_size goes out streamed: `header` announces it, and these head its
  /// chunks (see wire::frame_streamed).
  std::vector<std::array<char, wire::header_size>> chunk_headers;
};

/// The body bytes of one chunk of a streamed frame: at most this much, and at most a frame.
constexpr std::uint64_t stream_chunk_bytes = std::uint64_t{1} << 20;

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
  void on_trusted() override;

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
  /// An accepted connection counted against the engine's caps on untrusted connections from
  /// `host`: closed unless trust() comes within `limit`.
  void mark_untrusted(std::string host, std::chrono::milliseconds limit);

 private:
  void read_header();
  void on_header(const error_code& ec);
  void on_stream_header(const wire::frame_header& h);
  void on_chunk(const error_code& ec, std::size_t n);
  void refuse_input(const std::string& why);
  void read_body_window();
  void on_body(const error_code& ec);
  void become_trusted();
  void refuse_untrusted(const std::string& why);
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
  asio::steady_timer trust_timer_;
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
  bool untrusted_ = false;      // accepted, trust() not yet called: only handshake-sized frames
  bool refused_ = false;        // untrusted and broke the handshake limit: read no more, close soon
  std::string untrusted_host_;  // non-empty while counted against the engine's caps
  std::array<char, wire::header_size> in_header_{};
  wire::frame in_frame_;
  std::shared_ptr<std::string> in_payload_;
  std::uint32_t in_archive_size_ = 0;  // the body being read, as its header announced it
  std::uint64_t in_payload_size_ = 0;
  std::chrono::steady_clock::time_point body_started_{};  // when the frame being read had its header
  // A streamed frame being received (see wire::frame_streamed): its body bytes still to come, and
  // how many came, into in_frame_.archive and then *in_payload_.
  std::uint64_t stream_left_ = 0;
  std::uint64_t stream_at_ = 0;
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
  /// An untrusted connection from `host` closed or was trusted.
  void release_untrusted(const std::string& host);

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
  std::unordered_map<std::string, std::size_t> untrusted_by_host_;
  std::size_t untrusted_ = 0;
};

}  // namespace dx::transport::tcp_detail
