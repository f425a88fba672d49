// Owns reading a Slurm step from the environment: the task's rank, the head's node and port, the
// job's token.
#include "cluster/slurm.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

namespace dx::detail {

namespace {

[[noreturn]] void bad(const std::string& what) { throw_error(error_kind::generic, fmt::format("Slurm: {}", what)); }

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

std::uint64_t number(const char* name, const char* value, std::uint64_t max) {
  std::uint64_t n = 0;
  const std::string_view s(value);
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() || n > max)
    bad(fmt::format("{}='{}' is not a whole number up to {}", name, value, max));
  return n;
}

}  // namespace

std::string slurm_step::head_address() const {
  // An IPv6 literal would need brackets; Slurm's node names are host names.
  return fmt::format("{}:{}", head_host, port);
}

std::string first_slurm_host(std::string_view list) {
  // The first entry ends at a comma outside brackets.
  std::size_t end = 0;
  int depth = 0;
  for (; end < list.size(); ++end) {
    if (list[end] == '[') ++depth;
    if (list[end] == ']') --depth;
    if (list[end] == ',' && depth == 0) break;
    if (depth < 0 || depth > 1) break;
  }
  const std::string_view entry = list.substr(0, end);
  if (entry.empty() || depth != 0) bad(fmt::format("cannot read the host list '{}'", list));
  const auto open = entry.find('[');
  if (open == std::string_view::npos) return std::string(entry);
  const auto close = entry.find(']', open);
  // "node[07-09,11]" -> prefix "node", first range "07-09" -> "07" (zero padding kept), suffix.
  const std::string_view ranges = entry.substr(open + 1, close - open - 1);
  std::string_view first = ranges.substr(0, ranges.find(','));
  first = first.substr(0, first.find('-'));
  if (first.empty() || first.find_first_not_of("0123456789") != std::string_view::npos)
    bad(fmt::format("cannot read the host list '{}'", list));
  return fmt::format("{}{}{}", entry.substr(0, open), first, entry.substr(close + 1));
}

std::uint16_t slurm_default_port(std::uint64_t job_id, std::uint64_t step_id) noexcept {
  return static_cast<std::uint16_t>(20000 + (job_id * 31 + step_id) % 40000);
}

std::optional<slurm_step> slurm_step_from_environment() {
  if (const char* off = env("DX_SLURM"); off && std::string_view(off) == "0") return std::nullopt;
  // The step's variables, which only srun sets: a batch script has SLURM_PROCID and SLURM_NTASKS
  // too, but it is one process, not the tasks of a step.
  const char* procid = env("SLURM_PROCID");
  const char* ntasks = env("SLURM_STEP_NUM_TASKS");
  const char* nodes = env("SLURM_STEP_NODELIST");
  if (!procid || !ntasks || !nodes) return std::nullopt;
  slurm_step s;
  s.tasks = static_cast<int>(number("SLURM_STEP_NUM_TASKS", ntasks, 1'000'000));
  if (s.tasks < 2) return std::nullopt;  // one task: a program of its own
  s.task = static_cast<int>(number("SLURM_PROCID", procid, 1'000'000));
  if (s.task >= s.tasks) bad(fmt::format("SLURM_PROCID={} is not below the step's {} tasks", s.task, s.tasks));
  const char* head_host = env("DX_HEAD_HOST");
  s.head_host = head_host ? std::string(head_host) : first_slurm_host(nodes);
  if (const char* port = env("DX_PORT")) {
    s.port = static_cast<std::uint16_t>(number("DX_PORT", port, 65535));
    if (s.port == 0) bad("DX_PORT=0: the workers need to know the head's port");
  } else {
    const char* job = env("SLURM_JOB_ID");
    const char* step = env("SLURM_STEP_ID");
    s.port = slurm_default_port(job ? number("SLURM_JOB_ID", job, UINT64_MAX / 64) : 0,
                                step ? number("SLURM_STEP_ID", step, UINT64_MAX / 64) : 0);
  }
  if (const char* token = env("DX_TOKEN")) s.token = token;
  if (const char* cert = env("DX_TLS_CERT")) s.tls.certificate = cert;
  if (const char* key = env("DX_TLS_KEY")) s.tls.private_key = key;
  if (const char* ca = env("DX_TLS_CA")) s.tls.ca = ca;
  if (const char* cpus = env("SLURM_CPUS_PER_TASK"))
    s.threads = static_cast<std::size_t>(std::max<std::uint64_t>(1, number("SLURM_CPUS_PER_TASK", cpus, 4096)));
  return s;
}

}  // namespace dx::detail
