// A small HTTP/1.1 client over POSIX sockets (and OpenSSL for https): the dx command needs a
// handful of requests to a head, each on its own connection with a deadline; a library would be
// more than the job.
#include "http_client.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
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

/// OpenSSL's reason for the last failure, and the certificate check's verdict when it failed.
std::string tls_reason(SSL* ssl) {
  std::string why = "unknown reason";
  if (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    why = buf;
    if (const char* reason = ERR_reason_error_string(e)) why = reason;
  }
  ERR_clear_error();
  if (ssl)
    if (const long verdict = SSL_get_verify_result(ssl); verdict != X509_V_OK)
      why += std::string(": ") + X509_verify_cert_error_string(verdict);
  return why;
}

/// A connection: the socket, and the TLS session over it when there is one. Reads and writes wait
/// for the socket as OpenSSL asks, up to the deadline.
class link {
 public:
  link(int fd, const std::string& address, clock::time_point until) : s_{fd}, address_(address), until_(until) {}
  ~link() {
    if (ssl_) SSL_free(ssl_);
    if (ctx_) SSL_CTX_free(ctx_);
  }
  link(const link&) = delete;
  link& operator=(const link&) = delete;

  void start_tls(const dx::tls_options& tls, const std::string& host) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (!ctx_) fail(address_, "TLS: " + tls_reason(nullptr));
    SSL_CTX_set_min_proto_version(ctx_, tls.min_version == dx::tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION);
    if (SSL_CTX_load_verify_locations(ctx_, tls.ca.c_str(), nullptr) != 1)
      fail(address_, "TLS: cannot read the certificate authority " + tls.ca + ": " + tls_reason(nullptr));
    if (!tls.certificate.empty()) {
      if (SSL_CTX_use_certificate_chain_file(ctx_, tls.certificate.c_str()) != 1)
        fail(address_, "TLS: cannot read the certificate " + tls.certificate + ": " + tls_reason(nullptr));
      if (SSL_CTX_use_PrivateKey_file(ctx_, tls.private_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(ctx_) != 1)
        fail(address_, "TLS: cannot use the private key " + tls.private_key + ": " + tls_reason(nullptr));
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
    ssl_ = SSL_new(ctx_);
    if (!ssl_ || SSL_set_fd(ssl_, s_.fd) != 1) fail(address_, "TLS: " + tls_reason(nullptr));
    in6_addr any{};
    const bool literal =
        ::inet_pton(AF_INET, host.c_str(), &any) == 1 || ::inet_pton(AF_INET6, host.c_str(), &any) == 1;
    if (!literal) SSL_set_tlsext_host_name(ssl_, host.c_str());
    if (tls.verify_peer_name) {
      if (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str()) != 1
                  : SSL_set1_host(ssl_, host.c_str()) != 1)
        fail(address_, "TLS: cannot check the head's name " + host);
    }
    for (;;) {
      const int rc = SSL_connect(ssl_);
      if (rc == 1) return;
      if (!wait_for(rc, "the TLS handshake")) fail(address_, "TLS handshake: " + tls_reason(ssl_));
    }
  }

  /// Bytes written, or fails.
  std::size_t write_some(const char* data, std::size_t n) {
    for (;;) {
      if (!ssl_) {
        wait_ready(s_.fd, POLLOUT, until_, address_, "sending");
        const ssize_t w = ::send(s_.fd, data, n, MSG_NOSIGNAL);
        if (w >= 0) return static_cast<std::size_t>(w);
        if (errno != EAGAIN && errno != EINTR) fail(address_, std::string("sending: ") + std::strerror(errno));
        continue;
      }
      const int w = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(n, 1 << 20)));
      if (w > 0) return static_cast<std::size_t>(w);
      if (!wait_for(w, "sending")) fail(address_, "sending: TLS: " + tls_reason(ssl_));
    }
  }

  /// Bytes read into `buf`; 0 at the end of the stream.
  std::size_t read_some(char* buf, std::size_t n) {
    for (;;) {
      if (!ssl_) {
        wait_ready(s_.fd, POLLIN, until_, address_, "reading the reply");
        const ssize_t r = ::recv(s_.fd, buf, n, 0);
        if (r >= 0) return static_cast<std::size_t>(r);
        if (errno != EAGAIN && errno != EINTR)
          fail(address_, std::string("reading the reply: ") + std::strerror(errno));
        continue;
      }
      const int r = SSL_read(ssl_, buf, static_cast<int>(n));
      if (r > 0) return static_cast<std::size_t>(r);
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      // A head that closes without a close_notify has still sent a whole reply (Connection: close).
      if (e == SSL_ERROR_SYSCALL ||
          (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
        ERR_clear_error();
        return 0;
      }
      if (!wait_for(r, "reading the reply")) fail(address_, "reading the reply: TLS: " + tls_reason(ssl_));
    }
  }

 private:
  /// After an OpenSSL call returned `rc`: waits for the socket when OpenSSL asks to (true), or
  /// says it failed (false).
  bool wait_for(int rc, const char* what) {
    const int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ) {
      wait_ready(s_.fd, POLLIN, until_, address_, what);
      return true;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      wait_ready(s_.fd, POLLOUT, until_, address_, what);
      return true;
    }
    return false;
  }

  socket_guard s_;
  std::string address_;
  clock::time_point until_;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
};

std::string host_of(const std::string& address) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

http_reply http_call(const std::string& address, const std::string& method, const std::string& target,
                     const std::string& body, const std::string& token, const dx::tls_options& tls,
                     std::chrono::milliseconds deadline, std::size_t max_body) {
  const auto until = clock::now() + deadline;
  link s(connect_to(address, until), address, until);
  if (tls.enabled()) s.start_tls(tls, host_of(address));
  std::string request =
      method + " " + target + " HTTP/1.1\r\nHost: " + address + "\r\nConnection: close\r\nAccept: application/json\r\n";
  if (!token.empty()) request += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST")
    request += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  request += "\r\n" + body;
  for (std::size_t sent = 0; sent < request.size();) sent += s.write_some(request.data() + sent, request.size() - sent);
  // The reply up to the connection's end (Connection: close), bounded.
  std::string in;
  const std::size_t max_total = max_body + 16 * 1024;
  char buf[16 * 1024];
  for (;;) {
    const std::size_t n = s.read_some(buf, sizeof buf);
    if (n == 0) break;
    in.append(buf, n);
    if (in.size() > max_total) fail(address, "the reply is larger than " + std::to_string(max_body) + " bytes");
  }
  const auto head_end = in.find("\r\n\r\n");
  if (in.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos || in.size() < 12)
    fail(address,
         tls.enabled() ? "the reply is not HTTP" : "the reply is not HTTP (if the head serves https, give --tls-ca)");
  http_reply r;
  r.status = std::atoi(in.c_str() + 9);
  if (r.status < 100 || r.status > 599) fail(address, "the reply has no HTTP status");
  r.body = in.substr(head_end + 4);
  return r;
}

}  // namespace dx_cli
