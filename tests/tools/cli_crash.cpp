// Crash tests of the dx command, run as a user runs it: `dx run` and `dx resume` as child
// processes with a journal in a temporary folder and two local worker processes, killed with
// SIGKILL at random moments or signalled, their journals cut at random bytes. What they leave is
// read back with `dx status --json` and, for results, the journal itself. The steps come from
// crash_steps.cpp (loaded with --plugin); each appends a line naming its task to a file of marks
// every time it runs, which is how "never ran twice" is checked.
#include "journal/journal.hpp"

#include <dx/serialize.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "cli_process.hpp"
#include "temp_dir.hpp"

#include <poll.h>
#include <pty.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>

namespace {

using namespace dx_cli_test;
using namespace std::chrono_literals;
using json = nlohmann::json;

const std::string dx_program = DX_CLI_PROGRAM;
const std::string steps_plugin = DX_CRASH_STEPS;

dx_process start_dx(const fs::path& dir, const std::string& tag, std::vector<std::string> args,
                    bool own_group = false) {
  return start_program(dx_program, dir, tag, args, own_group);
}

dx_outcome run_dx(const fs::path& dir, const std::string& tag, std::vector<std::string> args,
                  std::chrono::milliseconds limit = 60s) {
  return wait_exit(start_dx(dir, tag, std::move(args)), limit);
}

/// The arguments that run or resume with the journal `journal` on two worker processes.
std::vector<std::string> with_workers(std::vector<std::string> args, const fs::path& journal) {
  for (std::string a : {"--journal", journal.c_str(), "--workers", "2", "--plugin", steps_plugin.c_str()})
    args.push_back(a);
  return args;
}

std::string describe(const dx_outcome& o) {
  return "exit code " + std::to_string(o.code) + (o.signal ? ", signal " + std::to_string(o.signal) : "") +
         (o.timed_out ? ", timed out" : "") + "\n--- stdout ---\n" + o.out.substr(0, 4000) + "\n--- stderr ---\n" +
         o.err.substr(0, 4000);
}

/// `dx status RUN --json`, parsed; fails the test when dx cannot say.
json status_of(const fs::path& dir, const fs::path& journal, const std::string& run) {
  const dx_outcome o = run_dx(dir, "status", {"status", run, "--json", "--journal", journal.string()});
  INFO(describe(o));
  REQUIRE(o.code == 0);
  return json::parse(o.out);
}

/// The runs `dx list` shows, oldest first.
std::vector<std::string> runs_in(const fs::path& dir, const fs::path& journal) {
  const dx_outcome o = run_dx(dir, "list", {"list", "--journal", journal.string()});
  INFO(describe(o));
  REQUIRE(o.code == 0);
  std::vector<std::string> ids;
  std::istringstream lines(o.out);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("r-", 0) == 0) ids.push_back(line.substr(0, line.find(' ')));
  return ids;
}

/// How many times each task ran: the lines of a marks file.
std::map<std::string, int> marks_in(const fs::path& file) {
  std::map<std::string, int> n;
  std::ifstream in(file);
  for (std::string key; std::getline(in, key);) ++n[key];
  return n;
}

/// A workflow of `layers` x `width` steps, each (past the first layer) taking the results of two
/// steps of the layer before, and one split step (with its aggregate) every other layer until
/// `splits` of them, fed by a step of that layer and feeding the first step of a later layer.
/// Split steps cut [0, 800) in chunks of 100, every tenth one with "chunk": "auto". Each step
/// sleeps `work_us` and marks `marks`. Returns the JSON text.
std::string crash_workflow(int width, int layers, int splits, int work_us, const fs::path& marks) {
  const auto node = [](int layer, int i) {
    std::string name = "n";
    name += std::to_string(layer);
    name += '_';
    name += std::to_string(i);
    return name;
  };
  json steps = json::array();
  std::vector<std::string> aggregates;
  int next_split = 0;
  for (int l = 0; l < layers; ++l) {
    for (int i = 0; i < width; ++i) {
      const std::string name = node(l, i);
      json s = {{"name", name}, {"parameters", {marks.string(), name, work_us}}};
      if (l == 0) {
        s["function"] = "crash.root";
      } else {
        s["function"] = "crash.node";
        const std::string b = i == 0 && !aggregates.empty() ? aggregates.back() : node(l - 1, (i * 7 + 1) % width);
        s["inputs"] = {{"3", node(l - 1, i)}, {"4", b}};
      }
      steps.push_back(s);
    }
    if (l % 2 == 1 && next_split < splits) {
      const int k = next_split++;
      const bool automatic = k % 10 == 9;
      const std::string name = (automatic ? "autosplit" : "split") + std::to_string(k);
      json sp = {{"name", name},
                 {"function", "crash.part"},
                 {"split", {{"range", {0, 800}}, {"chunk", automatic ? json("auto") : json(100)}}},
                 {"parameters", {{"1", marks.string()}, {"2", name}, {"3", work_us}, {"4", k}}},
                 {"after", {node(l, k % width)}}};
      steps.push_back(sp);
      const std::string agg = "agg" + std::to_string(k);
      steps.push_back({{"name", agg}, {"aggregate", {{"of", name}, {"function", "crash.add"}}}});
      aggregates.push_back(agg);
    }
  }
  return json{{"name", "crash"}, {"steps", steps}}.dump();
}

void write_file(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

bool is_done(const std::string& status) { return status == "SUCCEEDED" || status == "CACHED"; }

/// Every task's result bytes in a journal's run, by key.
std::map<std::string, std::string> results_of(const fs::path& journal, const std::string& run) {
  auto j = dx::detail::journal::open(journal, dx::detail::journal::open_mode::read_only);
  std::map<std::string, std::string> out;
  for (const auto& t : j->load(run).tasks)
    if (t.result)
      if (auto bytes = j->result(run, t.key)) out[t.key] = *bytes;
  return out;
}

}  // namespace

TEST_CASE(
    "dx: a head killed with SIGKILL at 20 random moments of a 2,000-step workflow with split steps, and resumed "
    "with dx resume each time, ends as an uninterrupted run, and no task committed before a kill ran again",
    "[cli][kill]") {
  become_subreaper();
  const auto began = clock::now();
  const dx_support::temp_dir dir("dx_cli_kill");
  const fs::path d = dir.path();
  // 40 x 49 steps + 20 splits and their aggregates: 2,000 steps; 2 ms each.
  constexpr int width = 40, layers = 49, splits = 20, work_us = 2000;
  write_file(d / "ref.json", crash_workflow(width, layers, splits, work_us, d / "ref.marks"));
  write_file(d / "kill.json", crash_workflow(width, layers, splits, work_us, d / "kill.marks"));
  const fs::path ref_journal = d / "ref.sqlite", journal = d / "kill.sqlite";

  // The uninterrupted run: its results, its length, and how long dx takes to start it.
  const dx_process ref = start_dx(d, "ref", with_workers({"run", (d / "ref.json").string()}, ref_journal));
  double startup = 0;
  while (startup == 0 && ::waitpid(ref.pid, nullptr, WNOHANG) == 0 && clock::now() - ref.started < 60s) {
    if (read_text(ref.out).find("run r-") != std::string::npos)
      startup = std::chrono::duration<double>(clock::now() - ref.started).count();
    std::this_thread::sleep_for(1ms);
  }
  const dx_outcome ref_end = wait_exit(ref, 120s);
  INFO(describe(ref_end));
  REQUIRE(ref_end.code == 0);
  REQUIRE(startup > 0);
  REQUIRE(reap_orphans(10s));
  const std::string ref_id = runs_in(d, ref_journal).at(0);
  const double work = std::max(0.2, ref_end.seconds - startup);

  std::mt19937 rng(std::random_device{}());
  const auto seed = std::uniform_int_distribution<unsigned>()(rng);
  rng.seed(seed);
  INFO("random seed " << seed);
  std::string id;
  std::map<std::string, int> frozen;  // tasks committed done before some kill: their runs then
  constexpr int kills = 20;
  int rounds = 0, mid_run = 0, found_running = 0;
  double remaining = 1;  // share of the steps not done yet
  // How long a round of dx takes before the run moves (starting, loading the journal, the workers
  // joining), learned from the rounds so far: the uninterrupted run's start first.
  std::vector<double> dead{startup};
  bool finished = false;
  // Kills before `dx run` has recorded the run do not count: the next round runs it again.
  for (int round = 0; mid_run < kills && !finished && round < 2 * kills; ++round) {
    const std::string tag = "round" + std::to_string(round);
    ++rounds;
    const dx_process head =
        start_dx(d, tag,
                 with_workers(id.empty() ? std::vector<std::string>{"run", (d / "kill.json").string()}
                                         : std::vector<std::string>{"resume", id},
                              journal));
    // A moment from the start (loading, the workers joining) to the end of a share of what is
    // left (a little less than an even share, so that the last kills too find work left): most
    // kills find the run going, some find it starting, few find it ended.
    const double share = remaining * work / (kills - mid_run + 2);
    std::vector<double> sorted = dead;
    std::sort(sorted.begin(), sorted.end());
    const double starting = sorted[sorted.size() / 2];
    const double delay = std::uniform_real_distribution<double>(0, starting + share)(rng);
    const double remaining_before = remaining;
    std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    ::kill(head.pid, SIGKILL);
    const dx_outcome end = wait_exit(head, 30s);
    INFO(tag << ", killed after " << delay << " s: " << describe(end));
    CHECK(reap_orphans(20s));  // the head's workers leave once it is gone
    if (id.empty()) {
      const auto ids = runs_in(d, journal);
      if (ids.empty()) {
        std::printf("  %s: killed %.3f s after the start: no run yet\n", tag.c_str(), delay);
        continue;
      }
      REQUIRE(ids.size() == 1);
      id = ids[0];
    }
    // What the journal holds now, before the next resume, against what ran.
    const json state = status_of(d, journal, id);
    const auto marks = marks_in(d / "kill.marks");
    std::size_t done = 0, running = 0, top = 0;
    for (const auto& t : state["tasks"]) {
      const std::string key = t["key"], status = t["status"];
      if (!t["is_subtask"].get<bool>()) {
        ++top;
        if (is_done(status)) ++done;
      }
      if (status == "RUNNING") ++running;
      if (!is_done(status)) continue;
      const int now = marks.count(key) ? marks.at(key) : 0;
      if (auto f = frozen.find(key); f != frozen.end()) {
        INFO(tag << ": task " << key << " committed " << t["status"] << " before, when it had run " << f->second
                 << " times");
        CHECK(now == f->second);
      } else {
        frozen[key] = now;
      }
    }
    finished = state["status"] == "SUCCEEDED";
    if (!finished) ++mid_run;
    if (running > 0) ++found_running;
    remaining = top ? 1.0 - static_cast<double>(done) / static_cast<double>(top) : 1.0;
    if (remaining < remaining_before) dead.push_back(std::max(0.0, delay - (remaining_before - remaining) * work));
    std::printf("  %s: killed %.3f s after the start: %s, %zu of %zu steps done, %zu tasks running\n", tag.c_str(),
                delay, state["status"].get<std::string>().c_str(), done, top, running);
  }
  REQUIRE_FALSE(id.empty());
  if (!finished) {
    const dx_outcome last = wait_exit(start_dx(d, "last", with_workers({"resume", id}, journal)), 120s);
    INFO(describe(last));
    REQUIRE(last.code == 0);
    CHECK(reap_orphans(10s));
  }

  // Nothing committed before a kill ran again, whatever ran after it.
  const json state = status_of(d, journal, id);
  CHECK(state["status"] == "SUCCEEDED");
  const auto marks = marks_in(d / "kill.marks");
  int reran = 0;
  for (const auto& [key, n] : frozen) {
    INFO("task " << key << " ran " << n << " times before it was committed");
    CHECK((marks.count(key) ? marks.at(key) : 0) == n);
  }
  // Every task ran: those of the uninterrupted run (bar chunks the model cut otherwise), and
  // every chunk and step of this one; some more than once (running at a kill).
  const auto ref_marks = marks_in(d / "ref.marks");
  for (const auto& [key, n] : ref_marks) {
    INFO("task " << key);
    CHECK(n == 1);
    if (key.rfind("autosplit", 0) != 0) CHECK(marks.count(key) == 1);
  }
  for (const auto& t : state["tasks"]) {
    const std::string key = t["key"];
    INFO("task " << key);
    CHECK(is_done(t["status"]));
    const bool marking = key[0] == 'n' || (key.find('#') != std::string::npos && key.rfind("agg", 0) != 0);
    if (marking) CHECK(marks.count(key) == 1);
    if (marks.count(key) && marks.at(key) > 1) ++reran;
  }

  // The results are an uninterrupted run's: every step's, and every chunk's where the chunks
  // are cut alike (a fixed size).
  const auto expected = results_of(ref_journal, ref_id);
  const auto got = results_of(journal, id);
  int compared = 0;
  for (const auto& [key, bytes] : expected) {
    const bool subtask = key.find('#') != std::string::npos;
    if (subtask && key.rfind("split", 0) != 0) continue;  // reductions, and chunks cut by the model
    INFO("result of " << key);
    REQUIRE(got.count(key) == 1);
    CHECK(got.at(key) == bytes);
    ++compared;
  }
  CHECK(compared >= 2000);
  CHECK(mid_run >= kills - 1);  // the last may find it ended
  std::printf(
      "dx kill test: %d of %d kills mid-run (%d with tasks running), %zu tasks committed before a kill, %d tasks "
      "ran again after a kill found them running, %d results equal to the uninterrupted run's; uninterrupted run "
      "%.2f s (start %.2f s), whole test %.1f s\n",
      mid_run, rounds, found_running, frozen.size(), reran, compared, ref_end.seconds, startup,
      std::chrono::duration<double>(clock::now() - began).count());
}

// ---- exit codes and signals --------------------------------------------------------------------

namespace {

/// Steps that take a minute each (functions that ignore their stop token, and a command), and one
/// quick one before them.
const char* long_workflow = R"({"name": "long", "steps": [
  {"name": "first", "function": "crash.nap", "parameters": [1]},
  {"name": "nap1", "function": "crash.nap", "parameters": [60000], "after": ["first"]},
  {"name": "nap2", "function": "crash.nap", "parameters": [60000], "after": ["first"]},
  {"name": "nap3", "function": "crash.nap", "parameters": [60000], "after": ["first"]},
  {"name": "sleep", "command": ["sleep", "60"], "after": ["first"]}]})";

/// Waits (bounded) until the run of `journal` has handed its `n` long steps to the workers (READY
/// or RUNNING) and at least two of them run; returns its id. Not all `n` RUNNING: a worker that
/// joined late may find the steps already placed on the other, queued behind its running ones.
std::string wait_running(const fs::path& dir, const fs::path& journal, std::size_t n) {
  const auto deadline = clock::now() + 30s;
  std::size_t running = 0, sent = 0;
  while (clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
    if (!fs::exists(journal)) continue;
    const dx_outcome o = run_dx(dir, "status", {"status", "--json", "--journal", journal.string()});
    if (o.code != 0) continue;  // no run yet
    const json state = json::parse(o.out);
    running = sent = 0;
    for (const auto& t : state["tasks"]) {
      running += t["status"] == "RUNNING" ? 1 : 0;
      sent += t["status"] == "RUNNING" || t["status"] == "READY" ? 1 : 0;
    }
    if (sent >= n && running >= 2) return state["id"];
  }
  FAIL("the run did not send its " << n << " steps with two running within 30 s (sent " << sent << ", running "
                                   << running << ")");
  return {};
}

/// A `dx run` of long_workflow (written into `dir` if it is not there) journaled at `journal`,
/// once its long steps are handed to the workers and running: its process and the run's id.
struct long_run {
  dx_process head;
  std::string id;
};
long_run start_long_run(const fs::path& dir, const std::string& name, const fs::path& journal, bool own_group = false) {
  if (!fs::exists(dir / "long.json")) write_file(dir / "long.json", long_workflow);
  long_run r;
  r.head = start_dx(dir, name, with_workers({"run", (dir / "long.json").string()}, journal), own_group);
  r.id = wait_running(dir, journal, 4);
  return r;
}

}  // namespace

TEST_CASE("dx run: SIGINT or SIGTERM ends the run INTERRUPTED promptly while long steps run, exit code 3",
          "[cli][signals]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_signals");
  const fs::path d = dir.path();
  struct way {
    const char* name;
    int signal;
    bool to_group;  // to dx's process group, as a terminal's Ctrl-C is: its workers get it too
  };
  for (const way w : {way{"SIGINT", SIGINT, false}, way{"SIGTERM", SIGTERM, false}, way{"Ctrl-C", SIGINT, true}}) {
    DYNAMIC_SECTION(w.name) {
      const fs::path journal = d / (std::string(w.name) + ".sqlite");
      const auto [head, id] = start_long_run(d, w.name, journal, true);
      const auto sent = clock::now();
      ::kill(w.to_group ? -head.pid : head.pid, w.signal);
      const dx_outcome o = wait_exit(head, 30s);
      const double took = std::chrono::duration<double>(clock::now() - sent).count();
      INFO(describe(o) << "\nended " << took << " s after the signal");
      CHECK(o.code == 3);
      CHECK(took < 4);  // not the minute the steps take
      CHECK_THAT(o.out, Catch::Contains(id + " INTERRUPTED"));
      CHECK_THAT(o.err, Catch::Contains("interrupting the run"));
      CHECK(reap_orphans(10s));
      CHECK(status_of(d, journal, id)["status"] == "INTERRUPTED");
      std::printf("dx run ended %.2f s after %s\n", took, w.name);
    }
  }
}

TEST_CASE("dx run: a second SIGINT or SIGTERM ends dx at once, by that signal, the run stays resumable",
          "[cli][signals]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_signals");
  const fs::path d = dir.path();
  for (const int sig : {SIGINT, SIGTERM}) {
    DYNAMIC_SECTION("signal " << sig) {
      const fs::path journal = d / ("twice" + std::to_string(sig) + ".sqlite");
      const auto [head, id] = start_long_run(d, "twice", journal);
      ::kill(head.pid, sig);
      std::this_thread::sleep_for(100ms);  // the first is being handled: the steps are stopping
      const auto second = clock::now();
      ::kill(head.pid, sig);
      const dx_outcome o = wait_exit(head, 30s);
      const double took = std::chrono::duration<double>(clock::now() - second).count();
      INFO(describe(o) << "\nended " << took << " s after the second signal");
      CHECK(o.signal == sig);
      CHECK(took < 1);
      CHECK(reap_orphans(10s));  // its workers follow it
      const json state = status_of(d, journal, id);
      CHECK((state["status"] == "INTERRUPTED" || state["status"] == "RUNNING"));  // either resumes
    }
  }
}

// ---- a damaged journal ----------------------------------------------------------------------------

namespace {

/// The results that must match after a resume: every step's and every fixed-size chunk's.
bool comparable(const std::string& key) { return key.find('#') == std::string::npos || key.rfind("split", 0) == 0; }

/// Copies the journal `from` (its database, -wal file and result files; not the -shm index, as
/// after a reboot) to `to`.
void copy_journal(const fs::path& from, const fs::path& to) {
  fs::copy_file(from, to);
  if (fs::exists(from.string() + "-wal")) fs::copy_file(from.string() + "-wal", to.string() + "-wal");
  if (fs::exists(from.string() + ".results"))
    fs::copy(from.string() + ".results", to.string() + ".results", fs::copy_options::recursive);
}

}  // namespace

TEST_CASE(
    "dx: a journal whose -wal file or database file is cut at a random byte opens with a clear error naming it, or "
    "resumes the run to the uninterrupted result, never a crash or a hang",
    "[cli][truncated]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_cut");
  const fs::path d = dir.path();
  // The same workflow twice, told apart by their marks files (so the second is not CACHED): one
  // uninterrupted run, then one killed a third of the way, in the same journal. The first is in
  // the database file (checkpointed when its head closed the journal), the second mostly in the
  // -wal file.
  write_file(d / "ref.json", crash_workflow(20, 10, 4, 2000, d / "ref.marks"));
  // The killed run's steps are slower (their results do not depend on it), so that it is still
  // running when a third of its steps have left their marks, however slow the machine.
  write_file(d / "wf.json", crash_workflow(20, 10, 4, 20000, d / "marks"));
  const fs::path journal = d / "journal.sqlite";
  const dx_outcome ref = run_dx(d, "ref", with_workers({"run", (d / "ref.json").string()}, journal), 120s);
  INFO(describe(ref));
  REQUIRE(ref.code == 0);
  CHECK(reap_orphans(10s));
  const std::string ref_id = runs_in(d, journal).at(0);
  const auto expected = results_of(journal, ref_id);

  // Watched through its marks file, not `dx status`: starting a process per look is slow under
  // the sanitizers.
  const dx_process head = start_dx(d, "killed", with_workers({"run", (d / "wf.json").string()}, journal));
  const std::size_t steps = 20 * 10;
  for (const auto deadline = clock::now() + 60s; clock::now() < deadline;) {
    std::this_thread::sleep_for(5ms);
    const std::string marks = read_text(d / "marks");
    if (static_cast<std::size_t>(std::count(marks.begin(), marks.end(), '\n')) >= steps / 3) break;
  }
  siginfo_t ended{};  // looked at without reaping it: still running, so the kill cuts the run
  REQUIRE(::waitid(P_PID, static_cast<id_t>(head.pid), &ended, WEXITED | WNOHANG | WNOWAIT) == 0);
  REQUIRE(ended.si_pid == 0);
  ::kill(head.pid, SIGKILL);
  wait_exit(head, 10s);
  CHECK(reap_orphans(10s));
  const auto ids = runs_in(d, journal);
  REQUIRE(ids.size() == 2);
  const std::string id = ids[1];
  const fs::path wal = journal.string() + "-wal";
  REQUIRE(fs::exists(wal));
  const auto wal_size = fs::file_size(wal), db_size = fs::file_size(journal);
  const std::uintmax_t page = 4096;
  REQUIRE(wal_size > 0);
  REQUIRE(db_size >= 4 * page);

  std::mt19937 rng(std::random_device{}());
  const auto seed = std::uniform_int_distribution<unsigned>()(rng);
  rng.seed(seed);
  INFO("random seed " << seed);
  struct cut {
    bool wal;
    std::uintmax_t at;
  };
  std::vector<cut> cuts{{true, 0}};
  for (int i = 0; i < 4; ++i)
    cuts.push_back({true, std::uniform_int_distribution<std::uintmax_t>(1, wal_size - 1)(rng)});
  for (int i = 0; i < 3; ++i) {
    cuts.push_back({false, std::uniform_int_distribution<std::uintmax_t>(1, db_size - 1)(rng)});
    cuts.push_back({false, std::uniform_int_distribution<std::uintmax_t>(1, db_size / page - 1)(rng) * page});
  }
  int resumed = 0, refused = 0;
  for (std::size_t n = 0; n < cuts.size(); ++n) {
    const cut c = cuts[n];
    INFO((c.wal ? "-wal file" : "database file") << " cut at byte " << c.at << " of " << (c.wal ? wal_size : db_size));
    const fs::path copy = d / ("cut" + std::to_string(n)) / "journal.sqlite";
    fs::create_directories(copy.parent_path());
    copy_journal(journal, copy);
    fs::resize_file(c.wal ? fs::path(copy.string() + "-wal") : copy, c.at);

    const dx_outcome status = run_dx(d, "cut_status", {"status", id, "--json", "--journal", copy.string()}, 30s);
    INFO("dx status: " << describe(status));
    REQUIRE_FALSE(status.timed_out);
    REQUIRE(status.signal == 0);
    // The run is there, or it is not (its creation was in the tail cut off: exit code 2), or the
    // journal cannot be read (exit code 1); dx says which, naming the file.
    const bool lost = status.err.find("no run " + id + " in journal " + copy.string()) != std::string::npos;
    if (status.code == 0) {
      CHECK(json::parse(status.out)["id"] == id);
    } else if (status.code == 2) {
      CHECK(lost);
    } else {
      CHECK(status.code == 1);
      CHECK_THAT(status.err, Catch::Contains(copy.string()));
    }
    // A -wal file cut anywhere loses only its tail: the journal opens.
    if (c.wal) CHECK((status.code == 0 || lost));

    const dx_outcome resume = run_dx(d, "cut_resume", with_workers({"resume", id}, copy), 120s);
    INFO("dx resume: " << describe(resume));
    REQUIRE_FALSE(resume.timed_out);
    REQUIRE(resume.signal == 0);
    CHECK(reap_orphans(10s));
    if (resume.code == 0) {
      ++resumed;
      const auto got = results_of(copy, id);
      for (const auto& [key, bytes] : expected) {
        if (!comparable(key)) continue;
        INFO("result of " << key);
        REQUIRE(got.count(key) == 1);
        CHECK(got.at(key) == bytes);
      }
    } else {
      ++refused;
      CHECK(resume.code == (lost ? 2 : 1));
      CHECK_THAT(resume.err, Catch::Contains(copy.string()));
    }
    if (c.wal) CHECK((resume.code == 0 || lost));
    std::printf("  %s cut at byte %ju of %ju: dx status exit code %d, dx resume exit code %d %s\n",
                c.wal ? "-wal file" : "database file", c.at, c.wal ? wal_size : db_size, status.code, resume.code,
                resume.err.substr(0, resume.err.find('\n')).c_str());
  }
  std::printf("dx cut journals: %d resumed, %d refused with the path named\n", resumed, refused);
}

// ---- a resumed split -----------------------------------------------------------------------------

namespace {

/// A chunk's part from `dx status --json`.
std::pair<std::int64_t, std::int64_t> part_of(const json& task) {
  return {task.at("parameters").at("start").get<std::int64_t>(), task.at("parameters").at("end").get<std::int64_t>()};
}

/// The chunks of split step `step` in a status, by key.
std::map<std::string, json> chunks_of(const json& state, const std::string& step) {
  std::map<std::string, json> out;
  for (const auto& t : state["tasks"])
    if (t["parent"] == step && t["is_subtask"].get<bool>()) out[t["key"]] = t;
  return out;
}

}  // namespace

TEST_CASE(
    "dx resume: a split step with a fixed chunk size keeps its chunks as they were cut and reloads the finished "
    "ones",
    "[cli][split]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_split");
  const fs::path d = dir.path();
  // 1,000 indices in chunks of 37: 28 chunks of 150 ms each, then their sum.
  auto split_workflow = [&](const fs::path& marks) {
    return json{{"name", "split"},
                {"steps",
                 {{{"name", "parts"},
                   {"function", "crash.part"},
                   {"split", {{"range", {0, 1000}}, {"chunk", 37}}},
                   {"parameters", {{"1", marks.string()}, {"2", "parts"}, {"3", 150000}, {"4", 7}}}},
                  {{"name", "total"}, {"aggregate", {{"of", "parts"}, {"function", "crash.add"}}}}}}}
        .dump();
  };
  write_file(d / "ref.json", split_workflow(d / "ref.marks"));
  write_file(d / "wf.json", split_workflow(d / "marks"));
  const dx_outcome ref = run_dx(d, "ref", with_workers({"run", (d / "ref.json").string()}, d / "ref.sqlite"), 120s);
  INFO(describe(ref));
  REQUIRE(ref.code == 0);
  CHECK(reap_orphans(10s));

  // Killed with some chunks finished and others not.
  const fs::path journal = d / "journal.sqlite";
  const dx_process head = start_dx(d, "killed", with_workers({"run", (d / "wf.json").string()}, journal));
  json before;
  for (const auto deadline = clock::now() + 60s; clock::now() < deadline && before.is_null();) {
    std::this_thread::sleep_for(20ms);
    if (!fs::exists(journal)) continue;
    const dx_outcome o = run_dx(d, "status", {"status", "--json", "--journal", journal.string()});
    if (o.code != 0) continue;
    const json state = json::parse(o.out);
    std::size_t done = 0;
    for (const auto& [key, t] : chunks_of(state, "parts")) done += t["status"] == "SUCCEEDED" ? 1 : 0;
    if (done >= 4 && done < 20) before = state;
  }
  ::kill(head.pid, SIGKILL);
  wait_exit(head, 10s);
  CHECK(reap_orphans(10s));
  REQUIRE_FALSE(before.is_null());
  // What the journal has after the kill (a little more than `before`, perhaps).
  const std::string id = before["id"];
  const json killed = status_of(d, journal, id);
  const auto marks_then = marks_in(d / "marks");
  const auto cut = chunks_of(killed, "parts");
  REQUIRE(cut.size() >= 4);

  const dx_outcome resumed = wait_exit(start_dx(d, "resume", with_workers({"resume", id}, journal)), 120s);
  INFO(describe(resumed));
  REQUIRE(resumed.code == 0);
  CHECK(reap_orphans(10s));
  const json after = status_of(d, journal, id);
  const auto chunks = chunks_of(after, "parts");
  const auto marks = marks_in(d / "marks");
  // The chunks as they were cut: the same parts under the same keys; the finished ones not run
  // again; together 28 chunks of 37 (the last shorter) tiling the range in order.
  int reloaded = 0;
  for (const auto& [key, t] : cut) {
    INFO("chunk " << key << " was " << t.dump());
    REQUIRE(chunks.count(key) == 1);
    CHECK(chunks.at(key)["parameters"] == t["parameters"]);
    if (t["status"] == "SUCCEEDED") {
      ++reloaded;
      CHECK(marks.at(key) == marks_then.at(key));
    }
  }
  CHECK(reloaded >= 4);
  REQUIRE(chunks.size() == 28);
  for (int i = 0; i < 28; ++i) {
    const std::string key = "parts#" + std::to_string(i);
    INFO("chunk " << key);
    REQUIRE(chunks.count(key) == 1);
    CHECK(chunks.at(key)["status"] == "SUCCEEDED");
    CHECK(part_of(chunks.at(key)) == std::pair<std::int64_t, std::int64_t>{37 * i, std::min(37 * (i + 1), 1000)});
    CHECK(marks.count(key) == 1);
  }
  CHECK(results_of(journal, id).at("total") ==
        results_of(d / "ref.sqlite", runs_in(d, d / "ref.sqlite").at(0)).at("total"));
}

// ---- dx cancel from another process ---------------------------------------------------------------

TEST_CASE("dx cancel: a run another dx process runs ends CANCELLED at once, and that dx exits 1", "[cli][cancel]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_cancel");
  const fs::path d = dir.path();
  const fs::path journal = d / "journal.sqlite";
  const auto [head, id] = start_long_run(d, "head", journal);

  const auto asked = clock::now();
  const dx_outcome cancel = run_dx(d, "cancel", {"cancel", id, "--journal", journal.string()});
  const double took = std::chrono::duration<double>(clock::now() - asked).count();
  INFO("dx cancel: " << describe(cancel) << "\nin " << took << " s");
  CHECK(cancel.code == 0);
  CHECK_THAT(cancel.out, Catch::Contains("run " + id + " CANCELLED"));
  CHECK(took < 5);  // the head looks four times a second
  const dx_outcome run = wait_exit(head, 30s);
  INFO("dx run: " << describe(run));
  CHECK(run.code == 1);
  CHECK_THAT(run.out, Catch::Contains(id + " CANCELLED"));
  CHECK(reap_orphans(10s));
  const json state = status_of(d, journal, id);
  CHECK(state["status"] == "CANCELLED");
  for (const auto& t : state["tasks"])
    if (t["key"] != "first") CHECK(t["status"] == "CANCELLED");
  std::printf("dx cancel answered in %.2f s\n", took);

  // Asked again: the run is not running; an unknown run is a bad command line.
  const dx_outcome again = run_dx(d, "cancel", {"cancel", id, "--journal", journal.string()});
  CHECK(again.code == 1);
  CHECK_THAT(again.err, Catch::Contains("run " + id + " is not running: it ended CANCELLED"));
  const dx_outcome unknown = run_dx(d, "cancel", {"cancel", "r-nope", "--journal", journal.string()});
  CHECK(unknown.code == 2);
  CHECK_THAT(unknown.err, Catch::Contains("no run r-nope in journal " + journal.string()));
}

TEST_CASE("dx cancel: a run whose head was killed, or was interrupted, is not running: exit 1, saying so",
          "[cli][cancel]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_cancel");
  const fs::path d = dir.path();
  const fs::path journal = d / "journal.sqlite";
  const auto [head, id] = start_long_run(d, "head", journal);
  ::kill(head.pid, SIGKILL);
  wait_exit(head, 10s);
  CHECK(reap_orphans(10s));
  REQUIRE(status_of(d, journal, id)["status"] == "RUNNING");  // nobody has opened the journal since

  const dx_outcome gone = run_dx(d, "cancel", {"cancel", id, "--journal", journal.string()});
  INFO(describe(gone));
  CHECK(gone.code == 1);
  CHECK_THAT(gone.err, Catch::Contains("run " + id + " is not running: its head (process " + std::to_string(head.pid) +
                                       ") is gone"));

  // A head that stops on SIGTERM leaves it INTERRUPTED. (The journal says RUNNING from the start:
  // the resumed run is going once dx has printed its id.)
  const dx_process second = start_dx(d, "second", with_workers({"resume", id}, journal));
  for (const auto deadline = clock::now() + 30s;
       read_text(second.out).find("run " + id) == std::string::npos && clock::now() < deadline;)
    std::this_thread::sleep_for(10ms);
  REQUIRE_THAT(read_text(second.out), Catch::Contains("run " + id));
  ::kill(second.pid, SIGTERM);
  CHECK(wait_exit(second, 30s).code == 3);
  CHECK(reap_orphans(10s));
  const dx_outcome interrupted = run_dx(d, "cancel", {"cancel", id, "--journal", journal.string()});
  CHECK(interrupted.code == 1);
  CHECK_THAT(interrupted.err, Catch::Contains("run " + id + " is not running: it was interrupted"));
}

// ---- the progress display ---------------------------------------------------------------------------

TEST_CASE("dx run: on a terminal the progress is one updating line, otherwise a plain line a second",
          "[cli][progress]") {
  become_subreaper();
  const dx_support::temp_dir dir("dx_cli_progress");
  const fs::path d = dir.path();
  // 2.4 s: a chain of steps, and a split of 4 chunks.
  write_file(d / "wf.json", R"({"name": "progress", "steps": [
    {"name": "a", "function": "crash.nap", "parameters": [600]},
    {"name": "b", "function": "crash.nap", "parameters": [600], "after": ["a"]},
    {"name": "parts", "function": "crash.part", "split": {"range": [0, 4], "chunk": 1},
     "parameters": {"1": ")" + (d / "marks").string() +
                                R"(", "2": "parts", "3": 600000, "4": 1}, "after": ["b"]},
    {"name": "c", "function": "crash.nap", "parameters": [600], "after": ["parts"]}]})");

  // Not a terminal: lines.
  const dx_outcome plain = run_dx(d, "plain", with_workers({"run", (d / "wf.json").string()}, d / "plain.sqlite"), 60s);
  INFO("plain: " << describe(plain));
  REQUIRE(plain.code == 0);
  CHECK_THAT(plain.out,
             Catch::Contains("RUNNING: ") && Catch::Contains(" steps done, ") && Catch::Contains(" running, 0 failed"));
  CHECK(plain.out.find('\r') == std::string::npos);
  CHECK(plain.out.find("\x1b[") == std::string::npos);
  CHECK(reap_orphans(10s));

  // A terminal: dx writes to a pseudo-terminal 100 columns wide.
  std::vector<std::string> argv_s{dx_program, "run", (d / "wf.json").string()};
  for (auto& a : with_workers({}, d / "tty.sqlite")) argv_s.push_back(a);
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_s = child_environment(d);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  winsize size{};
  size.ws_row = 24;
  size.ws_col = 100;
  int terminal = -1;
  const pid_t pid = ::forkpty(&terminal, nullptr, nullptr, &size);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  std::string screen;
  for (const auto deadline = clock::now() + 60s; clock::now() < deadline;) {
    pollfd p{terminal, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(terminal, buf, sizeof buf);
    if (n <= 0) break;  // EIO: dx closed the terminal's last descriptor
    screen.append(buf, static_cast<std::size_t>(n));
  }
  ::close(terminal);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(reap_orphans(10s));
  INFO("terminal: " << screen);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // The run's id on a line, the progress on one line rewritten (\r, then erased to its end), the
  // end on a line of its own.
  CHECK_THAT(screen, Catch::Contains("run r-") && Catch::Contains("\rRUNNING ") && Catch::Contains(" steps, ") &&
                         Catch::Contains("\x1b[K") &&
                         Catch::Contains("\rSUCCEEDED 4/4 steps, 0 running, 0 failed, "
                                         "chunks 4/4"));
  CHECK(std::count(screen.begin(), screen.end(), '\r') >= 5);
  std::size_t lines = 0;
  for (std::size_t at = 0; (at = screen.find('\n', at)) != std::string::npos; ++at) ++lines;
  CHECK(lines <= 4);  // the id, the progress once ended, the run's end (and a dashboard line at most)
  for (std::size_t at = 0, end; at < screen.size(); at = end + 1) {
    end = std::min(screen.find_first_of("\r\n", at), screen.size());
    CHECK(end - at < 100);  // never wider than the terminal
  }
}
