// A dx job started as the ranks of an MPI job (mpirun, mpiexec, or srun with MPI): which rank
// this process is, which rank is the head, read from the environment the launcher gives every
// rank, before MPI itself starts.
//
//   mpirun -np 4 ./myjob      # rank 0 runs main() as the head; ranks 1..3 become its workers
//
// The head rank is 0, or the one `--dx-head-rank N` (read by dx::is_worker) or DX_HEAD_RANK names.
// The head listens at mpi:HEAD:1 (transport/mpi.hpp); the workers join it there over MPI, named
// "rank-R". DX_TOKEN, when the job's environment has it, is the token they prove they know;
// DX_THREADS the threads each worker rank runs tasks on (default 1). DX_MPI=0 turns all of this
// off; a dx built without MPI never sees an MPI job (under srun, cluster/slurm.hpp then applies).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace dx::detail {

struct mpi_job {
  int rank = 0;
  int size = 1;
  int head_rank = 0;
  std::string token;        // DX_TOKEN, or empty
  std::size_t threads = 1;  // DX_THREADS, or 1
  bool is_head() const noexcept { return rank == head_rank; }
  std::string head_address() const;  // "mpi:HEAD:1"
  std::string worker_name() const;   // "rank-R"
};

/// The MPI job this process is a rank of, when dx has the MPI transport, the job has more than
/// one rank and DX_MPI is not 0; nullopt otherwise. Throws dx::error naming the variable when one
/// is malformed.
std::optional<mpi_job> mpi_job_from_environment();

/// Records `--dx-head-rank N` from the command line (dx::is_worker), which wins over DX_HEAD_RANK.
void set_mpi_head_rank(int rank) noexcept;

}  // namespace dx::detail
