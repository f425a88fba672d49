// Child processes for options::local_processes(): started with posix_spawn, stopped and reaped
// by the head, never left as zombies.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace dx::detail {

/// Starts `program` with `args` (argv[1..]) and extra environment variables; returns the pid.
/// Throws dx::error naming the program when it cannot start.
pid_t spawn_process(const std::string& program, const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env);

/// True once `pid` has exited (and reaps it).
bool process_exited(pid_t pid) noexcept;

/// Waits up to `grace` for `pid` to exit, then kills it (SIGKILL) and reaps it.
void stop_process(pid_t pid, std::chrono::milliseconds grace) noexcept;
/// stop_process for several at once: one `grace` for all of them, not one each.
void stop_processes(const std::vector<pid_t>& pids, std::chrono::milliseconds grace) noexcept;

/// The running program's path (/proc/self/exe).
std::string current_program();

/// In a child started by spawn_process: asks the kernel to send SIGTERM when the parent dies, and
/// returns false when the parent `expected_parent` is already gone.
bool follow_parent(pid_t expected_parent) noexcept;

}  // namespace dx::detail
