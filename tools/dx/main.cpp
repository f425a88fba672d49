// dx: workflows from the command line — check a JSON workflow, run it on local worker processes
// with a journal, list the runs of a journal, show one, resume one whose head died.
//
//   dx validate pipeline.json --plugin ./libsteps.so
//   dx run pipeline.json --workers 4 --plugin ./libsteps.so   # exit 0 succeeded, 1 failed
//   dx list
//   dx status r-20261206T051500Z-3f9a1c2d --json
//   dx resume r-20261206T051500Z-3f9a1c2d --plugin ./libsteps.so
#include <dx/dx.hpp>

#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr const char* usage =
    "usage: dx COMMAND [options]\n"
    "Checks and runs workflows (JSON, see docs/workflow-format.md) and shows their runs.\n"
    "\n"
    "commands:\n"
    "  validate WF.json            check a workflow; print every problem, each naming its step\n"
    "  run WF.json                 run it on local worker processes, journaled; print its progress\n"
    "  resume RUN                  continue a run whose head stopped or died, under its id\n"
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
    "  --json                      status as JSON\n"
    "  -h, --help                  this text\n"
    "\n"
    "exit codes: 0 the run succeeded (or the workflow is valid, or the command worked); 1 the run\n"
    "failed or was cancelled; 2 a bad command line or an invalid workflow; 3 the run was interrupted.\n"
    "\n"
    "example: dx run examples/workflows/thumbnails.json --workers 4 --journal runs.sqlite\n";

struct args {
  std::string command, target;
  std::vector<std::string> plugins;
  std::size_t workers = 2;
  std::string journal, http;
  bool json = false;
};

[[noreturn]] void bad(const std::string& why) {
  std::fprintf(stderr, "dx: %s\nTry 'dx --help'.\n", why.c_str());
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) bad(s + " needs a value");
      return argv[++i];
    };
    if (s == "-h" || s == "--help") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (s == "--plugin") {
      a.plugins.push_back(value());
    } else if (s == "--workers") {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 1 || n > 1024) bad("--workers: '" + v + "' is not a number from 1 to 1024");
      a.workers = static_cast<std::size_t>(n);
    } else if (s == "--journal") {
      a.journal = value();
    } else if (s == "--http") {
      a.http = value();
    } else if (s == "--json") {
      a.json = true;
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
  dx::options o = dx::options{}.local_processes(a.workers).head_runs_tasks(false);
  if (!a.http.empty()) o.http(a.http);
  return o;
}

/// SIGINT and SIGTERM while dx runs a workflow: the first interrupts the run (it ends INTERRUPTED,
/// and `dx resume` continues it), a second ends dx at once. Both signals are blocked in every
/// thread (the mask is set before any other thread starts, and threads inherit it) and one thread
/// takes them with sigwait, so nothing runs in a signal handler. It lives until the process exits.
class signal_watch {
 public:
  /// Blocks the signals and starts the thread that takes them. Call before any thread starts.
  static signal_watch& start() {
    static signal_watch* watch = new signal_watch;  // never destroyed: its thread may run until exit
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
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    std::thread([this] { take_signals(); }).detach();
  }

  void take_signals() {
    for (;;) {
      int sig = 0;
      if (sigwait(&signals_, &sig) != 0) continue;
      std::lock_guard lock(mutex_);
      if (signalled_) {
        // The second: dx ends now, as the signal's default action ends a process (its worker
        // processes follow; the run is resumable as after a kill).
        std::signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
        ::raise(sig);
        std::_Exit(128 + sig);  // not reached
      }
      signalled_ = true;
      std::fprintf(stderr, "dx: %s: interrupting the run (a second signal stops dx at once)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      if (run_.valid()) run_.interrupt();
    }
  }

  sigset_t signals_;
  std::mutex mutex_;
  dx::workflow_run run_;
  bool signalled_ = false;
};

/// Waits for the run, a line of progress every second; the failed tasks at the end.
int follow(dx::workflow_run& run, dx::cluster& cl) {
  std::printf("run %s\n", run.id().c_str());
  if (!cl.http_endpoint().empty()) std::printf("dashboard: http://%s/\n", cl.http_endpoint().c_str());
  std::fflush(stdout);
  while (!run.wait_for(std::chrono::seconds(1))) {
    std::size_t done = 0, all = 0;
    for (const auto& t : run.steps()) {
      if (t.is_subtask) continue;
      ++all;
      done += (t.status == dx::task_status::succeeded || t.status == dx::task_status::cached) ? 1 : 0;
    }
    std::printf("%s: %zu of %zu steps done\n", std::string(dx::to_string(run.status())).c_str(), done, all);
    std::fflush(stdout);
  }
  for (const auto& t : run.steps())
    if (t.status == dx::task_status::failed || t.status == dx::task_status::skipped)
      std::printf("  %s %s: %s\n", t.key.c_str(), std::string(dx::to_string(t.status)).c_str(), t.error.c_str());
  std::printf("%s %s\n", run.id().c_str(), std::string(dx::to_string(run.status())).c_str());
  return exit_code(run.status());
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
    if (a.command == "list") {
      for (const auto& r : runs_of(a))
        std::printf("%s  %-10s  %s\n", r.id.c_str(), std::string(dx::to_string(r.status)).c_str(), r.name.c_str());
      return 0;
    }
    if (a.command == "status") return status(a);
    bad("unknown command '" + a.command + "'");
  } catch (const dx::workflow_error& e) {
    std::fprintf(stderr, "dx: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx: %s\n", e.what());
    return 1;
  }
}
