// dx: workflows from the command line — check a JSON workflow, run it on local worker processes
// with a journal, list the runs of a journal, show one, resume one whose head died, cancel one
// another process runs.
//
//   dx validate pipeline.json --plugin ./libsteps.so
//   dx run pipeline.json --workers 4 --plugin ./libsteps.so   # exit 0 succeeded, 1 failed, 3 interrupted
//   dx list
//   dx status r-20261206T051500Z-3f9a1c2d --json
//   dx resume r-20261206T051500Z-3f9a1c2d --plugin ./libsteps.so
//   dx cancel r-20261206T051500Z-3f9a1c2d                    # from another terminal
#include <dx/dx.hpp>

#include "commands.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: dx COMMAND [options]\n"
    "Checks and runs workflows (JSON, see docs/workflow-format.md) and shows their runs.\n"
    "\n"
    "commands (dx COMMAND --help, or dx help COMMAND, for each one's options):\n"
    "  validate WF.json            check a workflow; print every problem, each naming its step\n"
    "  run WF.json                 run it on local worker processes, journaled; show its progress\n"
    "  resume RUN                  continue a run whose head stopped or died, under its id\n"
    "  cancel RUN                  cancel a run that a dx in another process (or this one) runs\n"
    "  serve --listen ADDR         a long-lived head: takes runs over HTTP, resumes unfinished ones\n"
    "  list                        the runs of the journal, oldest first\n"
    "  status [RUN] [--json]       a run (default: the latest) and its tasks\n"
    "\n"
    "options (default in brackets):\n"
    "  --plugin LIB.so             a library of DX_REMOTE functions the steps name; repeatable [none]\n"
    "                              e.g. --plugin ./libsteps.so\n"
    "  --workers N                 local worker processes for run and resume [2]. e.g. --workers 8\n"
    "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
    "                              e.g. --journal runs.sqlite\n"
    "  --http ADDR                 serve metrics and the dashboard there while running [none]\n"
    "                              e.g. --http 127.0.0.1:8787\n"
    "  --listen ADDR               run and serve: workers join there (dx-worker --connect ADDR) [none]\n"
    "  --token-file FILE           the cluster's token (workers' and HTTP clients' secret) [none]\n"
    "  --connect HTTP_ADDR         run and cancel: through a dx serve's HTTP API, not here [none]\n"
    "  --json                      status as JSON\n"
    "  --wait DURATION             how long cancel waits for the run's head to answer [10s]\n"
    "  -h, --help                  this text\n"
    "\n"
    "exit codes: 0 the run succeeded (or the workflow is valid, or the command worked); 1 the run\n"
    "failed or was cancelled, or the command did not work (a journal that cannot be read, a run to\n"
    "cancel that is not running); 2 a bad command line, an invalid workflow or an unknown run id;\n"
    "3 the run was interrupted (SIGINT or SIGTERM: a second one stops dx at once).\n"
    "\n"
    "example: dx run examples/workflows/thumbnails.json --workers 4 --journal runs.sqlite\n";

/// `dx COMMAND --help`: what the command does, its options, its exit codes.
struct command_help {
  const char* name;
  const char* text;
};

const command_help helps[] = {
    {"validate",
     "usage: dx validate WF.json [--plugin LIB.so]...\n"
     "Checks a JSON workflow without running it: cycles, unknown steps and functions, parameters of\n"
     "the wrong type, bad durations, splits and resources. Prints every problem, each naming its step.\n"
     "\n"
     "options (default in brackets):\n"
     "  --plugin LIB.so             a library of DX_REMOTE functions the steps name; repeatable [none]\n"
     "\n"
     "exit codes: 0 valid; 2 invalid (or a bad command line).\n"
     "example: dx validate pipeline.json --plugin ./libsteps.so\n"},
    {"run",
     "usage: dx run WF.json [--workers N | --listen ADDR --token-file FILE] [--plugin LIB.so]...\n"
     "              [--journal PATH] [--http ADDR]\n"
     "       dx run WF.json --connect HTTP_ADDR [--token-file FILE]\n"
     "Runs a workflow on local worker processes (or on workers that join at --listen), every change\n"
     "journaled, and shows its progress: one updating line on a terminal (steps done, running,\n"
     "failed, chunks of split steps, time), a line a second otherwise. The run's id comes first;\n"
     "`dx resume ID` continues it after a crash. SIGINT or SIGTERM interrupts the run (it ends\n"
     "INTERRUPTED, resumable); a second one stops dx at once. With --connect, the run is handed to\n"
     "a dx serve (its HTTP address) and followed there: the serve's journal and workers run it.\n"
     "\n"
     "options (default in brackets):\n"
     "  --workers N                 local worker processes [2; none with --listen]. e.g. --workers 8\n"
     "  --listen ADDR               workers join there: dx-worker --connect ADDR [none]\n"
     "                              e.g. --listen 0.0.0.0:7700\n"
     "  --token-file FILE           the token workers (and --connect) present [none]\n"
     "  --connect HTTP_ADDR         a dx serve's HTTP address: run the workflow there [none]\n"
     "  --tls-cert FILE             with --tls-key and --tls-ca: workers join over mutual TLS and the\n"
     "                              HTTP API is https (dx/tls.hpp); with --connect, the certificate\n"
     "                              shown to the head; read again when they change [none]\n"
     "  --tls-key FILE              the private key of --tls-cert [none]\n"
     "  --tls-ca FILE               the authority whose certificates workers must show [none]\n"
     "  --plugin LIB.so             a library of DX_REMOTE functions the steps name; repeatable [none]\n"
     "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
     "  --http ADDR                 serve metrics and the dashboard there while running [none]\n"
     "                              e.g. --http 127.0.0.1:8787\n"
     "\n"
     "exit codes: 0 succeeded; 1 failed or cancelled (or, with --connect, a head that refused it);\n"
     "2 an invalid workflow or a bad command line; 3 interrupted.\n"
     "example: dx run pipeline.json --workers 4 --plugin ./libsteps.so --journal runs.sqlite\n"},
    {"resume",
     "usage: dx resume RUN [--workers N] [--plugin LIB.so]... [--journal PATH] [--http ADDR]\n"
     "Continues a run whose head stopped or died, under its id: steps and chunks that finished are\n"
     "loaded from the journal, not run again; the others run. Shows its progress as dx run does.\n"
     "\n"
     "options (default in brackets):\n"
     "  --workers N                 local worker processes [2]\n"
     "  --plugin LIB.so             a library of DX_REMOTE functions the steps name; repeatable [none]\n"
     "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
     "  --http ADDR                 serve metrics and the dashboard there while running [none]\n"
     "\n"
     "exit codes: 0 succeeded; 1 failed or cancelled, or a journal that cannot be read; 2 an unknown\n"
     "run, a run that ended already, or a bad command line; 3 interrupted.\n"
     "example: dx resume r-20261206T051500-3f9a1c2d --plugin ./libsteps.so\n"},
    {"cancel",
     "usage: dx cancel RUN [--journal PATH] [--wait DURATION]\n"
     "       dx cancel RUN --connect HTTP_ADDR [--token-file FILE]\n"
     "Cancels a run that a dx in another process runs (dx run, dx resume, or a program of yours): the\n"
     "request goes through the journal, the run's head cancels it within a second (running steps are\n"
     "stopped, the run ends CANCELLED) and dx cancel says so.\n"
     "\n"
     "options (default in brackets):\n"
     "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
     "  --wait DURATION             how long to wait for the head's answer [10s]. e.g. --wait 30s\n"
     "  --connect HTTP_ADDR         ask a dx serve through its HTTP API instead [none]\n"
     "  --token-file FILE           the token it asks with [none]\n"
     "  --tls-ca FILE               with --connect: https, the head's certificate checked against it\n"
     "  --tls-cert FILE, --tls-key FILE  the certificate to show a head that asks for one [none]\n"
     "\n"
     "exit codes: 0 cancelled; 1 not cancelled (the run is not running: it ended, was interrupted or\n"
     "its head is gone; or its head did not answer in time), or a journal that cannot be read;\n"
     "2 an unknown run or a bad command line.\n"
     "example: dx cancel r-20261206T051500-3f9a1c2d\n"},
    {"serve",
     "usage: dx serve --listen ADDR [--http ADDR] [--token-file FILE] [--workers N] [--journal PATH]\n"
     "                [--standby] [--lease-ttl DURATION]\n"
     "A long-lived head: workers join at ADDR (dx-worker --connect ADDR), runs arrive on its HTTP API\n"
     "(dx run WF.json --connect HTTP_ADDR), and every run of the journal a previous head left\n"
     "unfinished is resumed at start. SIGINT or SIGTERM stops it; its runs resume at the next start;\n"
     "SIGHUP reads the TLS certificates again.\n"
     "With a journal in Redis (--journal redis://HOST:PORT/DB) heads on several machines share it: the\n"
     "head that serves holds the journal's lease; one started with --standby waits, and when the\n"
     "serving head dies (its lease runs out) it takes the lease, resumes that head's runs (finished\n"
     "steps are read from the journal, not run again) and takes its workers: start them with every\n"
     "head's address, dx-worker --connect HEAD1:PORT,HEAD2:PORT. A head whose lease another head took\n"
     "(it was paused or cut off from Redis for longer than the lease) stops at once, exit 1.\n"
     "\n"
     "options (default in brackets):\n"
     "  --listen ADDR               where workers join (required). e.g. --listen 0.0.0.0:7700\n"
     "  --http ADDR                 the HTTP API and dashboard [none: runs cannot be posted]\n"
     "  --token-file FILE           the token workers and HTTP clients present [none]\n"
     "  --tls-cert FILE             with --tls-key and --tls-ca: workers join over mutual TLS and the\n"
     "                              HTTP API is https (dx/tls.hpp); with --connect, the certificate\n"
     "                              shown to the head; read again when they change [none]\n"
     "  --tls-key FILE              the private key of --tls-cert [none]\n"
     "  --tls-ca FILE               the authority whose certificates workers must show [none]\n"
     "  --workers N                 local worker processes besides those that join [0]\n"
     "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
     "                              or a Redis database, e.g. redis://10.0.0.5:6379/0\n"
     "  --standby                   with a redis:// journal: wait for its lease, then serve [off]\n"
     "  --lease-ttl DURATION        with a redis:// journal: how long the lease outlives the head's last\n"
     "                              renewal; a standby takes over about this long after the head\n"
     "                              died [2s]. e.g. --lease-ttl 5s\n"
     "\n"
     "exit codes: 0 stopped by a signal; 1 it could not start (address in use, unreadable journal, a\n"
     "lease another head holds) or another head took its journal over; 2 a bad command line.\n"
     "example: dx serve --listen 0.0.0.0:7700 --http 127.0.0.1:8787 --token-file dx.token\n"
     "         dx serve --listen 0.0.0.0:7700 --journal redis://10.0.0.5:6379/0 --standby\n"},
    {"list",
     "usage: dx list [--journal PATH]\n"
     "The runs of the journal, oldest first: id, status, workflow name.\n"
     "\n"
     "options (default in brackets):\n"
     "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
     "\n"
     "exit codes: 0 listed; 1 a journal that cannot be read; 2 a bad command line.\n"
     "example: dx list --journal runs.sqlite\n"},
    {"status",
     "usage: dx status [RUN] [--json] [--journal PATH]\n"
     "A run (the latest when none is named) and its tasks: status, progress, errors; with --json,\n"
     "each task's key, parent, status, attempts, worker, progress, error and parameters.\n"
     "\n"
     "options (default in brackets):\n"
     "  --json                      as one JSON object\n"
     "  --journal PATH              the journal [$DX_JOURNAL, else $XDG_STATE_HOME/dx/journal.sqlite]\n"
     "\n"
     "exit codes: 0 shown; 1 a journal that cannot be read (its path named); 2 an unknown run or a bad\n"
     "command line.\n"
     "example: dx status --json\n"},
};

const command_help* help_of(const std::string& command) {
  for (const auto& h : helps)
    if (command == h.name) return &h;
  return nullptr;
}

struct args {
  std::string command, target;
  std::vector<std::string> plugins;
  std::size_t workers = 2;
  bool workers_given = false;
  std::string journal, http, listen, token_file, connect;
  dx::tls_options tls;
  bool json = false;
  std::chrono::milliseconds wait{10'000};
  bool standby = false;
  std::optional<std::chrono::milliseconds> lease_ttl;
};

[[noreturn]] void bad(const std::string& why) {
  std::fprintf(stderr, "dx: %s\nTry 'dx --help'.\n", why.c_str());
  std::exit(2);
}

/// Whether "host:port" names this machine's loopback (a warning is due for anything else sent
/// in the clear).
bool is_loopback_address(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

/// "250ms", "10s", "5m", "1h": a whole number and a unit; nullopt for anything else.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& v) {
  std::size_t digits = 0;
  while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9) return std::nullopt;
  const long long n = std::stoll(v.substr(0, digits));
  const std::string unit = v.substr(digits);
  if (unit == "ms") return std::chrono::milliseconds(n);
  if (unit == "s") return std::chrono::milliseconds(n * 1000);
  if (unit == "m") return std::chrono::milliseconds(n * 60'000);
  if (unit == "h") return std::chrono::milliseconds(n * 3'600'000);
  return std::nullopt;
}

/// -h or --help anywhere: the help of the command named (the first word that is not an option
/// or an option's value), else the overview; exits 0.
void answer_help(int argc, char** argv) {
  bool asked = false;
  std::string command;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if (s == "-h" || s == "--help") {
      asked = true;
    } else if (s == "--plugin" || s == "--workers" || s == "--journal" || s == "--http" || s == "--wait" ||
               s == "--tls-cert" || s == "--tls-key" || s == "--tls-ca" || s == "--lease-ttl") {
      ++i;  // its value
    } else if (command.empty() && !s.empty() && s[0] != '-') {
      command = s;
    }
  }
  if (!asked) return;
  if (command.empty()) {
    std::fputs(usage, stdout);
  } else if (const command_help* h = help_of(command)) {
    std::fputs(h->text, stdout);
  } else {
    bad("unknown command '" + command + "'");
  }
  std::exit(0);
}

args parse(int argc, char** argv) {
  answer_help(argc, argv);
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bad(s + " needs a value");
      return argv[++i];
    };
    if (s == "--plugin") {
      a.plugins.push_back(value());
    } else if (s == "--workers") {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1 || n > 1024) bad("--workers: '" + v + "' is not a number from 1 to 1024");
      a.workers = static_cast<std::size_t>(n);
      a.workers_given = true;
    } else if (s == "--journal") {
      a.journal = value();
    } else if (s == "--http") {
      a.http = value();
    } else if (s == "--listen") {
      a.listen = value();
    } else if (s == "--token-file") {
      a.token_file = value();
    } else if (s == "--connect") {
      a.connect = value();
    } else if (s == "--tls-cert") {
      a.tls.certificate = value();
    } else if (s == "--tls-key") {
      a.tls.private_key = value();
    } else if (s == "--tls-ca") {
      a.tls.ca = value();
    } else if (s == "--json") {
      a.json = true;
    } else if (s == "--standby") {
      a.standby = true;
    } else if (s == "--lease-ttl") {
      const std::string v = value();
      const auto d = parse_duration(v);
      if (!d || *d < std::chrono::milliseconds(200) || *d > std::chrono::milliseconds(3'600'000))
        bad("--lease-ttl: '" + v + "' is not a duration from 200ms to 1h, e.g. 2s");
      a.lease_ttl = *d;
    } else if (s == "--wait") {
      const std::string v = value();
      const auto d = parse_duration(v);
      if (!d) bad("--wait: '" + v + "' is not a duration: a whole number with ms, s, m or h, e.g. 30s");
      a.wait = *d;
    } else if (!s.empty() && s[0] == '-') {
      bad("unknown option '" + s + "'");
    } else if (a.command.empty()) {
      a.command = s;
    } else if (a.target.empty()) {
      a.target = s;
    } else {
      bad("unexpected argument '" + s + "'");
    }
  }
  if (a.command.empty()) bad("no command given");
  if (a.command == "help") {  // dx help [COMMAND]
    const command_help* h = a.target.empty() ? nullptr : help_of(a.target);
    if (!a.target.empty() && !h) bad("unknown command '" + a.target + "'");
    std::fputs(h ? h->text : usage, stdout);
    std::exit(0);
  }
  if (!help_of(a.command)) bad("unknown command '" + a.command + "'");
  // A head needs all three; a client of one (--connect) at least the authority to check it by.
  if (a.tls.enabled() && (a.tls.ca.empty() || a.tls.certificate.empty() != a.tls.private_key.empty() ||
                          (a.connect.empty() && a.tls.certificate.empty())))
    bad(a.connect.empty() ? "TLS needs all of --tls-cert, --tls-key and --tls-ca"
                          : "TLS needs --tls-ca, and --tls-cert with --tls-key when the head asks for a certificate");
  if (!a.connect.empty() && !a.tls.enabled() && !is_loopback_address(a.connect))
    std::fprintf(stderr,
                 "dx: warning: talking to %s over plain HTTP: the token and the workflow cross the network "
                 "readable\n",
                 a.connect.c_str());
  return a;
}

void load_plugins(const std::vector<std::string>& plugins) {
  for (const auto& p : plugins)
    if (!::dlopen(p.c_str(), RTLD_NOW)) bad("--plugin: cannot load '" + p + "': " + ::dlerror());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad("cannot read '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

dx::run_options journal_of(const args& a) { return dx::run_options{}.with_journal(a.journal); }

int exit_code(dx::workflow_status s) {
  switch (s) {
    case dx::workflow_status::succeeded:
      return 0;
    case dx::workflow_status::interrupted:
      return 3;
    default:
      return 1;
  }
}

dx::options cluster_options(const args& a) {
  dx::options o = dx::options{}.head_runs_tasks(false);
  // With --listen, workers join from elsewhere; local ones only when asked for.
  if (a.listen.empty() || a.workers_given) o.local_processes(a.workers);
  if (!a.listen.empty()) o.listen(a.listen);
  if (!a.token_file.empty()) o.token_file(a.token_file);
  if (a.tls.enabled()) o.tls(a.tls);
  if (!a.http.empty()) o.http(a.http);
  return o;
}

/// A run id as the journal makes them: letters, digits, '-' and '_' (it goes into URLs).
void check_run_id(const std::string& id) {
  if (id.empty() || id.size() > 128 ||
      id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != std::string::npos)
    bad("'" + id + "' is not a run id (see 'dx list')");
}

/// SIGINT and SIGTERM while dx runs a workflow: the first interrupts the run (it ends INTERRUPTED,
/// and `dx resume` continues it), a second ends dx at once. Both signals are blocked in every
/// thread (the mask is set before any other thread starts, and threads inherit it) and one thread
/// takes the first with sigwait, so nothing runs in a signal handler. That thread then gives the
/// signals back their default action and unblocks them for itself alone: a second one ends the
/// process whatever the thread is doing (an interrupt that takes long included). A signal the
/// shell made dx ignore (a background job's SIGINT) stays ignored.
class signal_watch {
 public:
  /// Blocks the signals and starts the thread that takes them. Call before any thread starts.
  static signal_watch& start() {
    static signal_watch* watch = new signal_watch;  // never destroyed: its thread runs until exit
    return *watch;
  }
  /// The run a signal interrupts (an empty handle: none). A signal that came before interrupts it
  /// now. Thread-safe.
  void watch(dx::workflow_run run) {
    std::lock_guard lock(mutex_);
    run_ = std::move(run);
    if (signalled_ && run_.valid()) run_.interrupt();
  }
  /// Whether a first signal came. Thread-safe.
  bool signalled() {
    std::lock_guard lock(mutex_);
    return signalled_;
  }

 private:
  signal_watch() {
    sigemptyset(&signals_);
    for (int sig : {SIGINT, SIGTERM}) {
      struct sigaction now {};
      if (::sigaction(sig, nullptr, &now) == 0 && now.sa_handler == SIG_IGN) continue;
      sigaddset(&signals_, sig);
    }
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    std::thread([this] { take_signals(); }).detach();
  }

  void take_signals() {
    int sig = 0;
    while (sigwait(&signals_, &sig) != 0) {
    }
    // From here on a SIGINT or SIGTERM ends the process (its worker processes follow; the run is
    // resumable, as after a kill): the default action, delivered to this thread.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &signals_, nullptr);
    std::fprintf(stderr, "dx: %s: interrupting the run (a second signal stops dx at once)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    {
      std::lock_guard lock(mutex_);
      signalled_ = true;
      if (run_.valid()) run_.interrupt();
    }
    for (;;) ::pause();  // here to take the second signal
  }

  sigset_t signals_;
  std::mutex mutex_;
  dx::workflow_run run_;
  bool signalled_ = false;
};

/// Where a run stands, counted from its tasks.
struct progress {
  std::size_t steps = 0, done = 0, failed = 0;  // failed: failed, skipped or cancelled
  std::size_t running = 0;                      // tasks running now (steps without subtasks, and subtasks)
  std::size_t chunks = 0, chunks_done = 0;      // the chunks of split steps cut so far
};

progress progress_of(const std::vector<dx::task_state>& tasks) {
  progress p;
  std::vector<std::string> parents;
  for (const auto& t : tasks)
    if (t.is_subtask && (parents.empty() || parents.back() != t.parent)) parents.push_back(t.parent);
  std::sort(parents.begin(), parents.end());
  for (const auto& t : tasks) {
    const bool finished = t.status == dx::task_status::succeeded || t.status == dx::task_status::cached;
    const bool working = t.status == dx::task_status::running || t.status == dx::task_status::retrying;
    if (t.is_subtask) {
      p.running += working ? 1 : 0;
      if (!t.parameters.empty()) {  // a split's chunk (an aggregate's reductions have none)
        ++p.chunks;
        p.chunks_done += finished ? 1 : 0;
      }
      continue;
    }
    ++p.steps;
    p.done += finished ? 1 : 0;
    p.failed += (t.status == dx::task_status::failed || t.status == dx::task_status::skipped ||
                 t.status == dx::task_status::cancelled)
                    ? 1
                    : 0;
    // A step with subtasks runs through them: they are counted instead.
    if (working && !std::binary_search(parents.begin(), parents.end(), t.key)) ++p.running;
  }
  return p;
}

std::string elapsed_text(double seconds) {
  char buf[32];
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", seconds);
  } else {
    const auto s = static_cast<long>(seconds);
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  }
  return buf;
}

/// A line of progress: "RUNNING: 12 of 40 steps done, 4 running, 0 failed, chunks 3 of 8 done,
/// 2.5s" for logs, or shorter for a terminal ("RUNNING 12/40 steps, 4 running, 0 failed, chunks
/// 3/8, 2.5s").
std::string progress_line(dx::workflow_status status, const progress& p, double seconds, bool compact) {
  const auto of = [&](std::size_t part, std::size_t whole) {
    return std::to_string(part) + (compact ? "/" : " of ") + std::to_string(whole);
  };
  std::string line = std::string(dx::to_string(status)) + (compact ? " " : ": ") + of(p.done, p.steps) +
                     (compact ? " steps, " : " steps done, ") + std::to_string(p.running) + " running, " +
                     std::to_string(p.failed) + " failed";
  if (p.chunks > 0) line += ", chunks " + of(p.chunks_done, p.chunks) + (compact ? "" : " done");
  return line + ", " + elapsed_text(seconds);
}

/// The width of the terminal on standard output (80 when it does not say).
std::size_t terminal_width() {
  winsize w{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  return 80;
}

/// Waits for the run and shows its progress: on a terminal one line, rewritten five times a second
/// (cut to the terminal's width, so it never wraps); otherwise a line every second, for logs. Then
/// the tasks that failed, and the run's end.
int follow(dx::workflow_run& run, dx::cluster& cl) {
  std::printf("run %s\n", run.id().c_str());
  if (!cl.http_endpoint().empty())
    std::printf("dashboard: %s://%s/\n", cl.config().tls().enabled() ? "https" : "http", cl.http_endpoint().c_str());
  std::fflush(stdout);
  const bool terminal = ::isatty(STDOUT_FILENO) == 1;
  const auto began = std::chrono::steady_clock::now();
  auto show = [&](bool last) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    std::string line = progress_line(run.status(), progress_of(run.steps()), seconds, terminal);
    if (terminal) {
      const std::size_t width = terminal_width();
      if (line.size() >= width) line.resize(width - 1);
      // Back to the start of the line, the new text, the rest of the old one erased.
      std::printf("\r%s\x1b[K%s", line.c_str(), last ? "\n" : "");
    } else if (!last) {
      std::printf("%s\n", line.c_str());
    }
    std::fflush(stdout);
  };
  while (!run.wait_for(terminal ? std::chrono::milliseconds(200) : std::chrono::milliseconds(1000))) show(false);
  show(true);
  for (const auto& t : run.steps())
    if (t.status == dx::task_status::failed || t.status == dx::task_status::skipped)
      std::printf("  %s %s: %s\n", t.key.c_str(), std::string(dx::to_string(t.status)).c_str(), t.error.c_str());
  std::printf("%s %s\n", run.id().c_str(), std::string(dx::to_string(run.status())).c_str());
  return exit_code(run.status());
}

/// dx cancel: asks the run's head through the journal and says what came of it.
int cancel(const args& a) {
  if (a.target.empty()) bad("cancel needs a run id (see 'dx list')");
  dx::cancel_answer answer;
  try {
    answer = dx::workflow_run::request_cancel(a.target, journal_of(a), a.wait);
  } catch (const dx::workflow_error& e) {  // no such run
    std::fprintf(stderr, "dx: %s\nSee 'dx list' for the runs of the journal.\n", e.what());
    return 2;
  }
  if (!answer.cancelled) {
    std::fprintf(stderr, "dx: %s\n", answer.message.c_str());
    return 1;
  }
  std::printf("%s\n", answer.message.c_str());
  return 0;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

/// The runs of the journal; exits 1 with the journal's own words (naming its file) when it cannot
/// be read.
std::vector<dx::run_summary> runs_of(const args& a) {
  try {
    dx::cluster none;
    return none.runs(journal_of(a));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx: %s\n", e.what());
    std::exit(1);
  }
}

/// The run `id` as its journal has it. Exits 2 when the journal has no such run (a wrong id, or
/// --journal), 1 when the journal cannot be read (damaged, not a journal); the message names the
/// file either way.
dx::run_summary recorded_run(const args& a, const std::string& id, std::vector<dx::task_state>* tasks = nullptr) {
  try {
    return dx::workflow_run::recorded(id, journal_of(a), tasks);
  } catch (const std::exception& e) {
    bool listed = true;
    try {
      dx::cluster none;
      const auto runs = none.runs(journal_of(a));
      listed = std::any_of(runs.begin(), runs.end(), [&](const dx::run_summary& r) { return r.id == id; });
    } catch (const std::exception&) {  // unreadable: the first message says why
    }
    std::fprintf(stderr, "dx: %s\n%s", e.what(), listed ? "" : "See 'dx list' for the runs of the journal.\n");
    std::exit(listed ? 1 : 2);
  }
}

/// A task's parameters as a JSON value: the object a split's chunk has ({"start":S,"end":E}),
/// null for none, or a string when the journal holds something that is not JSON.
std::string parameters_json(const std::string& p) {
  if (p.empty()) return "null";
  return nlohmann::json::accept(p) ? p : json_string(p);
}

int status(const args& a) {
  std::string id = a.target;
  if (id.empty()) {
    const auto runs = runs_of(a);
    if (runs.empty()) bad("the journal has no run");
    id = runs.back().id;
  }
  std::vector<dx::task_state> tasks;
  const dx::run_summary r = recorded_run(a, id, &tasks);
  if (a.json) {
    std::printf("{\"id\":%s,\"name\":%s,\"status\":\"%s\",\"tasks\":[", json_string(r.id).c_str(),
                json_string(r.name).c_str(), std::string(dx::to_string(r.status)).c_str());
    for (std::size_t i = 0; i < tasks.size(); ++i) {
      const auto& t = tasks[i];
      std::printf(
          "%s{\"key\":%s,\"parent\":%s,\"is_subtask\":%s,\"status\":\"%s\",\"attempts\":%u,"
          "\"assigned_to\":%s,\"progress\":%.3f,\"error\":%s,\"parameters\":%s}",
          i ? "," : "", json_string(t.key).c_str(), json_string(t.parent).c_str(), t.is_subtask ? "true" : "false",
          std::string(dx::to_string(t.status)).c_str(), t.attempts, json_string(t.assigned_to).c_str(), t.progress,
          json_string(t.error).c_str(), parameters_json(t.parameters).c_str());
    }
    std::printf("]}\n");
  } else {
    std::printf("%s %s %s\n", r.id.c_str(), r.name.c_str(), std::string(dx::to_string(r.status)).c_str());
    for (const auto& t : tasks)
      std::printf("  %-32s %-10s %3.0f%%%s%s\n", t.key.c_str(), std::string(dx::to_string(t.status)).c_str(),
                  100 * t.progress, t.error.empty() ? "" : "  ", t.error.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) {
    // A worker this program started: it loads the same plugins, named in the environment.
    if (const char* p = std::getenv("DX_CLI_PLUGINS")) {
      std::string list = p;
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t end = std::min(list.find(':', at), list.size());
        if (end > at) ::dlopen(list.substr(at, end - at).c_str(), RTLD_NOW);
        at = end + 1;
      }
    }
    return dx::worker_main(argc, argv);
  }
  const args a = parse(argc, argv);
  load_plugins(a.plugins);
  std::string joined;
  for (const auto& p : a.plugins) joined += (joined.empty() ? "" : ":") + p;
  if (!joined.empty()) ::setenv("DX_CLI_PLUGINS", joined.c_str(), 1);
  try {
    if (a.command == "validate" || a.command == "run") {
      if (a.target.empty()) bad(a.command + " needs a workflow file");
      // The head checks it against its own functions (its workers' plugins, not this process's).
      if (a.command == "run" && !a.connect.empty())
        return dx_cli::run_connected(a.connect, a.token_file, a.tls, read_file(a.target), a.target);
      dx::workflow wf{"unnamed"};
      try {
        wf = dx::workflow::from_json(read_file(a.target));  // every problem at once, each naming its step
      } catch (const dx::workflow_error& e) {
        std::fprintf(stderr, "dx: %s: %s\n", a.target.c_str(), e.what());
        return 2;
      }
      if (a.command == "validate") {
        std::printf("%s: valid, %zu steps\n", a.target.c_str(), wf.size());
        return 0;
      }
      signal_watch& signals = signal_watch::start();
      dx::cluster cl{cluster_options(a)};
      if (signals.signalled()) return 3;  // before the run started: nothing was recorded
      dx::workflow_run run = cl.start(wf, journal_of(a));
      signals.watch(run);
      const int code = follow(run, cl);
      signals.watch({});
      return code;
    }
    if (a.command == "resume") {
      if (a.target.empty()) bad("resume needs a run id (see 'dx list')");
      recorded_run(a, a.target);
      signal_watch& signals = signal_watch::start();
      dx::cluster cl{cluster_options(a)};
      if (signals.signalled()) return 3;  // before the run went on: it stays as it was
      dx::workflow_run run = dx::workflow_run::resume(cl, a.target, journal_of(a));
      signals.watch(run);
      const int code = follow(run, cl);
      signals.watch({});
      return code;
    }
    if (a.command == "serve") {
      if (a.listen.empty()) bad("serve needs --listen HOST:PORT (where workers join)");
      dx_cli::serve_settings settings;
      settings.listen = a.listen;
      settings.http = a.http;
      settings.journal = a.journal;
      settings.token_file = a.token_file;
      settings.tls = a.tls;
      settings.workers = a.workers_given ? a.workers : 0;
      settings.standby = a.standby;
      if (a.lease_ttl) {
        settings.lease.ttl = *a.lease_ttl;
        settings.lease.poll = std::min(settings.lease.poll, *a.lease_ttl / 4);
      }
      return dx_cli::serve(settings);
    }
    if (a.command == "cancel" && !a.connect.empty()) {
      check_run_id(a.target);
      return dx_cli::cancel_connected(a.connect, a.token_file, a.tls, a.target);
    }
    if (a.command == "list") {
      for (const auto& r : runs_of(a))
        std::printf("%s  %-10s  %s\n", r.id.c_str(), std::string(dx::to_string(r.status)).c_str(), r.name.c_str());
      return 0;
    }
    if (a.command == "status") return status(a);
    if (a.command == "cancel") return cancel(a);
    bad("unknown command '" + a.command + "'");
  } catch (const dx::workflow_error& e) {
    std::fprintf(stderr, "dx: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx: %s\n", e.what());
    return 1;
  }
}
