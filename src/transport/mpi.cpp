// The MPI transport: dx's framed connections carried as MPI messages between the ranks of
// MPI_COMM_WORLD (Open MPI's shared memory between ranks of one node, its fastest network between
// nodes), instead of TCP sockets.
//
// One progress thread per process makes every MPI call (MPI_Isend, MPI_Improbe, MPI_Mrecv,
// MPI_Imrecv, MPI_Testsome), for every MPI transport of the process; connection::send() only
// queues. Each transport has a delivery thread of its own on which its handlers' callbacks run,
// so a slow callback never stalls MPI progress for the others.
//
// Messages, on MPI_COMM_WORLD:
//   tag mpi_envelope_tag: a 32-byte envelope, little-endian
//       u32 magic "DXM1" | u8 kind | 3 zero bytes | u64 to | u64 from | u64 extra
//     `to` is the receiver's connection id (0 in a connect), `from` the sender's; `extra` is the
//     port for a connect and, for a frame, how many body bytes follow as chunks. A frame whose
//     body is at most 64 KiB travels whole after its envelope (frame header, archive, payload);
//     a larger one has only its 24-byte header there, and its archive, then its payload, follow
//     as chunks. refuse and close carry a reason (at most 1 KiB).
//   tag mpi_chunk_tag: the chunks, at most 512 MiB each (MPI counts are int), sent straight from
//     the frame's buffers and received straight into the new frame's.
// MPI keeps the order of messages of one sender with one tag, so the chunks of a frame are the
// next chunks of their rank; envelopes that arrive meanwhile wait for them.
//
// Hostile input: an envelope's size is checked before it is received (an oversized message is
// dropped without allocating for it), every frame header with wire::check_header against the
// receiving transport's limit before its body is allocated, every chunk's size against what the
// envelope announced. A message that cannot be read is dropped with a warning naming its rank;
// one that names a live connection closes that connection with the reason, as a bad frame closes
// a TCP connection. Announced chunks that do not come within 30 s are given up.
//
// A rank that dies: MPI_COMM_WORLD's error handler is MPI_ERRORS_RETURN (when dx initialises
// MPI), so a failed send closes that rank's connections with MPI's reason and the head handles
// its workers as lost. Whether the other ranks live on at all is the launcher's choice: Open MPI's
// mpirun ends the whole job when one rank dies (README, "Distributed", under MPI).
#include "transport/mpi.hpp"

#include "common/log.hpp"
#include "transport/transport.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace dx::transport {

bool mpi_built_in() noexcept { return true; }

std::optional<mpi_address> parse_mpi_address(const std::string& address) {
  if (!address.starts_with("mpi:")) return std::nullopt;
  const std::string rest = address.substr(4);
  auto number = [](std::string_view s, long max) -> std::optional<long> {
    long v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v < 0 || v > max) return std::nullopt;
    return v;
  };
  mpi_address a;
  const auto colon = rest.find(':');
  const auto port =
      number(colon == std::string::npos ? std::string_view(rest) : std::string_view(rest).substr(colon + 1), 65535);
  if (!port) return std::nullopt;
  a.port = static_cast<std::uint16_t>(*port);
  if (colon != std::string::npos) {
    const auto rank = number(std::string_view(rest).substr(0, colon), 1L << 30);
    if (!rank) return std::nullopt;
    a.rank = static_cast<int>(*rank);
  }
  return a;
}

namespace {

constexpr std::uint32_t envelope_magic = 0x314d5844;  // "DXM1" read as little-endian bytes
constexpr std::size_t envelope_size = 32;
constexpr std::size_t inline_body_limit = std::size_t{64} << 10;
constexpr std::size_t chunk_limit = std::size_t{512} << 20;
constexpr std::size_t max_reason = 1024;
constexpr std::size_t max_envelope_message = envelope_size + wire::header_size + inline_body_limit;
constexpr auto chunk_patience = std::chrono::seconds(30);
// After its last piece of work the progress thread polls, yielding, this long before it sleeps:
// a round trip's answer usually comes within it, and waking a sleeping thread costs more.
constexpr auto spin_window = std::chrono::milliseconds(2);
constexpr auto longest_sleep = std::chrono::microseconds(1000);
constexpr auto delivery_spin = std::chrono::microseconds(200);

using clock = std::chrono::steady_clock;

enum class msg_kind : std::uint8_t { connect = 1, accept = 2, refuse = 3, frame = 4, close = 5 };

struct envelope {
  msg_kind kind{};
  std::uint64_t to = 0;
  std::uint64_t from = 0;
  std::uint64_t extra = 0;
};

void put_le(char* out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint64_t get_le(const char* in, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

std::string encode_envelope(const envelope& e, std::size_t reserve = 0) {
  std::string out(envelope_size, '\0');
  out.reserve(envelope_size + reserve);
  put_le(out.data(), envelope_magic, 4);
  out[4] = static_cast<char>(e.kind);
  put_le(out.data() + 8, e.to, 8);
  put_le(out.data() + 16, e.from, 8);
  put_le(out.data() + 24, e.extra, 8);
  return out;
}

/// The envelope at the start of `bytes`, or why there is none.
std::optional<std::string> decode_envelope(std::string_view bytes, envelope& out) {
  if (bytes.size() < envelope_size)
    return fmt::format("{} bytes, shorter than the {}-byte envelope", bytes.size(), envelope_size);
  if (get_le(bytes.data(), 4) != envelope_magic)
    return fmt::format("no dx envelope (magic {:#010x}, expected {:#010x})", get_le(bytes.data(), 4), envelope_magic);
  const auto kind = static_cast<unsigned char>(bytes[4]);
  if (kind < 1 || kind > 5) return fmt::format("unknown message kind {}", kind);
  if (bytes[5] || bytes[6] || bytes[7]) return "nonzero reserved bytes in the envelope";
  out.kind = static_cast<msg_kind>(kind);
  out.to = get_le(bytes.data() + 8, 8);
  out.from = get_le(bytes.data() + 16, 8);
  out.extra = get_le(bytes.data() + 24, 8);
  return std::nullopt;
}

/// A peer's reason as this side can log it: at most max_reason bytes, printable ASCII.
std::string printable(std::string_view s) {
  std::string out(s.substr(0, max_reason));
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return out;
}

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, static_cast<std::size_t>(length));
}

/// The thread on which one transport's callbacks run, and the queue that feeds it. Shared by the
/// transport and its connections, so that work queued after the transport stopped is dropped.
class delivery {
 public:
  delivery() : thread_([this] { run(); }) {}

  /// Queues `f`; dropped once the thread ended.
  void post(std::function<void()> f) {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    queue_.push_back(std::move(f));
    cv_.notify_one();
  }
  /// Lets the queue drain and the thread end; returns when it did (at once on the thread itself).
  void finish() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else if (thread_.joinable()) {
      thread_.join();
    }
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      // The answer to what a callback sent often comes within a round trip: polling a moment
      // before sleeping spares the progress thread a wake-up on the way in.
      for (auto until = clock::now() + delivery_spin; queue_.empty() && !stopping_ && clock::now() < until;) {
        lock.unlock();
        sched_yield();
        lock.lock();
      }
      cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) break;
      auto f = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      f();
      lock.lock();
    }
    finished_ = true;
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  bool finished_ = false;
  std::thread thread_;
};

class mpi_connection;
class mpi_transport;

/// One process's MPI: initialisation, the progress thread, and every connection's MPI state.
class engine {
 public:
  static engine& get();

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }

  /// Runs `op` on the progress thread, after the operations queued before it.
  void enqueue(std::function<void()> op) {
    std::lock_guard lock(mutex_);
    ops_.push_back(std::move(op));
    if (sleeping_) cv_.notify_one();
  }
  /// Runs `op` on the progress thread and waits for it.
  void run_sync(std::function<void()> op) {
    std::mutex m;
    std::condition_variable done_cv;
    bool done = false;
    enqueue([&] {
      op();
      std::lock_guard lock(m);
      done = true;
      done_cv.notify_one();
    });
    std::unique_lock lock(m);
    done_cv.wait(lock, [&] { return done; });
  }

  /// A transport starts or stops using the engine; the progress thread runs while one does
  /// (and until what they sent has left).
  void attach();
  void detach();

  std::uint64_t new_id() noexcept { return next_id_.fetch_add(1, std::memory_order_relaxed); }

  struct listener {
    std::shared_ptr<delivery> where;
    accept_fn on_accept;
    std::uint64_t max_frame = 0;
    std::uint64_t max_value = 0;
    const void* owner = nullptr;
  };
  std::uint16_t listen(std::uint16_t port, listener l);
  void unlisten(const void* owner);

  // ---- progress thread only ----
  void open(const std::shared_ptr<mpi_connection>& c);
  void send_connect(const std::shared_ptr<mpi_connection>& c, std::uint16_t port);
  void post_frame(const std::shared_ptr<mpi_connection>& c, wire::frame&& f);
  void close(const std::shared_ptr<mpi_connection>& c, const std::string& reason, bool tell_peer);
  void close_all_of(const void* owner, const std::string& reason);

 private:
  engine();
  void progress();
  bool do_ops();
  bool poll_sends();
  bool poll_envelopes();
  bool poll_chunks();
  void handle_envelope(int source, std::string&& bytes, clock::time_point arrived);
  void begin_chunked(int source, const envelope& e, std::string_view header_bytes,
                     const std::shared_ptr<mpi_connection>& c, clock::time_point arrived);
  struct incoming;
  void take_chunk(int source, incoming& in, MPI_Message& m, int count);
  void finish_chunked(int source);
  void drain_backlog(int source);
  void discard_message(MPI_Message& m, int count);
  void send_message(int rank, int tag, const void* data, std::size_t bytes, std::shared_ptr<const void> keep);
  void send_control(int rank, const envelope& e, std::string_view text = {});
  void rank_failed(int rank, const std::string& why);
  std::shared_ptr<mpi_connection> find(std::uint64_t id, int rank, std::uint64_t from) const;
  static void finalize_at_exit();

  int rank_ = 0;
  int size_ = 1;
  bool owns_mpi_ = false;
  std::atomic<std::uint64_t> next_id_{1};

  std::mutex mutex_;  // ops_, sleeping_, users_, running_, listeners_, next_port_
  std::condition_variable cv_;
  std::deque<std::function<void()>> ops_;
  bool sleeping_ = false;
  int users_ = 0;
  bool running_ = false;
  bool exiting_ = false;
  std::thread thread_;
  std::map<std::uint16_t, listener> listeners_;
  std::uint16_t next_port_ = mpi_head_port + 1;

  // Progress thread only.
  std::unordered_map<std::uint64_t, std::shared_ptr<mpi_connection>> conns_;
  struct inflight_send {
    int rank = 0;
    std::shared_ptr<const void> keep;
  };
  std::vector<MPI_Request> send_requests_;
  std::vector<inflight_send> sends_;
  struct incoming {                        // a frame whose body arrives as chunks
    std::shared_ptr<mpi_connection> conn;  // null: the chunks are dropped
    wire::frame frame;
    std::shared_ptr<std::string> payload;
    std::uint64_t total = 0;   // body bytes announced
    std::uint64_t posted = 0;  // body bytes whose receive has been started
    std::vector<MPI_Request> receives;
    clock::time_point arrived, last_chunk;
  };
  struct source_state {
    std::optional<incoming> in;
    clock::time_point stray_since{};                                // when a chunk no frame announced was first seen
    std::deque<std::pair<std::string, clock::time_point>> backlog;  // envelopes waiting for `in`
  };
  std::unordered_map<int, source_state> sources_;
  std::vector<std::string> dead_;  // per rank: why it cannot be reached, or empty
};

class mpi_connection final : public connection, public std::enable_shared_from_this<mpi_connection> {
 public:
  mpi_connection(std::shared_ptr<delivery> where, std::uint64_t id, int peer_rank, std::uint64_t max_frame,
                 std::uint64_t max_value, const void* owner)
      : where_(std::move(where)),
        id_(id),
        peer_rank_(peer_rank),
        max_frame_(max_frame),
        max_value_(std::max(max_value, max_frame)),
        owner_(owner),
        remote_(fmt::format("mpi:{}", peer_rank)) {}

  void send(wire::frame f) override {
    if (closed_.load(std::memory_order_acquire)) return;
    if (f.archive.size() > UINT32_MAX) {
      close(fmt::format("cannot send a frame archive of {} bytes (the limit is 4 GiB)", f.archive.size()));
      return;
    }
    count_sent(f);
    engine::get().enqueue(
        [self = shared_from_this(), fr = std::move(f)]() mutable { engine::get().post_frame(self, std::move(fr)); });
  }
  void close(const std::string& reason) override {
    if (closed_.exchange(true, std::memory_order_acq_rel)) return;
    engine::get().enqueue([self = shared_from_this(), reason] { engine::get().close(self, reason, true); });
  }
  std::string remote_address() const override { return remote_; }
  void set_handler(std::shared_ptr<handler> h) override {
    std::vector<wire::frame> held;
    std::optional<std::string> closed;
    {
      std::lock_guard lock(mutex_);
      handler_ = h;
      held.swap(held_);
      closed.swap(held_close_);
    }
    if (!h) return;
    for (auto& f : held) {
      const std::uint64_t body = f.body_size();
      h->on_frame(*this, std::move(f));
      count_received(body);  // after the handler: see connection::bytes_received
    }
    if (closed) deliver_closed(*closed);
  }

  // Queued by the progress thread onto the owner's delivery thread.
  void post_frame(wire::frame&& f) {
    where_->post([self = shared_from_this(), fr = std::move(f)]() mutable { self->deliver(std::move(fr)); });
  }
  void post_closed(std::string reason) {
    closed_.store(true, std::memory_order_release);
    where_->post([self = shared_from_this(), r = std::move(reason)] { self->deliver_closed(r); });
  }
  void receiving(std::uint64_t bytes) noexcept { set_receiving(bytes); }

  std::uint64_t id() const noexcept { return id_; }
  int peer_rank() const noexcept { return peer_rank_; }
  /// The largest body the progress thread takes in: a value (on a socket a larger frame would
  /// come as a stream of chunks). Whether a body over the frame limit may come yet (the peer's
  /// handshake passed) is known on the delivery thread only, in order with the frames: deliver()
  /// checks it there. The ranks of a job are started together by its launcher, so a rank that
  /// announces a large body before its handshake is a broken one, not a stranger on a network.
  std::uint64_t max_body() const noexcept { return max_value_; }
  const void* owner() const noexcept { return owner_; }

  // Progress thread only.
  std::uint64_t peer_id = 0;  // 0 until the peer accepted
  bool open = false;          // in the engine's table

  // A connect() waiting for the peer's answer.
  std::mutex connect_mutex;
  std::condition_variable connect_cv;
  bool answered = false;
  std::string refusal;  // the peer's reason, when it refused

 private:
  void deliver(wire::frame&& f) {
    const std::uint64_t body = f.body_size();
    count_arrived(wire::header_size + body);
    if (body > max_frame_ && !trusted()) {
      const std::string problem = fmt::format(
          "a frame of {} bytes before the handshake completed (the limit until then is a frame of {} bytes)", body,
          max_frame_);
      detail::log(detail::log_level::warn, "MPI transport: closing the connection from rank {}: {}", peer_rank_,
                  problem);
      close(problem);
      return;
    }
    std::shared_ptr<handler> h;
    {
      std::lock_guard lock(mutex_);
      if (delivered_close_) return;
      if (!handler_) {
        held_.push_back(std::move(f));
        return;
      }
      h = handler_;
    }
    h->on_frame(*this, std::move(f));
    count_received(body);  // after the handler: see connection::bytes_received
  }
  void deliver_closed(const std::string& reason) {
    std::shared_ptr<handler> h;
    {
      std::lock_guard lock(mutex_);
      if (delivered_close_) return;
      if (!handler_) {
        held_close_ = reason;
        return;
      }
      delivered_close_ = true;
      h = std::move(handler_);
    }
    h->on_closed(*this, reason);
  }

  std::shared_ptr<delivery> where_;
  std::uint64_t id_;
  int peer_rank_;
  std::uint64_t max_frame_;
  std::uint64_t max_value_;
  const void* owner_;
  std::string remote_;
  std::atomic<bool> closed_{false};
  std::mutex mutex_;
  std::shared_ptr<handler> handler_;
  std::vector<wire::frame> held_;  // frames before set_handler
  std::optional<std::string> held_close_;
  bool delivered_close_ = false;
};

// ---- the engine ---------------------------------------------------------------------------------

engine& engine::get() {
  // Made once; a failure is reported to every caller, as MPI cannot be initialised twice.
  static std::string failure;
  static engine* instance = []() -> engine* {
    try {
      return new engine();  // never destroyed: MPI_Finalize runs at exit (finalize_at_exit)
    } catch (const std::exception& e) {
      failure = e.what();
      return nullptr;
    }
  }();
  if (!instance) detail::throw_error(detail::error_kind::generic, failure);
  return *instance;
}

engine::engine() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    // Any thread may call MPI afterwards (the progress thread does); MULTIPLE also lets the
    // application make MPI calls of its own while dx runs.
    const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS)
      throw std::runtime_error(fmt::format("MPI transport: MPI_Init_thread failed: {}", mpi_error_text(rc)));
    owns_mpi_ = true;
    // A failed call returns its error instead of ending the job, so that dx names what failed.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    std::atexit(finalize_at_exit);
  } else {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) throw std::runtime_error("MPI transport: MPI was finalised already");
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED)
    throw std::runtime_error(
        fmt::format("MPI transport: MPI gives thread level {} but dx's progress thread needs MPI_THREAD_SERIALIZED or "
                    "MPI_THREAD_MULTIPLE (initialise MPI with MPI_Init_thread, or let dx initialise it)",
                    provided));
  if (!owns_mpi_ && provided < MPI_THREAD_MULTIPLE)
    detail::log(detail::log_level::warn,
                "MPI transport: MPI was initialised with MPI_THREAD_SERIALIZED: the application must not make MPI "
                "calls while a dx cluster or worker runs");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  dead_.resize(static_cast<std::size_t>(size_));
}

void engine::finalize_at_exit() {
  engine& e = get();
  std::thread t;
  {
    std::lock_guard lock(e.mutex_);
    e.exiting_ = true;
    e.cv_.notify_one();
    t = std::move(e.thread_);
  }
  if (t.joinable()) t.join();
  MPI_Finalize();
}

void engine::attach() {
  std::thread old;
  std::unique_lock lock(mutex_);
  ++users_;
  if (running_) return;
  old = std::move(thread_);
  running_ = true;
  lock.unlock();
  if (old.joinable()) old.join();  // the previous progress thread ended; MPI calls stay serialised
  lock.lock();
  thread_ = std::thread([this] { progress(); });
}

void engine::detach() {
  std::lock_guard lock(mutex_);
  --users_;
  cv_.notify_one();
}

std::uint16_t engine::listen(std::uint16_t port, listener l) {
  std::lock_guard lock(mutex_);
  if (port == 0) {
    while (listeners_.count(next_port_) && next_port_ < 65535) ++next_port_;
    if (listeners_.count(next_port_))
      detail::throw_error(detail::error_kind::generic, "MPI transport: every port of this rank is taken");
    port = next_port_++;
  } else if (listeners_.count(port)) {
    detail::throw_error(detail::error_kind::generic,
                        fmt::format("cannot listen at {}: the port is taken", mpi_address_string(rank_, port)));
  }
  listeners_.emplace(port, std::move(l));
  return port;
}

void engine::unlisten(const void* owner) {
  std::lock_guard lock(mutex_);
  std::erase_if(listeners_, [&](const auto& kv) { return kv.second.owner == owner; });
}

void engine::progress() {
  auto last_busy = clock::now();
  auto sleep_for = std::chrono::microseconds(50);
  for (;;) {
    bool busy = do_ops();
    busy = poll_sends() || busy;
    busy = poll_envelopes() || busy;
    busy = poll_chunks() || busy;
    const auto now = clock::now();
    if (busy) {
      last_busy = now;
      sleep_for = std::chrono::microseconds(50);
      continue;
    }
    std::unique_lock lock(mutex_);
    if (!ops_.empty()) continue;
    const bool nothing_in_flight = sends_.empty();
    if (exiting_ || users_ == 0) {
      // What was sent leaves first (a shutdown message to workers); a peer that never takes it
      // is given 10 s.
      static thread_local clock::time_point give_up{};
      if (give_up == clock::time_point{}) give_up = now + std::chrono::seconds(10);
      if (nothing_in_flight || now > give_up) {
        give_up = {};
        running_ = false;
        return;
      }
    }
    // MPI moves a large message only while its progress engine is called: while one is being
    // received, the thread polls on. (A sender polls less: with Open MPI's shared memory the
    // receiver copies the whole message in one call, and a sender polling then only takes CPU
    // time from it.)
    // A receive that has not completed within chunk_patience (its sender died, under a launcher
    // that lets the others go on) stops counting: its connection's loss is the heartbeats' to find.
    bool transferring = false;
    for (const auto& [source, st] : sources_)
      transferring = transferring || (st.in && !st.in->receives.empty() && now - st.in->last_chunk < chunk_patience);
    if (transferring || now - last_busy < spin_window) {
      lock.unlock();
      sched_yield();
      continue;
    }
    sleeping_ = true;
    cv_.wait_for(lock, sleep_for);
    sleeping_ = false;
    sleep_for = std::min(sleep_for * 2, longest_sleep);
  }
}

bool engine::do_ops() {
  std::deque<std::function<void()>> ops;
  {
    std::lock_guard lock(mutex_);
    ops.swap(ops_);
  }
  for (auto& op : ops) op();
  return !ops.empty();
}

void engine::send_message(int rank, int tag, const void* data, std::size_t bytes, std::shared_ptr<const void> keep) {
  if (!dead_[static_cast<std::size_t>(rank)].empty()) return;
  MPI_Request r = MPI_REQUEST_NULL;
  const int rc = MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, rank, tag, MPI_COMM_WORLD, &r);
  if (rc != MPI_SUCCESS) {
    rank_failed(rank, fmt::format("MPI_Isend to rank {} failed: {}", rank, mpi_error_text(rc)));
    return;
  }
  send_requests_.push_back(r);
  sends_.push_back({rank, std::move(keep)});
}

void engine::send_control(int rank, const envelope& e, std::string_view text) {
  auto bytes = std::make_shared<std::string>(encode_envelope(e, text.size()));
  bytes->append(text.substr(0, max_reason));
  send_message(rank, mpi_envelope_tag, bytes->data(), bytes->size(), bytes);
}

bool engine::poll_sends() {
  if (send_requests_.empty()) return false;
  const int n = static_cast<int>(send_requests_.size());
  std::vector<int> done(static_cast<std::size_t>(n));
  std::vector<MPI_Status> statuses(static_cast<std::size_t>(n));
  int count = 0;
  const int rc = MPI_Testsome(n, send_requests_.data(), &count, done.data(), statuses.data());
  if (count == MPI_UNDEFINED || count == 0) return false;
  std::vector<int> failed;
  for (int i = 0; i < count; ++i) {
    const auto k = static_cast<std::size_t>(done[static_cast<std::size_t>(i)]);
    if (rc == MPI_ERR_IN_STATUS && statuses[static_cast<std::size_t>(i)].MPI_ERROR != MPI_SUCCESS)
      rank_failed(sends_[k].rank, fmt::format("a send to rank {} failed: {}", sends_[k].rank,
                                              mpi_error_text(statuses[static_cast<std::size_t>(i)].MPI_ERROR)));
    sends_[k].keep.reset();
  }
  // Completed requests are MPI_REQUEST_NULL now; keep the others in their order.
  std::size_t out = 0;
  for (std::size_t k = 0; k < send_requests_.size(); ++k) {
    if (send_requests_[k] == MPI_REQUEST_NULL) continue;
    send_requests_[out] = send_requests_[k];
    sends_[out] = std::move(sends_[k]);
    ++out;
  }
  send_requests_.resize(out);
  sends_.resize(out);
  return true;
}

void engine::discard_message(MPI_Message& m, int count) {
  // Received, not truncated (Open MPI writes a truncated message past the buffer on some paths):
  // into one scratch block, through a type of that block's size whose extent is 0, so that every
  // element lands on the same bytes and a message of any size needs no more memory.
  static constexpr int block = 64 << 10;
  static char scratch[block];
  static MPI_Datatype overlapping = [] {
    MPI_Datatype contiguous = MPI_DATATYPE_NULL, resized = MPI_DATATYPE_NULL;
    MPI_Type_contiguous(block, MPI_BYTE, &contiguous);
    MPI_Type_create_resized(contiguous, 0, 0, &resized);
    MPI_Type_commit(&resized);
    MPI_Type_free(&contiguous);
    return resized;
  }();
  const int blocks = count <= 0 ? 1 : count / block + 1;
  MPI_Mrecv(scratch, blocks, overlapping, &m, MPI_STATUS_IGNORE);
}

bool engine::poll_envelopes() {
  bool any = false;
  for (int round = 0; round < 64; ++round) {  // others' chunks and sends get their turn too
    int flag = 0;
    MPI_Message m = MPI_MESSAGE_NULL;
    MPI_Status st;
    const int rc = MPI_Improbe(MPI_ANY_SOURCE, mpi_envelope_tag, MPI_COMM_WORLD, &flag, &m, &st);
    if (rc != MPI_SUCCESS) {
      detail::log(detail::log_level::error, "MPI transport: MPI_Improbe failed: {}", mpi_error_text(rc));
      return any;
    }
    if (!flag) return any;
    any = true;
    const auto arrived = clock::now();
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    const int source = st.MPI_SOURCE;
    if (count == MPI_UNDEFINED || count < static_cast<int>(envelope_size) ||
        static_cast<std::size_t>(count) > max_envelope_message) {
      discard_message(m, count);
      detail::log(detail::log_level::warn,
                  "MPI transport: rank {} sent a message dx cannot read ({} bytes: an envelope has {} to {}); it is "
                  "dropped",
                  source, count, envelope_size, max_envelope_message);
      continue;
    }
    std::string bytes(static_cast<std::size_t>(count), '\0');
    if (const int r = MPI_Mrecv(bytes.data(), count, MPI_BYTE, &m, MPI_STATUS_IGNORE); r != MPI_SUCCESS) {
      detail::log(detail::log_level::warn, "MPI transport: receiving from rank {} failed: {}", source,
                  mpi_error_text(r));
      continue;
    }
    auto& s = sources_[source];
    if (s.in || !s.backlog.empty()) {
      s.backlog.emplace_back(std::move(bytes), arrived);
      continue;
    }
    handle_envelope(source, std::move(bytes), arrived);
  }
  return any;
}

std::shared_ptr<mpi_connection> engine::find(std::uint64_t id, int rank, std::uint64_t from) const {
  auto it = conns_.find(id);
  if (it == conns_.end()) return nullptr;
  const auto& c = it->second;
  if (c->peer_rank() != rank || c->peer_id != from) return nullptr;
  return c;
}

void engine::handle_envelope(int source, std::string&& bytes, clock::time_point arrived) {
  envelope e;
  if (auto why = decode_envelope(bytes, e)) {
    detail::log(detail::log_level::warn, "MPI transport: rank {} sent a message dx cannot read ({}); it is dropped",
                source, *why);
    return;
  }
  const std::string_view rest = std::string_view(bytes).substr(envelope_size);
  switch (e.kind) {
    case msg_kind::connect: {
      if (e.from == 0 || e.to != 0 || e.extra == 0 || e.extra > 65535 || !rest.empty()) {
        detail::log(detail::log_level::warn, "MPI transport: rank {} sent a malformed connect; it is dropped", source);
        return;
      }
      const auto port = static_cast<std::uint16_t>(e.extra);
      std::optional<listener> l;
      {
        std::lock_guard lock(mutex_);
        if (auto it = listeners_.find(port); it != listeners_.end()) l = it->second;
      }
      if (!l) {
        send_control(source, envelope{msg_kind::refuse, e.from, 0, 0},
                     fmt::format("nobody listens at {}", mpi_address_string(rank_, port)));
        return;
      }
      auto c = std::make_shared<mpi_connection>(l->where, new_id(), source, l->max_frame, l->max_value, l->owner);
      c->peer_id = e.from;
      open(c);
      send_control(source, envelope{msg_kind::accept, e.from, c->id(), 0});
      l->where->post([accept = l->on_accept, c] { accept(c); });
      return;
    }
    case msg_kind::accept:
    case msg_kind::refuse: {
      auto it = conns_.find(e.to);
      if (it == conns_.end() || it->second->peer_rank() != source || it->second->peer_id != 0 ||
          (e.kind == msg_kind::accept && e.from == 0)) {
        // An answer to a connect that gave up waiting: the peer's side goes too.
        if (e.kind == msg_kind::accept && e.from != 0)
          send_control(source, envelope{msg_kind::close, e.from, 0, 0}, "the connecting side gave up waiting");
        return;
      }
      auto c = it->second;
      std::lock_guard lock(c->connect_mutex);
      c->answered = true;
      if (e.kind == msg_kind::accept) {
        c->peer_id = e.from;
      } else {
        c->refusal = rest.empty() ? std::string("refused") : printable(rest);
        c->open = false;
        conns_.erase(it);
      }
      c->connect_cv.notify_all();
      return;
    }
    case msg_kind::close: {
      if (auto c = find(e.to, source, e.from))
        close(c, fmt::format("closed by rank {}: {}", source, rest.empty() ? "no reason given" : printable(rest)),
              false);
      return;
    }
    case msg_kind::frame: {
      auto c = find(e.to, source, e.from);
      if (!c && e.to >= next_id_.load(std::memory_order_relaxed))
        detail::log(detail::log_level::warn,
                    "MPI transport: rank {} sent a frame for connection {}, which rank {} never opened; it is dropped",
                    source, e.to, rank_);
      if (e.extra == 0) {
        wire::frame f;
        const auto problem = wire::parse_frame(rest, c ? c->max_body() : std::uint64_t{0}, f);
        if (!c) return;  // closed here meanwhile
        if (problem) {
          detail::log(detail::log_level::warn, "MPI transport: closing the connection from rank {}: {}", source,
                      *problem);
          close(c, *problem, true);
          return;
        }
        c->post_frame(std::move(f));
        return;
      }
      if (rest.size() != wire::header_size) {
        detail::log(detail::log_level::warn,
                    "MPI transport: rank {} announced {} bytes of chunks after a frame envelope of {} bytes (a header "
                    "alone has {}); the chunks are dropped",
                    source, e.extra, bytes.size(), envelope_size + wire::header_size);
        if (c) close(c, "a malformed frame envelope", true);
        begin_chunked(source, e, {}, nullptr, arrived);
        return;
      }
      begin_chunked(source, e, rest, c, arrived);
      return;
    }
  }
}

void engine::begin_chunked(int source, const envelope& e, std::string_view header_bytes,
                           const std::shared_ptr<mpi_connection>& c, clock::time_point arrived) {
  incoming in;
  in.total = e.extra;
  in.arrived = in.last_chunk = arrived;
  if (c && !header_bytes.empty()) {
    const auto h = wire::decode_header(header_bytes.data());
    auto problem = wire::check_header(h, c->max_body());
    if (!problem && std::uint64_t{h.archive_size} + h.payload_size != e.extra)
      problem = fmt::format("the frame header announces {} body bytes but its envelope {}",
                            std::uint64_t{h.archive_size} + h.payload_size, e.extra);
    if (!problem && h.archive_size <= inline_body_limit && h.payload_size == 0)
      problem = "a small frame announced as chunks";
    if (problem) {
      detail::log(detail::log_level::warn, "MPI transport: closing the connection from rank {}: {}", source, *problem);
      close(c, *problem, true);
    } else {
      in.conn = c;
      in.frame.type = h.type;
      in.frame.flags = h.flags;
      in.frame.archive.resize(h.archive_size);
      if (h.payload_size > 0) in.payload = std::make_shared<std::string>(h.payload_size, '\0');
      c->receiving(e.extra);
    }
  }
  sources_[source].in = std::move(in);
}

bool engine::poll_chunks() {
  bool any = false;
  // Chunks being received: finished ones complete their frame.
  for (auto& [source, s] : sources_) {
    if (!s.in || s.in->receives.empty()) continue;
    int all = 0;
    const int rc =
        MPI_Testall(static_cast<int>(s.in->receives.size()), s.in->receives.data(), &all, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      detail::log(detail::log_level::warn, "MPI transport: receiving a frame from rank {} failed: {}", source,
                  mpi_error_text(rc));
      if (s.in->conn) close(s.in->conn, "receiving a frame failed: " + mpi_error_text(rc), true);
      s.in->conn.reset();
      all = 1;
    }
    if (all) {
      s.in->receives.clear();
      any = true;
    }
  }
  // The chunks of the frames being received, each from its own rank: MPI keeps the order of one
  // rank's chunks, but not their order against its envelopes (another tag).
  for (auto& [source, s] : sources_) {
    for (int round = 0; round < 4 && s.in && s.in->posted < s.in->total; ++round) {
      int flag = 0;
      MPI_Message m = MPI_MESSAGE_NULL;
      MPI_Status st;
      if (MPI_Improbe(source, mpi_chunk_tag, MPI_COMM_WORLD, &flag, &m, &st) != MPI_SUCCESS || !flag) break;
      any = true;
      int count = 0;
      MPI_Get_count(&st, MPI_BYTE, &count);
      take_chunk(source, *s.in, m, count);
    }
  }
  // A chunk that no frame announced: its envelope may still be on its way (another tag), so it
  // is dropped only when none came for it within a second.
  int flag = 0;
  MPI_Status st;
  if (MPI_Iprobe(MPI_ANY_SOURCE, mpi_chunk_tag, MPI_COMM_WORLD, &flag, &st) == MPI_SUCCESS && flag) {
    const int source = st.MPI_SOURCE;
    auto& s = sources_[source];
    if (!s.in || s.in->posted >= s.in->total) {
      const auto now = clock::now();
      if (s.stray_since == clock::time_point{}) {
        s.stray_since = now;
      } else if (now - s.stray_since > std::chrono::seconds(1)) {
        s.stray_since = {};
        MPI_Message m = MPI_MESSAGE_NULL;
        int got = 0;
        if (MPI_Improbe(source, mpi_chunk_tag, MPI_COMM_WORLD, &got, &m, &st) == MPI_SUCCESS && got) {
          int count = 0;
          MPI_Get_count(&st, MPI_BYTE, &count);
          discard_message(m, count);
          detail::log(detail::log_level::warn,
                      "MPI transport: rank {} sent {} bytes of chunks dx did not expect; dropped", source, count);
          any = true;
        }
      }
    } else {
      s.stray_since = {};
    }
  }
  // Frames complete; announced chunks that do not come are given up.
  const auto now = clock::now();
  for (auto& [source, s] : sources_) {
    if (!s.in || !s.in->receives.empty()) continue;
    if (s.in->posted >= s.in->total) {
      finish_chunked(source);
      any = true;
    } else if (now - s.in->last_chunk > chunk_patience) {
      const std::string why = fmt::format("rank {} announced {} bytes of a frame and sent {} within {} s", source,
                                          s.in->total, s.in->posted, chunk_patience.count());
      detail::log(detail::log_level::warn, "MPI transport: {}; the frame is dropped", why);
      if (s.in->conn) close(s.in->conn, why, true);
      s.in.reset();
      drain_backlog(source);
      any = true;
    }
  }
  return any;
}

void engine::take_chunk(int source, incoming& in, MPI_Message& m, int count) {
  in.last_chunk = clock::now();
  // Where the next chunk goes: the archive, then the payload, each in chunks of chunk_limit.
  const std::uint64_t archive = in.conn ? in.frame.archive.size() : in.total;
  char* target = nullptr;
  std::uint64_t expected = 0;
  if (in.posted < archive) {
    expected = std::min<std::uint64_t>(chunk_limit, archive - in.posted);
    if (in.conn) target = in.frame.archive.data() + in.posted;
  } else {
    expected = std::min<std::uint64_t>(chunk_limit, in.total - in.posted);
    target = in.payload->data() + (in.posted - archive);
  }
  if (count == MPI_UNDEFINED || static_cast<std::uint64_t>(count) != expected) {
    discard_message(m, count);
    const std::string why =
        fmt::format("rank {} sent a chunk of {} bytes where its frame announced {}", source, count, expected);
    detail::log(detail::log_level::warn, "MPI transport: {}; the frame is dropped", why);
    if (in.conn) close(in.conn, why, true);
    in.conn.reset();
    in.posted = in.total;
    return;
  }
  in.posted += expected;
  if (!in.conn) {
    discard_message(m, count);
    return;
  }
  MPI_Request r = MPI_REQUEST_NULL;
  if (const int rc = MPI_Imrecv(target, count, MPI_BYTE, &m, &r); rc != MPI_SUCCESS) {
    close(in.conn, "receiving a frame failed: " + mpi_error_text(rc), true);
    in.conn.reset();
    return;
  }
  in.receives.push_back(r);
}

void engine::finish_chunked(int source) {
  auto& s = sources_[source];
  incoming in = std::move(*s.in);
  s.in.reset();
  if (in.conn) {
    in.conn->receiving(0);
    in.frame.payload = std::move(in.payload);
    in.frame.receive_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - in.arrived).count());
    if (in.conn->open) in.conn->post_frame(std::move(in.frame));
  }
  drain_backlog(source);
}

void engine::drain_backlog(int source) {
  auto& s = sources_[source];
  while (!s.in && !s.backlog.empty()) {
    auto [bytes, arrived] = std::move(s.backlog.front());
    s.backlog.pop_front();
    handle_envelope(source, std::move(bytes), arrived);
  }
}

void engine::open(const std::shared_ptr<mpi_connection>& c) {
  c->open = true;
  conns_.emplace(c->id(), c);
}

void engine::send_connect(const std::shared_ptr<mpi_connection>& c, std::uint16_t port) {
  const auto& dead = dead_[static_cast<std::size_t>(c->peer_rank())];
  if (!dead.empty()) {
    c->open = false;
    conns_.erase(c->id());
    std::lock_guard lock(c->connect_mutex);
    c->answered = true;
    c->refusal = fmt::format("rank {} cannot be reached: {}", c->peer_rank(), dead);
    c->connect_cv.notify_all();
    return;
  }
  send_control(c->peer_rank(), envelope{msg_kind::connect, 0, c->id(), port});
}

void engine::post_frame(const std::shared_ptr<mpi_connection>& c, wire::frame&& f) {
  if (!c->open || c->peer_id == 0) return;
  const int rank = c->peer_rank();
  const std::uint64_t body = f.body_size();
  const auto header = wire::encode_header(f);
  envelope e{msg_kind::frame, c->peer_id, c->id(), 0};
  if (body <= inline_body_limit) {
    auto bytes = std::make_shared<std::string>(encode_envelope(e, header.size() + body));
    bytes->append(header.data(), header.size());
    bytes->append(f.archive);
    if (f.payload) bytes->append(*f.payload);
    send_message(rank, mpi_envelope_tag, bytes->data(), bytes->size(), bytes);
    return;
  }
  e.extra = body;
  auto head = std::make_shared<std::string>(encode_envelope(e, header.size()));
  head->append(header.data(), header.size());
  send_message(rank, mpi_envelope_tag, head->data(), head->size(), head);
  auto send_chunks = [&](const char* data, std::size_t size, const std::shared_ptr<const void>& keep) {
    for (std::size_t at = 0; at < size; at += chunk_limit)
      send_message(rank, mpi_chunk_tag, data + at, std::min(chunk_limit, size - at), keep);
  };
  if (!f.archive.empty()) {
    auto archive = std::make_shared<std::string>(std::move(f.archive));
    send_chunks(archive->data(), archive->size(), archive);
  }
  if (f.payload && !f.payload->empty()) send_chunks(f.payload->data(), f.payload->size(), f.payload);
}

void engine::close(const std::shared_ptr<mpi_connection>& c, const std::string& reason, bool tell_peer) {
  if (!c->open) return;
  c->open = false;
  conns_.erase(c->id());
  if (tell_peer && c->peer_id != 0)
    send_control(c->peer_rank(), envelope{msg_kind::close, c->peer_id, c->id(), 0}, reason);
  c->receiving(0);
  c->post_closed(reason);
}

void engine::close_all_of(const void* owner, const std::string& reason) {
  std::vector<std::shared_ptr<mpi_connection>> mine;
  for (const auto& [id, c] : conns_)
    if (c->owner() == owner) mine.push_back(c);
  for (auto& c : mine) close(c, reason, true);
}

void engine::rank_failed(int rank, const std::string& why) {
  auto& dead = dead_[static_cast<std::size_t>(rank)];
  if (!dead.empty()) return;
  dead = why;
  detail::log(detail::log_level::error, "MPI transport: rank {} cannot be reached: {}", rank, why);
  std::vector<std::shared_ptr<mpi_connection>> lost;
  for (const auto& [id, c] : conns_)
    if (c->peer_rank() == rank) lost.push_back(c);
  for (auto& c : lost) close(c, fmt::format("rank {} cannot be reached: {}", rank, why), false);
}

// ---- the transport ------------------------------------------------------------------------------

class mpi_transport final : public transport {
 public:
  explicit mpi_transport(const config& cfg) : cfg_(cfg), engine_(engine::get()) {
    where_ = std::make_shared<delivery>();
    engine_.attach();
  }
  ~mpi_transport() override { stop(); }

  std::string listen(const std::string& address, accept_fn on_accept) override {
    // An address of another form ("127.0.0.1:0", the default of a worker's result port) means
    // any free port of this rank.
    std::uint16_t port = 0;
    if (const auto a = parse_mpi_address(address)) {
      if (a->rank >= 0 && a->rank != engine_.rank())
        detail::throw_error(detail::error_kind::generic,
                            fmt::format("cannot listen at {}: this process is rank {}", address, engine_.rank()));
      port = a->port;
    }
    port = engine_.listen(
        port, engine::listener{where_, std::move(on_accept), cfg_.max_frame_size, cfg_.max_value_size, this});
    return mpi_address_string(engine_.rank(), port);
  }

  std::shared_ptr<connection> connect(const std::string& address, std::shared_ptr<handler> h) override {
    const auto a = parse_mpi_address(address);
    if (!a || a->port == 0)
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("cannot connect to {}: not an MPI address (mpi:RANK:PORT)", address));
    const int rank = a->rank < 0 ? engine_.rank() : a->rank;
    if (rank >= engine_.size())
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("cannot connect to {}: the job has ranks 0 to {}", address, engine_.size() - 1));
    auto c = std::make_shared<mpi_connection>(where_, engine_.new_id(), rank, cfg_.max_frame_size, cfg_.max_value_size,
                                              this);
    c->set_handler(std::move(h));
    engine_.enqueue([this, c, port = a->port] {
      engine_.open(c);
      engine_.send_connect(c, port);
    });
    std::unique_lock lock(c->connect_mutex);
    if (!c->connect_cv.wait_for(lock, cfg_.connect_timeout, [&] { return c->answered; })) {
      lock.unlock();
      c->set_handler(nullptr);  // as a failed TCP connect, it never reports a close
      c->close("no answer to the connect");
      detail::throw_error(detail::error_kind::generic,
                          fmt::format("cannot connect to {}: rank {} did not answer within {} ms", address, rank,
                                      cfg_.connect_timeout.count()));
    }
    if (!c->refusal.empty())
      detail::throw_error(detail::error_kind::generic, fmt::format("cannot connect to {}: {}", address, c->refusal));
    return c;
  }

  void post(std::function<void()> f) override { where_->post(std::move(f)); }

  void stop() override {
    if (stopped_.exchange(true)) return;
    engine_.unlisten(this);
    engine_.run_sync([this] { engine_.close_all_of(this, "transport stopped"); });
    where_->finish();
    engine_.detach();
  }

 private:
  config cfg_;
  engine& engine_;
  std::shared_ptr<delivery> where_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

std::unique_ptr<transport> make_mpi_transport(const config& cfg) { return std::make_unique<mpi_transport>(cfg); }

}  // namespace dx::transport
