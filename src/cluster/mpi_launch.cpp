// Owns reading an MPI job from the launcher's environment: this process's rank, the job's size,
// the head's rank.
#include "cluster/mpi_launch.hpp"

#include "transport/mpi.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <atomic>
#include <charconv>
#include <cstdlib>
#include <string_view>

namespace dx::detail {

namespace {

std::atomic<int> head_rank_from_command_line{-1};

[[noreturn]] void bad(const std::string& what) { throw_error(error_kind::generic, fmt::format("MPI job: {}", what)); }

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int number(const char* name, const char* value) {
  int n = 0;
  const std::string_view s(value);
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() || n < 0 || n > 10'000'000)
    bad(fmt::format("{}='{}' is not a whole number up to 10000000", name, value));
  return n;
}

}  // namespace

void set_mpi_head_rank(int rank) noexcept { head_rank_from_command_line.store(rank, std::memory_order_relaxed); }

std::string mpi_job::head_address() const { return transport::mpi_address_string(head_rank, transport::mpi_head_port); }

std::string mpi_job::worker_name() const { return fmt::format("rank-{}", rank); }

std::optional<mpi_job> mpi_job_from_environment() {
  if (!transport::mpi_built_in()) return std::nullopt;
  if (const char* off = env("DX_MPI"); off && std::string_view(off) == "0") return std::nullopt;
  // What the launchers set before MPI starts: Open MPI's mpirun, MPICH's Hydra (and srun
  // --mpi=pmi2), srun --mpi=pmix.
  const char* rank = nullptr;
  const char* size = nullptr;
  const char* size_name = nullptr;
  const char* rank_name = nullptr;
  if ((rank = env("OMPI_COMM_WORLD_RANK")) && (size = env("OMPI_COMM_WORLD_SIZE"))) {
    rank_name = "OMPI_COMM_WORLD_RANK";
    size_name = "OMPI_COMM_WORLD_SIZE";
  } else if ((rank = env("PMI_RANK")) && (size = env("PMI_SIZE"))) {
    rank_name = "PMI_RANK";
    size_name = "PMI_SIZE";
  } else if ((rank = env("PMIX_RANK")) && (size = env("SLURM_STEP_NUM_TASKS"))) {
    rank_name = "PMIX_RANK";
    size_name = "SLURM_STEP_NUM_TASKS";
  } else {
    return std::nullopt;
  }
  mpi_job job;
  job.size = number(size_name, size);
  if (job.size < 2) return std::nullopt;  // one rank: a program of its own
  job.rank = number(rank_name, rank);
  if (job.rank >= job.size) bad(fmt::format("{}={} is not below {}={}", rank_name, job.rank, size_name, job.size));
  if (const int given = head_rank_from_command_line.load(std::memory_order_relaxed); given >= 0) {
    job.head_rank = given;
    if (job.head_rank >= job.size)
      bad(fmt::format("--dx-head-rank {} is not a rank of this job of {}", job.head_rank, job.size));
  } else if (const char* head = env("DX_HEAD_RANK")) {
    job.head_rank = number("DX_HEAD_RANK", head);
    if (job.head_rank >= job.size)
      bad(fmt::format("DX_HEAD_RANK={} is not a rank of this job of {}", job.head_rank, job.size));
  }
  if (const char* token = env("DX_TOKEN")) job.token = token;
  if (const char* threads = env("DX_THREADS")) {
    job.threads = static_cast<std::size_t>(number("DX_THREADS", threads));
    if (job.threads < 1 || job.threads > 4096) bad(fmt::format("DX_THREADS={} is not from 1 to 4096", threads));
  }
  return job;
}

}  // namespace dx::detail
