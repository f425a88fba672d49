// A dx job started as the tasks of an srun step, without Slurm: three copies of this binary with
// the variables srun gives each task. Task 0's dx::cluster becomes the head; the others, through
// dx::is_worker in main(), become its workers with the program's own arguments ignored. (The same
// job under a real Slurm: tests/integration/slurm_job.sh.)
#include "net_functions.hpp"

#include <dx/dx.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "spawn_self.hpp"
#include "temp_dir.hpp"
#include "transport/asio.hpp"

TEST_CASE("slurm child: the head task runs remote calls on the other tasks", "[.][slurm-child]") {
  const char* out = std::getenv("DX_TEST_OUT");
  REQUIRE(out != nullptr);
  dx::cluster cl{dx::options{}.threads(1).head_runs_tasks(false)};  // nothing says where: the step does
  std::vector<dx::future<int>> pids;
  for (int i = 0; i < 20; ++i) pids.push_back(cl.submit(net_test::sleep_then_pid, 20));
  std::set<int> ran_on;
  for (auto& f : pids) ran_on.insert(f.get());
  REQUIRE(ran_on.count(static_cast<int>(::getpid())) == 0);
  std::ofstream(out) << cl.workers().size() << ' ' << ran_on.size() << '\n';
}

TEST_CASE("slurm: the tasks of an srun step find their head and run a job, with no address given", "[net][slurm]") {
  const dx_support::temp_dir dir("dx_slurm");
  const std::string out = (dir.path() / "out").string();
  std::uint16_t port = 0;
  {
    dx::asio::io_context io;
    dx::asio::ip::tcp::acceptor probe(io, {dx::asio::ip::make_address("127.0.0.1"), 0});
    port = probe.local_endpoint().port();
  }
  auto task_env = [&](int rank) {
    return std::vector<std::string>{"SLURM_PROCID=" + std::to_string(rank),
                                    "SLURM_STEP_NUM_TASKS=3",
                                    "SLURM_STEP_NODELIST=127.0.0.1",
                                    "SLURM_JOB_ID=4711",
                                    "SLURM_STEP_ID=0",
                                    "DX_PORT=" + std::to_string(port),
                                    "DX_LISTEN=127.0.0.1:" + std::to_string(port),
                                    "DX_TOKEN=step-secret",
                                    "DX_TEST_OUT=" + out};
  };
  // Every task gets the same command line, as under srun: the workers start first here.
  const std::vector<std::string> args{"slurm child: the head task runs remote calls on the other tasks"};
  const pid_t w1 = dx_support::spawn_self(args, task_env(1));
  const pid_t w2 = dx_support::spawn_self(args, task_env(2));
  const pid_t head = dx_support::spawn_self(args, task_env(0));
  CHECK(dx_support::reap_child(head, std::chrono::seconds(60)));
  CHECK(dx_support::reap_child(w1, std::chrono::seconds(20)));  // the head stopped them as it ended
  CHECK(dx_support::reap_child(w2, std::chrono::seconds(20)));
  std::size_t workers = 0, distinct = 0;
  std::ifstream(out) >> workers >> distinct;
  CHECK(workers == 2);
  CHECK(distinct == 2);
}
