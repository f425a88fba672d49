// dx-worker --reconnect-for: a worker that outlives its head joins the next head on the same
// address, gives up after the time it was given, and still leaves at once when told to. The
// worker is the real dx-worker program; a head that crashes is a child process killed with
// SIGKILL (a head destroyed normally tells its workers to stop). Every wait is bounded and only
// processes started here are signalled.
#include <dx/command.hpp>
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include "processes.hpp"

#include "spawn_self.hpp"
#include "temp_dir.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

#ifndef DX_WORKER_PROGRAM
#error "DX_WORKER_PROGRAM (the dx-worker binary) is set by tests/integration/CMakeLists.txt"
#endif

namespace {

using dx_support::process_gone;
using dx_support::wait_until;

using clock_type = std::chrono::steady_clock;

/// A loopback port free now: bound to port 0, read back, closed.
int free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(s >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(s);
  return ntohs(a.sin_port);
}

/// A dx-worker process with its stderr in a file.
struct worker_process {
  pid_t pid = -1;
  std::filesystem::path err;
  std::optional<int> status;

  worker_process(const std::vector<std::string>& args, const std::filesystem::path& stderr_file,
                 const std::vector<std::string>& env_extra = {})
      : err(stderr_file) {
    std::vector<std::string> argv_s{DX_WORKER_PROGRAM};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "DX_TOKEN=", 9) != 0 && std::strncmp(*e, "DX_LOG=", 7) != 0) env_s.emplace_back(*e);
    env_s.insert(env_s.end(), env_extra.begin(), env_extra.end());
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = ::posix_spawn(&pid, argv_s[0].c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
  }
  ~worker_process() {
    if (!status) {
      ::kill(pid, SIGKILL);
      int st = 0;
      ::waitpid(pid, &st, 0);
    }
  }
  /// The exit code once the process ended within `limit`; nothing if it did not.
  std::optional<int> exit_within(std::chrono::milliseconds limit) {
    const auto end = clock_type::now() + limit;
    while (!status && clock_type::now() < end) {
      int st = 0;
      if (::waitpid(pid, &st, WNOHANG) == pid) status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      if (!status) std::this_thread::sleep_for(5ms);
    }
    return status;
  }
  std::string stderr_text() const {
    std::ifstream in(err);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

dx::options head_on(const std::string& address) {
  return dx::options{}.listen(address).threads(1).head_runs_tasks(false).heartbeat(100ms, 2000ms);
}

/// A head in a child process (spawn_self), killed by the test as a crash would end it.
struct head_process {
  pid_t pid;
  head_process(const std::string& address, const std::filesystem::path& file)
      : pid(dx_support::spawn_self({"reconnect child: a head that runs a command on its worker"},
                                   {"DX_TEST_ADDRESS=" + address, "DX_TEST_FILE=" + file.string()})) {}
  ~head_process() { crash(); }
  void crash() {
    if (pid < 0) return;
    ::kill(pid, SIGKILL);
    dx_support::reap_child(pid, 5s);
    pid = -1;
  }
};

}  // namespace

TEST_CASE("reconnect child: a head that runs a command on its worker", "[.][reconnect-child]") {
  const char* address = std::getenv("DX_TEST_ADDRESS");
  const char* file = std::getenv("DX_TEST_FILE");
  REQUIRE(address != nullptr);
  REQUIRE(file != nullptr);
  dx::cluster cl{head_on(address)};
  cl.wait_for_workers(1, 20s);
  const std::string out = cl.submit(dx::run_command, dx::command{.argv = {"echo", "first head"}}).get();
  {
    std::ofstream o(std::string(file) + ".tmp");
    o << out;
  }
  std::filesystem::rename(std::string(file) + ".tmp", file);
  std::this_thread::sleep_for(60s);  // the test kills this process long before
}

TEST_CASE("reconnect: a dx-worker joins a head restarted on its address and runs its tasks", "[net][reconnect]") {
  dx_support::temp_dir dir("dx_reconnect");
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  const std::string name = "reconnect-" + std::to_string(::getpid());
  // The worker starts first: it keeps trying until the head is up.
  worker_process w({"--connect", address, "--reconnect-for", "20s", "--name", name}, dir.path() / "worker.err");
  {
    head_process first(address, dir.path() / "first");
    REQUIRE(wait_until(20s, [&] { return std::filesystem::exists(dir.path() / "first"); }));
    // A built-in function, run by a plain dx-worker.
    CHECK(read_file(dir.path() / "first") == "first head\n");
    first.crash();
  }
  CHECK_FALSE(w.exit_within(300ms));  // the head is gone; the worker stays
  std::optional<dx::cluster> cl;
  cl.emplace(head_on(address));  // the same port, just released by the killed head
  cl->wait_for_workers(1, 15s);
  const auto ws = cl->workers();
  REQUIRE(ws.size() == 1);
  CHECK(ws[0].id == name);
  CHECK(ws[0].pid == w.pid);
  CHECK(cl->submit(dx::run_command, dx::command{.argv = {"echo", "second head"}}).get() == "second head\n");
  const std::string err = w.stderr_text();
  CHECK_THAT(err, Catch::Contains("head at " + address + " lost") && Catch::Contains("reconnecting for up to 20s"));
  // A head that stops normally tells its workers to stop: the worker exits 0 at once.
  cl.reset();
  CHECK(w.exit_within(5s) == 0);
}

TEST_CASE("reconnect: a dx-worker whose head stays away exits 1 once --reconnect-for has passed", "[net][reconnect]") {
  dx_support::temp_dir dir("dx_reconnect_expire");
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  worker_process w({"--connect", address, "--reconnect-for", "1s"}, dir.path() / "worker.err");
  head_process head(address, dir.path() / "ran");
  REQUIRE(wait_until(20s, [&] { return std::filesystem::exists(dir.path() / "ran"); }));
  const auto lost = clock_type::now();
  head.crash();
  REQUIRE(w.exit_within(6s) == 1);
  CHECK(clock_type::now() - lost >= 900ms);
  CHECK_THAT(w.stderr_text(), Catch::Contains("gave up on the head at " + address) &&
                                  Catch::Contains("not back within 1s (--reconnect-for)"));
}

TEST_CASE("reconnect: a head never reached is tried for --reconnect-for, 0 gives up at once", "[net][reconnect]") {
  dx_support::temp_dir dir("dx_reconnect_never");
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  {
    const auto start = clock_type::now();
    worker_process w({"--connect", address, "--reconnect-for", "0"}, dir.path() / "zero.err");
    REQUIRE(w.exit_within(5s) == 1);
    CHECK(clock_type::now() - start < 2s);
    CHECK_THAT(w.stderr_text(), Catch::Contains(address));
  }
  const auto start = clock_type::now();
  worker_process w({"--connect", address, "--reconnect-for", "700ms"}, dir.path() / "short.err");
  REQUIRE(w.exit_within(6s) == 1);
  CHECK(clock_type::now() - start >= 650ms);
  const std::string err = w.stderr_text();
  CHECK_THAT(err, Catch::Contains("head at " + address + " not reached") && Catch::Contains("trying for up to 700ms"));
  CHECK_THAT(err, Catch::Contains("gave up on the head at " + address + ": not reached within 700ms"));
}

TEST_CASE("reconnect: SIGTERM ends a worker waiting for its head at once with 0", "[net][reconnect]") {
  dx_support::temp_dir dir("dx_reconnect_term");
  const std::string address = "127.0.0.1:" + std::to_string(free_port());
  worker_process w({"--connect", address, "--reconnect-for", "30s"}, dir.path() / "worker.err");
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(w.exit_within(0ms));
  const auto sent = clock_type::now();
  REQUIRE(::kill(w.pid, SIGTERM) == 0);
  CHECK(w.exit_within(5s) == 0);
  CHECK(clock_type::now() - sent < 2s);
}

TEST_CASE("reconnect: a wrong token is not tried again", "[net][reconnect]") {
  dx_support::temp_dir dir("dx_reconnect_token");
  dx::cluster cl{dx::options{}.listen("127.0.0.1:0").threads(1).head_runs_tasks(false).token("the right one")};
  const auto start = clock_type::now();
  worker_process w({"--connect", cl.endpoint(), "--reconnect-for", "30s"}, dir.path() / "worker.err",
                   {"DX_TOKEN=a wrong one"});
  REQUIRE(w.exit_within(10s) == 1);
  CHECK(clock_type::now() - start < 5s);
  CHECK_THAT(w.stderr_text(), Catch::Contains("authentication failed"));
}

TEST_CASE("reconnect: a name held by a live worker is tried again until it is free", "[net][reconnect]") {
  dx_support::temp_dir dir("dx_reconnect_name");
  dx::cluster cl{dx::options{}.listen("127.0.0.1:0").threads(1).head_runs_tasks(false).heartbeat(100ms, 2000ms)};
  const std::string name = "taken-" + std::to_string(::getpid());
  worker_process first({"--connect", cl.endpoint(), "--name", name}, dir.path() / "first.err");
  cl.wait_for_workers(1, 15s);
  worker_process second({"--connect", cl.endpoint(), "--name", name, "--reconnect-for", "20s"},
                        dir.path() / "second.err");
  REQUIRE(wait_until(10s, [&] { return second.stderr_text().find("is already connected") != std::string::npos; }));
  CHECK_FALSE(second.exit_within(200ms));
  ::kill(first.pid, SIGTERM);  // the first leaves; the second gets the name
  REQUIRE(first.exit_within(5s) == 0);
  REQUIRE(wait_until(15s, [&] {
    for (const auto& wi : cl.workers())
      if (wi.id == name && wi.pid == second.pid && wi.state == dx::worker_state::active) return true;
    return false;
  }));
  CHECK(cl.submit(dx::run_command, dx::command{.argv = {"echo", "ok"}}).get() == "ok\n");
}

TEST_CASE("reconnect: worker processes a head starts never wait for another head", "[net][reconnect]") {
  dx::cluster cl{dx::options{}.threads(1).local_processes(1).head_runs_tasks(false)};
  const auto ws = cl.workers();
  REQUIRE(ws.size() == 1);
  std::ifstream in("/proc/" + std::to_string(ws[0].pid) + "/cmdline");
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  const auto it = std::find(args.begin(), args.end(), "--reconnect-for");
  REQUIRE(it != args.end());
  REQUIRE(it + 1 != args.end());
  CHECK(*(it + 1) == "0");
}
