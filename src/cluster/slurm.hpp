// A dx job started by Slurm's srun without MPI: which task of the step this process is, which
// task is the head and where it listens, read from the environment srun gives every task.
//
//   srun -n 4 ./myjob         # task 0 runs main() as the head; tasks 1..3 become its workers
//
// Task 0 is the head (its node is the first of the step's node list: srun places task 0 there
// under every distribution); it listens on every address at DX_PORT, else at a port derived from
// the job and step ids, so two jobs sharing a node do not collide. The token is DX_TOKEN of the
// job's environment (srun passes it to every task). DX_HEAD_HOST names the head's node as the
// workers should reach it (a faster network's name: "node01-ib"); DX_LISTEN another address for
// the head to listen at (its port must be the one the workers look for). DX_SLURM=0 turns all of this
// off: each task is then a program of its own.
#pragma once

#include <dx/tls.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dx::detail {

struct slurm_step {
  int task = 0;           // SLURM_PROCID
  int tasks = 1;          // SLURM_STEP_NUM_TASKS
  std::string head_host;  // the first node of SLURM_STEP_NODELIST
  std::uint16_t port = 0;
  std::string token;        // DX_TOKEN, or empty
  std::size_t threads = 1;  // SLURM_CPUS_PER_TASK, or 1
  tls_options tls;          // DX_TLS_CERT, DX_TLS_KEY, DX_TLS_CA: mutual TLS on every link
  bool is_head() const noexcept { return task == 0; }
  std::string head_address() const;  // "head_host:port"
};

/// The srun step this process is a task of, when it has more than one task and DX_SLURM is not
/// 0; nullopt otherwise. Throws dx::error naming the variable when one is malformed.
std::optional<slurm_step> slurm_step_from_environment();

/// The first host of a Slurm host list: "node[07-09,11],gpu1" -> "node07", "a,b" -> "a".
/// Throws dx::error on a list it cannot read.
std::string first_slurm_host(std::string_view hostlist);

/// The port of a step's head when DX_PORT does not name one: 20000 to 59999, from the job and
/// step ids.
std::uint16_t slurm_default_port(std::uint64_t job_id, std::uint64_t step_id) noexcept;

}  // namespace dx::detail
