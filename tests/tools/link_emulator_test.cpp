// Tests of the link emulator (tools/link_emulator) against a small echo server on loopback: each
// case would fail if the delay, the ordering, the bandwidth cap, the stall or the cut broke; and
// dx-link as a script runs it. Every wait has a deadline.
#include "link_emulator.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

extern char** environ;

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Echoes every byte back; counts what it received and the connections that ended.
class echo_server {
 public:
  echo_server() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~echo_server() {
    io_.stop();
    thread_.join();
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()); }
  std::uint64_t bytes_received() const { return received_.load(std::memory_order_relaxed); }
  int connections_ended() const { return ended_.load(std::memory_order_relaxed); }

 private:
  struct connection : std::enable_shared_from_this<connection> {
    connection(echo_server& server, tcp::socket s) : owner(server), socket(std::move(s)) {}
    void read() {
      socket.async_read_some(asio::buffer(buffer),
                             [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                               self->owner.received_.fetch_add(n, std::memory_order_relaxed);
                               if (ec) {
                                 self->owner.ended_.fetch_add(1, std::memory_order_relaxed);
                                 return;
                               }
                               asio::async_write(self->socket, asio::buffer(self->buffer.data(), n),
                                                 [self](boost::system::error_code write_error, std::size_t) {
                                                   if (!write_error) self->read();
                                                 });
                             });
    }
    echo_server& owner;
    tcp::socket socket;
    std::array<char, 65536> buffer{};
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      std::make_shared<connection>(*this, std::move(s))->read();
      accept();
    });
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<int> ended_{0};
  std::thread thread_;
};

int remaining_ms(clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// A non-blocking POSIX client whose every call ends by its deadline.
class client {
 public:
  explicit client(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &to.sin_addr);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0)
      throw std::system_error(errno, std::generic_category(), "connect " + address);
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
  }
  ~client() { ::close(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  // Sends `out` while receiving as many bytes back, so that neither side's buffers fill; the
  // bytes received, or nothing when the deadline passed or the connection ended first.
  std::optional<std::string> exchange(const std::string& out, clock::time_point deadline) {
    std::string in;
    std::size_t sent = 0;
    while (in.size() < out.size()) {
      pollfd p{fd_, static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return std::nullopt;
      if ((p.revents & POLLOUT) && sent < out.size()) {
        const ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) return std::nullopt;
        if (n > 0) sent += std::size_t(n);
      }
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char buffer[65536];
        const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) return std::nullopt;
        if (n > 0) in.append(buffer, std::size_t(n));
      }
    }
    return in;
  }

  bool send_all(const std::string& out, clock::time_point deadline) {
    std::size_t sent = 0;
    while (sent < out.size()) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
      const ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN) return false;
      if (n > 0) sent += std::size_t(n);
    }
    return true;
  }

  // Up to `n` bytes, fewer when the deadline passes or the connection ends.
  std::string receive(std::size_t n, clock::time_point deadline) {
    std::string in;
    while (in.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) break;
      char buffer[65536];
      const ssize_t got = ::recv(fd_, buffer, std::min(sizeof buffer, n - in.size()), 0);
      if (got == 0 || (got < 0 && errno != EAGAIN)) break;
      if (got > 0) in.append(buffer, std::size_t(got));
    }
    return in;
  }

  // True once the peer closed (EOF or reset) before the deadline; bytes before it are dropped.
  bool closed_by(clock::time_point deadline) {
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
      char buffer[65536];
      const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
    }
  }

  void shutdown_sending() { ::shutdown(fd_, SHUT_WR); }

 private:
  int fd_ = -1;
};

double seconds_since(clock::time_point start) { return std::chrono::duration<double>(clock::now() - start).count(); }

// Times one echo of `bytes` through `link`, checking that every byte came back.
double round_trip_seconds(client& c, std::size_t bytes = 1) {
  std::string payload(bytes, '\0');
  for (std::size_t i = 0; i < bytes; ++i) payload[i] = static_cast<char>('a' + i % 26);
  const auto start = clock::now();
  const auto back = c.exchange(payload, start + 20s);
  const double seconds = seconds_since(start);
  REQUIRE(back.has_value());
  REQUIRE(*back == payload);
  return seconds;
}

template <class Condition>
bool wait_until(Condition condition, std::chrono::milliseconds limit) {
  const auto deadline = clock::now() + limit;
  while (!condition()) {
    if (clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

dx::link::profile delay_of(std::chrono::microseconds delay) { return {delay, 0us, 0}; }

}  // namespace

TEST_CASE("A round trip through a link of 50 ms each way takes 100 ms and not much more", "[link]") {
  echo_server server;
  dx::link::emulator link(server.address(), delay_of(50ms), delay_of(50ms));
  client c(link.address());
  const double first = round_trip_seconds(c);
  const double second = round_trip_seconds(c);
  for (double seconds : {first, second}) {
    CHECK(seconds >= 0.1);
    CHECK(seconds < 0.5);
  }
  CHECK(link.connections() == 1);
  // Counted as each write completes, which may be just after the client has the byte.
  CHECK(wait_until([&] { return link.bytes_forwarded() == 4; }, 5s));
}

TEST_CASE("Jitter delays chunks by different amounts but never reorders them", "[link]") {
  echo_server server;
  const dx::link::profile jittery{1ms, 20ms, 0};
  dx::link::emulator link(server.address(), jittery, jittery);
  client c(link.address());
  constexpr int messages = 1000;
  const auto deadline = clock::now() + 30s;
  std::string expected;
  for (int i = 0; i < messages; ++i) {
    char message[5];
    std::snprintf(message, sizeof message, "%04d", i);
    expected += message;
    REQUIRE(c.send_all(message, deadline));
    // Sent one by one with a pause, most become chunks of their own, each with its own jitter.
    std::this_thread::sleep_for(50us);
  }
  const std::string back = c.receive(expected.size(), deadline);
  REQUIRE(back.size() == expected.size());
  CHECK(back == expected);
}

TEST_CASE("A bandwidth cap of 4 MiB/s makes 1 MiB take a quarter of a second", "[link]") {
  echo_server server;
  const dx::link::profile capped{0us, 0us, 4.0 * (1 << 20)};
  dx::link::emulator link(server.address(), capped, {});
  client c(link.address());
  const double seconds = round_trip_seconds(c, 1 << 20);
  CHECK(seconds >= 0.22);
  CHECK(seconds < 5);
}

TEST_CASE("A long delay does not throttle throughput: 4 MiB cross a 100 ms link in well under 2 s", "[link]") {
  echo_server server;
  dx::link::emulator link(server.address(), delay_of(100ms), delay_of(100ms));
  client c(link.address());
  const double seconds = round_trip_seconds(c, 4 << 20);
  CHECK(seconds >= 0.2);
  CHECK(seconds < 2);
  CHECK(wait_until([&] { return link.bytes_forwarded() == 2 * (4u << 20); }, 5s));
}

TEST_CASE("set_profiles changes the delay of a live connection", "[link]") {
  echo_server server;
  dx::link::emulator link(server.address(), {}, {});
  client c(link.address());
  CHECK(round_trip_seconds(c) < 0.2);
  link.set_profiles(delay_of(150ms), delay_of(150ms));
  const double slow = round_trip_seconds(c);
  CHECK(slow >= 0.3);
  CHECK(slow < 0.8);
  link.set_profiles({}, {});
  CHECK(round_trip_seconds(c) < 0.2);
  CHECK_THROWS_AS(link.set_profiles(delay_of(-1ms), {}), std::invalid_argument);
}

TEST_CASE("A stall holds bytes with the connection open, and resuming delivers them", "[link]") {
  echo_server server;
  dx::link::emulator link(server.address(), {}, {});
  client c(link.address());
  round_trip_seconds(c);
  link.stall(true);
  REQUIRE(c.send_all("held", clock::now() + 5s));
  CHECK(c.receive(4, clock::now() + 300ms).empty());
  CHECK(server.bytes_received() == 1);
  CHECK(link.connections() == 1);
  link.stall(false);
  CHECK(c.receive(4, clock::now() + 5s) == "held");
}

TEST_CASE("A cut closes both ends of every connection, and new connections still work", "[link]") {
  echo_server server;
  dx::link::emulator link(server.address(), delay_of(10ms), delay_of(10ms));
  client first(link.address());
  client second(link.address());
  round_trip_seconds(first);
  round_trip_seconds(second);
  REQUIRE(link.connections() == 2);
  link.cut();
  CHECK(first.closed_by(clock::now() + 5s));
  CHECK(second.closed_by(clock::now() + 5s));
  CHECK(wait_until([&] { return server.connections_ended() == 2; }, 5s));
  CHECK(link.connections() == 0);
  client after(link.address());
  CHECK(round_trip_seconds(after) >= 0.02);
  CHECK(link.connections() == 1);
}

TEST_CASE("When one side closes, the bytes it sent still arrive, then both sides close", "[link]") {
  echo_server server;
  dx::link::emulator link(server.address(), delay_of(50ms), {});
  client c(link.address());
  const std::string payload(100 << 10, 'x');
  REQUIRE(c.send_all(payload, clock::now() + 10s));
  c.shutdown_sending();
  CHECK(wait_until([&] { return server.connections_ended() == 1; }, 10s));
  CHECK(server.bytes_received() == payload.size());
  CHECK(c.closed_by(clock::now() + 10s));
  CHECK(wait_until([&] { return link.connections() == 0; }, 5s));
}

TEST_CASE("A connection to a target that refuses it is closed", "[link]") {
  std::string refused;
  {
    echo_server gone;
    refused = gone.address();
  }
  dx::link::emulator link(refused, {}, {});
  client c(link.address());
  CHECK(c.closed_by(clock::now() + 5s));
  CHECK(wait_until([&] { return link.connections() == 0; }, 5s));
}

TEST_CASE("Malformed addresses and negative profiles are rejected", "[link]") {
  CHECK_THROWS_AS(dx::link::emulator("no-port", {}, {}), std::invalid_argument);
  CHECK_THROWS_AS(dx::link::emulator("127.0.0.1:99999", {}, {}), std::invalid_argument);
  CHECK_THROWS_AS(dx::link::emulator("127.0.0.1:1", {}, {}, "127.0.0.1"), std::invalid_argument);
  CHECK_THROWS_AS(dx::link::emulator("127.0.0.1:1", {0us, -1us, 0}, {}), std::invalid_argument);
  CHECK_THROWS_AS(dx::link::emulator("127.0.0.1:1", {}, {0us, 0us, -5}), std::invalid_argument);
}

#ifdef DX_LINK_PROGRAM
namespace {

// dx-link with pipes on its standard input and output.
struct link_process {
  pid_t pid = -1;
  int to_stdin = -1, from_stdout = -1;

  explicit link_process(std::vector<std::string> args) {
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    args.insert(args.begin(), DX_LINK_PROGRAM);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid, DX_LINK_PROGRAM, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_stdin = in[1];
    from_stdout = out[0];
    REQUIRE(rc == 0);
  }
  ~link_process() {
    if (to_stdin >= 0) ::close(to_stdin);
    ::close(from_stdout);
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  // One line of its standard output, without the newline; empty past the deadline.
  std::string read_line(clock::time_point deadline) {
    std::string line;
    char ch = 0;
    for (;;) {
      pollfd p{from_stdout, POLLIN, 0};
      if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return {};
      if (::read(from_stdout, &ch, 1) != 1) return {};
      if (ch == '\n') return line;
      line += ch;
    }
  }

  std::string command(const std::string& text) {
    const std::string line = text + "\n";
    REQUIRE(::write(to_stdin, line.data(), line.size()) == ssize_t(line.size()));
    return read_line(clock::now() + 5s);
  }

  // Its exit code, or -1 when it did not exit within `limit`.
  int wait_exit(std::chrono::milliseconds limit) {
    const auto deadline = clock::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) != pid) {
      if (clock::now() >= deadline) return -1;
      std::this_thread::sleep_for(5ms);
    }
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

}  // namespace

TEST_CASE("dx-link prints its address, forwards with its delay and obeys its commands", "[link][cli]") {
  echo_server server;
  link_process link({"--to", server.address(), "--delay-ms", "40", "--up-delay-ms", "20"});
  const std::string address = link.read_line(clock::now() + 10s);
  REQUIRE(address.rfind("127.0.0.1:", 0) == 0);
  client c(address);
  const double seconds = round_trip_seconds(c);
  CHECK(seconds >= 0.06);
  CHECK(seconds < 0.5);

  CHECK(link.command("stall") == "ok");
  REQUIRE(c.send_all("held", clock::now() + 5s));
  CHECK(c.receive(4, clock::now() + 300ms).empty());
  CHECK(link.command("resume") == "ok");
  CHECK(c.receive(4, clock::now() + 5s) == "held");

  CHECK(link.command("delay 0") == "ok");
  CHECK(round_trip_seconds(c) < 0.2);
  CHECK(link.command("cut") == "ok");
  CHECK(c.closed_by(clock::now() + 5s));
  // Bytes are counted as each write completes, which may be just after the client has them.
  CHECK(wait_until([&] { return link.command("stats") == "connections 0 bytes 12"; }, 5s));
  CHECK(link.command("quit").empty());
  CHECK(link.wait_exit(5s) == 0);
}

TEST_CASE("dx-link exits when its standard input ends", "[link][cli]") {
  echo_server server;
  link_process link({"--to", server.address()});
  REQUIRE(!link.read_line(clock::now() + 10s).empty());
  ::close(link.to_stdin);
  link.to_stdin = -1;
  CHECK(link.wait_exit(5s) == 0);
}
#endif
