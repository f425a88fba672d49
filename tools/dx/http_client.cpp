// A small HTTP/1.1 client over POSIX sockets: the dx command needs a handful of requests to a head,
// each on its own connection with a deadline; a library would be more than the job.
#include "http_client.hpp"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace dx_cli {

namespace {

using clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& address, const std::string& why) {
  throw std::runtime_error("the head's HTTP API at " + address + ": " + why);
}

/// Closes the socket whatever happens.
struct socket_guard {
  int fd = -1;
  ~socket_guard() {
    if (fd >= 0) ::close(fd);
  }
};

int remaining_ms(clock::time_point until) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

/// Waits until `fd` is ready for `events`, or fails at the deadline.
void wait_ready(int fd, short events, clock::time_point until, const std::string& address, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remaining_ms(until));
    if (n > 0) return;
    if (n == 0) fail(address, std::string("no answer in time (") + what + ")");
    if (errno != EINTR) fail(address, std::string(what) + ": " + std::strerror(errno));
  }
}

int connect_to(const std::string& address, clock::time_point until) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    fail(address, "not HOST:PORT (e.g. 127.0.0.1:8787)");
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    fail(address, std::string("cannot resolve it: ") + ::gai_strerror(rc));
  std::string last = "no address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    socket_guard s{::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol)};
    if (s.fd < 0) continue;
    if (::connect(s.fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = std::strerror(errno);
      continue;
    }
    wait_ready(s.fd, POLLOUT, until, address, "connecting");
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = std::strerror(err);
      continue;
    }
    ::freeaddrinfo(found);
    return std::exchange(s.fd, -1);
  }
  ::freeaddrinfo(found);
  fail(address, "cannot connect: " + last);
}

}  // namespace

http_reply http_call(const std::string& address, const std::string& method, const std::string& target,
                     const std::string& body, const std::string& token, std::chrono::milliseconds deadline,
                     std::size_t max_body) {
  const auto until = clock::now() + deadline;
  socket_guard s{connect_to(address, until)};
  std::string request =
      method + " " + target + " HTTP/1.1\r\nHost: " + address + "\r\nConnection: close\r\nAccept: application/json\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST")
    request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  request += "\r\n" + body;
  for (std::size_t sent = 0; sent < request.size();) {
    wait_ready(s.fd, POLLOUT, until, address, "sending");
    const ssize_t n = ::send(s.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) fail(address, std::string("sending: ") + std::strerror(errno));
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  // The reply up to the connection's end (Connection: close), bounded.
  std::string in;
  const std::size_t max_total = max_body + 16 * 1024;
  char buf[16 * 1024];
  for (;;) {
    wait_ready(s.fd, POLLIN, until, address, "reading the reply");
    const ssize_t n = ::recv(s.fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      fail(address, std::string("reading the reply: ") + std::strerror(errno));
    }
    in.append(buf, static_cast<std::size_t>(n));
    if (in.size() > max_total) fail(address, "the reply is larger than " + std::to_string(max_body) + " bytes");
  }
  const auto head_end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos || in.size() < 12)
    fail(address, "the reply is not HTTP");
  http_reply r;
  r.status = std::atoi(in.c_str() + 9);
  if (r.status < 100 || r.status > 599) fail(address, "the reply has no HTTP status");
  r.body = in.substr(head_end + 4);
  return r;
}

}  // namespace dx_cli
