// The interface every transport implements: framed, ordered, bidirectional connections between
// a head and its workers (and between workers, for results). The cluster code sees only this
// header, so a further transport (MPI, shared memory) is one more implementation of it.
//
// Contract for implementations:
// - send() is thread-safe and never blocks on the network: frames queue and go out in order,
//   several small frames may be written at once, a payload is written from its own buffer.
// - Every received frame's header is checked (wire::check_header with the configured limit, or
//   the untrusted limit before trust()) before its body is read; a bad header closes the
//   connection with the reason. A body's buffer grows as its bytes arrive: memory is never
//   committed for what a header merely announces.
// - A frame whose body is over max_frame_size goes out as a stream of chunks (wire::frame_streamed,
//   frame.hpp). The receiver accepts one only once its owner called trust() (the peer passed the
//   handshake), and only up to max_value_size; it delivers it as one frame, in order.
// - A handler's callbacks for one connection run one at a time, in order, on the transport's
//   thread; on_closed comes exactly once and last, after close() from either side, an error,
//   or stop(). Callbacks may call send() and close() and may start new connections.
// - stop() closes every connection and listener, delivers the on_closed calls, and returns only
//   when no callback is running or will run.
#pragma once

#include "wire/frame.hpp"

#include <dx/options.hpp>
#include <dx/tls.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace dx::transport {

class connection;

/// What a connection's owner is told. Implemented by the head and worker runtimes.
class handler {
 public:
  virtual ~handler() = default;
  virtual void on_frame(connection& c, wire::frame&& f) = 0;
  virtual void on_closed(connection& c, const std::string& reason) = 0;
};

class connection {
 public:
  virtual ~connection() = default;
  /// Queues `f`; frames sent after close() are dropped.
  virtual void send(wire::frame f) = 0;
  /// Closes the connection; `reason` is logged and passed to on_closed. Idempotent.
  virtual void close(const std::string& reason) = 0;
  /// The peer's address as "host:port" (or the in-process name).
  virtual std::string remote_address() const = 0;
  /// Attaches the handler of an accepted connection; frames arriving before are held.
  virtual void set_handler(std::shared_ptr<handler> h) = 0;

  /// The peer passed the handshake: from now on it may send frames over max_frame_size, as a
  /// stream of chunks, up to max_value_size; before, such a frame closes the connection. On an
  /// accepted connection, frames up to max_frame_size are read from then on (before, only
  /// handshake-sized ones), and the handshake deadline and the caps on untrusted connections no
  /// longer apply. Called by the owner from on_frame (so the next header read sees it) or before
  /// any frame can arrive. Thread-safe; idempotent; does not block.
  void trust() {
    trusted_.store(true, std::memory_order_release);
    on_trusted();
  }
  bool trusted() const noexcept { return trusted_.load(std::memory_order_acquire); }

  /// Bytes of frames queued for sending, and of frames whose on_frame call has returned, so far;
  /// each frame counts as its header and its body, however it travelled, so the two sides of a
  /// connection count the same stream: a peer whose bytes_received reached a sender's bytes_sent
  /// after a send has handled that frame.
  std::uint64_t bytes_sent() const noexcept { return bytes_sent_.load(std::memory_order_relaxed); }
  std::uint64_t bytes_received() const noexcept { return bytes_received_.load(std::memory_order_relaxed); }
  /// The body size of a frame being received now (its header arrived, its body has not), or 0:
  /// a peer that has not seen a frame yet may still be receiving it.
  std::uint64_t receiving() const noexcept { return receiving_.load(std::memory_order_relaxed); }
  /// Bytes read from the peer so far, of frames still arriving too (a streamed frame counts chunk
  /// by chunk): a peer whose large message is still arriving is alive though no frame completed.
  std::uint64_t bytes_arrived() const noexcept { return bytes_arrived_.load(std::memory_order_relaxed); }

 protected:
  void count_sent(const wire::frame& f) noexcept {
    bytes_sent_.fetch_add(wire::header_size + f.body_size(), std::memory_order_relaxed);
  }
  void count_received(std::uint64_t body_bytes) noexcept {
    bytes_received_.fetch_add(wire::header_size + body_bytes, std::memory_order_relaxed);
  }
  void set_receiving(std::uint64_t body_bytes) noexcept { receiving_.store(body_bytes, std::memory_order_relaxed); }
  void count_arrived(std::uint64_t bytes) noexcept { bytes_arrived_.fetch_add(bytes, std::memory_order_relaxed); }
  /// What an implementation does once its peer is trusted (called by trust(), on any thread).
  virtual void on_trusted() {}

 private:
  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> receiving_{0};
  std::atomic<std::uint64_t> bytes_arrived_{0};
  std::atomic<bool> trusted_{false};
};

class tls_credentials;

struct config {
  std::uint64_t max_frame_size = std::uint64_t{256} << 20;
  /// The largest body a trusted peer may send as a stream of chunks (options::max_value_size).
  std::uint64_t max_value_size = std::uint64_t{4} << 30;
  std::chrono::milliseconds connect_timeout{5000};
  /// TCP only: when set, every connection (accepted or opened) is TLS with these credentials, and
  /// a peer whose certificate does not pass is refused before its first frame.
  std::shared_ptr<tls_credentials> tls;
  /// How long an accepted connection may take to complete its handshake: TLS, and, when
  /// untrusted_frame_limit is set, its owner's until trust().
  std::chrono::milliseconds handshake_timeout{10'000};
  /// When non-zero, accepted connections start untrusted: until their owner calls trust(), a
  /// frame's body may hold at most this many bytes (a larger header closes the connection before
  /// anything is allocated for it), a connection not trusted within handshake_timeout is closed,
  /// and at most max_untrusted of them (max_untrusted_per_host from one address) are open at
  /// once: further ones are closed as they are accepted. Zero: accepted connections are trusted
  /// at once.
  std::uint64_t untrusted_frame_limit = 0;
  // Room for a machine's worth of worker processes joining at once (options::local_processes).
  std::size_t max_untrusted = 1024;
  std::size_t max_untrusted_per_host = 256;
};

/// The untrusted_frame_limit the head and the workers' data ports use: a handshake frame (a
/// hello with its name, labels and resources) fits many times over.
inline constexpr std::uint64_t handshake_frame_limit = 64 * 1024;

/// Called for each accepted connection, on the transport's thread; it must call set_handler.
using accept_fn = std::function<void(std::shared_ptr<connection>)>;

class transport {
 public:
  virtual ~transport() = default;
  /// Starts accepting at `address` ("host:port", port 0 for any) and returns the bound address.
  /// Throws dx::error naming the address when it cannot.
  virtual std::string listen(const std::string& address, accept_fn on_accept) = 0;
  /// Opens a connection; blocks up to the connect timeout. Throws dx::error naming the address.
  virtual std::shared_ptr<connection> connect(const std::string& address, std::shared_ptr<handler> h) = 0;
  /// Runs `f` on the transport's thread.
  virtual void post(std::function<void()> f) = 0;
  virtual void stop() = 0;
};

std::unique_ptr<transport> make_tcp_transport(const config& cfg);

/// Marks a descriptor close-on-exec: a process started by this one (a worker, a command) must not
/// hold this process's sockets, or its ports stay bound after this process dies. Asio opens
/// sockets without the flag; every socket dx opens gets it.
void set_close_on_exec(int fd) noexcept;

/// The credentials a TCP transport's config::tls holds: the files of `opts` read now (a bad file
/// throws dx::error naming it) and again whenever they change. Null when `opts` asks for no TLS.
std::shared_ptr<tls_credentials> make_tls_credentials(const tls_options& opts);
std::unique_ptr<transport> make_in_process_transport(const config& cfg);

/// The MPI transport (transport/mpi.hpp: addresses "mpi:RANK:PORT" between the ranks of
/// MPI_COMM_WORLD); initialises MPI on first use. Throws dx::error when dx was built without MPI
/// or MPI cannot start.
std::unique_ptr<transport> make_mpi_transport(const config& cfg);

/// The transport of `kind`: one of the above.
std::unique_ptr<transport> make_transport(transport_kind kind, const config& cfg);

}  // namespace dx::transport
