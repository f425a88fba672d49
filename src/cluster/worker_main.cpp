// dx::is_worker and dx::worker_main: a process (dx-worker, or the application binary started with
// --dx-worker) that joins a head and runs tasks until the head stops it or goes away.
#include <dx/cluster.hpp>
#include <dx/error.hpp>

#include "cluster/auth.hpp"
#include "cluster/mpi_launch.hpp"
#include "cluster/process.hpp"
#include "cluster/slurm.hpp"
#include "cluster/worker.hpp"
#include "common/log.hpp"
#include "transport/mpi.hpp"
#include "transport/transport.hpp"

#include <dlfcn.h>
#include <signal.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace dx {

bool is_worker(int argc, char** argv) noexcept {
  for (int i = 1; i < argc; ++i)
    if (argv[i] && std::strcmp(argv[i], "--dx-worker") == 0) return true;
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] && argv[i + 1] && std::strcmp(argv[i], "--dx-head-rank") == 0) {
      int rank = -1;
      const std::string_view v(argv[i + 1]);
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), rank);
      // A malformed value is reported by the cluster constructor, as a rank no job has.
      detail::set_mpi_head_rank(ec == std::errc{} && end == v.data() + v.size() && rank >= 0 ? rank : 1 << 30);
    }
  try {
    // Under mpirun every rank but the head's is a worker of the head (cluster/mpi_launch.hpp).
    if (const auto job = detail::mpi_job_from_environment()) return !job->is_head() && !std::getenv("DX_WORKER_OF");
  } catch (const std::exception&) {
    return false;  // the cluster constructor reports the malformed variable
  }
  try {
    // Under srun every task but the first is a worker of the first (cluster/slurm.hpp).
    const auto step = detail::slurm_step_from_environment();
    return step && !step->is_head() && !std::getenv("DX_WORKER_OF");
  } catch (const std::exception&) {
    return false;  // the cluster constructor reports the malformed variable
  }
}

namespace {

constexpr const char* usage =
    "usage: dx-worker --connect HOST:PORT [options]\n"
    "Joins a dx head and runs the registered functions of the plugins it loads (and of the\n"
    "application, when an application binary runs as a worker with --dx-worker).\n"
    "\n"
    "options (default in brackets):\n"
    "  --connect HOST:PORT        the head's address; required. e.g. --connect head.lan:7700\n"
    "                             Several (comma-separated or repeated) for a head with standbys\n"
    "                             (dx serve --standby): the worker joins whichever accepts it, trying\n"
    "                             each in turn when its head is lost or stops, for --reconnect-for.\n"
    "                             e.g. --connect head1.lan:7700,head2.lan:7700\n"
    "                             In an MPI job, mpi:RANK:1 joins the head of that rank over MPI\n"
    "                             (a worker rank started by mpirun needs no --connect at all)\n"
    "  --token-file FILE          file holding the cluster's token [none: $DX_TOKEN, else no token]\n"
    "                             e.g. --token-file /etc/dx/dx.token\n"
    "  --threads N                threads running tasks, at least 1 [1]. e.g. --threads 16\n"
    "  --resources NAME=AMOUNT,.. capacities tasks may declare needs of [cpu=threads]\n"
    "                             e.g. --resources gpu=2,mem_mb=16000\n"
    "  --plugin LIB.so            a library of DX_REMOTE functions to load; repeatable [none]\n"
    "                             e.g. --plugin ./libmytasks.so\n"
    "  --name NAME                the worker's name: its id in workers(), metrics, the dashboard,\n"
    "                             traces and the cost model's speed factors, so a worker keeps what\n"
    "                             was learned of it across runs; up to 64 letters, digits and .-_:@+;\n"
    "                             two live workers cannot share one [HOST-N: this host's name and\n"
    "                             the lowest free index]. e.g. --name gpu-box-1\n"
    "  --listen HOST:PORT         where other workers fetch results from this one [127.0.0.1:0 when\n"
    "                             the head is on loopback, else 0.0.0.0:0 (any free port)]\n"
    "                             e.g. --listen 10.0.0.5:7800\n"
    "  --advertise HOST:PORT      the address other workers are told to fetch results from, when\n"
    "                             they reach this worker through a NAT, a proxy or a tunnel\n"
    "                             [the address --listen bound]. e.g. --advertise 203.0.113.7:7800\n"
    "  --max-frame-size BYTES     largest frame on the wire, at least 1024 [268435456 (256 MiB)];\n"
    "                             larger messages travel in chunks of at most this size\n"
    "                             e.g. --max-frame-size 1073741824\n"
    "  --max-value-size BYTES     largest message with a value, at least 1024 [4294967296 (4 GiB)]:\n"
    "                             a task's arguments, or a result with its reply\n"
    "                             e.g. --max-value-size 17179869184\n"
    "  --slowdown F               run each task F times as long, F >= 1; a testing aid for\n"
    "                             heterogeneous clusters on one machine [1]. e.g. --slowdown 3\n"
    "  --corrupt-results P        change a share P (0 to 1) of the results it sends, one byte each;\n"
    "                             a testing aid for replicated tasks [0]. e.g. --corrupt-results 0.1\n"
    "  --reconnect-for DURATION   when the head is lost or cannot be reached, keep trying to join\n"
    "                             it again (backoff from 100ms doubling to 5s) for this long, then\n"
    "                             exit 1; a head restarted on the same address gets the worker back.\n"
    "                             Meanwhile its tasks go on and their answers wait: a head with\n"
    "                             options::offline_grace takes it back with its work.\n"
    "                             A duration is a number with ms, s, m or h; 0 exits at once\n"
    "                             [5m; 0 for a worker its head started]. e.g. --reconnect-for 30s\n"
    "  --tls-cert FILE            this worker's certificate (PEM), signed by the cluster's authority;\n"
    "                             with --tls-key and --tls-ca, the links to the head and to other\n"
    "                             workers are mutual TLS. The files are read again when they change\n"
    "                             or on SIGHUP [none: plain TCP]. e.g. --tls-cert worker.pem\n"
    "  --tls-key FILE             the private key of --tls-cert (PEM) [none]\n"
    "  --tls-ca FILE              the authority whose certificates the head and peers must show [none]\n"
    "  --tls-min-version V        1.2 or 1.3, the oldest TLS accepted [1.3]\n"
    "  --tls-verify-name          the head's certificate must also name the host of --connect (as\n"
    "                             HTTPS checks) [off: the authority's signature is enough]\n"
    "  --log-level LEVEL          debug, info, warn, error or off [$DX_LOG, else warn]\n"
    "                             e.g. --log-level info\n"
    "  -h, --help                 this text\n"
    "\n"
    "environment: DX_TOKEN (the token, when --token-file is not given), DX_LOG (log level).\n"
    "exit codes: 0 the head stopped the worker or it left (SIGTERM, SIGINT); 1 the head was lost or\n"
    "could not be reached for longer than --reconnect-for, or refused the worker for good (a wrong\n"
    "token, a bad name; a name taken by a live worker is tried again, as the head times the old\n"
    "one out); 2 a bad command line. A worker its head started ignores SIGINT (its head stops it),\n"
    "and ends at once on SIGTERM (exit code 1), which the system sends it when its head dies.\n"
    "\n"
    "example: dx-worker --connect head.lan:7700 --token-file dx.token --plugin ./libmytasks.so \\\n"
    "             --threads 16 --resources gpu=1\n";

/// A command-line mistake: reported with the usage hint and exit code 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_value(const std::string& option, const std::string& value, const std::string& expected) {
  throw usage_error(option + ": '" + value + "' is not " + expected);
}

std::uint64_t parse_count(const std::string& option, const std::string& value, std::uint64_t min, std::uint64_t max,
                          const std::string& expected) {
  std::uint64_t n = 0;
  const char* first = value.data();
  const char* last = first + value.size();
  const auto [end, ec] = std::from_chars(first, last, n);
  if (value.empty() || ec != std::errc{} || end != last || n < min || n > max) bad_value(option, value, expected);
  return n;
}

double parse_number(const std::string& option, const std::string& value, const std::string& expected) {
  char* end = nullptr;
  errno = 0;
  const double x = value.empty() ? std::nan("") : std::strtod(value.c_str(), &end);
  if (value.empty() || !end || *end != '\0' || errno == ERANGE || !std::isfinite(x)) bad_value(option, value, expected);
  return x;
}

std::map<std::string, double> parse_resources(const std::string& spec) {
  std::map<std::string, double> out;
  const std::string expected = "a list of NAME=AMOUNT (e.g. gpu=2,mem_mb=16000)";
  if (spec.empty()) bad_value("--resources", spec, expected);
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    const auto comma = spec.find(',', pos);
    const std::string item = spec.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0)
      throw usage_error("--resources: item '" + item + "' of '" + spec + "' is not NAME=AMOUNT");
    const std::string amount = item.substr(eq + 1);
    const double x = parse_number("--resources", amount, "an amount (a number >= 0) in item '" + item + "'");
    if (x < 0) bad_value("--resources", amount, "an amount (a number >= 0) in item '" + item + "'");
    out[item.substr(0, eq)] = x;
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

/// "0", or a whole number followed by ms, s, m or h ("30s", "5m").
std::chrono::milliseconds parse_duration(const std::string& option, const std::string& value) {
  const std::string expected = "a duration: 0, or a whole number with ms, s, m or h (e.g. 30s, 5m)";
  if (value == "0") return std::chrono::milliseconds(0);
  std::size_t digits = 0;
  while (digits < value.size() && value[digits] >= '0' && value[digits] <= '9') ++digits;
  const std::string unit = value.substr(digits);
  std::uint64_t per = 0;
  if (unit == "ms") per = 1;
  if (unit == "s") per = 1000;
  if (unit == "m") per = 60'000;
  if (unit == "h") per = 3'600'000;
  if (digits == 0 || per == 0) bad_value(option, value, expected);
  // At most a year: far beyond any use, and far from overflowing the clock.
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + digits, n);
  if (ec != std::errc{} || end != value.data() + digits || n > 365ull * 24 * 3'600'000 / per)
    bad_value(option, value, expected);
  return std::chrono::milliseconds(static_cast<std::int64_t>(n * per));
}

/// A duration as parse_duration reads it, in its largest whole unit.
std::string show_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

void check_address(const std::string& option, const std::string& value) {
  const auto colon = value.rfind(':');
  const std::string expected = "HOST:PORT (e.g. 127.0.0.1:7700)";
  const std::string port = colon == std::string::npos ? std::string() : value.substr(colon + 1);
  std::uint16_t n = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (colon == 0 || port.empty() || ec != std::errc{} || end != port.data() + port.size())
    bad_value(option, value, expected);
}

/// How long a worker tries to get its head back unless --reconnect-for says otherwise.
constexpr std::chrono::milliseconds default_reconnect_for{5 * 60'000};
constexpr std::chrono::milliseconds first_backoff{100};
constexpr std::chrono::milliseconds max_backoff{5000};
/// With several heads, one of which a standby that takes over about a lease's ttl after the head
/// died: a round of tries at least every second, so that the new head is found within a second of
/// its start.
constexpr std::chrono::milliseconds max_backoff_of_heads{1000};
/// How long tasks asked to stop as the head stops this worker have to end (a command gets SIGTERM,
/// then SIGKILL a second later).
constexpr std::chrono::milliseconds stopped_tasks_grace{1500};

/// What the thread waiting for SIGTERM and SIGINT shares with the joining loop.
struct stop_state {
  std::mutex mutex;
  std::condition_variable cv;
  bool stopping = false;
  detail::worker_runtime* current = nullptr;  // joined and not yet lost
};

/// For a worker whose results nobody will collect (its head is gone, or stops it): asks its
/// running tasks to stop, which ends commands' process groups, and waits until they have ended
/// or stopped_tasks_grace passed; false when some still run (they ignore their stop token, and
/// must not hold the process).
bool stop_running_tasks(detail::worker_runtime& worker) {
  worker.stop_tasks();
  const auto until = std::chrono::steady_clock::now() + stopped_tasks_grace;
  while (worker.running_tasks() > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return worker.running_tasks() == 0;
}

[[noreturn]] void exit_now(int code) {
  std::fflush(stderr);
  std::_Exit(code);
}

/// Joins the head, and joins it again after losing it, until it stops this worker, a signal asks
/// to leave (0), or it stays away longer than `reconnect_for` or refuses this worker for good (1).
/// `started_by_head`: a head started this process as its worker (DX_WORKER_OF). `heads`: where the
/// head may be (a head and its standbys), tried in turn; cfg.connect is ignored.
int run_worker(const detail::worker_config& base, const std::vector<std::string>& heads,
               std::chrono::milliseconds reconnect_for, bool started_by_head) {
  detail::worker_config cfg = base;
  std::size_t current = 0;  // the head tried, or joined, now
  cfg.connect = heads[current];
  const bool several = heads.size() > 1;
  // SIGTERM and SIGINT mean "leave gracefully": a thread waits for them so that the handler
  // does no work in signal context. A worker its head started ignores SIGINT: a terminal's Ctrl-C
  // reaches the head and its workers together, and the head stops them as it stops itself.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  if (started_by_head) {
    std::signal(SIGINT, SIG_IGN);
  } else {
    sigaddset(&stop_signals, SIGINT);
  }
  sigaddset(&stop_signals, SIGUSR2);  // sent by this process to end the waiting thread
  sigaddset(&stop_signals, SIGHUP);   // read the TLS certificates again
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  stop_state stop;
  std::thread signal_waiter([&] {
    int sig = 0;
    for (;;) {
      if (sigwait(&stop_signals, &sig) != 0 || sig == SIGUSR2) return;
      if (sig != SIGHUP) break;
      dx::reload_tls();
      detail::log(detail::log_level::info, "SIGHUP: the TLS certificates are read again before the next connection");
    }
    std::lock_guard lock(stop.mutex);
    // A worker its head started gets SIGTERM from the kernel when that head dies (follow_parent;
    // sent as the head's spawning thread exits, so the head may still look alive): there is no
    // head to leave gracefully to, and leaving would wait for tasks nobody collects. It ends now.
    if (started_by_head) {
      if (stop.current) stop_running_tasks(*stop.current);
      exit_now(1);
    }
    stop.stopping = true;
    // Under the lock, so the loop cannot destroy the worker while it hands its tasks back.
    if (stop.current) stop.current->leave();
    stop.cv.notify_all();
  });
  struct end_waiter {
    std::thread& t;
    ~end_waiter() {
      pthread_kill(t.native_handle(), SIGUSR2);
      t.join();
    }
  } end_signal_waiter{signal_waiter};

  using clock = std::chrono::steady_clock;
  bool away = false;               // the head is lost, or not reached yet
  clock::time_point away_since{};  // since when
  std::chrono::milliseconds backoff = first_backoff;
  std::minstd_rand rng{std::random_device{}()};
  bool joined_once = false;
  // A worker that lost its head and still holds its work (tasks going on, answers waiting):
  // joined again, the head may take it back with that work (options::offline_grace).
  std::unique_ptr<detail::worker_runtime> holding;
  for (;;) {
    std::string why;
    bool for_good = false;
    {
      std::unique_ptr<detail::worker_runtime> worker = std::move(holding);
      bool back = false;   // taken back with its work
      bool fresh = false;  // a new worker_runtime, holding nothing
      try {
        if (worker) {
          back = worker->rejoin();
          if (!back) {  // the head holds nothing for it: its work is nobody's now
            stop_running_tasks(*worker);
            worker.reset();
          }
        }
        if (!worker) {
          worker = std::make_unique<detail::worker_runtime>(cfg);
          fresh = true;
          worker->start();
        }
        detail::log(detail::log_level::info, "worker {} {} {}", worker->id(), back ? "taken back by" : "joined",
                    cfg.connect);
        {
          std::lock_guard lock(stop.mutex);
          if (stop.stopping) {
            worker->leave();
            return 0;
          }
          stop.current = worker.get();
        }
        away = false;
        backoff = first_backoff;
        joined_once = true;
        const int code = worker->wait();
        {
          std::lock_guard lock(stop.mutex);
          stop.current = nullptr;
        }
        bool stopped_by_head = false;
        if (code == 0) {
          std::lock_guard lock(stop.mutex);
          stopped_by_head = !stop.stopping;
        }
        if (code == 0 && !(several && stopped_by_head)) {
          // The head stopped this worker (or it left): nothing takes results now.
          if (!stop_running_tasks(*worker)) exit_now(0);
          return 0;
        }
        if (reconnect_for.count() == 0) {  // the head is gone, and this worker waits for no other
          stop_running_tasks(*worker);
          exit_now(1);
        }
        why = code == 0 ? std::string("it stopped; another head may take over") : worker->lost_reason();
        if (why.empty()) why = "the connection closed";
        if (code == 2) holding = std::move(worker);  // offline with its work
      } catch (const protocol_error& e) {
        why = e.what();
        for_good = !detail::rejection_may_pass(worker->rejection());
      } catch (const std::exception& e) {
        why = e.what();
        if (worker && !fresh) holding = std::move(worker);  // the head not reached yet: it keeps its work
      }
      // Results held for the old head are of no use to the next one; running tasks are asked to
      // stop so that this returns soon (a task that ignores its stop token delays the next join).
      if (worker) worker->stop_tasks();
    }
    // Its work is given up with the head.
    const auto give_up = [&] {
      if (holding) stop_running_tasks(*holding);
    };
    const auto now = clock::now();
    const bool first_miss = !away;
    if (first_miss) {
      away = true;
      away_since = now;
    }
    if (for_good || reconnect_for.count() == 0) {
      give_up();
      std::fprintf(stderr, "dx-worker: %s\n", why.c_str());
      return 1;
    }
    const auto deadline = away_since + reconnect_for;
    if (now >= deadline) {
      give_up();
      std::string all;
      for (const auto& h : heads) all += (all.empty() ? "" : ",") + h;
      std::fprintf(stderr, "dx-worker: gave up on the head at %s: not %s within %s (--reconnect-for); last: %s\n",
                   all.c_str(), joined_once ? "back" : "reached", show_duration(reconnect_for).c_str(), why.c_str());
      return 1;
    }
    if (first_miss) {
      detail::log(detail::log_level::warn, "head at {} {}: {}; {} for up to {}", cfg.connect,
                  joined_once ? "lost" : "not reached", why, joined_once ? "reconnecting" : "trying",
                  show_duration(reconnect_for));
    } else {
      detail::log(detail::log_level::info, "head at {} not back yet: {}", cfg.connect, why);
    }
    // Several heads: the next one at once, and the backoff after each round of all of them. Work
    // held for one head is no use to another (a standby that took over runs it again).
    bool round_done = true;
    if (several) {
      current = (current + 1) % heads.size();
      cfg.connect = heads[current];
      round_done = current == 0;
      if (holding) {
        stop_running_tasks(*holding);
        holding.reset();
      }
    }
    // Jitter spreads the workers of one head over the backoff, so a restarted head is not met by
    // all of them at once.
    const double u = std::uniform_real_distribution<double>(0.5, 1.0)(rng);
    const auto pause = round_done ? std::min(std::chrono::duration_cast<std::chrono::milliseconds>(backoff * u),
                                             std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now))
                                  : std::chrono::milliseconds(0);
    if (round_done) backoff = std::min(backoff * 2, several ? max_backoff_of_heads : max_backoff);
    std::unique_lock lock(stop.mutex);
    if (stop.cv.wait_for(lock, pause, [&] { return stop.stopping; })) {
      give_up();
      return 0;
    }
  }
}

}  // namespace

int worker_main(int argc, char** argv) {
  detail::init_log_from_environment();  // a bad DX_LOG is reported before anything else
  detail::worker_config cfg;
  std::vector<std::string> plugins;
  std::optional<std::chrono::milliseconds> reconnect_for;
  std::vector<std::string> heads;  // --connect: the head, and its standbys
  bool threads_given = false;
  // A task of an srun step that became a worker through dx::is_worker has the program's own
  // arguments (srun gives every task the same command line), not dx-worker's: they are not read.
  // (dx-worker itself, and a worker a head starts, say --dx-worker.)
  bool flagged = false;
  for (int i = 1; i < argc; ++i) flagged = flagged || (argv[i] && std::strcmp(argv[i], "--dx-worker") == 0);
  std::optional<detail::slurm_step> slurm_worker;  // this process is a worker task of an srun step
  std::string slurm_problem;                       // a malformed step variable
  std::optional<detail::mpi_job> mpi_worker;       // this process is a worker rank of an MPI job
  try {
    mpi_worker = detail::mpi_job_from_environment();
    if (mpi_worker && mpi_worker->is_head()) mpi_worker.reset();
    if (!mpi_worker) slurm_worker = detail::slurm_step_from_environment();
    if (slurm_worker && slurm_worker->is_head()) slurm_worker.reset();
  } catch (const std::exception& e) {
    slurm_problem = e.what();  // matters only where the step is read for where to connect
    if (!flagged) {
      std::fprintf(stderr, "dx-worker: %s\n", e.what());
      return 2;
    }
  }
  if (!flagged && (slurm_worker || mpi_worker)) argc = 1;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw usage_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--dx-worker") continue;
      if (a == "--connect") {
        const std::string v = value();
        std::size_t from = 0;
        for (;;) {
          const auto comma = v.find(',', from);
          const std::string one = v.substr(from, comma == std::string::npos ? std::string::npos : comma - from);
          check_address(a, one);
          heads.push_back(one);
          if (comma == std::string::npos) break;
          from = comma + 1;
        }
        cfg.connect = heads.front();
      } else if (a == "--token-file") {
        const std::string file = value();
        try {
          cfg.token = detail::read_token_file(file);
        } catch (const std::exception& e) {
          throw usage_error(std::string("--token-file: ") + e.what());
        }
      } else if (a == "--threads") {
        threads_given = true;
        cfg.threads = static_cast<std::size_t>(parse_count(a, value(), 1, 4096, "a whole number from 1 to 4096"));
      } else if (a == "--resources") {
        cfg.resources = parse_resources(value());
      } else if (a == "--plugin") {
        plugins.push_back(value());
      } else if (a == "--name") {
        cfg.name = value();
        if (const std::string why = detail::worker_name_problem(cfg.name); !why.empty())
          bad_value(a, cfg.name, "a worker name (" + why + ")");
      } else if (a == "--listen") {
        cfg.data_listen = value();
        check_address(a, cfg.data_listen);
      } else if (a == "--advertise") {
        cfg.data_advertise = value();
        check_address(a, cfg.data_advertise);
      } else if (a == "--max-frame-size") {
        cfg.max_frame_size = parse_count(a, value(), 1024, std::numeric_limits<std::uint64_t>::max(),
                                         "a number of bytes of at least 1024");
      } else if (a == "--max-value-size") {
        cfg.max_value_size = parse_count(a, value(), 1024, std::numeric_limits<std::uint64_t>::max(),
                                         "a number of bytes of at least 1024");
      } else if (a == "--slowdown") {
        const std::string v = value();
        cfg.slowdown = parse_number(a, v, "a factor of at least 1 (e.g. 3)");
        if (cfg.slowdown < 1) bad_value(a, v, "a factor of at least 1 (e.g. 3)");
      } else if (a == "--corrupt-results") {
        const std::string v = value();
        cfg.corrupt_results = parse_number(a, v, "a share from 0 to 1 (e.g. 0.1)");
        if (!(cfg.corrupt_results >= 0 && cfg.corrupt_results <= 1)) bad_value(a, v, "a share from 0 to 1 (e.g. 0.1)");
      } else if (a == "--tls-cert") {
        cfg.tls.certificate = value();
      } else if (a == "--tls-key") {
        cfg.tls.private_key = value();
      } else if (a == "--tls-ca") {
        cfg.tls.ca = value();
      } else if (a == "--tls-verify-name") {
        cfg.tls.verify_peer_name = true;
      } else if (a == "--tls-min-version") {
        const std::string v = value();
        if (v == "1.2")
          cfg.tls.min_version = tls_version::tls1_2;
        else if (v == "1.3")
          cfg.tls.min_version = tls_version::tls1_3;
        else
          bad_value(a, v, "1.2 or 1.3");
      } else if (a == "--reconnect-for") {
        reconnect_for = parse_duration(a, value());
      } else if (a == "--log-level") {
        const std::string v = value();
        const auto level = parse_log_level(v);
        if (!level) bad_value(a, v, "a log level (debug, info, warn, error or off)");
        set_log_level(*level);
      } else if (a == "--help" || a == "-h") {
        std::fputs(usage, stdout);
        return 0;
      } else {
        throw usage_error("unknown option '" + a + "'");
      }
    }
    if (cfg.connect.empty()) {
      // A worker task of an srun step finds its head from the step (cluster/slurm.hpp), a worker
      // rank of an MPI job from the job (cluster/mpi_launch.hpp).
      if (!slurm_problem.empty()) throw usage_error(slurm_problem);
      if (const auto& job = mpi_worker) {
        cfg.connect = job->head_address();
        heads = {cfg.connect};
        if (cfg.token.empty()) cfg.token = job->token;
        if (!threads_given) cfg.threads = job->threads;
        if (cfg.name.empty()) cfg.name = job->worker_name();
        // The head may start a moment after its workers; one that ended is not coming back.
        if (!reconnect_for) reconnect_for = std::chrono::milliseconds(60'000);
      } else if (const auto& step = slurm_worker) {
        cfg.connect = step->head_address();
        heads = {cfg.connect};
        if (cfg.token.empty()) cfg.token = step->token;
        if (!cfg.tls.enabled()) cfg.tls = step->tls;
        if (!threads_given) cfg.threads = step->threads;
        // The head may start a moment after its workers; one that ended is not coming back.
        if (!reconnect_for) reconnect_for = std::chrono::milliseconds(60'000);
      }
    }
    if (cfg.connect.empty()) throw usage_error("--connect HOST:PORT is required");
    if (cfg.connect.starts_with("mpi:")) {
      if (!transport::parse_mpi_address(cfg.connect))
        bad_value("--connect", cfg.connect, "an MPI address (mpi:RANK:PORT)");
      if (!transport::mpi_built_in()) throw usage_error("--connect " + cfg.connect + ": dx was built without MPI");
      cfg.transport = transport_kind::mpi;
      if (cfg.tls.enabled()) throw usage_error("--tls-cert: TLS is for TCP links; MPI links are the MPI library's");
    }
    if (cfg.tls.enabled() && (cfg.tls.ca.empty() || cfg.tls.certificate.empty() || cfg.tls.private_key.empty()))
      throw usage_error("TLS needs all of --tls-cert, --tls-key and --tls-ca");
    // A file that cannot be used fails now, not as a head that cannot be reached, tried again
    // for --reconnect-for.
    if (cfg.tls.enabled()) (void)transport::make_tls_credentials(cfg.tls);
    if (cfg.token.empty())
      if (const char* t = std::getenv("DX_TOKEN")) cfg.token = t;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dx-worker: %s\nTry 'dx-worker --help'.\n", e.what());
    return 2;
  }
  for (const auto& p : plugins) {
    // RTLD_GLOBAL is not needed: the plugin's DX_REMOTE registrations run in its static
    // initialisers and land in this process's registry.
    if (!::dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      std::fprintf(stderr, "dx-worker: --plugin: cannot load '%s': %s\nTry 'dx-worker --help'.\n", p.c_str(),
                   ::dlerror());
      return 2;
    }
  }

  const char* parent = std::getenv("DX_WORKER_OF");
  if (parent && !detail::follow_parent(static_cast<pid_t>(std::atoll(parent)))) return 1;
  // A worker its head started ends with that head.
  if (!reconnect_for) reconnect_for = parent ? std::chrono::milliseconds(0) : default_reconnect_for;
  // A worker that waits for its head keeps its work meanwhile, for a head that waits for it.
  cfg.keep_work_offline = reconnect_for->count() > 0;
  return run_worker(cfg, heads, *reconnect_for, parent != nullptr);
}

}  // namespace dx
