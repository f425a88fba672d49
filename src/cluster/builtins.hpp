// The functions every dx process has registered (dx.command), and how a worker's failure of one
// of them becomes its own exception type again on the head.
#pragma once

#include <exception>
#include <string>

namespace dx::detail {

/// Registers the built-in functions; the registry calls it before its first lookup, so that they
/// are linked into, and found in, every program that looks functions up (a static dx drops an
/// object file nobody references, and with it a static initialiser's registration). Returns
/// whether all registered. Thread-safe; does not block.
bool register_builtin_functions() noexcept;

/// The exception for a worker's failure of type `type_name` with `message`, when it is one dx
/// rebuilds on the head (dx::command_failed, with its exit code, signal and stderr tail read back
/// from the message); nullptr otherwise. Thread-safe; does not block.
std::exception_ptr rebuild_remote_failure(const std::string& type_name, const std::string& message,
                                          const std::string& worker) noexcept;

}  // namespace dx::detail
