// Where the journal lives when nobody says (journal.hpp, resolve_journal_path): $DX_JOURNAL, an
// explicit path, then the XDG state folder, as other per-user state on Linux.
#include "journal/journal.hpp"

#include <dx/error.hpp>

#include <cstdlib>

namespace dx::detail {

namespace {

const char* non_empty_env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

}  // namespace

std::filesystem::path resolve_journal_path(const std::filesystem::path& explicit_path) {
  if (const char* forced = non_empty_env("DX_JOURNAL")) return forced;
  if (!explicit_path.empty()) return explicit_path;
  if (const char* state = non_empty_env("XDG_STATE_HOME")) {
    return std::filesystem::path(state) / "dx" / "journal.sqlite";
  }
  if (const char* home = non_empty_env("HOME")) {
    return std::filesystem::path(home) / ".local" / "state" / "dx" / "journal.sqlite";
  }
  throw_error(error_kind::generic,
              "no journal path: set DX_JOURNAL, XDG_STATE_HOME or HOME, or give the journal's path");
}

}  // namespace dx::detail
