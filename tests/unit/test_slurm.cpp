// Reading an srun step from the environment: host lists, ranks, the head's port and token.
#include "cluster/slurm.hpp"

#include <dx/cluster.hpp>
#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include "scoped_env.hpp"

#include <memory>
#include <string>
#include <vector>

using dx::detail::first_slurm_host;
using dx::detail::slurm_step_from_environment;

namespace {

/// The variables srun gives a task, each set for the scope (others of the same names unset).
struct fake_step {
  std::vector<std::unique_ptr<dx_support::scoped_env>> vars;
  explicit fake_step(std::vector<std::pair<std::string, std::string>> env) {
    for (const char* name :
         {"SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NODELIST", "SLURM_JOB_ID", "SLURM_STEP_ID",
          "SLURM_CPUS_PER_TASK", "DX_PORT", "DX_TOKEN", "DX_SLURM", "DX_HEAD_HOST"}) {
      vars.push_back(std::make_unique<dx_support::scoped_env>(name, ""));
      ::unsetenv(name);
    }
    for (const auto& [k, v] : env) vars.push_back(std::make_unique<dx_support::scoped_env>(k, v));
  }
};

}  // namespace

TEST_CASE("slurm: the first host of a host list", "[slurm]") {
  CHECK(first_slurm_host("node07") == "node07");
  CHECK(first_slurm_host("a,b,c") == "a");
  CHECK(first_slurm_host("node[07-09,11]") == "node07");
  CHECK(first_slurm_host("node[3,5-6],gpu[1-2]") == "node3");
  CHECK(first_slurm_host("rack1-n[001-128].ib") == "rack1-n001.ib");
  CHECK_THROWS_WITH(first_slurm_host(""), Catch::Matchers::Contains("cannot read the host list"));
  CHECK_THROWS_WITH(first_slurm_host("node[07-09"), Catch::Matchers::Contains("'node[07-09'"));
  CHECK_THROWS_WITH(first_slurm_host("node[a-b]"), Catch::Matchers::Contains("cannot read"));
}

TEST_CASE("slurm: a task of an srun step knows the head's address, token and threads", "[slurm]") {
  fake_step step({{"SLURM_PROCID", "2"},
                  {"SLURM_STEP_NUM_TASKS", "4"},
                  {"SLURM_STEP_NODELIST", "cn[12-13]"},
                  {"SLURM_JOB_ID", "4711"},
                  {"SLURM_STEP_ID", "0"},
                  {"SLURM_CPUS_PER_TASK", "8"},
                  {"DX_TOKEN", "job-secret"}});
  const auto s = slurm_step_from_environment();
  REQUIRE(s);
  CHECK(s->task == 2);
  CHECK(s->tasks == 4);
  CHECK_FALSE(s->is_head());
  CHECK(s->head_host == "cn12");
  CHECK(s->port == dx::detail::slurm_default_port(4711, 0));
  CHECK(s->port >= 20000);
  CHECK(s->head_address() == "cn12:" + std::to_string(s->port));
  CHECK(s->token == "job-secret");
  CHECK(s->threads == 8);
  // Another job's step on the same node gets another port.
  CHECK(dx::detail::slurm_default_port(4712, 0) != s->port);
}

TEST_CASE("slurm: DX_PORT and DX_HEAD_HOST win, and one task, a batch script or DX_SLURM=0 is no step", "[slurm]") {
  {
    fake_step step(
        {{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}, {"DX_PORT", "7700"}});
    const auto s = slurm_step_from_environment();
    REQUIRE(s);
    CHECK(s->is_head());
    CHECK(s->head_address() == "n1:7700");
    CHECK(s->token.empty());
  }
  {
    fake_step step({{"SLURM_PROCID", "1"},
                    {"SLURM_STEP_NUM_TASKS", "3"},
                    {"SLURM_STEP_NODELIST", "n[1-3]"},
                    {"DX_PORT", "7700"},
                    {"DX_HEAD_HOST", "n1-ib"}});
    CHECK(slurm_step_from_environment()->head_address() == "n1-ib:7700");
  }
  {
    fake_step one({{"SLURM_PROCID", "0"}, {"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_STEP_NODELIST", "n1"}});
    CHECK_FALSE(slurm_step_from_environment());
  }
  {
    fake_step batch({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "3"}, {"SLURM_JOB_NODELIST", "n1"}});
    CHECK_FALSE(slurm_step_from_environment());
  }
  {
    fake_step off(
        {{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}, {"DX_SLURM", "0"}});
    CHECK_FALSE(slurm_step_from_environment());
    CHECK_FALSE(dx::is_worker(0, nullptr));
  }
  {
    fake_step worker({{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}});
    char arg0[] = "job";
    char* argv[] = {arg0, nullptr};
    CHECK(dx::is_worker(1, argv));
  }
}

TEST_CASE("slurm: malformed variables are errors naming them", "[slurm]") {
  {
    fake_step step({{"SLURM_PROCID", "x"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}});
    CHECK_THROWS_WITH(slurm_step_from_environment(), Catch::Matchers::Contains("SLURM_PROCID='x'"));
  }
  {
    fake_step step({{"SLURM_PROCID", "5"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}});
    CHECK_THROWS_WITH(slurm_step_from_environment(), Catch::Matchers::Contains("not below the step's 3 tasks"));
  }
  {
    fake_step step(
        {{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_STEP_NODELIST", "n1"}, {"DX_PORT", "70000"}});
    CHECK_THROWS_WITH(slurm_step_from_environment(), Catch::Matchers::Contains("DX_PORT='70000'"));
  }
}
