// `dx serve`: a long-lived head. Workers join it (and rejoin it after a restart: dx-worker keeps
// reconnecting), runs arrive through its HTTP API (`dx run --connect`), and every run a previous
// head left unfinished in the journal is resumed at start, under its own id. With a journal in
// Redis, it holds the journal's lease while it serves; `--standby` waits for the lease of the head
// serving now and takes over when that head dies: its runs are resumed here and its workers
// (given both addresses: dx-worker --connect A,B) join this head.
#include "commands.hpp"

#include <dx/dx.hpp>

#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dx_cli {

namespace {

bool unfinished(dx::workflow_status s) {
  return s == dx::workflow_status::created || s == dx::workflow_status::running ||
         s == dx::workflow_status::interrupted;
}

std::string status_text(dx::workflow_status s) { return std::string(dx::to_string(s)); }

}  // namespace

int serve(const serve_settings& s) {
  // The journal the HTTP API's runs use too: it takes $DX_JOURNAL first.
  const char* forced = std::getenv("DX_JOURNAL");
  const std::string location = forced != nullptr && *forced != '\0' ? std::string(forced) : s.journal;
  const bool shared = location.rfind("redis://", 0) == 0;
  if (!s.journal.empty())
    ::setenv("DX_JOURNAL", shared ? location.c_str() : std::filesystem::absolute(s.journal).c_str(), 1);
  const dx::run_options journal = dx::run_options{}.with_journal(s.journal);
  if (s.standby && !shared) {
    std::fprintf(stderr, "dx serve: --standby needs a journal that heads share: --journal redis://HOST:PORT/DB\n");
    return 2;
  }

  // The stopping signals are taken by sigtimedwait below, never by a handler: every thread the
  // cluster starts inherits the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGHUP);  // not a stop: read the TLS certificates again
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // A shared journal: this head writes it only while it holds its lease.
  std::optional<dx::journal_lease> lease;
  if (shared) {
    try {
      if (s.standby) {
        std::printf("dx serve: standby for journal %s: waiting for its lease\n", location.c_str());
        std::fflush(stdout);
        bool stop = false;
        lease = dx::journal_lease::wait(
            location, s.lease,
            [&] {
              timespec now{0, 0};
              const int sig = sigtimedwait(&stop_signals, nullptr, &now);
              if (sig == SIGINT || sig == SIGTERM) stop = true;
              return !stop;
            },
            [](const std::string& state) {
              std::printf("dx serve: standby: %s\n", state.c_str());
              std::fflush(stdout);
            });
        if (!lease) {
          std::printf("dx serve: stopping as a standby\n");
          return 0;
        }
      } else {
        lease = dx::journal_lease::take(location, s.lease);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dx serve: %s\n", e.what());
      return 1;
    }
    std::printf("dx serve: holds the lease of journal %s (epoch %lld)\n", location.c_str(),
                static_cast<long long>(lease->epoch()));
    std::fflush(stdout);
  }

  dx::options o = dx::options{}.listen(s.listen).head_runs_tasks(false);
  if (!s.http.empty()) o.http(s.http);
  if (!s.token_file.empty()) o.token_file(s.token_file);
  if (s.tls.enabled()) o.tls(s.tls);
  if (s.workers > 0) o.local_processes(s.workers);
  dx::cluster cl{o};
  // The journal's store away and back (commits held by this head meanwhile), or taken over.
  cl.on_alert([](const dx::alert& a) {
    if (a.kind != dx::alert_kind::journal_unavailable) return;
    std::printf("dx serve: alert: %s\n", a.message.c_str());
    std::fflush(stdout);
  });
  std::printf("dx serve: workers join at %s\n", cl.endpoint().c_str());
  if (!cl.http_endpoint().empty())
    std::printf("dx serve: HTTP API and dashboard at %s://%s/\n", s.tls.enabled() ? "https" : "http",
                cl.http_endpoint().c_str());
  std::fflush(stdout);

  std::vector<dx::workflow_run> resumed;
  for (const auto& r : cl.runs(journal)) {
    if (!unfinished(r.status)) continue;
    try {
      resumed.push_back(dx::workflow_run::resume(cl, r.id, journal));
      std::printf("dx serve: resumed %s (%s)\n", r.id.c_str(), r.name.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "dx serve: cannot resume %s: %s\n", r.id.c_str(), e.what());
    }
    std::fflush(stdout);
  }

  // A line as each run of the journal changes status, until a stopping signal.
  std::map<std::string, dx::workflow_status> seen;
  for (const auto& r : cl.runs(journal)) seen[r.id] = r.status;
  for (;;) {
    timespec tick{1, 0};
    const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGHUP) {
      dx::reload_tls();
      std::printf("dx serve: SIGHUP: TLS certificates are read again for new connections\n");
      std::fflush(stdout);
    }
    if (sig == SIGINT || sig == SIGTERM) {
      std::printf("dx serve: stopping; unfinished runs are INTERRUPTED and resume at the next start\n");
      std::fflush(stdout);
      break;
    }
    if (lease && lease->lost()) {
      // Another head took the journal over: every write of this one is refused. Its workers go to
      // the new head as they would from a head that died, and its runs continue there; stopping
      // gracefully would only try to record what the journal refuses.
      std::fprintf(stderr, "dx serve: %s; stopping at once\n", lease->problem().c_str());
      std::fflush(stderr);
      std::_Exit(1);
    }
    try {
      for (const auto& r : cl.runs(journal)) {
        auto [it, added] = seen.emplace(r.id, r.status);
        if (!added && it->second == r.status) continue;
        it->second = r.status;
        std::printf("dx serve: %s %s %s\n", r.id.c_str(), r.name.c_str(), status_text(r.status).c_str());
        std::fflush(stdout);
      }
    } catch (const std::exception& e) {  // the journal could not be read this time
      std::fprintf(stderr, "dx serve: %s\n", e.what());
    }
  }
  // A second signal while the cluster stops ends the process at once.
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  return 0;
}

}  // namespace dx_cli
