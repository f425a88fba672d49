// The dx command's commands that talk to a long-lived head: `dx serve` (the head) and the
// `--connect` forms of run and cancel (its clients, over the head's HTTP API).
#pragma once

#include <dx/journal_lease.hpp>
#include <dx/tls.hpp>

#include <cstddef>
#include <string>

namespace dx_cli {

struct serve_settings {
  std::string listen;       // where workers join (HOST:PORT)
  std::string http;         // the HTTP API and dashboard (HOST:PORT), or none
  std::string journal;      // the journal path, or the default
  std::string token_file;   // the cluster's token (workers' and API writers'), or none
  std::size_t workers = 0;  // local worker processes besides the ones that join
  dx::tls_options tls;      // mutual TLS for the workers that join (and the HTTP API), or none
  bool standby = false;     // a redis:// journal: wait for its lease before serving
  dx::lease_options lease;  // how a redis:// journal's lease is kept and watched
};

/// Runs a head until SIGINT or SIGTERM: resumes every unfinished run of the journal, takes new runs
/// from the HTTP API, prints a line as each run ends. With a redis:// journal it first takes the
/// journal's lease (waits for it with `standby`), and ends (exit 1) if another head takes it over.
/// Returns the process's exit code.
int serve(const serve_settings& s);

/// Submits `workflow_json` to the head at `address` (its HTTP API) and follows the run to its end,
/// as `dx run` does. Returns the exit code of the run's outcome.
/// Over https when `tls` asks for it (the head's certificate checked against tls.ca).
int run_connected(const std::string& address, const std::string& token_file, const dx::tls_options& tls,
                  const std::string& workflow_json, const std::string& source);

/// Asks the head at `address` to cancel run `id`. Returns the exit code.
int cancel_connected(const std::string& address, const std::string& token_file, const dx::tls_options& tls,
                     const std::string& id);

/// The first line of `path`, trimmed; exits with code 2 and a message when it cannot be read.
std::string read_token(const std::string& path);

}  // namespace dx_cli
