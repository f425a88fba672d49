// What the transport tests share: a handler that records what it is told, an accepting side
// that records its connections, frames to send, and a socket for bytes no transport would send.
// Every wait is bounded (10 s).
#pragma once

#include "transport/transport.hpp"

#include "transport/asio.hpp"
#include "wire/frame.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace transport_harness {

using namespace std::chrono_literals;
namespace tr = dx::transport;
namespace wire = dx::wire;
using dx::asio::ip::tcp;

constexpr auto wait_limit = 10s;

/// Records what a connection's handler is told; the test thread waits on it.
class recorder : public tr::handler {
 public:
  /// Runs on the transport's thread before the frame is recorded (echo, stop, ...).
  std::function<void(tr::connection&, const wire::frame&)> hook;

  void on_frame(tr::connection& c, wire::frame&& f) override {
    if (hook) hook(c, f);
    std::lock_guard lk(m_);
    threads_.insert(std::this_thread::get_id());
    if (!closed_.empty()) frame_after_close_ = true;
    frames_.push_back(std::move(f));
    cv_.notify_all();
  }
  void on_closed(tr::connection&, const std::string& reason) override {
    std::lock_guard lk(m_);
    threads_.insert(std::this_thread::get_id());
    closed_.push_back(reason);
    cv_.notify_all();
  }

  bool wait_frames(std::size_t n) {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, wait_limit, [&] { return frames_.size() >= n; });
  }
  bool wait_closed() {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, wait_limit, [&] { return !closed_.empty(); });
  }
  std::vector<wire::frame> frames() {
    std::lock_guard lk(m_);
    return frames_;
  }
  std::vector<std::string> closed() {
    std::lock_guard lk(m_);
    return closed_;
  }
  std::set<std::thread::id> threads() {
    std::lock_guard lk(m_);
    return threads_;
  }
  bool frame_after_close() {
    std::lock_guard lk(m_);
    return frame_after_close_;
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<wire::frame> frames_;
  std::vector<std::string> closed_;
  std::set<std::thread::id> threads_;
  bool frame_after_close_ = false;
};

/// The accepting side: gives every accepted connection a recorder (unless told not to).
class server {
 public:
  struct peer {
    std::shared_ptr<tr::connection> conn;
    std::shared_ptr<recorder> rec;
  };

  explicit server(tr::transport& t, bool attach = true, bool echo = false, std::string address = "127.0.0.1:0") {
    address_ = t.listen(address, [this, attach, echo](std::shared_ptr<tr::connection> c) {
      auto rec = std::make_shared<recorder>();
      if (echo) rec->hook = [](tr::connection& c, const wire::frame& f) { c.send(f); };
      if (attach) c->set_handler(rec);
      std::lock_guard lk(m_);
      peers_.push_back({std::move(c), std::move(rec)});
      accept_threads_.insert(std::this_thread::get_id());
      cv_.notify_all();
    });
  }

  const std::string& address() const { return address_; }

  bool wait_accepted(std::size_t n) {
    std::unique_lock lk(m_);
    return cv_.wait_for(lk, wait_limit, [&] { return peers_.size() >= n; });
  }
  std::size_t accepted() {
    std::lock_guard lk(m_);
    return peers_.size();
  }
  peer at(std::size_t i) {
    std::lock_guard lk(m_);
    return peers_.at(i);
  }
  std::set<std::thread::id> accept_threads() {
    std::lock_guard lk(m_);
    return accept_threads_;
  }

 private:
  std::string address_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<peer> peers_;
  std::set<std::thread::id> accept_threads_;
};

inline wire::frame make_frame(std::uint16_t type, std::uint32_t flags, std::string archive, std::string payload = {}) {
  wire::frame f;
  f.type = type;
  f.flags = flags;
  f.archive = std::move(archive);
  if (!payload.empty()) f.payload = std::make_shared<const std::string>(std::move(payload));
  return f;
}

inline std::string payload_of(const wire::frame& f) { return f.payload ? *f.payload : std::string(); }

/// FNV-1a over 64-bit words (plus the tail bytes): word-wise so that a 64 MiB check stays quick
/// under the sanitizers.
inline std::uint64_t checksum(const std::string& s) {
  std::uint64_t h = 14695981039346656037ull;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, 8);
    h = (h ^ w) * 1099511628211ull;
  }
  for (; i < s.size(); ++i) h = (h ^ static_cast<unsigned char>(s[i])) * 1099511628211ull;
  return h;
}

inline std::uint16_t port_of(const std::string& address) {
  return static_cast<std::uint16_t>(std::stoul(address.substr(address.rfind(':') + 1)));
}

/// A plain socket to `address`, for writing bytes that no dx transport would send.
struct raw_client {
  dx::asio::io_context io;
  tcp::socket socket{io};
  explicit raw_client(const std::string& address) {
    socket.connect(tcp::endpoint(dx::asio::ip::make_address("127.0.0.1"), port_of(address)));
  }
  void write(const std::string& bytes) { dx::asio::write(socket, dx::asio::buffer(bytes)); }
};

}  // namespace transport_harness
