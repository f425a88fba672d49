// Tests of the workflow journal (src/journal/journal.hpp): what a run, its tasks, results and
// transitions read back as; which files it refuses and how it says so; the one-writer lock across
// processes; and what survives a kill -9, a cut -wal file and a cut database file.
#include "journal/journal.hpp"
#include "journal/journal_schema.hpp"

#include "journal/sqlite_db.hpp"

#include <dx/error.hpp>

#include <sqlite3.h>
#include <catch2/catch.hpp>

#include "temp_dir.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using dx::detail::journal;
using dx::detail::journal_schema_version;
using dx::detail::sqlite_db;
using dx::detail::task_record;

namespace {

struct temp_dir : dx_support::temp_dir {
  temp_dir() : dx_support::temp_dir("dx_journal_test") {}
};

constexpr auto write_mode = journal::open_mode::write;
constexpr auto read_mode = journal::open_mode::read_only;

/// The message of the dx::error `f` throws; fails the test when it throws none.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const dx::error& e) {
    return e.what();
  }
  FAIL("no dx::error was thrown");
  return {};
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

/// Bytes that differ with `seed`, so a result read back for the wrong task does not match.
std::string payload(std::size_t size, int seed) {
  std::string bytes(size, '\0');
  std::uint32_t x = 2463534242u + static_cast<std::uint32_t>(seed) * 7919u;
  for (auto& c : bytes) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xff);
  }
  return bytes;
}

/// `prefix` then `n`. (Appending, because GCC 12 warns falsely (-Wrestrict) on "text" + string.)
std::string numbered(std::string prefix, int n) {
  prefix += std::to_string(n);
  return prefix;
}

task_record task(std::string key, std::string status) {
  task_record t;
  t.key = std::move(key);
  t.status = std::move(status);
  return t;
}

/// A child process running `body`, which never returns into the test runner: its exit status
/// says whether `body` threw.
template <class F>
pid_t fork_child(F&& body) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int status = 0;
    try {
      body();
    } catch (...) {
      status = 1;
    }
    ::_exit(status);
  }
  return pid;
}

/// Reads one int from `fd`, waiting at most `timeout`; nullopt on end of file or timeout.
std::optional<int> read_int(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
  int value = 0;
  std::size_t got = 0;
  while (got < sizeof value) {
    const ssize_t n = ::read(fd, reinterpret_cast<char*>(&value) + got, sizeof value - got);
    if (n <= 0) return std::nullopt;
    got += static_cast<std::size_t>(n);
  }
  return value;
}

void write_int(int fd, int value) {
  if (::write(fd, &value, sizeof value) != static_cast<ssize_t>(sizeof value)) ::_exit(3);
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

/// Group `g` of the crash and truncation tests: `tasks_per_group` records and one result, big
/// (a file) for every fourth group.
constexpr int tasks_per_group = 5;
void commit_group(journal& j, const std::string& run, int g) {
  for (int i = 0; i < tasks_per_group; ++i) {
    task_record t = task(numbered(numbered("g", g) + "-t", i), "SUCCEEDED");
    t.attempts = g;
    j.record(run, t);
  }
  const std::size_t size = g % 4 == 3 ? journal::inline_result_limit + 1000 : 100;
  j.store_result(run, numbered("g", g), payload(size, g));
  j.commit();
}

/// The groups of `run` present in `j`, each checked whole (every record and its result's bytes);
/// fails the test on a group present in part.
std::set<int> whole_groups(journal& j, const std::string& run) {
  std::map<int, int> records;
  for (const auto& t : j.load(run).tasks) {
    if (t.key.rfind('-') == std::string::npos) continue;
    const int g = std::stoi(t.key.substr(1, t.key.find('-') - 1));
    REQUIRE(t.attempts == g);
    ++records[g];
  }
  std::set<int> groups;
  for (const auto& [g, n] : records) {
    INFO("group " << g);
    REQUIRE(n == tasks_per_group);
    const auto bytes = j.result(run, numbered("g", g));
    REQUIRE(bytes.has_value());
    REQUIRE(*bytes == payload(g % 4 == 3 ? journal::inline_result_limit + 1000 : 100, g));
    groups.insert(g);
  }
  // Nor is the result of the group after the last without its records.
  const int next = groups.empty() ? 0 : *groups.rbegin() + 1;
  REQUIRE_FALSE(j.result(run, numbered("g", next)).has_value());
  return groups;
}

}  // namespace

TEST_CASE("A journal keeps runs, task records, transitions and results across close and reopen", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "nested" / "folders" / "journal.sqlite";
  const std::string small = payload(1000, 1);
  const std::string big = payload(journal::inline_result_limit + 1, 2);
  std::string run;
  {
    auto j = journal::open(path, write_mode);
    run = j->create_run("nightly", R"({"steps":["load","train"]})");
    REQUIRE(run.rfind("r-", 0) == 0);
    task_record load = task("load", "RUNNING");
    load.assigned_to = "w1";
    load.attempts = 1;
    load.progress = 0.5;
    j->record(run, load);
    task_record chunk = task("train#3", "FAILED");
    chunk.parent = "train";
    chunk.is_subtask = true;
    chunk.error = "out of memory";
    chunk.attempts = 2;
    chunk.cache_key = "ab12";
    chunk.parameters = R"({"start":30,"end":40})";
    j->record(run, chunk, "worker w2 died");
    j->set_run_status(run, "RUNNING");
    j->commit();
    load.status = "SUCCEEDED";
    load.progress = 1;
    j->record(run, load);
    j->store_result(run, "load", small);
    j->store_result(run, "train#3", big);
    j->commit();
  }
  auto j = journal::open(path, write_mode);
  const auto runs = j->runs();
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].id == run);
  CHECK(runs[0].name == "nightly");
  CHECK(runs[0].definition == R"({"steps":["load","train"]})");
  CHECK(runs[0].status == "RUNNING");
  CHECK(runs[0].head_pid == ::getpid());
  CHECK(runs[0].created_ms > 0);
  CHECK(runs[0].updated_ms >= runs[0].created_ms);

  const auto state = j->load(run);
  CHECK(state.run.id == run);
  REQUIRE(state.tasks.size() == 2);
  const auto& load = state.tasks[0];  // in the order first recorded
  CHECK(load.key == "load");
  CHECK(load.status == "SUCCEEDED");
  CHECK(load.assigned_to == "w1");
  CHECK(load.attempts == 1);
  CHECK(load.progress == 1.0);
  CHECK_FALSE(load.is_subtask);
  REQUIRE(load.result.has_value());
  CHECK(load.result->size == small.size());
  CHECK(load.result->file.empty());
  const auto& chunk = state.tasks[1];
  CHECK(chunk.key == "train#3");
  CHECK(chunk.status == "FAILED");
  CHECK(chunk.parent == "train");
  CHECK(chunk.is_subtask);
  CHECK(chunk.error == "out of memory");
  CHECK(chunk.attempts == 2);
  CHECK(chunk.cache_key == "ab12");
  CHECK(chunk.parameters == R"({"start":30,"end":40})");
  CHECK(load.parameters.empty());
  REQUIRE(chunk.result.has_value());
  CHECK(chunk.result->size == big.size());
  CHECK(chunk.result->sha256.size() == 64);
  // Big results are files under "<journal>.results/<run>/".
  CHECK(chunk.result->file.parent_path() == fs::path(path.string() + ".results") / run);
  CHECK(fs::file_size(chunk.result->file) == big.size());

  CHECK(j->result(run, "load") == small);
  CHECK(j->result(run, "train#3") == big);
  CHECK_FALSE(j->result(run, "nothing").has_value());

  const auto log = j->transitions(run);
  REQUIRE(log.size() == 5);
  CHECK((log[0].key == "" && log[0].status == "CREATED"));
  CHECK((log[1].key == "load" && log[1].status == "RUNNING"));
  CHECK((log[2].key == "train#3" && log[2].status == "FAILED" && log[2].detail == "worker w2 died"));
  CHECK((log[3].key == "" && log[3].status == "RUNNING"));
  CHECK((log[4].key == "load" && log[4].status == "SUCCEEDED"));
  for (std::size_t i = 1; i < log.size(); ++i) CHECK(log[i].seq > log[i - 1].seq);
  CHECK(log[0].time_ms > 0);
}

TEST_CASE("A journal of schema version 1 reads as it is and is migrated when opened to write", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "v1.sqlite";
  std::string run;
  {
    auto j = journal::open(path, write_mode);
    run = j->create_run("old", "{}");
    j->record(run, task("a", "SUCCEEDED"));
    j->commit();
  }
  {
    // What a dx of schema 1 wrote: no parameters column, no requests.
    sqlite_db db(path, SQLITE_OPEN_READWRITE, 1000);
    db.exec("ALTER TABLE tasks DROP COLUMN parameters; DROP TABLE requests; PRAGMA user_version=1");
  }
  {
    auto r = journal::open(path, read_mode);
    const auto state = r->load(run);
    REQUIRE(state.tasks.size() == 1);
    CHECK(state.tasks[0].key == "a");
    CHECK(state.tasks[0].parameters.empty());
  }
  {
    sqlite_db db(path, SQLITE_OPEN_READONLY, 1000);
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(db.handle(), "PRAGMA user_version", -1, &stmt, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
    CHECK(sqlite3_column_int64(stmt, 0) == 1);  // a reader leaves the file alone
    sqlite3_finalize(stmt);
  }
  auto j = journal::open(path, write_mode);
  task_record b = task("b", "RUNNING");
  b.parameters = R"({"start":0,"end":5})";
  j->record(run, b);
  j->commit();
  const auto state = j->load(run);
  REQUIRE(state.tasks.size() == 2);
  CHECK(state.tasks[0].parameters.empty());
  CHECK(state.tasks[1].parameters == R"({"start":0,"end":5})");
  CHECK(j->open_requests().empty());  // migrated through version 2 to 3: requests are there
  CHECK(j->last_request_id() == 0);
}

TEST_CASE("A journal of schema version 2 reads as it is and is migrated to take requests when opened to write",
          "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "v2.sqlite";
  std::string run;
  {
    auto j = journal::open(path, write_mode);
    run = j->create_run("old", "{}");
    j->record(run, task("a", "SUCCEEDED"));
    j->commit();
  }
  auto version = [&] {
    sqlite_db db(path, SQLITE_OPEN_READONLY, 1000);
    return db.query_int("PRAGMA user_version");
  };
  {
    // What a dx of schema 2 wrote: no requests table.
    sqlite_db db(path, SQLITE_OPEN_READWRITE, 1000);
    db.exec("DROP TABLE requests; PRAGMA user_version=2");
  }
  {
    auto r = journal::open(path, read_mode);
    CHECK(r->load(run).tasks.size() == 1);
    CHECK(r->open_requests().empty());
    CHECK_FALSE(r->request(1).has_value());
    CHECK(r->last_request_id() == 0);
  }
  // A journal a dx of schema 2 writes cannot be asked anything: that dx would not read it.
  CHECK_THAT(error_of([&] { journal::open(path, journal::open_mode::request); }),
             Catch::Contains(path.string()) && Catch::Contains("schema version is 2, which takes no requests"));
  CHECK(version() == 2);  // neither a reader nor a requester changes the file
  {
    auto j = journal::open(path, write_mode);
    CHECK(version() == 3);
    CHECK(j->load(run).tasks.size() == 1);
    auto r = journal::open(path, journal::open_mode::request);
    const auto id = r->ask(run, "cancel");
    REQUIRE(j->open_requests().size() == 1);
    CHECK(j->open_requests()[0].id == id);
  }
}

TEST_CASE(
    "Requests: asked from another connection while the writer holds the journal, seen open by the writer, answered "
    "once, withdrawn only while open",
    "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode);
  const std::string run = j->create_run("asked", "{}");
  j->commit();
  CHECK(j->open_requests().empty());
  CHECK(j->last_request_id() == 0);

  auto r = journal::open(path, journal::open_mode::request);  // takes no lock: the writer holds it
  const std::int64_t first = r->ask(run, "cancel");
  CHECK(first > 0);
  auto open = j->open_requests();
  REQUIRE(open.size() == 1);
  CHECK(open[0].id == first);
  CHECK(open[0].run == run);
  CHECK(open[0].what == "cancel");
  CHECK(open[0].requested_by == ::getpid());
  CHECK(open[0].requested_ms > 0);
  CHECK(open[0].answered_ms == 0);
  CHECK(j->last_request_id() == first);
  CHECK_THAT(error_of([&] { r->ask("r-nope", "cancel"); }),
             Catch::Contains("no run r-nope") && Catch::Contains(path.string()));

  j->answer(first, "cancelled");
  CHECK(r->request(first)->answered_ms == 0);  // buffered until the commit
  j->commit();
  CHECK(r->request(first)->answer == "cancelled");
  CHECK(r->request(first)->answered_ms > 0);
  CHECK_FALSE(r->withdraw(first, "too late"));  // answered first: the answer stands
  CHECK(r->request(first)->answer == "cancelled");

  const std::int64_t second = r->ask(run, "cancel");
  CHECK(second > first);
  CHECK(r->withdraw(second, "nobody answered"));
  CHECK(r->request(second)->answer == "withdrawn: nobody answered");
  j->answer(second, "cancelled");  // withdrawn first: this answer is not recorded
  j->commit();
  CHECK(r->request(second)->answer == "withdrawn: nobody answered");
  CHECK(j->open_requests().empty());
  CHECK_FALSE(r->request(second + 1).has_value());

  // Each mode writes only what it is for.
  CHECK_THAT(error_of([&] { r->record(run, task("a", "RUNNING")); }), Catch::Contains("open to make requests"));
  CHECK_THAT(error_of([&] { r->answer(first, "x"); }), Catch::Contains("open to make requests"));
  CHECK_THAT(error_of([&] { j->ask(run, "cancel"); }), Catch::Contains("open to write"));
  auto reader = journal::open(path, read_mode);
  CHECK_THAT(error_of([&] { reader->ask(run, "cancel"); }), Catch::Contains("read-only"));
  CHECK_THAT(error_of([&] { journal::open(dir.path() / "missing.sqlite", journal::open_mode::request); }),
             Catch::Contains("no such file"));
}

TEST_CASE("record logs a transition when the status changes or a detail is given, not for progress alone",
          "[journal]") {
  temp_dir dir;
  auto j = journal::open(dir.path() / "j.sqlite", write_mode);
  const std::string run = j->create_run("r", "{}");
  task_record t = task("step", "RUNNING");
  j->record(run, t);
  t.progress = 0.3;
  j->record(run, t);  // same status, no detail: no row
  j->commit();
  t.progress = 0.6;
  j->record(run, t);
  t.attempts = 2;
  j->record(run, t, "retrying after a timeout");  // a detail: a row
  t.status = "SUCCEEDED";
  j->record(run, t);
  j->commit();
  const auto log = j->transitions(run);
  REQUIRE(log.size() == 4);
  CHECK(log[1].status == "RUNNING");
  CHECK(log[2].detail == "retrying after a timeout");
  CHECK(log[3].status == "SUCCEEDED");
  CHECK(j->load(run).tasks.at(0).progress == 0.6);
}

TEST_CASE("A task recorded several times in one group keeps its last record, each change of status logged once",
          "[journal]") {
  temp_dir dir;
  auto j = journal::open(dir.path() / "j.sqlite", write_mode);
  const std::string run = j->create_run("r", "{}");
  // In the run's first group: new tasks, recorded twice each, interleaved.
  j->record(run, task("a", "PENDING"));
  j->record(run, task("b", "PENDING"));
  task_record a = task("a", "RUNNING");
  a.assigned_to = "w-1";
  j->record(run, a);
  j->commit();
  // A later group: running, progress, done, all at once.
  a.progress = 0.5;
  j->record(run, a);
  a.status = "SUCCEEDED";
  a.progress = 1;
  a.attempts = 3;
  j->record(run, a);
  j->record(run, task("b", "RUNNING"));
  j->record(run, task("b", "RUNNING"));                // no change: no row in the log
  j->record(run, task("b", "RUNNING"), "sent again");  // a detail: logged
  j->commit();
  std::vector<std::string> seen;
  for (const auto& t : j->transitions(run)) seen.push_back(t.key + ":" + t.status + (t.detail.empty() ? "" : "!"));
  CHECK(seen == std::vector<std::string>{":CREATED", "a:PENDING", "b:PENDING", "a:RUNNING", "a:SUCCEEDED", "b:RUNNING",
                                         "b:RUNNING!"});
  const auto tasks = j->load(run).tasks;
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].key == "a");  // tasks keep the order in which they were first recorded
  CHECK(tasks[0].status == "SUCCEEDED");
  CHECK(tasks[0].attempts == 3);
  CHECK(tasks[0].progress == 1);
  CHECK(tasks[0].assigned_to == "w-1");
  CHECK(tasks[1].status == "RUNNING");
}

TEST_CASE("A journal that took over its checkpoints lets the write-ahead log grow until checkpoint()", "[journal]") {
  temp_dir dir;
  std::string run;
  int tasks = 0;
  {
    auto j = journal::open(dir.path() / "j.sqlite", write_mode);
    j->take_over_checkpoints();
    run = j->create_run("r", "{}");
    j->commit();
    // SQLite alone would have checkpointed at 1000 pages.
    for (int g = 0; g < 400 && j->wal_pages() <= 1500; ++g) {
      for (int i = 0; i < 200; ++i) j->record(run, task(numbered("t", tasks++), "SUCCEEDED"));
      j->commit();
    }
    REQUIRE(j->wal_pages() > 1500);
    j->checkpoint(2000);  // fewer pages than asked: nothing done
    j->record(run, task(numbered("t", tasks++), "RUNNING"));
    j->commit();
    REQUIRE(j->wal_pages() > 1500);
    j->checkpoint();
    j->record(run, task(numbered("t", tasks++), "RUNNING"));
    j->commit();
    CHECK(j->wal_pages() < 100);  // written from the log's start again
  }
  auto reader = journal::open(dir.path() / "j.sqlite", journal::open_mode::read_only);
  CHECK(reader->load(run).tasks.size() == static_cast<std::size_t>(tasks));
}

TEST_CASE("record_new logs a new task's first transition and is followed like any record", "[journal]") {
  temp_dir dir;
  auto j = journal::open(dir.path() / "j.sqlite", write_mode);
  const std::string run = j->create_run("r", "{}");
  j->commit();  // the run in a group of its own: its tasks are new to the journal, not to the group
  j->record_new(run, task("a", "PENDING"));
  j->record_new(run, task("b", "PENDING"));
  j->record(run, task("b", "RUNNING"));
  j->commit();
  j->record(run, task("a", "PENDING"));  // no change
  j->record(run, task("a", "SUCCEEDED"));
  j->commit();
  std::vector<std::string> seen;
  for (const auto& t : j->transitions(run)) seen.push_back(t.key + ":" + t.status);
  CHECK(seen == std::vector<std::string>{":CREATED", "a:PENDING", "b:PENDING", "b:RUNNING", "a:SUCCEEDED"});
  const auto tasks = j->load(run).tasks;
  REQUIRE(tasks.size() == 2);
  CHECK(tasks[0].status == "SUCCEEDED");
  CHECK(tasks[1].status == "RUNNING");
}

TEST_CASE("Transitions page by seq, one run at a time", "[journal]") {
  temp_dir dir;
  auto j = journal::open(dir.path() / "j.sqlite", write_mode);
  const std::string a = j->create_run("a", "{}");
  const std::string b = j->create_run("b", "{}");
  for (int i = 0; i < 25; ++i) {
    j->record(a, task(numbered("a", i), "READY"));
    j->record(b, task(numbered("b", i), "READY"));
  }
  j->commit();
  std::vector<std::string> keys;
  std::int64_t after = 0;
  for (;;) {
    const auto page = j->transitions(a, after, 10);
    if (page.empty()) break;
    CHECK(page.size() <= 10);
    for (const auto& t : page) {
      CHECK(t.run == a);
      keys.push_back(t.key);
    }
    after = page.back().seq;
  }
  REQUIRE(keys.size() == 26);  // CREATED, then 25 tasks
  CHECK(keys[1] == "a0");
  CHECK(keys[25] == "a24");
}

TEST_CASE("runs lists every run oldest first, or the unfinished ones only", "[journal]") {
  temp_dir dir;
  auto j = journal::open(dir.path() / "j.sqlite", write_mode);
  std::vector<std::string> ids;
  for (const char* status : {"SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED", "RUNNING", "CREATED"}) {
    ids.push_back(j->create_run(status, "{}"));
    j->set_run_status(ids.back(), status);
  }
  j->commit();
  const auto all = j->runs();
  REQUIRE(all.size() == 6);
  CHECK(all.front().id == ids.front());
  std::set<std::string> unfinished;
  for (const auto& r : j->runs(true)) unfinished.insert(r.name);
  CHECK(unfinished == std::set<std::string>{"INTERRUPTED", "RUNNING", "CREATED"});
  CHECK(dx::detail::is_finished_run_status("CANCELLED"));
  CHECK_FALSE(dx::detail::is_finished_run_status("INTERRUPTED"));
}

TEST_CASE("cached finds the newest succeeded result with a cache key, across runs", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode);
  const std::string first = j->create_run("first", "{}");
  task_record t = task("train", "SUCCEEDED");
  t.cache_key = "c0ffee";
  j->record(first, t);
  j->store_result(first, "train", "old model");
  task_record failed = task("eval", "FAILED");
  failed.cache_key = "bad";
  j->record(first, failed);
  j->store_result(first, "eval", "partial");
  task_record no_result = task("log", "SUCCEEDED");
  no_result.cache_key = "noresult";
  j->record(first, no_result);
  j->commit();

  auto hit = j->cached("c0ffee");
  REQUIRE(hit.has_value());
  CHECK((hit->run == first && hit->key == "train"));
  CHECK(j->result(hit->run, hit->key) == "old model");
  CHECK_FALSE(j->cached("bad").has_value());       // only SUCCEEDED or CACHED tasks
  CHECK_FALSE(j->cached("noresult").has_value());  // only tasks with a result
  CHECK_FALSE(j->cached("unknown").has_value());
  CHECK_FALSE(j->cached("").has_value());

  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const std::string second = j->create_run("second", "{}");
  t.key = "train-again";
  j->record(second, t);
  j->store_result(second, "train-again", payload(journal::inline_result_limit * 2, 9));
  j->commit();
  j.reset();
  auto reader = journal::open(path, read_mode);
  hit = reader->cached("c0ffee");
  REQUIRE(hit.has_value());
  CHECK((hit->run == second && hit->key == "train-again"));
  CHECK_FALSE(hit->file.empty());
  CHECK(reader->result(hit->run, hit->key) == payload(journal::inline_result_limit * 2, 9));
}

TEST_CASE("Changes are invisible until commit, and a read-only journal refuses changes", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode);
  const std::string run = j->create_run("r", "{}");
  j->record(run, task("a", "READY"));
  CHECK(j->has_uncommitted());
  CHECK(j->runs().empty());
  auto reader = journal::open(path, read_mode);
  CHECK(reader->runs().empty());
  j->commit();
  CHECK_FALSE(j->has_uncommitted());
  CHECK(reader->runs().size() == 1);
  CHECK(reader->load(run).tasks.size() == 1);
  j->commit();  // nothing buffered: nothing happens

  const std::string message = error_of([&] { reader->create_run("x", "{}"); });
  CHECK_THAT(message, Catch::Contains("read-only") && Catch::Contains(path.string()));
  CHECK_THROWS_AS(reader->record(run, task("b", "READY")), dx::error);
  CHECK_THROWS_AS(reader->store_result(run, "b", "x"), dx::error);
  CHECK_THROWS_AS(reader->set_run_status(run, "FAILED"), dx::error);

  // Uncommitted changes are dropped when the journal closes.
  j->record(run, task("dropped", "READY"));
  j.reset();
  CHECK(journal::open(path, read_mode)->load(run).tasks.size() == 1);
}

TEST_CASE("Unknown runs and statuses and empty keys are refused when recorded", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode);
  const std::string run = j->create_run("r", "{}");
  CHECK_THAT(error_of([&] { j->record("r-nope", task("a", "READY")); }),
             Catch::Contains("no run r-nope") && Catch::Contains(path.string()));
  CHECK_THAT(error_of([&] { j->record(run, task("a", "DONE")); }), Catch::Contains("\"DONE\""));
  CHECK_THAT(error_of([&] { j->record(run, task("", "READY")); }), Catch::Contains("empty key"));
  CHECK_THAT(error_of([&] { j->set_run_status(run, "FINISHED"); }), Catch::Contains("\"FINISHED\""));
  CHECK_THROWS_AS(j->store_result("r-nope", "a", "x"), dx::error);
  CHECK_THAT(error_of([&] { j->load("r-nope"); }), Catch::Contains("no run r-nope"));
  // A run committed by an earlier journal object is known without having been created here.
  j->commit();
  j.reset();
  j = journal::open(path, write_mode);
  j->record(run, task("a", "READY"));
  j->commit();
  CHECK(j->load(run).tasks.size() == 1);
}

TEST_CASE("open refuses files that are not dx journals it can read, naming the path and the problem", "[journal]") {
  temp_dir dir;
  using dx::detail::sqlite_db;
  const int create = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

  SECTION("another application's SQLite database") {
    const fs::path path = dir.path() / "other.sqlite";
    {
      sqlite_db db(path, create, 1000);
      db.exec("CREATE TABLE accounts(id INTEGER); PRAGMA application_id=1234");
    }
    for (auto mode : {write_mode, read_mode}) {
      CHECK_THAT(error_of([&] { journal::open(path, mode); }),
                 Catch::Contains(path.string()) && Catch::Contains("another application"));
    }
  }
  SECTION("an SQLite database without an application id") {
    const fs::path path = dir.path() / "plain.sqlite";
    {
      sqlite_db db(path, create, 1000);
      db.exec("CREATE TABLE t(x)");
    }
    CHECK_THAT(error_of([&] { journal::open(path, write_mode); }),
               Catch::Contains(path.string()) && Catch::Contains("not a dx journal"));
  }
  SECTION("a text file") {
    const fs::path path = dir.path() / "notes.txt";
    std::string text;
    for (int i = 0; i < 200; ++i) text += "this is not a database\n";
    write_text(path, text);
    for (auto mode : {write_mode, read_mode}) {
      CHECK_THAT(error_of([&] { journal::open(path, mode); }),
                 Catch::Contains(path.string()) && Catch::Contains("not an SQLite database"));
    }
    CHECK(read_text(path) == text);  // left alone
  }
  SECTION("a journal of a newer schema") {
    const fs::path path = dir.path() / "newer.sqlite";
    journal::open(path, write_mode).reset();
    {
      sqlite_db db(path, SQLITE_OPEN_READWRITE, 1000);
      db.exec(("PRAGMA user_version=" + std::to_string(journal_schema_version + 1)).c_str());
    }
    for (auto mode : {write_mode, read_mode}) {
      CHECK_THAT(error_of([&] { journal::open(path, mode); }),
                 Catch::Contains(path.string()) &&
                     Catch::Contains("schema version is " + std::to_string(journal_schema_version + 1)));
    }
  }
  SECTION("a folder that cannot be created") {
    write_text(dir.path() / "a_file", "x");
    const fs::path path = dir.path() / "a_file" / "sub" / "journal.sqlite";
    CHECK_THAT(error_of([&] { journal::open(path, write_mode); }),
               Catch::Contains(path.string()) && Catch::Contains("cannot create its folder"));
  }
  SECTION("a missing file, read-only") {
    const fs::path path = dir.path() / "missing.sqlite";
    CHECK_THAT(error_of([&] { journal::open(path, read_mode); }),
               Catch::Contains(path.string()) && Catch::Contains("no such file"));
    CHECK_FALSE(fs::exists(path));
  }
  SECTION("an empty path") { CHECK_THROWS_AS(journal::open("", write_mode), dx::error); }
}

TEST_CASE("An empty file, as a writer killed before its first commit leaves, reads as a journal without runs",
          "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "empty.sqlite";
  write_text(path, "");
  {
    auto r = journal::open(path, read_mode);
    CHECK(r->runs().empty());
    CHECK_FALSE(r->find_run("r-x").has_value());
    CHECK_THAT(error_of([&] { r->load("r-x"); }), Catch::Contains("no run r-x in journal " + path.string()));
    CHECK_FALSE(r->result("r-x", "a").has_value());
    CHECK_FALSE(r->cached("abc").has_value());
    CHECK(r->transitions("r-x").empty());
    CHECK(r->open_requests().empty());
  }
  CHECK(fs::file_size(path) == 0);  // the reader left it alone
  CHECK_THAT(error_of([&] { journal::open(path, journal::open_mode::request); }),
             Catch::Contains(path.string()) && Catch::Contains("holds no journal yet"));
  auto j = journal::open(path, write_mode);  // made a journal
  const std::string run = j->create_run("now", "{}");
  j->commit();
  CHECK(journal::open(path, read_mode)->runs().size() == 1);
}

TEST_CASE("A result file changed, cut or removed on disk is an error naming the file", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode);
  const std::string run = j->create_run("r", "{}");
  const std::string big = payload(journal::inline_result_limit + 10, 3);
  j->record(run, task("big", "SUCCEEDED"));
  j->store_result(run, "big", big);
  j->commit();
  const auto ref = j->load(run).tasks.at(0).result.value();
  REQUIRE_FALSE(ref.file.empty());
  REQUIRE(j->result(run, "big") == big);

  SECTION("bytes changed, same size") {
    std::string changed = big;
    changed[1234] ^= 0x5a;
    write_text(ref.file, changed);
    CHECK_THAT(error_of([&] { j->result(run, "big"); }),
               Catch::Contains(ref.file.string()) && Catch::Contains("SHA-256"));
  }
  SECTION("cut short") {
    fs::resize_file(ref.file, 100);
    CHECK_THAT(error_of([&] { j->result(run, "big"); }),
               Catch::Contains(ref.file.string()) && Catch::Contains("100 bytes"));
  }
  SECTION("removed") {
    fs::remove(ref.file);
    CHECK_THAT(error_of([&] { j->result(run, "big"); }),
               Catch::Contains(ref.file.string()) && Catch::Contains("No such file"));
  }
  SECTION("a result in the database changed there") {
    j->store_result(run, "small", "small result");
    j->commit();
    {
      dx::detail::sqlite_db db(path, SQLITE_OPEN_READWRITE, 1000);
      db.exec("UPDATE results SET bytes = CAST('small resulT' AS BLOB) WHERE key = 'small'");
    }
    CHECK_THAT(error_of([&] { j->result(run, "small"); }),
               Catch::Contains(path.string()) && Catch::Contains("task small") && Catch::Contains("SHA-256"));
  }
  // The journal itself stays usable: the task is run again and its new result stored.
  j->store_result(run, "big", "recomputed");
  j->commit();
  CHECK(j->result(run, "big") == "recomputed");
}

TEST_CASE("A replaced big result's file is removed once the replacement is committed", "[journal]") {
  temp_dir dir;
  auto j = journal::open(dir.path() / "j.sqlite", write_mode);
  const std::string run = j->create_run("r", "{}");
  j->record(run, task("k", "SUCCEEDED"));
  j->store_result(run, "k", payload(journal::inline_result_limit + 1, 1));
  j->commit();
  const fs::path first = j->load(run).tasks.at(0).result->file;
  REQUIRE(fs::exists(first));
  j->store_result(run, "k", payload(journal::inline_result_limit + 1, 2));
  j->commit();
  const fs::path second = j->load(run).tasks.at(0).result->file;
  CHECK(second != first);
  CHECK_FALSE(fs::exists(first));
  CHECK(fs::exists(second));
  j->store_result(run, "k", "small now");
  j->commit();
  CHECK_FALSE(fs::exists(second));
  CHECK(j->result(run, "k") == "small now");
}

TEST_CASE("A group whose result file cannot be written is dropped whole", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode);
  const std::string run = j->create_run("r", "{}");
  j->commit();
  write_text(path.string() + ".results", "a file where the results folder goes");
  j->record(run, task("a", "SUCCEEDED"));
  j->store_result(run, "a", payload(journal::inline_result_limit + 1, 1));
  const std::string dropped_run = j->create_run("dropped", "{}");
  CHECK_THAT(error_of([&] { j->commit(); }), Catch::Contains(path.string() + ".results"));
  CHECK_FALSE(j->has_uncommitted());
  CHECK(j->load(run).tasks.empty());
  CHECK_FALSE(j->result(run, "a").has_value());
  CHECK(j->runs().size() == 1);
  // The run created in the dropped group does not exist, for record() either.
  CHECK_THAT(error_of([&] { j->record(dropped_run, task("x", "READY")); }), Catch::Contains("no run"));
  // The journal goes on: a group of small results commits.
  j->record(run, task("b", "SUCCEEDED"));
  j->store_result(run, "b", "fits");
  j->commit();
  CHECK(j->result(run, "b") == "fits");
}

TEST_CASE(
    "A commit waits for a foreign connection's SQLite lock only as long as lock_wait, then fails naming the "
    "journal",
    "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  auto j = journal::open(path, write_mode, std::chrono::milliseconds(200));
  const std::string run = j->create_run("r", "{}");
  j->commit();
  {
    // A program that is not dx holds SQLite's write lock on the file.
    dx::detail::sqlite_db foreign(path, SQLITE_OPEN_READWRITE, 0);
    foreign.exec("BEGIN IMMEDIATE");
    j->record(run, task("a", "READY"));
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of([&] { j->commit(); });
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK_THAT(message, Catch::Contains(path.string()) && Catch::Contains("busy timeout"));
    CHECK(waited >= std::chrono::milliseconds(150));
    CHECK(waited < std::chrono::seconds(3));
    // Readers are not held up by a writer in WAL mode.
    CHECK(journal::open(path, read_mode, std::chrono::milliseconds(200))->runs().size() == 1);
    foreign.exec("ROLLBACK");
  }
  CHECK(j->load(run).tasks.empty());  // the group that failed was dropped
  j->record(run, task("b", "READY"));
  j->commit();
  CHECK(j->load(run).tasks.size() == 1);
}

TEST_CASE(
    "One writer per journal: a second is refused naming the holder's pid, a killed holder's lock is taken "
    "over, readers work alongside",
    "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";

  // In one process, a second writer is refused too (a flock belongs to the open file, not the process).
  {
    auto first = journal::open(path, write_mode);
    CHECK_THAT(error_of([&] { journal::open(path, write_mode); }),
               Catch::Contains(path.string()) && Catch::Contains(std::to_string(::getpid())));
  }

  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t holder = fork_child([&] {
    ::close(ready[0]);
    auto j = journal::open(path, write_mode);
    const std::string run = j->create_run("held", "{}");
    j->record(run, task("a", "RUNNING"));
    j->commit();
    write_int(ready[1], 1);
    std::this_thread::sleep_for(std::chrono::seconds(30));  // until killed; bounded all the same
  });
  ::close(ready[1]);
  REQUIRE(read_int(ready[0], std::chrono::seconds(10)) == 1);
  ::close(ready[0]);

  const std::string refused = error_of([&] { journal::open(path, write_mode); });
  CHECK_THAT(refused, Catch::Contains(path.string()) && Catch::Contains("process " + std::to_string(holder)));

  {
    auto reader = journal::open(path, read_mode);
    const auto runs = reader->runs();
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].name == "held");
    CHECK(runs[0].head_pid == holder);
    CHECK(reader->load(runs[0].id).tasks.size() == 1);
  }

  kill_and_reap(holder);
  // A reader first, while the killed writer's -wal and -shm files are still there.
  CHECK(journal::open(path, read_mode)->runs().size() == 1);
  auto j = journal::open(path, write_mode);  // no manual unlock
  CHECK(j->runs().size() == 1);
  CHECK(read_text(path.string() + ".lock") == std::to_string(::getpid()) + "\n");
}

TEST_CASE("After a kill -9 at a random moment every reported group is there whole and no group is there in part",
          "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  std::mt19937 random(std::random_device{}());
  for (int round = 0; round < 10; ++round) {
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    const std::string name = numbered("crash-", round);
    const pid_t child = fork_child([&] {
      ::close(pipe_fds[0]);
      auto j = journal::open(path, write_mode);
      const std::string run = j->create_run(name, "{}");
      for (int g = 0; g < 100000; ++g) {
        commit_group(*j, run, g);
        write_int(pipe_fds[1], g);
      }
    });
    ::close(pipe_fds[1]);
    std::set<int> reported;
    const auto first = read_int(pipe_fds[0], std::chrono::seconds(10));
    if (!first) kill_and_reap(child);
    REQUIRE(first.has_value());
    reported.insert(*first);
    // Kill at a random moment, reading reports meanwhile so the child never blocks on the pipe.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(std::uniform_int_distribution<>(5, 100)(random));
    while (std::chrono::steady_clock::now() < deadline) {
      if (const auto g = read_int(pipe_fds[0], std::chrono::milliseconds(1))) reported.insert(*g);
    }
    kill_and_reap(child);
    while (const auto g = read_int(pipe_fds[0], std::chrono::milliseconds(0))) reported.insert(*g);
    ::close(pipe_fds[0]);

    auto j = journal::open(path, write_mode);
    std::string run;
    for (const auto& r : j->runs()) {
      if (r.name == name) run = r.id;
    }
    REQUIRE_FALSE(run.empty());
    const std::set<int> present = whole_groups(*j, run);
    INFO("round " << round << ": " << reported.size() << " groups reported, " << present.size() << " present");
    for (const int g : reported) CHECK(present.count(g) == 1);
    // Groups commit in order: what is there is a prefix, at most one past the last report.
    REQUIRE_FALSE(present.empty());
    CHECK(*present.rbegin() == static_cast<int>(present.size()) - 1);
    CHECK(*present.rbegin() <= *reported.rbegin() + 1);
  }
}

TEST_CASE("A -wal file cut at any byte opens with the groups committed before the cut", "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  constexpr int groups = 12;
  std::string run;
  {
    auto j = journal::open(path, write_mode);
    run = j->create_run("wal", "{}");
    commit_group(*j, run, 0);
  }  // closing checkpoints: group 0 is in the main file, the rest go to the -wal file
  auto j = journal::open(path, write_mode);
  for (int g = 1; g < groups; ++g) commit_group(*j, run, g);
  const fs::path wal = path.string() + "-wal";
  REQUIRE(fs::file_size(wal) > 0);
  const auto wal_size = fs::file_size(wal);

  std::mt19937 random(std::random_device{}());
  std::vector<std::uintmax_t> cuts{0, wal_size};
  for (int i = 0; i < 10; ++i) cuts.push_back(std::uniform_int_distribution<std::uintmax_t>(1, wal_size - 1)(random));
  int previous_count = -1;
  std::sort(cuts.begin(), cuts.end());
  for (const auto cut : cuts) {
    INFO("-wal cut at " << cut << " of " << wal_size);
    temp_dir copy_dir;
    const fs::path copy = copy_dir.path() / "j.sqlite";
    fs::copy_file(path, copy);
    fs::copy_file(wal, copy.string() + "-wal");
    fs::copy(path.string() + ".results", copy.string() + ".results", fs::copy_options::recursive);
    fs::resize_file(copy.string() + "-wal", cut);
    auto reopened = journal::open(copy, write_mode);
    const std::set<int> present = whole_groups(*reopened, run);
    REQUIRE_FALSE(present.empty());
    CHECK(*present.rbegin() == static_cast<int>(present.size()) - 1);  // a prefix
    // A longer -wal file never holds fewer groups.
    CHECK(static_cast<int>(present.size()) >= previous_count);
    previous_count = static_cast<int>(present.size());
    if (cut == 0) CHECK(present.size() == 1);
    if (cut == wal_size) CHECK(present.size() == static_cast<std::size_t>(groups));
    // The torn tail is gone for good: the journal takes new groups after the prefix.
    const int next = static_cast<int>(present.size());
    commit_group(*reopened, run, next);
    CHECK(whole_groups(*reopened, run).size() == present.size() + 1);
  }
}

TEST_CASE(
    "A database file cut at a random byte, or with a page overwritten, is an error naming the path, or "
    "reads right",
    "[journal]") {
  temp_dir dir;
  const fs::path path = dir.path() / "j.sqlite";
  constexpr int groups = 40;
  std::string run;
  {
    auto j = journal::open(path, write_mode);
    run = j->create_run("cut", "{}");
    for (int g = 0; g < groups; ++g) commit_group(*j, run, g);
  }  // closing checkpoints everything into the main file and removes the -wal file
  REQUIRE_FALSE(fs::exists(path.string() + "-wal"));
  const auto size = fs::file_size(path);
  constexpr std::uintmax_t page = 4096;
  REQUIRE(size % page == 0);

  struct damage {
    std::string what;
    std::function<void(const fs::path&)> apply;
  };
  std::vector<damage> damages;
  std::mt19937 random(std::random_device{}());
  std::vector<std::uintmax_t> cuts{size / 2 / page * page, page, 100, 1};
  for (int i = 0; i < 12; ++i) cuts.push_back(std::uniform_int_distribution<std::uintmax_t>(1, size - 1)(random));
  for (const auto cut : cuts) {
    damages.push_back({"cut at byte " + std::to_string(cut), [cut](const fs::path& f) { fs::resize_file(f, cut); }});
  }
  // A page of garbage where a table, an index or the free list had one.
  for (std::uintmax_t p = 1; p < size / page; p += 3) {
    damages.push_back({"page " + std::to_string(p) + " overwritten", [p](const fs::path& f) {
                         std::fstream out(f, std::ios::binary | std::ios::in | std::ios::out);
                         out.seekp(static_cast<std::streamoff>(p * page));
                         out << std::string(page, '\xa5');
                       }});
  }

  int errors = 0;
  for (const auto& d : damages) {
    INFO("database file " << d.what << ", " << size << " bytes");
    temp_dir copy_dir;
    const fs::path copy = copy_dir.path() / "j.sqlite";
    fs::copy_file(path, copy);
    fs::copy(path.string() + ".results", copy.string() + ".results", fs::copy_options::recursive);
    d.apply(copy);
    for (auto mode : {read_mode, write_mode}) {
      try {
        auto j = journal::open(copy, mode);
        // Whatever opens must read back right, or fail naming the path: never a shorter answer.
        // (Read outside CHECK, which would take the exception for a failure.)
        const auto runs = j->runs();
        REQUIRE(runs.size() == 1);
        const auto present = whole_groups(*j, run);
        CHECK(present.size() == static_cast<std::size_t>(groups));
        const auto log = j->transitions(run, 0, 100000);
        CHECK(log.size() == 1 + groups * tasks_per_group);
      } catch (const dx::error& e) {
        CHECK_THAT(std::string(e.what()), Catch::Contains(copy.string()));
        ++errors;
      }
    }
  }
  CHECK(errors > 0);
}

TEST_CASE("resolve_journal_path prefers DX_JOURNAL, then the explicit path, then the XDG state folder", "[journal]") {
  struct saved_env {
    std::string name;
    std::optional<std::string> value;
    explicit saved_env(std::string n) : name(std::move(n)) {
      if (const char* v = std::getenv(name.c_str())) value = v;
    }
    ~saved_env() {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  };
  saved_env dx_journal("DX_JOURNAL"), xdg("XDG_STATE_HOME"), home("HOME");
  using dx::detail::resolve_journal_path;
  ::setenv("DX_JOURNAL", "/from/env.sqlite", 1);
  ::setenv("XDG_STATE_HOME", "/xdg", 1);
  ::setenv("HOME", "/home/u", 1);
  CHECK(resolve_journal_path("/explicit.sqlite") == "/from/env.sqlite");
  ::setenv("DX_JOURNAL", "", 1);
  CHECK(resolve_journal_path("/explicit.sqlite") == "/explicit.sqlite");
  CHECK(resolve_journal_path() == "/xdg/dx/journal.sqlite");
  ::unsetenv("XDG_STATE_HOME");
  CHECK(resolve_journal_path() == "/home/u/.local/state/dx/journal.sqlite");
  ::unsetenv("HOME");
  CHECK_THAT(error_of([] { resolve_journal_path(); }), Catch::Contains("DX_JOURNAL"));
}
