// A dx job as the ranks of an MPI job: run by mpi_job.sh under `mpirun -np 3`. Rank 0's
// dx::cluster becomes the head over MPI by itself; ranks 1 and 2 are its workers, joined through
// dx::worker_main as dx-worker options with a resource naming their rank (so that a test can send
// a task to one rank).
//
//   mpi_job run    tasks on ranks 1 and 2, a result moved rank to rank, a large result fetched,
//                  a remote exception with its type, message and worker, garbage from a rank
//   mpi_job kill   rank 2 dies (SIGKILL) in the middle of a task
//   mpi_job defaults  nothing configured: a default dx::cluster on rank 0, dx::worker_main with
//                  the program's own arguments on the others (as a user's main() does)
//
// The head prints "PASS <scenario>" and exits 0 when every check holds, else names the check that
// failed and exits 1. Exit code 77: not run under an MPI launcher of 3 ranks.
#include <dx/dx.hpp>

#include "transport/mpi.hpp"

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

int my_rank() {
  const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
  return r ? std::atoi(r) : -1;
}

int which_rank(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return my_rank();
}

std::string make_bytes(int bytes, int seed) {
  std::string s(static_cast<std::size_t>(bytes), '\0');
  std::uint32_t x = static_cast<std::uint32_t>(seed) * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

std::uint64_t checksum(std::string s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

int fail_on_rank(int x) {
  throw std::domain_error("no square root of " + std::to_string(x) + " on rank " + std::to_string(my_rank()));
}

/// Sends messages dx cannot read to the head's rank, on dx's tags, straight through MPI (dx
/// initialised MPI with MPI_THREAD_MULTIPLE): random bytes, an oversized message, a valid magic
/// with an unknown kind, a frame envelope naming no connection, a chunk nobody announced, and an
/// envelope announcing 1 TiB of chunks that never come.
int send_garbage(int head) {
  auto send = [&](const std::string& bytes, int tag) {
    MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, head, tag, MPI_COMM_WORLD);
  };
  send(make_bytes(40, 7), dx::transport::mpi_envelope_tag);
  send(std::string(1 << 20, 'x'), dx::transport::mpi_envelope_tag);
  std::string env(32, '\0');
  const char magic[4] = {'D', 'X', 'M', '1'};
  std::memcpy(env.data(), magic, 4);
  env[4] = 9;
  send(env, dx::transport::mpi_envelope_tag);
  env[4] = 4;     // a frame
  env[8] = 0x7f;  // to a connection that does not exist
  send(env + std::string(24, '\0'), dx::transport::mpi_envelope_tag);
  send("unannounced", dx::transport::mpi_chunk_tag);
  return 42;
}

int kill_self_on_rank(int rank, int ms) {
  if (my_rank() == rank) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    std::raise(SIGKILL);
  }
  return my_rank();
}

}  // namespace

DX_REMOTE(which_rank);
DX_REMOTE(make_bytes);
DX_REMOTE(checksum);
DX_REMOTE(fail_on_rank);
DX_REMOTE(send_garbage);
DX_REMOTE(kill_self_on_rank);

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  std::fflush(stdout);
  if (!ok) ++failures;
}

dx::resources on_rank(int r) { return dx::resources{{"rank" + std::to_string(r), 1}}; }

/// dx's log lines, kept to check the reasons it gives.
struct log_lines {
  std::mutex m;
  std::vector<std::string> lines;
  log_lines() {
    dx::set_log_sink([this](dx::log_level, std::string_view line) {
      std::lock_guard lk(m);
      lines.emplace_back(line);
      std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
    });
  }
  ~log_lines() { dx::set_log_sink(nullptr); }
  bool has(std::initializer_list<const char*> parts) {
    std::lock_guard lk(m);
    for (const auto& l : lines) {
      bool all = true;
      for (const char* p : parts) all = all && l.find(p) != std::string::npos;
      if (all) return true;
    }
    return false;
  }
};

void expect_workers(dx::cluster& cl) {
  std::set<std::string> ids;
  for (const auto& w : cl.workers()) ids.insert(w.id);
  check(ids == std::set<std::string>{"rank-1", "rank-2"}, "the workers are rank-1 and rank-2");
  check(cl.endpoint() == "mpi:0:1", "the head listens at mpi:0:1 (got " + cl.endpoint() + ")");
}

void run_scenario() {
  log_lines log;
  dx::cluster cl{dx::options{}.threads(1).head_runs_tasks(false).heartbeat(std::chrono::milliseconds(200),
                                                                           std::chrono::milliseconds(3000))};
  expect_workers(cl);

  std::vector<dx::future<int>> ranks;
  for (int i = 0; i < 20; ++i) ranks.push_back(cl.submit(which_rank, 20));
  std::set<int> ran_on;
  for (auto& f : ranks) ran_on.insert(f.get());
  check(ran_on == std::set<int>{1, 2}, "20 tasks ran on ranks 1 and 2");

  // 6 MiB made on rank 1 and read on rank 2: it moves rank to rank, never through the head.
  const int big = 6 << 20;
  auto bytes = cl.submit(on_rank(1), make_bytes, big, 3).share();
  auto sum = cl.submit(on_rank(2), checksum, bytes);
  const std::uint64_t expected = checksum(make_bytes(big, 3));
  check(sum.get() == expected, "rank 2 read the 6 MiB result of rank 1");
  // The worker reports the transfer after the task's answer.
  std::optional<double> moved;
  for (int i = 0; i < 200 && !(moved && *moved >= big); ++i) {
    moved = cl.metrics().value("dx_link_bytes_total", {{"from", "rank-1"}, {"to", "rank-2"}});
    if (!(moved && *moved >= big)) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  check(moved && *moved >= big,
        "dx_link_bytes_total{from=rank-1,to=rank-2} >= 6 MiB (got " + std::to_string(moved ? *moved : -1.0) + ")");
  const auto to_head = cl.metrics().value("dx_link_bytes_total", {{"from", "rank-1"}, {"to", "head"}});
  check(to_head && *to_head < big, "the 6 MiB did not pass through the head before it asked for them");
  check(checksum(bytes.get()) == expected, "the head fetched the 6 MiB result from rank 1");

  try {
    cl.submit(on_rank(2), fail_on_rank, 4).get();
    check(false, "a remote exception arrives");
  } catch (const dx::remote_error& e) {
    check(e.type_name() == "std::domain_error", "remote exception type std::domain_error (got " + e.type_name() + ")");
    check(e.message() == "no square root of 4 on rank 2", "remote exception message (got " + e.message() + ")");
    check(e.worker() == "rank-2", "remote exception names worker rank-2 (got " + e.worker() + ")");
  }

  check(cl.submit(on_rank(2), send_garbage, 0).get() == 42, "the task that sent garbage finished");
  auto logged = [&](std::initializer_list<const char*> parts) {
    for (int i = 0; i < 200 && !log.has(parts); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    return log.has(parts);
  };
  check(logged({"rank 2 sent a message dx cannot read", "no dx envelope"}), "random bytes are refused with a reason");
  check(logged({"rank 2 sent a message dx cannot read", "1048576 bytes"}), "an oversized message is refused");
  check(logged({"rank 2 sent a message dx cannot read", "unknown message kind 9"}), "an unknown kind is refused");
  check(logged({"rank 2 sent a frame for connection", "never opened"}), "a frame for no connection is refused");
  check(logged({"rank 2 sent 11 bytes of chunks dx did not expect"}), "an unannounced chunk is refused");
  // Nothing was lost: both ranks go on working.
  ranks.clear();
  for (int i = 0; i < 20; ++i) ranks.push_back(cl.submit(which_rank, 10));
  ran_on.clear();
  for (auto& f : ranks) ran_on.insert(f.get());
  check(ran_on == std::set<int>{1, 2}, "after the garbage, 20 more tasks ran on ranks 1 and 2");
  expect_workers(cl);
}

void kill_scenario() {
  log_lines log;
  dx::cluster cl{dx::options{}.threads(1).head_runs_tasks(false).heartbeat(std::chrono::milliseconds(200),
                                                                           std::chrono::milliseconds(2000))};
  expect_workers(cl);
  std::vector<dx::future<int>> fs;
  for (int i = 0; i < 10; ++i) fs.push_back(cl.submit(on_rank(1), which_rank, 50));
  // Placed where it starts first, on idle rank 2, which dies of it; on rank 1 it returns.
  auto doomed = cl.submit(kill_self_on_rank, 2, 300);
  int on_one = 0;
  for (auto& f : fs) on_one += f.get() == 1 ? 1 : 0;
  check(on_one == 10, "rank 1's tasks finished while rank 2 died");
  // Rank 2's task either ran on rank 1 (nothing died) or moved there when rank 2 was lost.
  check(doomed.get() == 1, "the task of the lost rank ran again on rank 1");
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = true;
    for (const auto& w : cl.workers()) gone = gone && (w.id != "rank-2" || w.state == dx::worker_state::gone);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  check(gone, "rank-2 is gone from the workers");
  check(log.has({"rank-2", "lost"}), "the head says rank-2 was lost");
}

void defaults_scenario() {
  dx::cluster cl;  // the MPI job makes it the head; its own threads run tasks too
  std::set<std::string> ids;
  for (const auto& w : cl.workers()) ids.insert(w.id);
  check(ids.count("rank-1") == 1 && ids.count("rank-2") == 1, "ranks 1 and 2 joined as rank-1 and rank-2");
  std::vector<dx::future<int>> ranks;
  // More sleeping tasks than the head's threads can take: the worker ranks get their share.
  for (int i = 0; i < 40; ++i) ranks.push_back(cl.submit(which_rank, 100));
  std::set<int> ran_on;
  for (auto& f : ranks) ran_on.insert(f.get());
  std::string where;
  for (int r : ran_on) where += " " + std::to_string(r);
  check(ran_on.count(1) == 1 && ran_on.count(2) == 1, "tasks ran on ranks 1 and 2 (ranks:" + where + ")");
}

}  // namespace

int main(int argc, char** argv) {
  const int rank = my_rank();
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  if (rank < 0 || !size || std::atoi(size) != 3) {
    std::fprintf(stderr, "mpi_job: run me under mpirun -np 3 (see mpi_job.sh)\n");
    return 77;
  }
  const std::string scenario = argc > 1 ? argv[1] : "run";
  if (scenario == "defaults" && dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  if (dx::is_worker(argc, argv)) {
    // dx-worker's options, so that each rank offers a resource naming it.
    std::string name = "rank-" + std::to_string(rank);
    std::string res = "cpu=1,rank" + std::to_string(rank) + "=1";
    const char* args[] = {"mpi_job",    "--dx-worker", "--connect", "mpi:0:1",         "--name",
                          name.c_str(), "--resources", res.c_str(), "--reconnect-for", "20s"};
    return dx::worker_main(static_cast<int>(std::size(args)), const_cast<char**>(args));
  }
  try {
    if (scenario == "run")
      run_scenario();
    else if (scenario == "kill")
      kill_scenario();
    else if (scenario == "defaults")
      defaults_scenario();
    else
      check(false, "known scenario " + scenario);
  } catch (const std::exception& e) {
    check(false, std::string("no exception: ") + e.what());
  }
  if (failures == 0) std::printf("PASS %s\n", scenario.c_str());
  return failures == 0 ? 0 : 1;
}
