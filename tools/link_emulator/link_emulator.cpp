// The link emulator's proxy: one Asio io_context on one thread, an acceptor, and per connection
// two directions that each hold the bytes they read until the profile says they have arrived.
// Every member of impl and of a session is touched on the io thread only; the public methods post
// their work there and wait, and the two counters are atomics for the readers outside it.
#include "link_emulator.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <deque>
#include <future>
#include <random>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace dx::link {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;
using boost::system::error_code;

// Past this many held bytes a direction stops reading, so a long delay or a stall holds a
// bounded amount of memory and the sender feels back-pressure as it would on a real link.
constexpr std::size_t max_held_bytes = std::size_t{16} << 20;
constexpr std::size_t max_chunk_bytes = std::size_t{64} << 10;
// How long a closing connection waits for its peers to close after the last byte has crossed.
constexpr std::chrono::seconds linger_limit{2};

struct host_port {
  std::string host, port;
};

host_port split_host_port(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::invalid_argument(fmt::format("'{}' is not HOST:PORT", text));
  std::string host = text.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  unsigned number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (host.empty() || ec != std::errc{} || end != port.data() + port.size() || number > 65535)
    throw std::invalid_argument(fmt::format("'{}' is not HOST:PORT", text));
  return {std::move(host), port};
}

void check(const profile& p, const char* which) {
  if (p.delay.count() < 0 || p.jitter.count() < 0 || !(p.bytes_per_second >= 0) || std::isinf(p.bytes_per_second))
    throw std::invalid_argument(
        fmt::format("link profile {}: delay and jitter must not be negative, bytes_per_second must be finite and "
                    "not negative",
                    which));
}

// A capped link reads in chunks of about 5 ms on the wire: one 64 KiB chunk would arrive as a
// burst long after its first byte could have.
std::size_t read_size(const profile& p) {
  if (p.bytes_per_second <= 0) return max_chunk_bytes;
  return static_cast<std::size_t>(std::clamp(p.bytes_per_second / 200, 1024.0, double(max_chunk_bytes)));
}

struct chunk {
  std::vector<char> bytes;
  clock::time_point due;  // when its last byte has crossed the link
};

// The bytes one side sends to the other.
struct direction {
  direction(tcp::socket& from_socket, tcp::socket& to_socket, bool is_toward_target)
      : from(from_socket), to(to_socket), toward_target(is_toward_target), timer(from_socket.get_executor()) {}

  tcp::socket& from;
  tcp::socket& to;
  const bool toward_target;
  asio::steady_timer timer;
  std::deque<chunk> held;
  std::size_t held_bytes = 0;
  std::vector<char> read_buffer;
  bool reading = false;
  bool sending = false;  // a write in flight, or the timer waiting for the first held chunk
  bool ended = false;    // its sender closed or failed
  clock::time_point link_free_at{};
  clock::time_point last_due{};
};

class session;

}  // namespace

namespace detail {

// Everything the io thread owns.
struct proxy {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  tcp::acceptor acceptor{io};
  std::vector<tcp::endpoint> target;
  std::string listen_address;
  profile to_target, from_target;
  bool stalled = false;
  bool stopping = false;
  std::mt19937_64 random{std::random_device{}()};
  std::unordered_set<std::shared_ptr<session>> sessions;
  // Relaxed: counters read for tests and reports; nothing else is published through them.
  std::atomic<std::size_t> open_connections{0};
  std::atomic<std::uint64_t> forwarded{0};
  std::thread thread;

  void accept_next();
  void close_all();

  // Runs `work` on the io thread and waits for it, so that a caller's next step (a send, a
  // measurement) sees the change applied.
  template <class Work>
  void run_on_io(Work work_on_io) {
    std::promise<void> done;
    auto finished = done.get_future();
    asio::post(io, [&] {
      try {
        work_on_io();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
    finished.get();
  }
};

}  // namespace detail

namespace {

class session : public std::enable_shared_from_this<session> {
 public:
  session(detail::proxy& owner, tcp::socket client)
      : owner_(owner),
        client_(std::move(client)),
        server_(client_.get_executor()),
        up_(client_, server_, true),
        down_(server_, client_, false),
        linger_timer_(client_.get_executor()) {}

  void start() {
    asio::async_connect(server_, owner_.target, [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
      if (self->closed_) return;
      if (ec) return self->close();
      // The emulator adds the delays; Nagle's algorithm would add its own on small writes.
      error_code ignored;
      self->client_.set_option(tcp::no_delay(true), ignored);
      self->server_.set_option(tcp::no_delay(true), ignored);
      self->connected_ = true;
      self->resume();
    });
  }

  void resume() {
    if (!connected_) return;
    for (direction* d : {&up_, &down_}) {
      read(*d);
      send(*d);
    }
  }

  void close() {
    if (closed_) return;
    closed_ = true;
    error_code ignored;
    client_.close(ignored);
    server_.close(ignored);
    up_.timer.cancel();
    down_.timer.cancel();
    linger_timer_.cancel();
    owner_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    owner_.sessions.erase(shared_from_this());
  }

 private:
  const profile& profile_of(const direction& d) const {
    return d.toward_target ? owner_.to_target : owner_.from_target;
  }

  void read(direction& d) {
    if (closed_ || d.reading || d.ended) return;
    if (!lingering_ && (draining_ || owner_.stalled || d.held_bytes >= max_held_bytes)) return;
    d.reading = true;
    d.read_buffer.resize(read_size(profile_of(d)));
    d.from.async_read_some(asio::buffer(d.read_buffer), [self = shared_from_this(), &d](error_code ec, std::size_t n) {
      d.reading = false;
      if (self->closed_) return;
      if (self->lingering_) {
        // Bytes sent after the other side was shut go nowhere; reading them is what keeps the
        // close from turning into a reset.
        if (ec) d.ended = true;
        if (self->up_.ended && self->down_.ended) return self->close();
        return self->read(d);
      }
      if (n > 0) self->hold(d, n, clock::now());
      // EOF or an error: what is held still crosses, then both sides close.
      if (ec) {
        d.ended = true;
        self->draining_ = true;
      }
      self->read(d);
      self->send(d);
      self->close_if_drained();
    });
  }

  // The chunk is on the wire once the link is free and for as long as the bandwidth says, then
  // travels for the delay and a jitter sample; it never arrives before the chunk ahead of it.
  void hold(direction& d, std::size_t n, clock::time_point read_at) {
    const profile& p = profile_of(d);
    const auto start = std::max(read_at, d.link_free_at);
    clock::duration on_wire{};
    if (p.bytes_per_second > 0)
      on_wire = std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(n / p.bytes_per_second));
    d.link_free_at = start + on_wire;
    std::chrono::microseconds jitter{0};
    if (p.jitter.count() > 0)
      jitter = std::chrono::microseconds(
          std::uniform_int_distribution<std::chrono::microseconds::rep>(0, p.jitter.count())(owner_.random));
    const auto due = std::max(d.link_free_at + p.delay + jitter, d.last_due);
    d.last_due = due;
    d.held.push_back({std::vector<char>(d.read_buffer.begin(), d.read_buffer.begin() + std::ptrdiff_t(n)), due});
    d.held_bytes += n;
  }

  void send(direction& d) {
    if (closed_ || d.sending || owner_.stalled || d.held.empty()) return;
    d.sending = true;
    chunk& next = d.held.front();
    if (next.due > clock::now()) {
      d.timer.expires_at(next.due);
      d.timer.async_wait([self = shared_from_this(), &d](error_code) {
        d.sending = false;
        self->send(d);
      });
      return;
    }
    asio::async_write(d.to, asio::buffer(next.bytes), [self = shared_from_this(), &d](error_code ec, std::size_t n) {
      d.sending = false;
      // Counted even when a cut came first: the peer may already have read these bytes.
      self->owner_.forwarded.fetch_add(n, std::memory_order_relaxed);
      if (self->closed_) return;
      if (ec) return self->close();
      d.held_bytes -= d.held.front().bytes.size();
      d.held.pop_front();
      self->read(d);
      self->send(d);
      self->close_if_drained();
    });
  }

  void close_if_drained() {
    if (draining_ && !lingering_ && up_.held.empty() && down_.held.empty()) linger();
  }

  // Closing a socket that has unread bytes sends a reset, which can destroy the bytes just
  // delivered before the peer reads them. So both sides get a FIN after their last byte, and the
  // sockets close once both peers have closed too (or after linger_limit).
  void linger() {
    lingering_ = true;
    error_code ignored;
    client_.shutdown(tcp::socket::shutdown_send, ignored);
    server_.shutdown(tcp::socket::shutdown_send, ignored);
    if (up_.ended && down_.ended) return close();
    linger_timer_.expires_after(linger_limit);
    linger_timer_.async_wait([self = shared_from_this()](error_code) { self->close(); });
    read(up_);
    read(down_);
  }

  detail::proxy& owner_;
  tcp::socket client_;
  tcp::socket server_;
  direction up_;    // client to target
  direction down_;  // target to client
  asio::steady_timer linger_timer_;
  bool connected_ = false;
  bool draining_ = false;   // a sender has closed: no more reads, held bytes still cross
  bool lingering_ = false;  // held bytes have crossed and FINs are sent: waiting for the peers to close
  bool closed_ = false;
};

}  // namespace

void detail::proxy::accept_next() {
  acceptor.async_accept([this](error_code ec, tcp::socket socket) {
    if (stopping || ec == asio::error::operation_aborted) return;
    if (!ec) {
      auto s = std::make_shared<session>(*this, std::move(socket));
      sessions.insert(s);
      open_connections.fetch_add(1, std::memory_order_relaxed);
      s->start();
    }
    accept_next();
  });
}

void detail::proxy::close_all() {
  // close() erases from the set: iterate over a copy.
  const std::vector<std::shared_ptr<session>> open(sessions.begin(), sessions.end());
  for (const auto& s : open) s->close();
}

struct emulator::impl : detail::proxy {};

emulator::emulator(std::string target, profile to_target, profile from_target, std::string listen)
    : impl_(std::make_unique<impl>()) {
  check(to_target, "to_target");
  check(from_target, "from_target");
  impl_->to_target = to_target;
  impl_->from_target = from_target;
  const host_port target_at = split_host_port(target);
  const host_port listen_at = split_host_port(listen);

  tcp::resolver resolver(impl_->io);
  for (const auto& entry : resolver.resolve(target_at.host, target_at.port, tcp::resolver::numeric_service))
    impl_->target.push_back(entry.endpoint());
  const tcp::endpoint local =
      resolver.resolve(listen_at.host, listen_at.port, tcp::resolver::passive | tcp::resolver::numeric_service)
          .begin()
          ->endpoint();
  impl_->acceptor.open(local.protocol());
  impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  impl_->acceptor.bind(local);
  impl_->acceptor.listen();
  const tcp::endpoint bound = impl_->acceptor.local_endpoint();
  impl_->listen_address = bound.address().is_v6() ? fmt::format("[{}]:{}", bound.address().to_string(), bound.port())
                                                  : fmt::format("{}:{}", bound.address().to_string(), bound.port());

  impl_->accept_next();
  impl_->thread = std::thread([&io = impl_->io] { io.run(); });
}

emulator::~emulator() {
  asio::post(impl_->io, [&state = *impl_] {
    state.stopping = true;
    error_code ignored;
    state.acceptor.close(ignored);
    state.close_all();
  });
  // With the acceptor and every socket closed and the timers cancelled, run() returns once their
  // handlers have run.
  impl_->work.reset();
  impl_->thread.join();
}

std::string emulator::address() const { return impl_->listen_address; }

void emulator::set_profiles(profile to_target, profile from_target) {
  check(to_target, "to_target");
  check(from_target, "from_target");
  impl_->run_on_io([&] {
    impl_->to_target = to_target;
    impl_->from_target = from_target;
  });
}

void emulator::stall(bool on) {
  impl_->run_on_io([&] {
    impl_->stalled = on;
    if (on) return;
    const std::vector<std::shared_ptr<session>> open(impl_->sessions.begin(), impl_->sessions.end());
    for (const auto& s : open) s->resume();
  });
}

void emulator::cut() {
  impl_->run_on_io([&] { impl_->close_all(); });
}

std::size_t emulator::connections() const { return impl_->open_connections.load(std::memory_order_relaxed); }

std::uint64_t emulator::bytes_forwarded() const { return impl_->forwarded.load(std::memory_order_relaxed); }

}  // namespace dx::link
