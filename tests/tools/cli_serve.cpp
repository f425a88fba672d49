// `dx serve` as its users run it: a head killed with SIGKILL and started again on the same
// address and journal gets its workers back (dx-worker keeps reconnecting) and finishes the run
// the dead head left, under the run's id, without running a finished step again; runs submitted
// with `dx run --connect` and cancelled with `dx cancel --connect`; SIGTERM stops serve cleanly; with a
// journal in a real redis-server the test starts, a standby takes over from a head killed with
// SIGKILL, and a head whose Redis goes away keeps running and catches up.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include "processes.hpp"
#include "redis_server.hpp"
#include "temp_dir.hpp"
#include "test_pki.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

/// A process the test started, with its output in a file; killed when the test ends early.
class child {
 public:
  child(const std::vector<std::string>& args, const fs::path& output) {
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 1, output.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&files, 1, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, argv[0], &files, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&files);
    REQUIRE(rc == 0);
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  void signal(int sig) const { ::kill(pid_, sig); }
  /// The exit code once it ends within `limit` (-1: it did not; 128+N: killed by signal N).
  int wait(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

/// A TCP port free on loopback a moment ago (the heads below must be found at the same address
/// after a restart, so they cannot take port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs `dx` with `args` to its end, its output in `out`; returns the exit code.
int run_dx(const std::vector<std::string>& args, std::string* out = nullptr) {
  const dx_support::temp_dir dir("dx_cli_call");
  std::vector<std::string> all{DX_CLI};
  all.insert(all.end(), args.begin(), args.end());
  child c(all, dir.path() / "out.txt");
  const int code = c.wait(60s);
  if (out) *out = read_text(dir.path() / "out.txt");
  return code;
}

/// A chain of `n` command steps; each appends its name to `counter` (once per execution) and
/// takes `seconds`.
std::string chain_workflow(int n, const fs::path& counter, double seconds) {
  nlohmann::json steps = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    nlohmann::json s;
    s["name"] = "s" + std::to_string(i);
    s["command"] = {"sh", "-c", "echo $0 >> '" + counter.string() + "'; sleep " + std::to_string(seconds) + "; echo $0",
                    "s" + std::to_string(i)};
    if (i > 0) s["after"] = {"s" + std::to_string(i - 1)};
    steps.push_back(s);
  }
  return nlohmann::json{{"name", "chain"}, {"steps", steps}}.dump();
}

std::map<std::string, int> executions(const fs::path& counter) {
  std::map<std::string, int> out;
  std::istringstream in(read_text(counter));
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) ++out[line];
  return out;
}

/// The run's record as `dx status RUN --json` prints it (null when it cannot be read).
nlohmann::json status_of(const std::string& id, const fs::path& journal) {
  std::string out;
  if (run_dx({"status", id, "--json", "--journal", journal.string()}, &out) != 0) return nullptr;
  return nlohmann::json::parse(out, nullptr, false);
}

std::string only_run_id(const fs::path& journal) {
  std::string out;
  if (run_dx({"list", "--journal", journal.string()}, &out) != 0) return {};
  return out.substr(0, out.find(' '));
}

}  // namespace

TEST_CASE("dx serve started after a head was killed gets the workers back and finishes its run once",
          "[tools][serve]") {
  const dx_support::temp_dir dir("dx_cli_serve");
  const fs::path journal = dir.path() / "journal.sqlite";
  const fs::path counter = dir.path() / "counter.txt";
  const fs::path wf = dir.path() / "chain.json";
  std::ofstream(wf) << chain_workflow(12, counter, 0.25);
  const std::string address = "127.0.0.1:" + std::to_string(free_port());

  // The first head: `dx run` taking workers at an address, and one worker that joins it.
  auto first = std::make_unique<child>(
      std::vector<std::string>{DX_CLI, "run", wf.string(), "--listen", address, "--journal", journal.string()},
      dir.path() / "first.txt");
  child worker({DX_WORKER, "--connect", address, "--reconnect-for", "60s"}, dir.path() / "worker.txt");
  REQUIRE(dx_support::wait_until(60s, [&] { return executions(counter).size() >= 4; }));
  first->signal(SIGKILL);
  REQUIRE(first->wait(10s) == 128 + SIGKILL);
  first.reset();

  const std::string id = only_run_id(journal);
  REQUIRE(id.rfind("r-", 0) == 0);
  const nlohmann::json before = status_of(id, journal);
  REQUIRE(before.is_object());
  std::set<std::string> finished_before;
  for (const auto& t : before["tasks"])
    if (t["status"] == "SUCCEEDED") finished_before.insert(t["key"].get<std::string>());
  CHECK(finished_before.size() >= 2);

  // A new head on the same address and journal: it resumes the run; the worker comes back by itself.
  child serve({DX_CLI, "serve", "--listen", address, "--journal", journal.string()}, dir.path() / "serve.txt");
  bool ended = dx_support::wait_until(90s, [&] {
    const auto s = status_of(id, journal);
    return s.is_object() && s["status"] == "SUCCEEDED";
  });
  INFO("serve: " << read_text(dir.path() / "serve.txt") << "\nworker: " << read_text(dir.path() / "worker.txt"));
  REQUIRE(ended);
  CHECK(read_text(dir.path() / "serve.txt").find("resumed " + id) != std::string::npos);

  const auto runs = executions(counter);
  CHECK(runs.size() == 12);
  for (const auto& [step, times] : runs) {
    INFO(step << " ran " << times << " times");
    if (finished_before.count(step)) {
      CHECK(times == 1);  // finished before the kill: never again
    } else {
      CHECK(times <= 2);  // at most once more, when the kill came while it ran
    }
  }
  serve.signal(SIGTERM);
  CHECK(serve.wait(30s) == 0);
  // The worker outlives both heads; it is this test's to end.
}

TEST_CASE("dx run --connect submits to dx serve and follows the run, dx cancel --connect cancels one",
          "[tools][serve]") {
  const dx_support::temp_dir dir("dx_cli_connect");
  const fs::path journal = dir.path() / "journal.sqlite";
  const fs::path counter = dir.path() / "counter.txt";
  const fs::path quick = dir.path() / "quick.json";
  const fs::path slow = dir.path() / "slow.json";
  const fs::path invalid = dir.path() / "invalid.json";
  std::ofstream(quick) << chain_workflow(3, counter, 0.05);
  std::ofstream(slow) << chain_workflow(3, dir.path() / "slow_counter.txt", 30);
  std::ofstream(invalid) << R"({"name": "bad", "steps": [{"name": "a", "command": ["true"], "after": ["nope"]}]})";
  const fs::path token = dir.path() / "dx.token";
  std::ofstream(token) << "s3cret-token\n";
  const std::string http = "127.0.0.1:" + std::to_string(free_port());

  child serve({DX_CLI, "serve", "--listen", "127.0.0.1:0", "--http", http, "--workers", "1", "--journal",
               journal.string(), "--token-file", token.string()},
              dir.path() / "serve.txt");
  std::string out;
  REQUIRE(dx_support::wait_until(
      30s, [&] { return read_text(dir.path() / "serve.txt").find("HTTP API") != std::string::npos; }));

  // Succeeds: exit 0, the steps ran on serve's worker, once each; the run is in serve's journal.
  CHECK(run_dx({"run", quick.string(), "--connect", http, "--token-file", token.string()}, &out) == 0);
  INFO(out);
  CHECK(out.find("SUCCEEDED") != std::string::npos);
  CHECK(executions(counter) == std::map<std::string, int>{{"s0", 1}, {"s1", 1}, {"s2", 1}});
  std::string listed;
  CHECK(run_dx({"list", "--journal", journal.string()}, &listed) == 0);
  CHECK(listed.find("SUCCEEDED") != std::string::npos);

  // Invalid: exit 2 with the problem, naming the step. Without the token: refused, exit 1.
  CHECK(run_dx({"run", invalid.string(), "--connect", http, "--token-file", token.string()}, &out) == 2);
  CHECK(out.find("'a'") != std::string::npos);
  CHECK(run_dx({"run", quick.string(), "--connect", http}, &out) == 1);

  // Cancelled from another process while it runs: the follower exits 1, the run is CANCELLED.
  child follower({DX_CLI, "run", slow.string(), "--connect", http, "--token-file", token.string()},
                 dir.path() / "follower.txt");
  std::string id;
  REQUIRE(dx_support::wait_until(30s, [&] {
    const std::string text = read_text(dir.path() / "follower.txt");
    const auto at = text.find("run r-");
    if (at == std::string::npos) return false;
    id = text.substr(at + 4, text.find('\n', at) - at - 4);
    return true;
  }));
  CHECK(run_dx({"cancel", id, "--connect", http, "--token-file", token.string()}, &out) == 0);
  CHECK(follower.wait(30s) == 1);
  const auto status = status_of(id, journal);
  REQUIRE(status.is_object());
  CHECK(status["status"] == "CANCELLED");
  // Cancelling it again: it has ended (exit 1); an unknown run: exit 2.
  CHECK(run_dx({"cancel", id, "--connect", http, "--token-file", token.string()}, &out) == 1);
  CHECK(run_dx({"cancel", "r-nothing", "--connect", http, "--token-file", token.string()}, &out) == 2);

  serve.signal(SIGTERM);
  CHECK(serve.wait(30s) == 0);
}

TEST_CASE("dx serve with TLS: workers join over mutual TLS, dx run --connect speaks https with the certificates",
          "[tools][serve][tls]") {
  const auto& pki = dx_support::test_pki::get();
  const auto head = pki.options("head");
  const auto client = pki.options("worker");
  const dx_support::temp_dir dir("dx_cli_tls");
  const fs::path journal = dir.path() / "journal.sqlite";
  const fs::path counter = dir.path() / "counter.txt";
  const fs::path quick = dir.path() / "quick.json";
  std::ofstream(quick) << chain_workflow(2, counter, 0.05);
  const std::string http = "127.0.0.1:" + std::to_string(free_port());
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());

  child serve({DX_CLI, "serve", "--listen", listen, "--http", http, "--journal", journal.string(), "--tls-cert",
               head.certificate, "--tls-key", head.private_key, "--tls-ca", head.ca},
              dir.path() / "serve.txt");
  REQUIRE(dx_support::wait_until(
      30s, [&] { return read_text(dir.path() / "serve.txt").find("HTTP API") != std::string::npos; }));
  CHECK(read_text(dir.path() / "serve.txt").find("https://" + http) != std::string::npos);
  child worker({DX_WORKER, "--connect", listen, "--tls-cert", client.certificate, "--tls-key", client.private_key,
                "--tls-ca", client.ca, "--tls-verify-name", "--log-level", "info"},  // the head's names 127.0.0.1
               dir.path() / "worker.txt");

  std::string out;
  CHECK(run_dx({"run", quick.string(), "--connect", http, "--tls-cert", client.certificate, "--tls-key",
                client.private_key, "--tls-ca", client.ca},
               &out) == 0);
  INFO(out);
  CHECK(out.find("https://" + http) != std::string::npos);
  CHECK(out.find("SUCCEEDED") != std::string::npos);
  CHECK(executions(counter) == std::map<std::string, int>{{"s0", 1}, {"s1", 1}});
  // Plain HTTP to the https endpoint: a hint; a client that trusts another authority: the reason.
  CHECK(run_dx({"run", quick.string(), "--connect", http}, &out) == 1);
  CHECK(out.find("give --tls-ca") != std::string::npos);
  const auto rogue = pki.options("rogue", "other-ca");
  CHECK(run_dx({"run", quick.string(), "--connect", http, "--tls-cert", rogue.certificate, "--tls-key",
                rogue.private_key, "--tls-ca", rogue.ca},
               &out) == 1);
  CHECK(out.find("certificate verify failed") != std::string::npos);
  // A worker of another authority is refused, with the reason, and the head goes on.
  child stranger({DX_WORKER, "--connect", listen, "--tls-cert", rogue.certificate, "--tls-key", rogue.private_key,
                  "--tls-ca", head.ca, "--reconnect-for", "0"},
                 dir.path() / "stranger.txt");
  CHECK(stranger.wait(30s) == 1);
  CHECK(read_text(dir.path() / "stranger.txt").find("TLS") != std::string::npos);
  CHECK(dx_support::wait_until(
      10s, [&] { return read_text(dir.path() / "serve.txt").find("refused a TLS connection") != std::string::npos; }));

  // SIGHUP reads the certificates again in both, and neither stops: another run goes through.
  REQUIRE(dx_support::wait_until(
      10s, [&] { return read_text(dir.path() / "worker.txt").find("joined") != std::string::npos; }));
  serve.signal(SIGHUP);
  worker.signal(SIGHUP);
  CHECK(dx_support::wait_until(10s, [&] {
    return read_text(dir.path() / "serve.txt").find("SIGHUP: TLS certificates are read again") != std::string::npos;
  }));
  CHECK(dx_support::wait_until(10s, [&] {
    return read_text(dir.path() / "worker.txt").find("SIGHUP: the TLS certificates are read again") !=
           std::string::npos;
  }));
  CHECK(run_dx({"run", quick.string(), "--connect", http, "--tls-cert", client.certificate, "--tls-key",
                client.private_key, "--tls-ca", client.ca},
               &out) == 0);

  serve.signal(SIGTERM);
  CHECK(serve.wait(30s) == 0);
  worker.signal(SIGTERM);
  CHECK(worker.wait(30s) >= 0);
}

namespace {

/// Waits until `file` holds `text`.
bool wait_for_text(const fs::path& file, const std::string& text, std::chrono::milliseconds limit) {
  return dx_support::wait_until(limit, [&] { return read_text(file).find(text) != std::string::npos; });
}

}  // namespace

TEST_CASE(
    "dx serve --standby takes over when the serving head is killed: the workers follow and the run finishes "
    "there, no finished step run again",
    "[tools][serve][standby]") {
  const dx_support::temp_dir dir("dx_cli_standby");
  dx_support::redis_server redis(dir.path());
  if (!redis.running()) {
    dx_support::skip(redis.problem());
    return;
  }
  const std::string journal = redis.location();
  const fs::path counter = dir.path() / "counter.txt";
  const fs::path wf = dir.path() / "chain.json";
  std::ofstream(wf) << chain_workflow(10, counter, 0.3);
  const std::string a = "127.0.0.1:" + std::to_string(free_port());
  const std::string b = "127.0.0.1:" + std::to_string(free_port());
  const std::string http = "127.0.0.1:" + std::to_string(free_port());

  auto active = std::make_unique<child>(std::vector<std::string>{DX_CLI, "serve", "--listen", a, "--http", http,
                                                                 "--journal", journal, "--lease-ttl", "1s"},
                                        dir.path() / "active.txt");
  REQUIRE(wait_for_text(dir.path() / "active.txt", "HTTP API", 30s));
  child standby({DX_CLI, "serve", "--listen", b, "--journal", journal, "--standby", "--lease-ttl", "1s"},
                dir.path() / "standby.txt");
  REQUIRE(wait_for_text(dir.path() / "standby.txt", "the lease is held by", 30s));
  // A second head that is not a standby is refused while the lease is held, naming the holder.
  std::string refused;
  CHECK(run_dx({"serve", "--listen", "127.0.0.1:0", "--journal", journal}, &refused) == 1);
  CHECK(refused.find("lease is held by") != std::string::npos);

  child worker({DX_WORKER, "--connect", a + "," + b, "--reconnect-for", "60s"}, dir.path() / "worker.txt");
  child follower({DX_CLI, "run", wf.string(), "--connect", http}, dir.path() / "follower.txt");
  REQUIRE(dx_support::wait_until(60s, [&] { return executions(counter).size() >= 4; }));
  active->signal(SIGKILL);
  REQUIRE(active->wait(10s) == 128 + SIGKILL);
  active.reset();

  const std::string id = only_run_id(journal);
  REQUIRE(id.rfind("r-", 0) == 0);
  const nlohmann::json before = status_of(id, journal);
  REQUIRE(before.is_object());
  std::set<std::string> finished_before;
  for (const auto& t : before["tasks"])
    if (t["status"] == "SUCCEEDED") finished_before.insert(t["key"].get<std::string>());
  CHECK(finished_before.size() >= 2);

  const bool ended = dx_support::wait_until(90s, [&] {
    const auto s = status_of(id, journal);
    return s.is_object() && s["status"] == "SUCCEEDED";
  });
  const std::string standby_out = read_text(dir.path() / "standby.txt");
  INFO("standby: " << standby_out << "\nworker: " << read_text(dir.path() / "worker.txt"));
  REQUIRE(ended);
  CHECK(standby_out.find("holds the lease of journal " + journal + " (epoch 2)") != std::string::npos);
  CHECK(standby_out.find("resumed " + id) != std::string::npos);
  const auto runs = executions(counter);
  CHECK(runs.size() == 10);
  for (const auto& [step, times] : runs) {
    INFO(step << " ran " << times << " times");
    if (finished_before.count(step)) {
      CHECK(times == 1);  // finished before the kill: its result comes from the journal
    } else {
      CHECK(times <= 2);  // at most once more, when the kill came while it ran
    }
  }
  standby.signal(SIGTERM);
  CHECK(standby.wait(30s) == 0);
}

TEST_CASE("dx serve whose Redis journal goes away mid-run keeps running, alerts, and catches up when it is back",
          "[tools][serve][standby]") {
  const dx_support::temp_dir dir("dx_cli_redis_outage");
  dx_support::redis_server redis(dir.path());
  if (!redis.running()) {
    dx_support::skip(redis.problem());
    return;
  }
  const std::string journal = redis.location();
  const fs::path counter = dir.path() / "counter.txt";
  const fs::path wf = dir.path() / "chain.json";
  std::ofstream(wf) << chain_workflow(8, counter, 0.3);
  const std::string http = "127.0.0.1:" + std::to_string(free_port());
  child serve({DX_CLI, "serve", "--listen", "127.0.0.1:0", "--http", http, "--workers", "1", "--journal", journal},
              dir.path() / "serve.txt");
  REQUIRE(wait_for_text(dir.path() / "serve.txt", "HTTP API", 30s));
  child follower({DX_CLI, "run", wf.string(), "--connect", http}, dir.path() / "follower.txt");
  REQUIRE(dx_support::wait_until(60s, [&] { return executions(counter).size() >= 2; }));

  redis.kill();
  // The run goes on without Redis: steps keep starting, and the head says why it holds commits.
  CHECK(dx_support::wait_until(30s, [&] { return executions(counter).size() >= 5; }));
  CHECK(wait_for_text(dir.path() / "serve.txt", "dx serve: alert: Redis journal", 10s));
  REQUIRE(redis.start());
  const std::string id = only_run_id(journal);
  REQUIRE(id.rfind("r-", 0) == 0);
  const bool ended = dx_support::wait_until(60s, [&] {
    const auto s = status_of(id, journal);
    return s.is_object() && s["status"] == "SUCCEEDED";
  });
  INFO("serve: " << read_text(dir.path() / "serve.txt"));
  REQUIRE(ended);
  CHECK(wait_for_text(dir.path() / "serve.txt", "every held commit is written", 10s));
  CHECK(follower.wait(30s) == 0);
  // Nothing was lost or run twice: every step once, every task SUCCEEDED in Redis.
  const auto runs = executions(counter);
  CHECK(runs.size() == 8);
  for (const auto& [step, times] : runs) CHECK(times == 1);
  const auto s = status_of(id, journal);
  for (const auto& t : s["tasks"]) CHECK(t["status"] == "SUCCEEDED");
  serve.signal(SIGTERM);
  CHECK(serve.wait(30s) == 0);
}
