// The in-process transport: "peers" are objects in this process, frames pass through queues.
// Each transport instance has one delivery thread, standing in for a process's network thread,
// so the head and worker runtimes run exactly as over TCP, without sockets.
#include "common/log.hpp"
#include "transport/transport.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace dx::transport {

namespace {

class inproc_transport;

class inproc_connection final : public connection, public std::enable_shared_from_this<inproc_connection> {
 public:
  inproc_connection(inproc_transport* owner, std::string remote, std::uint64_t max_frame, std::uint64_t max_value)
      : owner_(owner), remote_(std::move(remote)), max_frame_(max_frame), max_value_(max_value) {}

  void send(wire::frame f) override;
  void close(const std::string& reason) override;
  std::string remote_address() const override { return remote_; }
  void set_handler(std::shared_ptr<handler> h) override;

  void pair_with(const std::shared_ptr<inproc_connection>& peer) { peer_ = peer; }
  // Runs on the owner's delivery thread.
  void deliver(wire::frame&& f);
  void deliver_closed(const std::string& reason);
  void close_local(const std::string& reason);  // from the peer side or stop()

 private:
  inproc_transport* owner_;
  std::string remote_;
  std::uint64_t max_frame_;
  std::uint64_t max_value_;
  std::mutex mutex_;
  bool closed_ = false;
  bool closed_delivered_ = false;
  std::weak_ptr<inproc_connection> peer_;
  std::shared_ptr<handler> handler_;
  std::vector<wire::frame> held_;  // frames before set_handler
  std::string held_close_;
  bool close_pending_ = false;
};

/// Listening names, process-wide.
struct name_table {
  std::mutex mutex;
  std::map<std::string, std::pair<inproc_transport*, accept_fn>> listeners;
  std::uint64_t next = 1;
};
name_table& names() {
  static name_table t;
  return t;
}

class inproc_transport final : public transport {
 public:
  explicit inproc_transport(const config& cfg) : cfg_(cfg), thread_([this] { run(); }) {}
  ~inproc_transport() override { stop(); }

  std::string listen(const std::string& address, accept_fn on_accept) override {
    name_table& t = names();
    std::lock_guard lock(t.mutex);
    std::string name = address;
    if (name.empty() || name.ends_with(":0")) name = fmt::format("inproc:{}", t.next++);
    if (!t.listeners.try_emplace(name, this, std::move(on_accept)).second)
      detail::throw_error(detail::error_kind::generic, fmt::format("cannot listen at {}: the name is taken", name));
    {
      std::lock_guard own(mutex_);
      listening_.push_back(name);
    }
    return name;
  }

  std::shared_ptr<connection> connect(const std::string& address, std::shared_ptr<handler> h) override {
    inproc_transport* other = nullptr;
    accept_fn accept;
    {
      name_table& t = names();
      std::lock_guard lock(t.mutex);
      auto it = t.listeners.find(address);
      if (it == t.listeners.end())
        detail::throw_error(detail::error_kind::generic,
                            fmt::format("cannot connect to {}: nobody listens there", address));
      other = it->second.first;
      accept = it->second.second;
    }
    const std::string local_name = fmt::format("inproc-peer:{}", reinterpret_cast<std::uintptr_t>(this));
    auto mine = std::make_shared<inproc_connection>(this, address, cfg_.max_frame_size, cfg_.max_value_size);
    auto theirs = std::make_shared<inproc_connection>(other, local_name, other->cfg().max_frame_size,
                                                      other->cfg().max_value_size);
    mine->pair_with(theirs);
    theirs->pair_with(mine);
    mine->set_handler(std::move(h));
    track(mine);
    other->track(theirs);
    other->post([accept, theirs] { accept(theirs); });
    return mine;
  }

  void post(std::function<void()> f) override {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    queue_.push_back(std::move(f));
    cv_.notify_one();
  }

  void stop() override {
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
    }
    {
      name_table& t = names();
      std::lock_guard lock(t.mutex);
      for (const auto& n : listening_) t.listeners.erase(n);
    }
    std::vector<std::shared_ptr<inproc_connection>> conns;
    {
      std::lock_guard lock(mutex_);
      conns.swap(connections_);
    }
    for (auto& c : conns) c->close("transport stopped");
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;  // the queue drains, then the thread ends
      cv_.notify_one();
    }
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else if (thread_.joinable()) {
      thread_.join();
    }
  }

  /// Queues work for the delivery thread even while stopping, so on_closed calls still arrive.
  void post_always(std::function<void()> f) {
    std::lock_guard lock(mutex_);
    if (finished_) return;
    queue_.push_back(std::move(f));
    cv_.notify_one();
  }

  void track(const std::shared_ptr<inproc_connection>& c) {
    std::lock_guard lock(mutex_);
    connections_.push_back(c);
  }

  const config& cfg() const noexcept { return cfg_; }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
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

  config cfg_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  // Owned until stop(), as a socket owns a TCP connection: an accepted connection often has no
  // other owner than its handler's callbacks.
  std::vector<std::shared_ptr<inproc_connection>> connections_;
  std::vector<std::string> listening_;
  bool stopping_ = false;
  bool stopped_ = false;
  bool finished_ = false;
  std::thread thread_;
};

void inproc_connection::send(wire::frame f) {
  std::shared_ptr<inproc_connection> peer;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    peer = peer_.lock();
  }
  if (!peer) return;
  count_sent(f);
  f.flags &= ~wire::frame_transport_flags;  // as a socket carries them
  peer->owner_->post_always([peer, fr = std::move(f)]() mutable { peer->deliver(std::move(fr)); });
}

void inproc_connection::deliver(wire::frame&& f) {
  count_arrived(wire::header_size + f.body_size());
  // The checks a socket reader makes on a header, in order with the frames before it: a frame up
  // to the frame limit, or once this side trusts its peer, a larger one (a socket would have
  // streamed it in chunks) up to the value limit.
  wire::frame_header header;
  header.type = f.type;
  header.archive_size = static_cast<std::uint32_t>(f.archive.size());
  header.payload_size = f.payload ? f.payload->size() : 0;
  const bool streamed = f.body_size() > max_frame_;
  if (streamed && !trusted()) {
    const std::string problem =
        fmt::format("a frame of {} bytes before the handshake completed (the limit until then is a frame of {} bytes)",
                    f.body_size(), max_frame_);
    detail::log(detail::log_level::warn, "closing in-process connection: {}", problem);
    close(problem);
    return;
  }
  if (auto problem = wire::check_header(header, streamed ? max_value_ : max_frame_)) {
    detail::log(detail::log_level::warn, "closing in-process connection: {}", *problem);
    close(*problem);
    return;
  }
  std::shared_ptr<handler> h;
  {
    std::lock_guard lock(mutex_);
    if (closed_delivered_ || (closed_ && !close_pending_)) return;
    if (!handler_) {
      held_.push_back(std::move(f));
      return;
    }
    h = handler_;
  }
  const std::uint64_t body = f.body_size();
  h->on_frame(*this, std::move(f));
  count_received(body);  // after the handler: see connection::bytes_received
}

void inproc_connection::set_handler(std::shared_ptr<handler> h) {
  std::vector<wire::frame> held;
  bool deliver_close = false;
  {
    std::lock_guard lock(mutex_);
    handler_ = h;
    held.swap(held_);
    deliver_close = close_pending_ && !held_close_.empty();
  }
  for (auto& f : held) {
    const std::uint64_t body = f.body_size();
    h->on_frame(*this, std::move(f));
    count_received(body);
  }
  if (deliver_close) deliver_closed(held_close_);
}

void inproc_connection::close(const std::string& reason) {
  std::shared_ptr<inproc_connection> peer;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    peer = peer_.lock();
  }
  close_local(reason);
  if (peer) peer->close_local("connection closed by peer");
}

void inproc_connection::close_local(const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    close_pending_ = true;
  }
  auto self = shared_from_this();
  owner_->post_always([self, reason] { self->deliver_closed(reason); });
}

void inproc_connection::deliver_closed(const std::string& reason) {
  std::shared_ptr<handler> h;
  {
    std::lock_guard lock(mutex_);
    if (closed_delivered_) return;
    if (!handler_) {
      held_close_ = reason;
      return;
    }
    closed_delivered_ = true;
    close_pending_ = false;
    h = std::move(handler_);
  }
  h->on_closed(*this, reason);
}

}  // namespace

std::unique_ptr<transport> make_in_process_transport(const config& cfg) {
  return std::make_unique<inproc_transport>(cfg);
}

}  // namespace dx::transport
