// A raw protocol client for the distributed tests: a blocking POSIX socket with bounded reads
// that speaks frames by hand, to play a hostile or misbehaving peer of a head or a worker.
#pragma once

#include "wire/frame.hpp"
#include "wire/messages.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace dx_support {

using clock_type = std::chrono::steady_clock;

/// A blocking POSIX client socket with bounded reads.
class raw_client {
 public:
  /// Connects to `endpoint`; from the loopback address `from` when given ("127.0.0.2": another
  /// client address on the same machine, as a peer the server counts apart).
  explicit raw_client(const std::string& endpoint, const char* from = nullptr) {
    const auto colon = endpoint.rfind(':');
    REQUIRE(colon != std::string::npos);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    REQUIRE(::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr) == 1);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    if (from) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      REQUIRE(::inet_pton(AF_INET, from, &local.sin_addr) == 1);
      REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0);
    }
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~raw_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;

  /// Sends all of `bytes`; false when the peer has closed.
  bool send(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  /// Reads exactly n bytes before `deadline`; nullopt on EOF, error or timeout.
  std::optional<std::string> read_exact(std::size_t n, clock_type::time_point deadline) {
    std::string out(n, '\0');
    std::size_t got = 0;
    while (got < n) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
      if (left <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
      const ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
      if (r <= 0) return std::nullopt;
      got += static_cast<std::size_t>(r);
    }
    return out;
  }

  /// The next frame within `limit`, or nullopt.
  std::optional<dx::wire::frame> read_frame(std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = clock_type::now() + limit;
    auto head = read_exact(dx::wire::header_size, deadline);
    if (!head) return std::nullopt;
    const auto h = dx::wire::decode_header(head->data());
    auto archive = read_exact(h.archive_size, deadline);
    if (!archive) return std::nullopt;
    dx::wire::frame f;
    f.type = h.type;
    f.flags = h.flags;
    f.archive = std::move(*archive);
    if (h.payload_size) {
      auto payload = read_exact(h.payload_size, deadline);
      if (!payload) return std::nullopt;
      f.payload = std::make_shared<const std::string>(std::move(*payload));
    }
    return f;
  }

  /// True when the peer has closed the connection (what it sent first is read and dropped);
  /// does not wait.
  bool closed_now() { return closed_within(std::chrono::milliseconds(1)); }

  /// True when the peer closes the connection within `limit` (frames it sends first are read
  /// and dropped).
  bool closed_within(std::chrono::milliseconds limit) {
    const auto deadline = clock_type::now() + limit;
    char buf[4096];
    while (clock_type::now() < deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
      pollfd p{fd_, POLLIN, 0};
      const int pr = ::poll(&p, 1, static_cast<int>(std::max<long long>(left, 1)));
      if (pr < 0) return true;
      if (pr == 0) continue;
      const ssize_t r = ::recv(fd_, buf, sizeof buf, 0);
      if (r <= 0) return true;
    }
    return false;
  }

 private:
  int fd_ = -1;
};

template <class M>
std::string bytes_of(const M& m) {
  return dx::wire::frame_bytes(dx::wire::encode(m));
}

}  // namespace dx_support
