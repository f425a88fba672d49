// http_get.hpp — a minimal blocking HTTP/1.1 GET client over one kept-alive loopback connection,
// for the observability benchmarks (the head's endpoint answers with Content-Length). Not dx code.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

namespace bench {

class http_client {
 public:
  /// `endpoint`: "127.0.0.1:PORT".
  explicit http_client(std::string endpoint) : endpoint_(std::move(endpoint)) {}
  ~http_client() { disconnect(); }
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  struct response {
    int status = 0;
    std::string body;
  };

  /// GET `target` ("/api/state"); reconnects once if the kept connection was closed.
  response get(std::string_view target) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0) connect_now();
      response r;
      if (try_get(target, r)) return r;
      disconnect();
    }
    throw std::runtime_error("GET " + std::string(target) + " failed");
  }

 private:
  void connect_now() {
    const auto colon = endpoint_.rfind(':');
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(std::atoi(endpoint_.c_str() + colon + 1)));
    if (inet_pton(AF_INET, endpoint_.substr(0, colon).c_str(), &a.sin_addr) != 1)
      throw std::runtime_error("bad endpoint " + endpoint_);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      disconnect();
      throw std::runtime_error("cannot connect to " + endpoint_);
    }
    buf_.clear();
  }
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
  bool try_get(std::string_view target, response& r) {
    std::string req = "GET ";
    req += target;
    req += " HTTP/1.1\r\nHost: " + endpoint_ + "\r\nAccept: */*\r\n\r\n";
    for (std::size_t off = 0; off < req.size();) {
      const ssize_t k = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (k <= 0) return false;
      off += static_cast<std::size_t>(k);
    }
    std::size_t hdr_end;
    while ((hdr_end = buf_.find("\r\n\r\n")) == std::string::npos)
      if (!fill()) return false;
    const std::string head = buf_.substr(0, hdr_end);
    if (head.size() < 12) return false;
    r.status = std::atoi(head.c_str() + 9);
    std::size_t len = 0;
    bool close_after = false;
    for (std::size_t p = head.find("\r\n"); p != std::string::npos;) {
      const std::size_t e = head.find("\r\n", p + 2);
      const std::string line = head.substr(p + 2, e == std::string::npos ? std::string::npos : e - p - 2);
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

}  // namespace bench
