// Blocking HTTP/1.1 clients over POSIX sockets for the tests and benchmarks of the head's HTTP
// endpoint. send_raw() and get() send bytes exactly as given (so tests can send malformed
// requests) on a connection of their own and read the whole answer; client keeps one connection
// alive for many GETs (the benchmarks poll the way the dashboard does). Not dx code.
//
//   auto r = dx_support::http::get("127.0.0.1:8080", "/metrics");     // r.status, r.body
//   dx_support::http::client c("127.0.0.1:8080");
//   for (int i = 0; i < 100; ++i) c.get("/api/state");
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dx_support::http {

struct reply {
  int status = 0;  // 0: the server closed without answering
  std::string head;
  std::string body;
};

/// A connected TCP socket to "ADDRESS:PORT" (IPv4); throws std::runtime_error when it cannot.
inline int connect_to(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("bad endpoint " + endpoint);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(endpoint.c_str() + colon + 1)));
  if (::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr) != 1)
    throw std::runtime_error("bad endpoint " + endpoint);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to " + endpoint);
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

/// Sends all of `bytes`; false when the peer closed first (a server may close early on a bad
/// request: what it said can still be read).
inline bool send_all(int fd, std::string_view bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads until the server closes or `timeout` passes.
inline std::string read_all(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

/// A whole answer (status line, headers, body) read until the server closed.
inline reply parse(const std::string& raw) {
  reply r;
  const auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + 9);
  r.head = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  if (r.head.find("Transfer-Encoding: chunked") != std::string::npos) {
    // A streamed answer: the pieces joined, as a client reads them.
    std::string joined;
    std::size_t at = 0;
    for (;;) {
      const auto eol = r.body.find("\r\n", at);
      if (eol == std::string::npos) break;
      const std::size_t size = std::stoul(r.body.substr(at, eol - at), nullptr, 16);
      if (size == 0 || eol + 2 + size > r.body.size()) break;
      joined.append(r.body, eol + 2, size);
      at = eol + 2 + size + 2;
    }
    r.body = std::move(joined);
  }
  return r;
}

/// Sends `raw` as it is on a new connection and returns the parsed answer.
inline reply send_raw(const std::string& endpoint, const std::string& raw,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const int fd = connect_to(endpoint);
  send_all(fd, raw);
  const std::string answer = read_all(fd, timeout);
  ::close(fd);
  return parse(answer);
}

/// GET `target` on a connection of its own, closed after the answer.
inline reply get(const std::string& endpoint, const std::string& target) {
  return send_raw(endpoint, "GET " + target + " HTTP/1.1\r\nHost: " + endpoint + "\r\nConnection: close\r\n\r\n");
}

/// GETs over one kept-alive connection; answers must carry Content-Length (the head's do).
class client {
 public:
  /// `endpoint`: "127.0.0.1:PORT".
  explicit client(std::string endpoint) : endpoint_(std::move(endpoint)) {}
  ~client() { disconnect(); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// GET `target` ("/api/state"); reconnects once if the kept connection was closed. Throws
  /// std::runtime_error when the second attempt fails too.
  reply get(std::string_view target) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0) {
        fd_ = connect_to(endpoint_);
        buf_.clear();
      }
      reply r;
      if (try_get(target, r)) return r;
      disconnect();
    }
    throw std::runtime_error("GET " + std::string(target) + " failed");
  }

 private:
  void disconnect() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
  }
  bool fill() {  // reads more bytes into buf_; false at EOF or error
    char tmp[65536];
    const ssize_t k = ::read(fd_, tmp, sizeof tmp);
    if (k <= 0) return false;
    buf_.append(tmp, static_cast<std::size_t>(k));
    return true;
  }
  bool try_get(std::string_view target, reply& r) {
    std::string req = "GET ";
    req += target;
    req += " HTTP/1.1\r\nHost: " + endpoint_ + "\r\nAccept: */*\r\n\r\n";
    if (!send_all(fd_, req)) return false;
    std::size_t hdr_end;
    while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return false;
    r.head = buf_.substr(0, hdr_end);
    if (r.head.size() < 12) return false;
    r.status = std::atoi(r.head.c_str() + 9);
    std::size_t len = 0;
    bool close_after = false;
    for (std::size_t p = r.head.find("\r\n"); p != std::string::npos;) {
      const std::size_t e = r.head.find("\r\n", p + 2);
      const std::string line = r.head.substr(p + 2, e == std::string::npos ? std::string::npos : e - p - 2);
      std::string lower = line;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower.rfind("content-length:", 0) == 0) len = std::strtoull(line.c_str() + 15, nullptr, 10);
      if (lower.rfind("connection:", 0) == 0 && lower.find("close") != std::string::npos) close_after = true;
      p = e;
    }
    const std::size_t body_at = hdr_end + 4;
    while (buf_.size() < body_at + len)
      if (!fill()) return false;
    r.body.assign(buf_, body_at, len);
    buf_.erase(0, body_at + len);
    if (close_after) disconnect();
    return true;
  }

  std::string endpoint_;
  int fd_ = -1;
  std::string buf_;
};

}  // namespace dx_support::http
