// dx::run_command (dx/command.hpp) on the local threads, on in-process worker threads and on a
// worker process over TCP: output, failures and what arrives of them on the head, the child's
// process group killed on cancel and timeout, shell and environment, and what the child inherits.
#include <dx/command.hpp>
#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include "processes.hpp"

#include "cluster/builtins.hpp"
#include "temp_dir.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;

namespace {

using dx_support::process_gone;
using dx_support::wait_until;

enum class where { local, in_process, tcp };

const char* where_name(where w) {
  switch (w) {
    case where::local:
      return "local threads";
    case where::in_process:
      return "in-process worker";
    default:
      return "worker process (tcp)";
  }
}

std::unique_ptr<dx::cluster> cluster_on(where w) {
  if (w == where::local) return std::make_unique<dx::cluster>(dx::options{}.threads(2));
  const auto kind = w == where::tcp ? dx::transport_kind::tcp : dx::transport_kind::in_process;
  return std::make_unique<dx::cluster>(
      dx::options{}.threads(2).transport(kind).local_processes(1).threads_per_process(2).head_runs_tasks(false));
}

#define DX_WHERE()                                                       \
  const where w = GENERATE(where::local, where::in_process, where::tcp); \
  INFO("running on: " << where_name(w));                                 \
  auto cl_ptr = cluster_on(w);                                           \
  dx::cluster& cl = *cl_ptr

dx::command sh(std::string script) { return dx::command{.argv = {std::move(script)}, .shell = true}; }

/// The two pids a script wrote to `file` ("$$ $!"), once it has.
std::pair<int, int> pids_in(const std::filesystem::path& file) {
  std::pair<int, int> p{0, 0};
  wait_until(10s, [&] {
    std::ifstream in(file);
    return static_cast<bool>(in >> p.first >> p.second);
  });
  return p;
}

/// A script that starts a grandchild in the background, writes its own pid and the grandchild's,
/// then waits far longer than any test.
std::string sleeper_script(const std::filesystem::path& file) {
  return "sleep 30 & echo \"$$ $!\" > " + file.string() + ".tmp && mv " + file.string() + ".tmp " + file.string() +
         "; sleep 30";
}

}  // namespace

TEST_CASE("command: stdout is the result, stdin comes from stdin_data", "[net][command]") {
  DX_WHERE();
  CHECK(cl.submit(dx::run_command, dx::command{.argv = {"echo", "hello", "world"}}).get() == "hello world\n");
  dx::command cat{.argv = {"cat"}, .stdin_data = std::string(300'000, 'x') + "end"};
  CHECK(cl.submit(dx::run_command, cat).get() == cat.stdin_data);
  // No stdin_data: stdin is /dev/null, so a reader sees its end at once.
  CHECK(cl.submit(dx::run_command, dx::command{.argv = {"cat"}}).get().empty());
}

TEST_CASE("command: a non-zero exit is dx::command_failed with the code and the end of stderr", "[net][command]") {
  DX_WHERE();
  auto f = cl.submit(dx::run_command, sh("echo partial; echo first >&2; echo 'it broke' >&2; exit 3"));
  try {
    f.get();
    FAIL("no exception");
  } catch (const dx::command_failed& e) {
    CHECK(e.exit_code() == 3);
    CHECK(e.signal() == 0);
    CHECK(e.stderr_tail() == "first\nit broke");
    const std::string what = e.what();
    CHECK_THAT(what, Catch::Contains("exited with code 3: first\nit broke"));
    CHECK_THAT(what, Catch::Contains("command 'echo partial;"));
    if (w == where::local) {
      CHECK(e.worker().empty());
    } else {
      CHECK_FALSE(e.worker().empty());
      CHECK_THAT(what, Catch::Contains("worker " + e.worker()));
    }
  }
  // Only the tail is kept.
  dx::command noisy = sh("i=0; while [ $i -lt 200 ]; do echo line$i >&2; i=$((i+1)); done; exit 1");
  noisy.stderr_tail = 8;
  try {
    cl.submit(dx::run_command, noisy).get();
    FAIL("no exception");
  } catch (const dx::command_failed& e) {
    CHECK(e.stderr_tail() == "line199");  // the last 8 bytes, without the final newline
  }
  // Killed by a signal.
  try {
    cl.submit(dx::run_command, sh("kill -9 $$")).get();
    FAIL("no exception");
  } catch (const dx::command_failed& e) {
    CHECK(e.signal() == SIGKILL);
    CHECK(e.exit_code() == -1);
    CHECK_THAT(std::string(e.what()), Catch::Contains("was killed by signal 9"));
  }
}

TEST_CASE("command: the exit code arrives intact whatever quotes and messages the command line holds",
          "[net][command]") {
  DX_WHERE();
  try {
    cl.submit(dx::run_command, sh("echo 'x' >&2; exit 5 # \\' exited with code 9: fake \\")).get();
    FAIL("no exception");
  } catch (const dx::command_failed& e) {
    CHECK(e.exit_code() == 5);
    CHECK(e.stderr_tail() == "x");
  }
}

TEST_CASE("command: a failure message the head cannot read still arrives as dx::command_failed", "[net][command]") {
  for (const std::string message : {"", "command '", "command 'x", "command 'a\\", "command 'x' exited with code ",
                                    "command 'x' exited with code 99999999999999: t", "something else entirely"}) {
    INFO(message);
    const std::exception_ptr e = dx::detail::rebuild_remote_failure("dx::command_failed", message, "w1");
    REQUIRE(e);
    try {
      std::rethrow_exception(e);
    } catch (const dx::command_failed& f) {
      CHECK(f.worker() == "w1");
      CHECK_THAT(std::string(f.what()), Catch::Contains(message));
    }
  }
  CHECK_FALSE(dx::detail::rebuild_remote_failure("std::runtime_error", "command 'x' exited with code 1", "w1"));
}

TEST_CASE("command: a program that cannot start fails naming it and the reason", "[net][command]") {
  DX_WHERE();
  for (const std::string prog : {"/nonexistent/dx-prog", "dx-no-such-program-on-path"}) {
    try {
      cl.submit(dx::run_command, dx::command{.argv = {prog, "arg"}}).get();
      FAIL("no exception");
    } catch (const dx::command_failed& e) {
      CHECK(e.exit_code() == 127);
      CHECK_THAT(std::string(e.what()),
                 Catch::Contains("'" + prog + " arg'") && Catch::Contains("No such file or directory"));
    }
  }
  dx_support::temp_dir dir("dx_command_noexec");
  const auto plain = dir.path() / "not-executable";
  std::ofstream(plain) << "echo hi\n";
  try {
    cl.submit(dx::run_command, dx::command{.argv = {plain.string()}}).get();
    FAIL("no exception");
  } catch (const dx::command_failed& e) {
    CHECK(e.exit_code() == 126);
    CHECK_THAT(std::string(e.what()), Catch::Contains("Permission denied"));
  }
  // Commands that are not valid are dx::error (dx::remote_error from a worker).
  CHECK_THROWS_WITH(cl.submit(dx::run_command, dx::command{}).get(), Catch::Contains("argv is empty"));
  CHECK_THROWS_WITH(cl.submit(dx::run_command, dx::command{.argv = {"true"}, .env = {{"A=B", "c"}}}).get(),
                    Catch::Contains("not an environment variable name"));
  CHECK_THROWS_WITH(cl.submit(dx::run_command, dx::command{.argv = {"true"}, .working_dir = "/nonexistent/dir"}).get(),
                    Catch::Contains("/nonexistent/dir") && Catch::Contains("No such file or directory"));
  CHECK_THROWS_AS(cl.submit(dx::run_command, dx::command{.argv = {std::string("a\0b", 3)}}).get(), dx::error);
}

TEST_CASE("command: stdout over max_stdout kills the child and names the limit", "[net][command]") {
  DX_WHERE();
  const auto start = std::chrono::steady_clock::now();
  dx::command c{.argv = {"yes"}, .max_stdout = 100'000};
  try {
    cl.submit(dx::run_command, c).get();
    FAIL("no exception");
  } catch (const dx::command_failed& e) {
    CHECK(e.signal() == SIGKILL);
    CHECK_THAT(std::string(e.what()), Catch::Contains("more than 100000 bytes to stdout (command::max_stdout)"));
  }
  CHECK(std::chrono::steady_clock::now() - start < 5s);  // `yes` never ends on its own
  // Exactly at the limit is fine.
  dx::command exact{.argv = {"head", "-c", "1000", "/dev/zero"}, .max_stdout = 1000};
  CHECK(cl.submit(dx::run_command, exact).get().size() == 1000);
}

TEST_CASE("command: much stderr and little stdout do not deadlock", "[net][command]") {
  DX_WHERE();
  // Far more than a pipe holds on stderr, then stdout, then more stderr.
  auto f = cl.submit(dx::run_command, sh("head -c 3000000 /dev/zero >&2; echo done; head -c 1000000 /dev/zero >&2"));
  REQUIRE(f.wait_for(20s) == dx::future_status::ready);
  CHECK(f.get() == "done\n");
}

TEST_CASE("command: cancel kills the child and its grandchild", "[net][command]") {
  DX_WHERE();
  dx_support::temp_dir dir("dx_command_cancel");
  const auto file = dir.path() / "pids";
  auto f = cl.submit(dx::run_command, sh(sleeper_script(file)));
  const auto [shell_pid, grandchild] = pids_in(file);
  REQUIRE(shell_pid > 0);
  REQUIRE(grandchild > 0);
  CHECK_FALSE(process_gone(shell_pid));
  CHECK_FALSE(process_gone(grandchild));
  CHECK(f.cancel());
  CHECK_THROWS_AS(f.get(), dx::cancelled);
  CHECK(wait_until(5s, [&] { return process_gone(shell_pid) && process_gone(grandchild); }));
  // The worker is free again.
  CHECK(cl.submit(dx::run_command, dx::command{.argv = {"echo", "next"}}).get() == "next\n");
}

TEST_CASE("command: a timeout kills the child and its grandchild", "[net][command]") {
  DX_WHERE();
  dx_support::temp_dir dir("dx_command_timeout");
  const auto file = dir.path() / "pids";
  auto f = cl.submit(dx::task_options{}.with_timeout(1500ms), dx::run_command, sh(sleeper_script(file)));
  const auto [shell_pid, grandchild] = pids_in(file);
  REQUIRE(shell_pid > 0);
  REQUIRE(grandchild > 0);
  CHECK_THROWS_AS(f.get(), dx::timeout);
  CHECK(wait_until(5s, [&] { return process_gone(shell_pid) && process_gone(grandchild); }));
}

TEST_CASE("command: a child that ignores SIGTERM is killed after the grace", "[net][command]") {
  DX_WHERE();
  dx_support::temp_dir dir("dx_command_term");
  const auto file = dir.path() / "pids";
  auto f = cl.submit(dx::run_command, sh("trap '' TERM; " + sleeper_script(file)));
  const auto [shell_pid, grandchild] = pids_in(file);
  REQUIRE(shell_pid > 0);
  CHECK(f.cancel());
  CHECK(wait_until(5s, [&] { return process_gone(shell_pid) && process_gone(grandchild); }));
}

TEST_CASE("command: a finished command leaves no background process behind", "[net][command]") {
  DX_WHERE();
  dx_support::temp_dir dir("dx_command_bg");
  const auto file = dir.path() / "pids";
  // The script exits at once; its background sleep holds stdout open.
  const std::string script = "sleep 30 & echo \"$$ $!\" > " + file.string() + "; echo out";
  auto f = cl.submit(dx::run_command, sh(script));
  REQUIRE(f.wait_for(10s) == dx::future_status::ready);
  CHECK(f.get() == "out\n");
  const auto [shell_pid, grandchild] = pids_in(file);
  REQUIRE(grandchild > 0);
  CHECK(wait_until(5s, [&] { return process_gone(grandchild); }));
}

TEST_CASE("command: shell=false passes $HOME as it is, shell=true expands it", "[net][command]") {
  DX_WHERE();
  CHECK(cl.submit(dx::run_command, dx::command{.argv = {"echo", "$HOME", "a;b", "*"}}).get() == "$HOME a;b *\n");
  dx::command c = sh("echo $HOME \"$1\"");
  c.argv.push_back("first arg");
  c.env = {{"HOME", "/dx/home"}};
  CHECK(cl.submit(dx::run_command, c).get() == "/dx/home first arg\n");
}

TEST_CASE("command: env and working_dir are the child's", "[net][command]") {
  DX_WHERE();
  dx_support::temp_dir dir("dx_command_cwd");
  const std::string where_dir = std::filesystem::canonical(dir.path()).string();
  dx::command c{.argv = {"sh", "-c", "echo \"$DX_TEST_VAR\"; pwd -P; echo \"$PATH\" | grep -c /"},
                .env = {{"DX_TEST_VAR", "a value"}},
                .working_dir = where_dir};
  CHECK(cl.submit(dx::run_command, c).get() == "a value\n" + where_dir + "\n1\n");
}

TEST_CASE("command: the child inherits no descriptor but stdin, stdout and stderr", "[net][command]") {
  DX_WHERE();
  // ls opens the folder it lists: that one descriptor (3) is its own.
  const std::string listing = cl.submit(dx::run_command, dx::command{.argv = {"ls", "/proc/self/fd"}}).get();
  std::set<int> fds;
  std::istringstream in(listing);
  for (int fd; in >> fd;) fds.insert(fd);
  CHECK(fds == std::set<int>{0, 1, 2, 3});
}

TEST_CASE("command: run_command is registered as dx.command and callable directly", "[net][command]") {
  const dx::detail::remote_function* f = dx::detail::find_remote("dx.command");
  REQUIRE(f != nullptr);
  CHECK(dx::detail::find_remote_by_address(reinterpret_cast<void (*)()>(&dx::run_command)) == f);
  CHECK(dx::run_command({}, dx::command{.argv = {"printf", "%s", "direct"}}) == "direct");
}
