// Reading an MPI job from the launcher's environment (ranks, the head's rank, token, threads),
// MPI addresses, and the MPI transport's refusals that come before MPI starts.
#include "cluster/mpi_launch.hpp"
#include "transport/mpi.hpp"

#include <dx/cluster.hpp>
#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include "scoped_env.hpp"

#include <memory>
#include <string>
#include <vector>

using dx::detail::mpi_job_from_environment;

namespace {

/// The variables a launcher gives a rank, each set for the scope (others of the same names unset).
struct fake_job {
  std::vector<std::unique_ptr<dx_support::scoped_env>> vars;
  explicit fake_job(std::vector<std::pair<std::string, std::string>> env) {
    for (const char* name :
         {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS",
          "DX_MPI", "DX_HEAD_RANK", "DX_TOKEN", "DX_THREADS", "SLURM_PROCID", "SLURM_STEP_NODELIST", "DX_WORKER_OF"}) {
      vars.push_back(std::make_unique<dx_support::scoped_env>(name, ""));
      ::unsetenv(name);
    }
    for (const auto& [k, v] : env) vars.push_back(std::make_unique<dx_support::scoped_env>(k, v));
    dx::detail::set_mpi_head_rank(-1);  // no --dx-head-rank seen
  }
  ~fake_job() { dx::detail::set_mpi_head_rank(-1); }
};

}  // namespace

TEST_CASE("mpi: addresses are mpi:RANK:PORT or mpi:PORT", "[mpi]") {
  const auto a = dx::transport::parse_mpi_address("mpi:3:17");
  REQUIRE(a);
  CHECK(a->rank == 3);
  CHECK(a->port == 17);
  const auto own = dx::transport::parse_mpi_address("mpi:1");
  REQUIRE(own);
  CHECK(own->rank == -1);
  CHECK(own->port == 1);
  for (const char* bad : {"127.0.0.1:7700", "mpi:", "mpi:x:1", "mpi:1:70000", "mpi:-1:2", "mpi:1:2:3", "mpi::1"})
    CHECK_FALSE(dx::transport::parse_mpi_address(bad));
  CHECK(dx::transport::mpi_address_string(2, 1) == "mpi:2:1");
}

TEST_CASE("mpi: a rank of an mpirun job knows the head's rank, token and threads", "[mpi]") {
  if (!dx::transport::mpi_built_in()) {
    WARN("dx was built without MPI: nothing to check");
    return;
  }
  {
    fake_job env(
        {{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"DX_TOKEN", "t0k"}, {"DX_THREADS", "3"}});
    const auto job = mpi_job_from_environment();
    REQUIRE(job);
    CHECK(job->rank == 2);
    CHECK(job->size == 4);
    CHECK(job->head_rank == 0);
    CHECK_FALSE(job->is_head());
    CHECK(job->token == "t0k");
    CHECK(job->threads == 3);
    CHECK(job->head_address() == "mpi:0:1");
    CHECK(job->worker_name() == "rank-2");
    CHECK(dx::is_worker(0, nullptr));
  }
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "4"}});
    CHECK_FALSE(dx::is_worker(0, nullptr));  // rank 0 is the head
  }
  {
    fake_job env({{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}, {"DX_HEAD_RANK", "1"}});  // MPICH's Hydra
    const auto job = mpi_job_from_environment();
    REQUIRE(job);
    CHECK(job->is_head());
    CHECK(job->head_address() == "mpi:1:1");
  }
  {
    // srun --mpi=pmix: the rank from PMIx, the size from the step; the step is not also a Slurm job.
    fake_job env(
        {{"PMIX_RANK", "1"}, {"SLURM_STEP_NUM_TASKS", "3"}, {"SLURM_PROCID", "1"}, {"SLURM_STEP_NODELIST", "node1"}});
    const auto job = mpi_job_from_environment();
    REQUIRE(job);
    CHECK(job->rank == 1);
    CHECK(job->size == 3);
  }
}

TEST_CASE("mpi: one rank, DX_MPI=0 or no launcher is no MPI job", "[mpi]") {
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "1"}});
    CHECK_FALSE(mpi_job_from_environment());
  }
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "3"}, {"DX_MPI", "0"}});
    CHECK_FALSE(mpi_job_from_environment());
    CHECK_FALSE(dx::is_worker(0, nullptr));
  }
  {
    fake_job env({});
    CHECK_FALSE(mpi_job_from_environment());
  }
}

TEST_CASE("mpi: malformed variables are errors naming them", "[mpi]") {
  if (!dx::transport::mpi_built_in()) {
    WARN("dx was built without MPI: nothing to check");
    return;
  }
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "3"}});
    CHECK_THROWS_WITH(mpi_job_from_environment(), Catch::Matchers::Contains("OMPI_COMM_WORLD_RANK='x'"));
    CHECK_FALSE(dx::is_worker(0, nullptr));  // the cluster constructor reports it
  }
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "3"}});
    CHECK_THROWS_WITH(mpi_job_from_environment(), Catch::Matchers::Contains("is not below OMPI_COMM_WORLD_SIZE=3"));
  }
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "3"}, {"DX_HEAD_RANK", "5"}});
    CHECK_THROWS_WITH(mpi_job_from_environment(), Catch::Matchers::Contains("DX_HEAD_RANK=5 is not a rank"));
  }
  {
    fake_job env({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "3"}, {"DX_THREADS", "0"}});
    CHECK_THROWS_WITH(mpi_job_from_environment(), Catch::Matchers::Contains("DX_THREADS=0"));
  }
}

TEST_CASE("mpi: --dx-head-rank on the command line names the head", "[mpi]") {
  if (!dx::transport::mpi_built_in()) {
    WARN("dx was built without MPI: nothing to check");
    return;
  }
  fake_job env({{"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "3"}});
  char arg0[] = "job", flag[] = "--dx-head-rank", two[] = "2", zero[] = "0";
  char* head_is_me[] = {arg0, flag, two, nullptr};
  CHECK_FALSE(dx::is_worker(3, head_is_me));
  char* head_is_zero[] = {arg0, flag, zero, nullptr};
  CHECK(dx::is_worker(3, head_is_zero));
}

TEST_CASE("mpi: local_processes with transport_kind::mpi is refused with the reason", "[mpi]") {
  fake_job env({});
  CHECK_THROWS_WITH(dx::cluster(dx::options{}.transport(dx::transport_kind::mpi).local_processes(2)),
                    Catch::Matchers::Contains("the workers are the MPI job's other ranks"));
}
