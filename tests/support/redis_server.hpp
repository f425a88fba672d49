// A real redis-server for a test: started on a free loopback port in a folder of its own, with
// appendonly and appendfsync always (every write on disk before Redis answers), stopped (SIGKILL,
// as a crash) and started again on the same port and files, and ended with the test.
//
//   dx_support::redis_server redis(dir.path());
//   if (!redis.running()) { dx_support::skip(redis.problem()); return; }
//   const std::string journal = redis.location();   // "redis://127.0.0.1:<port>/0"
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace dx_support {

/// Says that a test is skipped and why, in the words ctest looks for (SKIP_REGULAR_EXPRESSION).
inline void skip(const std::string& why) {
  std::printf("dx test skipped: %s\n", why.c_str());
  std::fflush(stdout);
}

class redis_server {
 public:
  /// Starts redis-server with its files in `dir`; running() says whether it answers.
  explicit redis_server(std::filesystem::path dir) : dir_(std::move(dir)) {
    program_ = find_program();
    if (program_.empty()) {
      problem_ = "redis-server is not installed (Debian package redis-server; cmake/install-deps.sh)";
      return;
    }
    port_ = free_port();
    start();
  }
  ~redis_server() { kill(); }
  redis_server(const redis_server&) = delete;
  redis_server& operator=(const redis_server&) = delete;

  bool running() const { return pid_ > 0; }
  const std::string& problem() const { return problem_; }
  int port() const { return port_; }
  std::string location(int db = 0) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
  }

  /// Ends it with SIGKILL (what survives is what its append-only file holds).
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  /// Starts it again on the same port and files; false (problem() says why) when it does not
  /// answer within 10 s.
  bool start() {
    if (pid_ > 0) return true;
    const std::string port = std::to_string(port_);
    const std::vector<std::string> args{program_,
                                        "--port",
                                        port,
                                        "--bind",
                                        "127.0.0.1",
                                        "--dir",
                                        dir_.string(),
                                        "--appendonly",
                                        "yes",
                                        "--appendfsync",
                                        "always",
                                        "--save",
                                        "",
                                        "--daemonize",
                                        "no",
                                        "--protected-mode",
                                        "no",
                                        "--logfile",
                                        (dir_ / "redis.log").string()};
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, program_.c_str(), &files, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&files);
    if (rc != 0) {
      problem_ = "redis-server cannot be started";
      return false;
    }
    pid_ = pid;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      if (answers()) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        problem_ = "redis-server exited at start (see " + (dir_ / "redis.log").string() + ")";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill();
    problem_ = "redis-server did not answer within 10 s";
    return false;
  }

 private:
  static std::string find_program() {
    for (const char* p : {"/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"})
      if (::access(p, X_OK) == 0) return p;
    return {};
  }

  static int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
  }

  /// PING answered with +PONG.
  bool answers() const {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      timeval tv{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      const char ping[] = "PING\r\n";
      char buf[16] = {};
      ok = ::write(fd, ping, sizeof ping - 1) == sizeof ping - 1 && ::read(fd, buf, sizeof buf - 1) >= 5 &&
           std::string(buf).rfind("+PONG", 0) == 0;
    }
    ::close(fd);
    return ok;
  }

  std::filesystem::path dir_;
  std::string program_;
  std::string problem_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace dx_support
