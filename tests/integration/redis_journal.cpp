// The Redis journal and its lease against a real redis-server the test starts (skipped, with the
// reason printed, where redis-server is missing): a group commits whole or not at all, results come
// back checked against their SHA-256, the lease is taken, renewed and taken over only when it ran
// out, a head that lost it can never commit again, a standby does not take over because Redis was
// away, and a writer whose Redis goes away keeps its commits and catches up when it is back.
#include <dx/journal_lease.hpp>

#include "journal/journal.hpp"
#include "journal/redis_client.hpp"
#include "journal/redis_lease.hpp"
#include "processes.hpp"
#include "redis_server.hpp"
#include "temp_dir.hpp"

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;
using dx::detail::journal;
using dx::detail::redis_client;
using dx::detail::redis_lease;
using dx::detail::task_record;
using dx_support::redis_server;

/// Redis as the test sees it, without the journal's code: what another head would write.
struct raw_redis {
  explicit raw_redis(const redis_server& s) : client(dx::detail::parse_redis_location(s.location()), 2s) {}
  std::string get(const std::string& key) { return client.call({"GET", key}).text; }
  bool exists(const std::string& key) { return client.call({"EXISTS", key}).integer == 1; }
  /// What a standby does when it takes over: a new epoch, and the lease key naming it.
  void take_over(const std::string& holder, int ttl_ms) {
    const auto epoch = client.call({"INCR", "dx:epoch"}).integer;
    client.call({"SET", "dx:lease", std::to_string(epoch) + " " + holder + " 0", "PX", std::to_string(ttl_ms)});
  }
  redis_client client;
};

/// A task record with these fields (the others empty).
task_record rec(std::string key, std::string status, std::int64_t attempts = 0) {
  task_record t;
  t.key = std::move(key);
  t.status = std::move(status);
  t.attempts = attempts;
  return t;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return {};
}

#define REQUIRE_REDIS(server)             \
  if (!(server).running()) {              \
    dx_support::skip((server).problem()); \
    return;                               \
  }

}  // namespace

TEST_CASE("A Redis journal commits a group whole: nothing of it is visible before commit, all of it after",
          "[redis][journal]") {
  const dx_support::temp_dir dir("dx_redis_commit");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  auto lease = redis_lease::take(redis.location(), {1000ms, 100ms});
  auto writer = journal::open(redis.location(), journal::open_mode::write);
  auto reader = journal::open(redis.location(), journal::open_mode::read_only);
  CHECK(writer->path().string() == redis.location());

  const std::string run = writer->create_run("nightly", R"({"steps":[]})");
  writer->record_new(run, rec("load", "PENDING"));
  task_record running = rec("load", "RUNNING", 1);
  running.assigned_to = "w1";
  writer->record(run, running);
  writer->store_result(run, "load", "the bytes");
  task_record done = rec("load", "SUCCEEDED", 1);
  done.cache_key = "k1";
  writer->record(run, done);
  task_record chunk = rec("train#0", "PENDING");
  chunk.parent = "train";
  chunk.is_subtask = true;
  chunk.parameters = R"({"start":0,"end":10})";
  writer->record_new(run, chunk);
  CHECK(writer->has_uncommitted());
  CHECK(reader->runs().empty());  // buffered: not in Redis yet
  writer->commit();
  CHECK_FALSE(writer->has_uncommitted());

  const auto state = reader->load(run);
  CHECK(state.run.name == "nightly");
  CHECK(state.run.status == "CREATED");
  REQUIRE(state.tasks.size() == 2);
  CHECK(state.tasks[0].key == "load");  // in the order first recorded
  CHECK(state.tasks[0].status == "SUCCEEDED");
  CHECK(state.tasks[0].cache_key == "k1");
  REQUIRE(state.tasks[0].result);
  CHECK(state.tasks[0].result->size == 9);
  CHECK(state.tasks[1].is_subtask);
  CHECK(state.tasks[1].parent == "train");
  CHECK(state.tasks[1].parameters == R"({"start":0,"end":10})");
  // One transition per change of status, in order: the run's creation, then load's three.
  const auto log = reader->transitions(run);
  REQUIRE(log.size() == 5);
  CHECK(log[1].status == "PENDING");
  CHECK(log[3].status == "SUCCEEDED");
  CHECK(log[4].key == "train#0");
  CHECK(reader->transitions(run, log[2].seq).size() == 2);  // paged by seq
  CHECK(reader->cached("k1")->key == "load");
  CHECK_FALSE(reader->cached("k2"));

  // A group that Redis refuses is not written at all: the group below is fenced (another epoch).
  writer->set_run_status(run, "RUNNING");
  writer->record(run, rec("train#0", "RUNNING"));
  raw_redis(redis).take_over("other:1", 5000);
  CHECK_THAT(error_of([&] { writer->commit(); }), Catch::Contains("another head took the journal over"));
  CHECK(reader->run(run).status == "CREATED");
  CHECK(reader->load(run).tasks[1].status == "PENDING");
  CHECK(reader->transitions(run).size() == 5);
}

TEST_CASE("Results in a Redis journal come back whole, big or small, and a changed one is refused by its SHA-256",
          "[redis][journal]") {
  const dx_support::temp_dir dir("dx_redis_results");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  auto lease = redis_lease::take(redis.location(), {1000ms, 100ms});
  auto writer = journal::open(redis.location(), journal::open_mode::write);
  const std::string run = writer->create_run("r", "{}");
  std::string big(3 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  writer->store_result(run, "big", big);
  writer->store_result(run, "small", std::string("a\0b", 3));
  writer->commit();
  CHECK(*writer->result(run, "big") == big);
  CHECK(*writer->result(run, "small") == std::string("a\0b", 3));
  CHECK_FALSE(writer->result(run, "none"));

  raw_redis raw(redis);
  raw.client.call({"HSET", "dx:results:" + run, "small", std::string("a\0c", 3)});
  CHECK_THAT(error_of([&] { writer->result(run, "small"); }), Catch::Contains("does not match its SHA-256"));
}

TEST_CASE("A journal lease is refused while another head holds it, renewed while held, and taken once it ran out",
          "[redis][lease]") {
  const dx_support::temp_dir dir("dx_redis_lease");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  raw_redis raw(redis);
  raw.take_over("otherhost:42", 600);  // another head, which dies at once (never renews)
  CHECK_THAT(error_of([&] {
               dx::journal_lease::take(redis.location(), {1000ms, 100ms});
             }),
             Catch::Contains("otherhost:42") && Catch::Contains("--standby"));
  CHECK_THAT(error_of([&] { journal::open(redis.location(), journal::open_mode::write); }),
             Catch::Contains("otherhost:42"));

  std::this_thread::sleep_for(700ms);  // its ttl ran out
  auto lease = dx::journal_lease::take(redis.location(), {400ms, 50ms});
  CHECK(lease.epoch() == 2);
  const std::string first = raw.get("dx:lease");
  std::this_thread::sleep_for(1200ms);  // three ttls: alive only because it is renewed
  const std::string later = raw.get("dx:lease");
  CHECK(later.rfind("2 ", 0) == 0);
  CHECK(later != first);  // renewals are seen as changes
  CHECK_FALSE(lease.lost());
  CHECK(lease.problem().empty());

  // Destroyed: given up at once, so that a standby need not wait for the ttl.
  { auto gone = std::move(lease); }
  CHECK_FALSE(raw.exists("dx:lease"));
  CHECK(raw.get("dx:epoch") == "2");
}

TEST_CASE("A head that lost its lease can never commit again, and says why", "[redis][lease]") {
  const dx_support::temp_dir dir("dx_redis_fenced");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  auto lease = redis_lease::take(redis.location(), {2000ms, 100ms});
  auto writer = journal::open(redis.location(), journal::open_mode::write);
  const std::string run = writer->create_run("r", "{}");
  writer->commit();

  // Paused past its ttl (as a stopped process, or one cut off from Redis): a standby took over.
  raw_redis(redis).take_over("standby:7", 5000);
  writer->record_new(run, rec("late", "SUCCEEDED"));
  const std::string why = error_of([&] { writer->commit(); });
  CHECK_THAT(why, Catch::Contains("lost the lease") && Catch::Contains("its epoch 1, now 2"));
  CHECK(lease->lost());
  CHECK(writer->health().fenced);
  // Every later commit is refused before it reaches Redis, and the renewals stop.
  writer->record_new(run, rec("later", "SUCCEEDED"));
  CHECK_THAT(error_of([&] { writer->commit(); }), Catch::Contains("lost the lease"));
  auto reader = journal::open(redis.location(), journal::open_mode::read_only);
  CHECK(reader->load(run).tasks.empty());
  CHECK(raw_redis(redis).get("dx:lease").rfind("2 standby:7", 0) == 0);
}

TEST_CASE("A head whose Redis lost the journal (a restart without persistence) can no longer commit, and says so",
          "[redis][lease]") {
  const dx_support::temp_dir dir("dx_redis_flushed");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  auto lease = redis_lease::take(redis.location(), {5000ms, 100ms});
  auto writer = journal::open(redis.location(), journal::open_mode::write);
  const std::string run = writer->create_run("r", "{}");
  writer->commit();
  raw_redis(redis).client.call({"FLUSHALL"});
  writer->record_new(run, rec("a", "SUCCEEDED"));
  CHECK_THAT(error_of([&] { writer->commit(); }), Catch::Contains("lost its data"));
  CHECK(lease->lost());
  CHECK_FALSE(raw_redis(redis).exists("dx:tasks:" + run));
}

TEST_CASE("A standby takes the lease about one ttl after its head stopped renewing it, never while it renews",
          "[redis][lease]") {
  const dx_support::temp_dir dir("dx_redis_standby");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  raw_redis raw(redis);
  raw.take_over("head:1", 500);
  // The head renews for 1.5 s: the standby waits all that time.
  std::atomic<bool> renewing{true};
  std::thread head([&] {
    raw_redis mine(redis);
    for (int n = 1; renewing.load(); ++n) {
      mine.client.call({"SET", "dx:lease", "1 head:1 " + std::to_string(n), "PX", "500"});
      std::this_thread::sleep_for(100ms);
    }
  });
  const auto began = std::chrono::steady_clock::now();
  auto none = dx::journal_lease::wait(redis.location(), {500ms, 50ms},
                                      [&] { return std::chrono::steady_clock::now() - began < 1500ms; });
  CHECK_FALSE(none);
  // Then it dies: the standby takes over within a ttl and a poll of the lease running out.
  renewing = false;
  head.join();
  const auto died = std::chrono::steady_clock::now();
  std::vector<std::string> seen;
  auto lease = dx::journal_lease::wait(
      redis.location(), {500ms, 50ms}, [&] { return std::chrono::steady_clock::now() - died < 10s; },
      [&](const std::string& s) { seen.push_back(s); });
  const auto took = std::chrono::steady_clock::now() - died;
  REQUIRE(lease);
  CHECK(lease->epoch() == 2);
  CHECK(took < 2s);
  CHECK(took >= 400ms);
  CHECK_FALSE(seen.empty());
}

TEST_CASE("A standby does not take over because Redis was away: the head gets a ttl to renew once it is back",
          "[redis][lease]") {
  const dx_support::temp_dir dir("dx_redis_outage_standby");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  // The head: another process's, renewing every ttl/4 as redis_lease does (it re-sets the key,
  // also once Redis is back); its calls fail while Redis is away.
  raw_redis(redis).take_over("head:1", 800);
  std::atomic<bool> stop{false};
  std::thread head([&] {
    raw_redis mine(redis);
    for (int n = 1; !stop.load(); ++n) {
      try {
        mine.client.call({"SET", "dx:lease", "1 head:1 " + std::to_string(n), "PX", "800"});
      } catch (const dx::detail::redis_unreachable&) {
      }
      std::this_thread::sleep_for(200ms);
    }
  });
  std::vector<std::string> states;
  std::mutex states_mutex;
  std::optional<dx::journal_lease> taken;
  std::string standby_error;
  std::thread standby([&] {
    try {
      taken = dx::journal_lease::wait(
          redis.location(), {800ms, 50ms}, [&] { return !stop.load(); },
          [&](const std::string& s) {
            std::lock_guard lock(states_mutex);
            states.push_back(s);
          });
    } catch (const std::exception& e) {  // reported below: a thread must not end the test binary
      standby_error = e.what();
    }
  });
  std::this_thread::sleep_for(300ms);
  redis.kill();
  std::this_thread::sleep_for(2000ms);  // past the ttl: the key's time ran out while Redis was away
  REQUIRE(redis.start());
  std::this_thread::sleep_for(2000ms);  // the head renews (re-sets the key) within ttl/4
  stop = true;
  standby.join();
  head.join();
  CHECK(standby_error.empty());
  CHECK_FALSE(taken);
  CHECK(raw_redis(redis).get("dx:epoch") == "1");
  std::lock_guard lock(states_mutex);
  bool saw_away = false;
  for (const auto& s : states) saw_away = saw_away || s.find("not taken while Redis is away") != std::string::npos;
  CHECK(saw_away);
}

TEST_CASE("A writer whose Redis goes away keeps its commits, says so, and writes them in order when it is back",
          "[redis][journal][outage]") {
  const dx_support::temp_dir dir("dx_redis_outage");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  auto lease = redis_lease::take(redis.location(), {1000ms, 100ms});
  auto writer = journal::open(redis.location(), journal::open_mode::write, 500ms);
  const std::string run = writer->create_run("r", "{}");
  writer->record_new(run, rec("a", "SUCCEEDED"));
  writer->commit();

  redis.kill();
  writer->record_new(run, rec("b", "SUCCEEDED"));
  writer->store_result(run, "b", "bee");
  writer->commit();  // held here, not thrown
  CHECK(writer->health().degraded);
  CHECK(writer->health().held_groups == 1);
  CHECK_THAT(writer->health().reason, Catch::Contains("cannot be reached") && Catch::Contains("1 group"));
  writer->record(run, rec("b", "SUCCEEDED", 2));
  writer->record_new(run, rec("c", "RUNNING"));
  writer->commit();
  CHECK(writer->health().held_groups == 2);
  CHECK(writer->has_uncommitted());
  // Reads say that Redis is away, naming it.
  CHECK_THAT(error_of([&] { writer->load(run); }), Catch::Contains(redis.location()));

  REQUIRE(redis.start());
  REQUIRE(dx_support::wait_until(5s, [&] {
    writer->commit();  // nothing new: tries the held groups again
    return !writer->has_uncommitted();
  }));
  CHECK_FALSE(writer->health().degraded);
  CHECK(writer->health().reason.empty());
  const auto state = journal::open(redis.location(), journal::open_mode::read_only)->load(run);
  REQUIRE(state.tasks.size() == 3);
  CHECK(state.tasks[1].key == "b");
  CHECK(state.tasks[1].attempts == 2);  // the later group after the earlier one
  CHECK(state.tasks[2].status == "RUNNING");
  CHECK(*writer->result(run, "b") == "bee");
  CHECK_FALSE(lease->lost());
}

TEST_CASE("Requests through a Redis journal: asked, answered by the writer, withdrawn", "[redis][journal]") {
  const dx_support::temp_dir dir("dx_redis_requests");
  redis_server redis(dir.path());
  REQUIRE_REDIS(redis);
  auto lease = redis_lease::take(redis.location(), {1000ms, 100ms});
  auto writer = journal::open(redis.location(), journal::open_mode::write);
  const std::string run = writer->create_run("r", "{}");
  writer->commit();
  auto asker = journal::open(redis.location(), journal::open_mode::request);
  const auto id = asker->ask(run, "cancel");
  CHECK(writer->last_request_id() == id);
  REQUIRE(writer->open_requests().size() == 1);
  writer->answer(id, "cancelled");
  writer->commit();
  CHECK(writer->open_requests().empty());
  CHECK(asker->request(id)->answer == "cancelled");
  CHECK_FALSE(asker->withdraw(id, "too late"));
  const auto second = asker->ask(run, "cancel");
  CHECK(asker->withdraw(second, "gave up"));
  CHECK(asker->request(second)->answer == "withdrawn: gave up");
  CHECK_THAT(error_of([&] { asker->ask("r-none", "cancel"); }), Catch::Contains("no run r-none"));
  CHECK_THAT(error_of([&] { asker->create_run("x", "{}"); }), Catch::Contains("to make requests"));
}

TEST_CASE("Redis journal locations are checked, and an unreachable Redis is named", "[redis][journal]") {
  CHECK_THAT(error_of([] { journal::open("redis://", journal::open_mode::read_only); }),
             Catch::Contains("names no host"));
  CHECK_THAT(error_of([] { journal::open("redis://h:99999/0", journal::open_mode::read_only); }),
             Catch::Contains("port"));
  CHECK_THAT(error_of([] { journal::open("redis://h:1/x", journal::open_mode::read_only); }),
             Catch::Contains("database number"));
  CHECK_THAT(error_of([] { journal::open("redis://h:1/0?fast=1", journal::open_mode::read_only); }),
             Catch::Contains("unknown option"));
  CHECK_THAT(error_of([] { journal::open("redis://127.0.0.1:1/0", journal::open_mode::read_only); }),
             Catch::Contains("redis://127.0.0.1:1/0") && Catch::Contains("cannot be reached"));
  CHECK_THAT(error_of([] { dx::journal_lease::take("/tmp/journal.sqlite"); }), Catch::Contains("redis://"));
  CHECK_THAT(error_of([] {
               dx::journal_lease::take("redis://127.0.0.1:1/0", {100ms, 10ms});
             }),
             Catch::Contains("at least 200ms"));
}
