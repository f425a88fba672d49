// A blocking HTTP/1.1 client over POSIX sockets for the tests of the head's HTTP endpoint: it
// sends bytes exactly as given (so tests can send malformed requests) and reads the whole answer.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace http_test {

struct reply {
  int status = 0;  // 0: the server closed without answering
  std::string head;
  std::string body;
};

inline int connect_to(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
  ::inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &addr.sin_addr);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to " + endpoint);
  }
  return fd;
}

inline void send_all(int fd, const std::string& bytes) {
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early on a bad request: read what it said
    off += static_cast<std::size_t>(n);
  }
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

inline reply parse(const std::string& raw) {
  reply r;
  const auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + 9);
  r.head = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

/// Sends `raw` as it is and returns the parsed answer.
inline reply send_raw(const std::string& endpoint, const std::string& raw,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const int fd = connect_to(endpoint);
  send_all(fd, raw);
  const std::string answer = read_all(fd, timeout);
  ::close(fd);
  return parse(answer);
}

inline reply get(const std::string& endpoint, const std::string& target) {
  return send_raw(endpoint, "GET " + target + " HTTP/1.1\r\nHost: " + endpoint + "\r\nConnection: close\r\n\r\n");
}

}  // namespace http_test
