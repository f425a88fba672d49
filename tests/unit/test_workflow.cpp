// Tests of dx/workflow.hpp: definitions in C++ and JSON, their validation, round trips, digests,
// and the conversion of JSON parameters into the bytes a registered function decodes.
#include <dx/workflow.hpp>

#include <dx/archive.hpp>
#include <dx/detail/remote_submit.hpp>
#include <dx/remote.hpp>
#include <dx/replicate.hpp>

#include "workflow/arguments.hpp"
#include "workflow/workflow_impl.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

namespace wft {

// The functions the example workflows name.
std::vector<double> load(std::string path) { return {double(path.size()), 1.0}; }
std::vector<double> clean(std::vector<double> rows, double min_fare) {
  std::erase_if(rows, [&](double r) { return r < min_fare; });
  return rows;
}
double fit(std::vector<double> rows, int iterations, std::string method) {
  return std::accumulate(rows.begin(), rows.end(), 0.0) + iterations + double(method.size());
}
double best(double a, double b) { return std::max(a, b); }
double count_inside(dx::chunk c, int seed) { return double(c.end - c.start) + seed; }
double add(double a, double b) { return a + b; }

struct point {
  double x = 0, y = 0;
  template <class A>
  void serialize(A& a, unsigned) {
    a& x& y;
  }
};
void from_json(const dx::json_view& v, point& p) {
  auto x = v.member("x"), y = v.member("y");
  if (!x || !y || !x->is_number() || !y->is_number()) throw std::invalid_argument("a point is {\"x\": n, \"y\": n}");
  p = {x->as_double(), y->as_double()};
}

// Every kind of parameter JSON converts to; the result says what arrived.
std::string every_kind(bool b, int i, unsigned u, long long ll, float f, double d, std::string s, std::vector<int> v,
                       std::map<std::string, double> m, std::optional<int> o, dx::chunk c,
                       std::vector<std::vector<double>> vv, point p, std::unordered_map<std::string, std::string> um) {
  std::ostringstream out;
  out << b << '|' << i << '|' << u << '|' << ll << '|' << f << '|' << d << '|' << s << '|';
  for (int x : v) out << x << ',';
  out << '|';
  for (auto& [k, x] : m) out << k << '=' << x << ',';
  out << '|' << (o ? std::to_string(*o) : "none") << '|' << c.start << ':' << c.end << ':' << c.items.size() << ':'
      << c.index << '/' << c.count << '|' << vv.size() << '|' << p.x << ',' << p.y << '|' << um.size();
  return out.str();
}

int takes_pair(std::pair<int, int> p) { return p.first + p.second; }
int with_token(dx::stop_token, int n) { return n * 2; }
int unregistered(int n) { return n; }
int small(short s, unsigned char c) { return s + c; }
bool same_sign(const double& a, const double& b) { return (a < 0) == (b < 0); }

}  // namespace wft

DX_REMOTE_AS("example.load", wft::load);
DX_REMOTE_AS("example.clean", wft::clean);
DX_REMOTE_AS("example.fit", wft::fit);
DX_REMOTE_AS("example.best", wft::best);
DX_REMOTE_AS("example.count_inside", wft::count_inside);
DX_REMOTE_AS("example.add", wft::add);
DX_REMOTE_AS("wft.every_kind", wft::every_kind);
DX_REMOTE_AS("wft.takes_pair", wft::takes_pair);
DX_REMOTE_AS("wft.small", wft::small);
DX_REMOTE_AS("wft.with_token", wft::with_token);
DX_COMPARATOR("wft.same_sign", wft::same_sign);

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string example(const std::string& name) {
  return read_file(std::string(DX_SOURCE_DIR) + "/examples/workflows/" + name);
}

nlohmann::json parsed(const std::string& text) { return nlohmann::json::parse(text); }

// The problems from_json reports for `text`, one per line of its error.
std::vector<std::string> problems_of(const std::string& text) {
  try {
    return dx::workflow::from_json(text).problems();
  } catch (const dx::workflow_error& e) {
    std::vector<std::string> out;
    const std::string what = e.what();
    for (std::size_t at = what.find("\n  - "); at != std::string::npos;) {
      const std::size_t next = what.find("\n  - ", at + 1);
      out.push_back(what.substr(at + 5, next == std::string::npos ? std::string::npos : next - at - 5));
      at = next;
    }
    return out;
  }
}

bool has_problem(const std::vector<std::string>& problems, const std::string& part) {
  for (const auto& p : problems) {
    if (p.find(part) != std::string::npos) return true;
  }
  return false;
}

std::string one_step(const std::string& step) { return R"({"name": "w", "steps": [)" + step + "]}"; }

// Converts parameter `i` of the function registered as `fn` from JSON text.
bool convert(const std::string& fn, std::size_t i, const std::string& json_text, std::string& bytes, std::string& why) {
  const auto* f = dx::detail::find_remote(fn);
  REQUIRE(f);
  REQUIRE(f->from_json);
  dx::detail::ordered_json v = dx::detail::ordered_json::parse(json_text);
  return f->from_json(i, dx::detail::view_of(v), bytes, why);
}

std::string why_not(const std::string& fn, std::size_t i, const std::string& json_text) {
  std::string bytes, why;
  CHECK_FALSE(convert(fn, i, json_text, bytes, why));
  return why;
}

}  // namespace

TEST_CASE("Statuses print as their upper-case names and parse back", "[workflow]") {
  CHECK(dx::to_string(dx::workflow_status::created) == "CREATED");
  CHECK(dx::to_string(dx::workflow_status::interrupted) == "INTERRUPTED");
  CHECK(dx::to_string(dx::task_status::retrying) == "RETRYING");
  CHECK(dx::to_string(dx::task_status::cached) == "CACHED");
  for (int i = 0; i <= int(dx::workflow_status::interrupted); ++i) {
    auto s = static_cast<dx::workflow_status>(i);
    CHECK(dx::parse_workflow_status(dx::to_string(s)) == s);
  }
  for (int i = 0; i <= int(dx::task_status::cached); ++i) {
    auto s = static_cast<dx::task_status>(i);
    CHECK(dx::parse_task_status(dx::to_string(s)) == s);
  }
  CHECK_FALSE(dx::parse_task_status("running"));
}

TEST_CASE("Durations are a whole number and ms, s, m or h", "[workflow]") {
  using namespace std::chrono_literals;
  using dx::detail::parse_workflow_duration;
  CHECK(parse_workflow_duration("250ms") == std::chrono::nanoseconds(250ms));
  CHECK(parse_workflow_duration("30s") == std::chrono::nanoseconds(30s));
  CHECK(parse_workflow_duration("5m") == std::chrono::nanoseconds(5min));
  CHECK(parse_workflow_duration("1h") == std::chrono::nanoseconds(1h));
  CHECK(parse_workflow_duration("0s") == std::chrono::nanoseconds(0));
  for (const char* bad : {"", "30", "s", "1.5s", "-1s", "30 s", " 30s", "30S", "1d", "10us", "1h30m",
                          "999999999999999h", "9999999999999999999s"}) {
    INFO(bad);
    CHECK_FALSE(parse_workflow_duration(bad));
  }
  CHECK(dx::detail::format_workflow_duration(1500ms) == "1500ms");
  CHECK(dx::detail::format_workflow_duration(2min) == "2m");
  CHECK(dx::detail::format_workflow_duration(3h) == "3h");
  CHECK(dx::detail::format_workflow_duration(30s) == "30s");
}

TEST_CASE("A bad duration is reported with its step and field", "[workflow]") {
  auto p = problems_of(one_step(R"({"name": "a", "command": ["true"], "timeout": "30 seconds"})"));
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("step 'a': timeout \"30 seconds\" is not a duration") != std::string::npos);
  p = problems_of(one_step(R"({"name": "a", "command": ["true"], "retries": {"backoff": "1.5s"}})"));
  CHECK(has_problem(p, "step 'a': retries.backoff \"1.5s\" is not a duration"));
}

TEST_CASE("The example workflows parse, validate and round-trip through JSON", "[workflow]") {
  for (const char* name : {"train.json", "monte_carlo.json", "thumbnails.json"}) {
    INFO(name);
    const std::string text = example(name);
    dx::workflow wf = dx::workflow::from_json(text);
    CHECK(wf.problems().empty());
    CHECK(parsed(wf.to_json()) == parsed(text));
    dx::workflow again = dx::workflow::from_json(wf.to_json(-1));
    CHECK(again.to_json() == wf.to_json());
    CHECK(wf.steps().size() == wf.size());
  }
}

TEST_CASE("Steps defined before what they depend on come in topological order, each with its own fields",
          "[workflow]") {
  // Defined d, c, b, a, e: a chain written backwards, and one free step.
  auto steps = dx::workflow::from_json(R"({"name": "backwards", "steps": [
      {"name": "d", "command": ["echo", "d"], "after": ["c"]},
      {"name": "c", "command": ["echo", "c"], "after": ["b"]},
      {"name": "b", "command": ["echo", "b"], "after": ["a"]},
      {"name": "a", "command": ["echo", "a"]},
      {"name": "e", "command": ["echo", "e"]}]})")
                   .steps();
  std::vector<std::string> order;
  for (auto& s : steps) {
    order.push_back(s.name);
    CHECK(s.command == std::vector<std::string>{"echo", s.name});
  }
  CHECK(order == std::vector<std::string>{"a", "b", "c", "d", "e"});
  CHECK(steps[0].depends_on.empty());
  CHECK(steps[1].depends_on == std::vector<std::string>{"a"});
  CHECK(steps[3].depends_on == std::vector<std::string>{"c"});
  CHECK(steps[4].depends_on.empty());
}

TEST_CASE("Steps come resolved, in topological order, with defaults applied", "[workflow]") {
  using namespace std::chrono_literals;
  auto steps = dx::workflow::from_json(example("train.json")).steps();
  REQUIRE(steps.size() == 5);
  std::vector<std::string> order;
  for (auto& s : steps) order.push_back(s.name);
  CHECK(order == std::vector<std::string>{"load", "clean", "fit_fast", "fit_slow", "best"});
  const auto& clean = steps[1];
  CHECK(clean.function == "example.clean");
  CHECK(clean.inputs == std::map<std::string, std::string>{{"rows", "load"}});
  CHECK(clean.input_of == std::vector<std::string>{"load", ""});
  CHECK(clean.arguments == std::vector<std::string>{"", "2.5"});
  CHECK(clean.depends_on == std::vector<std::string>{"load"});
  CHECK(clean.options.timeout == std::chrono::nanoseconds(10min));  // the default
  REQUIRE(clean.options.retries_enabled());
  CHECK(clean.options.retries->policy.max_attempts == 3);
  CHECK(clean.options.retries->policy.initial_backoff == std::chrono::nanoseconds(1s));
  CHECK(clean.options.priority == 1);  // the workflow's
  const auto& slow = steps[3];
  CHECK(slow.options.timeout == std::chrono::nanoseconds(1h));  // its own
  CHECK(slow.options.priority == 5);
  CHECK(slow.options.resources.amounts == std::map<std::string, double>{{"cpu", 2}, {"gpu", 1}});
  CHECK(steps[4].cache == false);
  CHECK(steps[0].cache == true);
  CHECK(steps[4].depends_on == std::vector<std::string>{"fit_fast", "fit_slow"});

  auto mc = dx::workflow::from_json(example("monte_carlo.json")).steps();
  REQUIRE(mc[0].split);
  CHECK(mc[0].split->by == dx::split::kind::range);
  CHECK(mc[0].split->end == 1000000);
  CHECK(mc[0].split->chunk == 0);
  CHECK(mc[0].chunk_parameter == 0u);
  REQUIRE(mc[1].aggregate);
  CHECK(mc[1].aggregate->of == "sample");
  CHECK(mc[1].aggregate->function == "example.add");
  CHECK(mc[1].depends_on == std::vector<std::string>{"sample"});
  CHECK(mc[2].command == std::vector<std::string>{"echo", "{label} done"});

  auto th = dx::workflow::from_json(example("thumbnails.json")).steps();
  REQUIRE(th[1].split);
  CHECK(th[1].split->by == dx::split::kind::lines);
  CHECK(th[1].split->path == "files.txt");
  CHECK(th[1].split->chunk == 50);
  CHECK(th[1].options.resources.amounts.at("cpu") == 1);
  REQUIRE(th[2].aggregate);
  CHECK(th[2].aggregate->command.size() == 3);
}

TEST_CASE("A workflow built in C++ round-trips through JSON", "[workflow]") {
  using namespace std::chrono_literals;
  dx::workflow wf{"built"};
  wf.describe("made in C++").set_priority(2).tag("cpp");
  auto l = wf.step("load", wft::load, std::string("data.csv"));
  auto c = wf.step("clean", wft::clean, l, 2.5);
  auto f = wf.step("fit", wft::fit, c, 100, std::string("sgd"))
               .with(dx::task_options{}
                         .with_timeout(5min)
                         .with_priority(3)
                         .with_resources({{"gpu", 1}})
                         .with_retries({.max_attempts = 4, .initial_backoff = 200ms}));
  auto s = wf.map("sample", wft::count_inside, dx::split::range(0, 1000, 100), 7);
  auto t = wf.reduce("total", wft::add, s);
  wf.command("report", {"echo", "{what}"}, {{"what", "done"}}).after(f, t).cache(false);
  wf.command("thumbs", {"convert", "{item}"}, dx::split::over_items({"a.jpg", "b.jpg"}, 1));
  wf.reduce("index", {"cat"}, wf.command("resize", {"echo", "{items_file}"}, dx::split::lines("files.txt")));
  // An input in the middle makes the parameters an object keyed by position.
  wf.step("middle", wft::fit, c, 5, std::string("x"));
  auto mid = wf.step("middle2", wft::every_kind, true, 1, 2u, 3LL, 1.5f, 2.5, std::string("s"), std::vector<int>{1, 2},
                     std::map<std::string, double>{{"k", 1.0}}, std::optional<int>{}, dx::chunk{0, 3, {}, 0, 1},
                     std::vector<std::vector<double>>{{1.0}}, f, std::unordered_map<std::string, std::string>{});
  (void)mid;  // the point comes from "fit": a step_ref in the middle
  CHECK(wf.problems().empty());

  const std::string text = wf.to_json();
  dx::workflow back = dx::workflow::from_json(text);
  CHECK(back.to_json() == text);
  CHECK(back.name() == "built");
  const auto j = parsed(text);
  CHECK(j["steps"][1]["parameters"] == nlohmann::json{{"1", 2.5}});  // after an input: by position
  CHECK(j["steps"][1]["inputs"] == nlohmann::json{{"0", "load"}});
  CHECK(j["steps"][2]["timeout"] == "5m");
  CHECK(j["steps"][2]["retries"]["backoff"] == "200ms");
  CHECK(j["steps"][3]["parameters"] == nlohmann::json{{"1", 7}});  // position 0 is the chunk
  CHECK(j["steps"][3]["split"] == nlohmann::json{{"range", {0, 1000}}, {"chunk", 100}});
  CHECK(j["steps"][4]["aggregate"] == nlohmann::json{{"of", "sample"}, {"function", "example.add"}});
  CHECK(j["steps"][5]["after"] == nlohmann::json::array({"fit", "total"}));
  CHECK(j["steps"][10]["parameters"].is_object());
  CHECK(j["steps"][10]["inputs"] == nlohmann::json{{"12", "fit"}});

  auto steps = back.steps();
  CHECK(steps.size() == wf.size());
  CHECK_THROWS_AS(wf.step("load", wft::load, std::string("again")), dx::workflow_error);
  CHECK_THROWS_AS(wf.command("x", {"true"}).with(dx::task_options{}.with_kind("k")), dx::workflow_error);
  CHECK_THROWS_AS(wf.command("y", {"true"}).with(dx::task_options{}.retry_on<std::runtime_error>()),
                  dx::workflow_error);
}

TEST_CASE("Steps ask for replication and deadlines, each their own or from the defaults", "[workflow][replicate]") {
  using namespace std::chrono_literals;
  auto steps = dx::workflow::from_json(R"({"name": "w",
    "defaults": {"replicate": {"copies": 3, "quorum": 2, "compare": {"tolerance": {"rel": 1e-9, "abs": 0.5}}},
                 "deadline": {"soft_factor": 2.5, "hard": "90s"}},
    "steps": [
      {"name": "own", "function": "example.add", "parameters": [1, 2],
       "replicate": {"copies": 4, "quorum": 3, "max_copies": 9, "compare": {"comparator": "wft.same_sign"},
                     "distinct_hosts": true, "adaptive": true},
       "deadline": {"hard": "2m"}},
      {"name": "defaulted", "function": "example.add", "parameters": [1, 2]},
      {"name": "cmd", "command": ["echo", "x"], "replicate": {"copies": 2, "compare": "exact"},
       "deadline": {"soft_factor": 0}},
      {"name": "copies_only", "command": ["true"], "replicate": {"copies": 1}},
      {"name": "quorum_only", "command": ["true"], "replicate": {"quorum": 5}},
      {"name": "empty", "command": ["true"], "replicate": {}, "deadline": {}}]})")
                   .steps();
  REQUIRE(steps.size() == 6);
  const auto& own = steps[0].options;
  REQUIRE(own.replication);
  CHECK(own.replication->copies == 4);
  CHECK(own.replication->quorum == 3);
  CHECK(own.replication->max_copies == 9);
  CHECK(own.replication->compare.kind == dx::comparison::kind_t::named);
  CHECK(own.replication->compare.name == "wft.same_sign");
  CHECK(own.replication->distinct_hosts);
  CHECK(own.replication->adaptive);
  REQUIRE(own.deadlines);
  CHECK(own.deadlines->soft_factor == 0);  // the step's own deadline replaces the default whole
  CHECK(own.deadlines->hard == std::chrono::nanoseconds(2min));

  const auto& defaulted = steps[1].options;
  REQUIRE(defaulted.replication);
  CHECK(defaulted.replication->copies == 3);
  CHECK(defaulted.replication->quorum == 2);
  CHECK(defaulted.replication->max_copies == 0);  // dx chooses
  CHECK(defaulted.replication->compare.kind == dx::comparison::kind_t::tolerance);
  CHECK(defaulted.replication->compare.relative == 1e-9);
  CHECK(defaulted.replication->compare.absolute == 0.5);
  CHECK_FALSE(defaulted.replication->distinct_hosts);
  CHECK_FALSE(defaulted.replication->adaptive);
  REQUIRE(defaulted.deadlines);
  CHECK(defaulted.deadlines->soft_factor == 2.5);
  CHECK(defaulted.deadlines->hard == std::chrono::nanoseconds(90s));

  // A command runs as the registered function dx.command, through the same submission: it is
  // replicated like any function.
  const auto& cmd = steps[2].options;
  REQUIRE(cmd.replication);
  CHECK(cmd.replication->copies == 2);
  CHECK(cmd.replication->quorum == 2);
  CHECK(cmd.replication->compare.kind == dx::comparison::kind_t::exact);
  REQUIRE(cmd.deadlines);
  CHECK(cmd.deadlines->soft_factor == 0);
  CHECK(cmd.deadlines->hard == std::chrono::nanoseconds(0));

  // An omitted quorum is min(2, copies), an omitted copies max(2, quorum).
  CHECK(steps[3].options.replication->copies == 1);
  CHECK(steps[3].options.replication->quorum == 1);
  CHECK(steps[4].options.replication->copies == 5);
  CHECK(steps[4].options.replication->quorum == 5);
  const auto& empty = steps[5].options;
  REQUIRE(empty.replication);
  CHECK(empty.replication->copies == 2);
  CHECK(empty.replication->quorum == 2);
  CHECK(empty.replication->compare.kind == dx::comparison::kind_t::exact);
  REQUIRE(empty.deadlines);
  CHECK(empty.deadlines->soft_factor == 0);
  CHECK(empty.deadlines->hard == std::chrono::nanoseconds(0));

  // Without either, a step has neither.
  auto plain = dx::workflow::from_json(one_step(R"({"name": "a", "command": ["true"]})")).steps();
  CHECK_FALSE(plain[0].options.replication);
  CHECK_FALSE(plain[0].options.deadlines);
}

TEST_CASE("Each bad replicate or deadline is reported with its step and field", "[workflow][replicate]") {
  const std::vector<std::pair<std::string, std::string>> cases{
      {R"("replicate": 2)",
       "step 'a': replicate must be an object {\"copies\", \"quorum\", \"max_copies\", "
       "\"compare\", \"distinct_hosts\", \"adaptive\"}, got number"},
      {R"("replicate": {"copies": 0})", "step 'a': replicate.copies must be an integer from 1 to 100, got 0"},
      {R"("replicate": {"copies": 101})", "step 'a': replicate.copies must be an integer from 1 to 100, got 101"},
      {R"("replicate": {"copies": 2.5})", "step 'a': replicate.copies must be an integer from 1 to 100, got 2.5"},
      {R"("replicate": {"copies": "3"})", "step 'a': replicate.copies must be an integer from 1 to 100, got \"3\""},
      {R"("replicate": {"copies": 18446744073709551615})",
       "step 'a': replicate.copies must be an integer from 1 to 100, got 18446744073709551615"},
      {R"("replicate": {"copies": 3, "quorum": 4})",
       "step 'a': replicate.quorum must be an integer from 1 to copies (3), got 4"},
      {R"("replicate": {"quorum": 0})", "step 'a': replicate.quorum must be an integer from 1 to 100, got 0"},
      {R"("replicate": {"quorum": 101})", "step 'a': replicate.quorum must be an integer from 1 to 100, got 101"},
      {R"("replicate": {"copies": 3, "max_copies": 2})",
       "step 'a': replicate.max_copies must be an integer from copies (3) to 1000, got 2"},
      {R"("replicate": {"max_copies": 1001})",
       "step 'a': replicate.max_copies must be an integer from copies (2) to 1000, got 1001"},
      {R"("replicate": {"max_copies": 0})",
       "step 'a': replicate.max_copies must be an integer from copies (2) to 1000, got 0"},
      {R"("replicate": {"compare": "close"})",
       "step 'a': replicate.compare must be \"exact\", {\"tolerance\": {\"rel\": x, \"abs\": y}} or "
       "{\"comparator\": \"name\"}, got \"close\""},
      {R"("replicate": {"compare": {"tolerance": {"rel": 1}, "comparator": "x"}})",
       "step 'a': replicate.compare must be \"exact\""},
      {R"("replicate": {"compare": {"exact": true}})", "step 'a': replicate.compare must be \"exact\""},
      {R"("replicate": {"compare": {"tolerance": 0.1}})",
       "step 'a': replicate.compare.tolerance must be an object {\"rel\": x, \"abs\": y}, got 0.1"},
      {R"("replicate": {"compare": {"tolerance": {"rel": -1}}})",
       "step 'a': replicate.compare.tolerance.rel must be a finite number of at least 0, got -1"},
      {R"("replicate": {"compare": {"tolerance": {"abs": "0.1"}}})",
       "step 'a': replicate.compare.tolerance.abs must be a finite number of at least 0, got \"0.1\""},
      {R"("replicate": {"compare": {"tolerance": {"relative": 0.1}}})",
       "step 'a': replicate.compare.tolerance has an unknown field 'relative' (it takes rel, abs)"},
      {R"("replicate": {"compare": {"comparator": 7}})",
       "step 'a': replicate.compare.comparator must be the registered name of a comparator, got 7"},
      {R"("replicate": {"compare": {"comparator": "wft.nowhere"}})",
       "step 'a': replicate.compare.comparator 'wft.nowhere' is not registered in this process (DX_COMPARATOR)"},
      {R"("replicate": {"distinct_hosts": 1})", "step 'a': replicate.distinct_hosts must be true or false, got 1"},
      {R"("replicate": {"adaptive": "yes"})", "step 'a': replicate.adaptive must be true or false, got \"yes\""},
      {R"("replicate": {"copy": 2})",
       "step 'a': replicate has an unknown field 'copy' (it takes copies, quorum, max_copies, compare, "
       "distinct_hosts, adaptive)"},
      {R"("deadline": "60s")", "step 'a': deadline must be an object {\"soft_factor\", \"hard\"}, got string"},
      {R"("deadline": {"soft_factor": -0.5})",
       "step 'a': deadline.soft_factor must be a finite number of at least 0, got -0.5"},
      {R"("deadline": {"soft_factor": true})",
       "step 'a': deadline.soft_factor must be a finite number of at least 0, got true"},
      {R"("deadline": {"hard": "1.5s"})", "step 'a': deadline.hard \"1.5s\" is not a duration"},
      {R"("deadline": {"hard": 60})", "step 'a': deadline.hard 60 is not a duration"},
      {R"("deadline": {"soft": 2})", "step 'a': deadline has an unknown field 'soft' (it takes soft_factor, hard)"},
  };
  for (const auto& [field, message] : cases) {
    INFO(field);
    for (const char* kind : {R"("command": ["true"])", R"("function": "example.add", "parameters": [1, 2])"}) {
      const auto p = problems_of(one_step(R"({"name": "a", )" + std::string(kind) + ", " + field + "}"));
      CHECK(p.size() == 1);
      CHECK(has_problem(p, message));
    }
    // The same in the defaults is reported for the step that takes it.
    const auto p =
        problems_of(R"({"name": "w", "defaults": {)" + field + R"(}, "steps": [{"name": "a", "command": ["true"]}]})");
    CHECK(p.size() == 1);
    CHECK(has_problem(p, message));
  }
  // Every problem of one replicate at once.
  auto p = problems_of(one_step(
      R"({"name": "a", "command": ["true"], "replicate": {"copies": 0, "adaptive": 1, "x": 1}, "deadline": {"hard": "1"}})"));
  CHECK(p.size() == 4);
  // A comparator's registration is a matter of the process that runs the workflow: a shape-only
  // check does not ask for it.
  CHECK_NOTHROW(dx::workflow::from_json_unchecked(
      one_step(R"({"name": "a", "command": ["true"], "replicate": {"compare": {"comparator": "wft.nowhere"}}})")));
}

TEST_CASE("Replication and deadlines round-trip through JSON and the C++ builder", "[workflow][replicate]") {
  using namespace std::chrono_literals;
  // JSON as written comes back as written, and again through the journal's one-line form.
  const std::string text = one_step(
      R"({"name": "a", "command": ["true"], "replicate": {"copies": 3, "quorum": 2, "max_copies": 7, "compare": {"tolerance": {"rel": 0.001, "abs": 0}}, "distinct_hosts": true, "adaptive": false}, "deadline": {"soft_factor": 3, "hard": "60s"}})");
  const dx::workflow wf = dx::workflow::from_json(text);
  CHECK(parsed(wf.to_json()) == parsed(text));
  CHECK(dx::workflow::from_json(wf.to_json(-1)).to_json() == wf.to_json());

  // Built in C++: the validated form equals what was given, field by field.
  const std::vector<dx::replicate> given{
      {.copies = 4,
       .quorum = 3,
       .max_copies = 12,
       .compare = dx::comparison::named("wft.same_sign"),
       .distinct_hosts = true,
       .adaptive = true},
      {.copies = 2, .quorum = 1, .compare = dx::comparison::tolerance(1e-9, 0.25)},
      {.copies = 1, .quorum = 1},
      {},
  };
  const std::vector<dx::deadline> deadlines{
      {.soft_factor = 2.5, .hard = 90s}, {.hard = 1500ms}, {}, {.soft_factor = 4}};
  dx::workflow built{"built"};
  for (std::size_t i = 0; i < given.size(); ++i) {
    auto s = built.step("s" + std::to_string(i), wft::add, 1.0, 2.0);
    s.with(dx::task_options{}.with_replicate(given[i]).with_deadline(deadlines[i]));
  }
  built.command("cmd", {"true"}).with(dx::task_options{}.with_replicate(given[1]));
  CHECK(built.problems().empty());
  const dx::workflow back = dx::workflow::from_json(built.to_json(-1));
  CHECK(back.to_json() == built.to_json());
  const auto steps = back.steps();
  REQUIRE(steps.size() == given.size() + 1);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    INFO(steps[i].name);
    const dx::replicate& want = i < given.size() ? given[i] : given[1];
    REQUIRE(steps[i].options.replication);
    const dx::replicate& got = *steps[i].options.replication;
    CHECK(got.copies == want.copies);
    CHECK(got.quorum == want.quorum);
    CHECK(got.max_copies == want.max_copies);
    CHECK(got.compare.kind == want.compare.kind);
    CHECK(got.compare.relative == want.compare.relative);
    CHECK(got.compare.absolute == want.compare.absolute);
    CHECK(got.compare.name == want.compare.name);
    CHECK(got.distinct_hosts == want.distinct_hosts);
    CHECK(got.adaptive == want.adaptive);
    if (i < deadlines.size()) {
      REQUIRE(steps[i].options.deadlines);
      CHECK(steps[i].options.deadlines->soft_factor == deadlines[i].soft_factor);
      CHECK(steps[i].options.deadlines->hard == deadlines[i].hard);
    } else {
      CHECK_FALSE(steps[i].options.deadlines);
    }
  }
  const auto j = parsed(built.to_json());
  CHECK(j["steps"][0]["replicate"]["compare"] == nlohmann::json{{"comparator", "wft.same_sign"}});
  CHECK(j["steps"][1]["replicate"]["compare"] == nlohmann::json{{"tolerance", {{"rel", 1e-9}, {"abs", 0.25}}}});
  CHECK(j["steps"][2]["replicate"]["compare"] == "exact");
  CHECK_FALSE(j["steps"][2]["replicate"].contains("max_copies"));  // 0: dx chooses
  CHECK(j["steps"][0]["deadline"] == nlohmann::json{{"soft_factor", 2.5}, {"hard", "90s"}});
  CHECK(j["steps"][1]["deadline"]["hard"] == "1500ms");
}

TEST_CASE("Each validation error names its step and problem", "[workflow]") {
  SECTION("a cycle lists its steps in order") {
    auto p = problems_of(R"({"name": "w", "steps": [
      {"name": "a", "command": ["true"], "after": ["c"]},
      {"name": "b", "command": ["true"], "after": ["a"]},
      {"name": "c", "command": ["true"], "after": ["b"]}]})");
    REQUIRE(p.size() == 1);
    CHECK(p[0] == "cycle: 'a' -> 'b' -> 'c' -> 'a' (each runs after the one before it)");
    CHECK_THROWS_WITH(dx::workflow::from_json_unchecked(R"({"name": "w", "steps": [
      {"name": "a", "command": ["true"], "after": ["a"]}]})")
                          .validate(),
                      Catch::Contains("step 'a': depends on itself"));
  }
  SECTION("a cycle through a chain of 50,000 steps is found, and its message stays short") {
    // Deeper than any thread's stack would take a recursive search.
    nlohmann::json wf{{"name", "w"}, {"steps", nlohmann::json::array()}};
    const int n = 50000;
    for (int i = 0; i < n; ++i)
      wf["steps"].push_back({{"name", "s" + std::to_string(i)},
                             {"command", {"true"}},
                             {"after", {"s" + std::to_string(i == 0 ? n - 1 : i - 1)}}});
    auto p = problems_of(wf.dump());
    REQUIRE(p.size() == 1);
    CHECK(p[0] ==
          "cycle of 50000 steps: 's0' -> 's1' -> 's2' -> 's3' -> 's4' -> ... (49990 more) -> 's49995' -> "
          "'s49996' -> 's49997' -> 's49998' -> 's49999' -> 's0' (each runs after the one before it)");
    wf["steps"][0].erase("after");  // now a chain: valid
    CHECK(problems_of(wf.dump()).empty());
  }
  SECTION("an unknown dependency, in after or in inputs") {
    auto p = problems_of(R"({"name": "w", "steps": [
      {"name": "load", "command": ["true"]},
      {"name": "b", "command": ["true", "{x}"], "after": ["lode"], "inputs": {"x": "nowhere"}}]})");
    CHECK(has_problem(p, "step 'b': after names unknown step 'lode' (did you mean 'load'?)"));
    CHECK(has_problem(p, "step 'b': inputs.x names unknown step 'nowhere'"));
  }
  SECTION("an unknown function, with the closest registered names") {
    auto p = problems_of(one_step(R"({"name": "f", "function": "example.fitt", "parameters": []})"));
    REQUIRE(p.size() == 1);
    CHECK(p[0].starts_with("step 'f': unknown function 'example.fitt' (closest registered: example.fit, "));
  }
  SECTION("a parameter of the wrong type") {
    auto p = problems_of(one_step(
        R"({"name": "fit", "function": "example.fit", "parameter_names": ["rows", "iterations", "method"],
            "parameters": [[1, 2], "many", "sgd"]})"));
    REQUIRE(p.size() == 1);
    CHECK(p[0] == "step 'fit': parameter 1 ('iterations') must be an integer, got a string");
    p = problems_of(one_step(R"({"name": "fit", "function": "example.fit", "parameters": [[1, "x"], 3, "sgd"]})"));
    CHECK(p == std::vector<std::string>{"step 'fit': parameter 0 element 1 must be a number, got a string"});
  }
  SECTION("a missing or an extra parameter") {
    auto p = problems_of(one_step(R"({"name": "fit", "function": "example.fit", "parameters": [[1], 3]})"));
    CHECK(p == std::vector<std::string>{"step 'fit': missing parameter 2 ('example.fit' takes 3)"});
    p = problems_of(one_step(R"({"name": "fit", "function": "example.fit", "parameters": [[1], 3, "a", 4]})"));
    CHECK(p == std::vector<std::string>{"step 'fit': 1 extra parameter(s): 'example.fit' takes 3, given 4"});
    p = problems_of(
        one_step(R"({"name": "fit", "function": "example.fit", "parameters": {"0": [], "1": 3, "2": "a", "3": 1}})"));
    CHECK(has_problem(p, "step 'fit': extra parameter '3'"));
    p = problems_of(R"({"name": "w", "steps": [{"name": "a", "function": "example.load", "parameters": ["x"]},
      {"name": "fit", "function": "example.fit", "parameters": [[1], 3, "a"], "inputs": {"0": "a"}}]})");
    CHECK(p == std::vector<std::string>{"step 'fit': parameter 0 is given both in parameters and in inputs"});
  }
  SECTION("duplicate step names") {
    auto p = problems_of(
        R"({"name": "w", "steps": [{"name": "a", "command": ["true"]}, {"name": "a", "command": ["true"]}]})");
    CHECK(p == std::vector<std::string>{"duplicate step name 'a' (steps #1 and #2)"});
  }
  SECTION("both or neither of function and command") {
    auto p = problems_of(one_step(R"({"name": "a", "function": "example.load", "command": ["true"]})"));
    CHECK(has_problem(p, "step 'a': has both \"function\" and \"command\"; give exactly one"));
    p = problems_of(one_step(R"({"name": "a"})"));
    CHECK(has_problem(p, "step 'a': has neither \"function\" nor \"command\""));
  }
  SECTION("an aggregate of a step that does not exist or is not split") {
    auto p = problems_of(R"({"name": "w", "steps": [{"name": "a", "command": ["true"]},
      {"name": "t", "aggregate": {"of": "a", "function": "example.add"}},
      {"name": "u", "aggregate": {"of": "zzz", "command": ["cat"]}}]})");
    CHECK(has_problem(p, "step 't': aggregates step 'a', which is not split"));
    CHECK(has_problem(p, "step 'u': aggregate.of names unknown step 'zzz'"));
    p = problems_of(R"({"name": "w", "steps": [{"name": "a", "command": ["echo", "{item}"], "split": {"items": [1, 2]}},
      {"name": "t", "aggregate": {"of": "a", "function": "example.load"}}]})");
    CHECK(has_problem(p, "step 't': aggregate function 'example.load' must take two parameters"));
  }
  SECTION("bad split specifications") {
    auto p = problems_of(one_step(R"({"name": "a", "command": ["true"], "split": {"range": [5, 1]}})"));
    CHECK(p == std::vector<std::string>{"step 'a': split.range [5, 1] ends before it starts"});
    p = problems_of(one_step(R"({"name": "a", "command": ["true"], "split": {"range": [0, 1], "items": []}})"));
    CHECK(has_problem(p, "exactly one of \"range\", \"items\" or \"lines\""));
    p = problems_of(one_step(R"({"name": "a", "command": ["true"], "split": {"lines": "f", "chunk": 0}})"));
    CHECK(has_problem(p, "step 'a': split.chunk must be \"auto\" or a positive integer, got 0"));
    p = problems_of(one_step(R"({"name": "a", "command": ["true"], "split": {"range": [0, 1.5]}})"));
    CHECK(has_problem(p, "split.range must be [start, end], two integers"));
    p = problems_of(
        one_step(R"({"name": "a", "function": "example.load", "parameters": ["x"], "split": {"range": [0, 9]}})"));
    CHECK(has_problem(p, "step 'a': is split, but function 'example.load' has no dx::chunk parameter"));
    p = problems_of(one_step(R"({"name": "a", "command": ["echo", "{item}"]})"));
    CHECK(has_problem(p, "step 'a': placeholder {item} is filled only in a split step"));
  }
  SECTION("resources no worker class can satisfy") {
    auto wf = dx::workflow::from_json(example("train.json"));
    CHECK(wf.problems({{{"cpu", 8}, {"mem_mb", 16000}, {"gpu", 1}}}).empty());
    auto p = wf.problems({{{"cpu", 8}, {"mem_mb", 16000}}, {{"cpu", 1}, {"gpu", 4}}});
    CHECK(p == std::vector<std::string>{"step 'fit_slow': no worker can provide its resources (cpu 2.0, gpu 1.0)"});
    CHECK_THROWS_AS(wf.validate({{{"cpu", 1}}}), dx::workflow_error);
  }
  SECTION("a function whose parameters do not come from JSON") {
    auto p = problems_of(one_step(R"({"name": "a", "function": "wft.takes_pair", "parameters": [[1, 2]]})"));
    CHECK(p == std::vector<std::string>{"step 'a': function 'wft.takes_pair' takes a parameter that cannot be given "
                                        "in JSON (a type without from_json(const dx::json_view&, T&))"});
  }
  SECTION("an unknown placeholder and an unknown field") {
    auto p = problems_of(one_step(R"({"name": "a", "command": ["echo", "{nope}", "{{literal}}"], "retires": {}})"));
    CHECK(has_problem(p, "step 'a': placeholder {nope} in the command is not a parameter or input of the step"));
    CHECK(has_problem(p, "step 'a': unknown field 'retires'"));
    CHECK(p.size() == 2);
  }
}

TEST_CASE("All problems are collected and reported at once", "[workflow]") {
  const std::string text = R"({"name": "w", "defaults": {"function": "x"}, "steps": [
      {"name": "a", "command": ["true"], "timeout": "soon", "after": ["b"]},
      {"name": "b", "command": ["true"], "after": ["a"], "priority": "high"},
      {"name": "c", "function": "example.fit", "parameters": [[1], "x"]},
      {"name": "c", "function": "nope.nothing"},
      {"name": "d", "command": []}]})";
  auto p = problems_of(text);
  CHECK(p.size() == 9);
  CHECK(has_problem(p, "defaults: field 'function' cannot have a default"));
  CHECK(has_problem(p, "step 'a': timeout \"soon\" is not a duration"));
  CHECK(has_problem(p, "step 'b': priority must be an integer"));
  CHECK(has_problem(p, "step 'c': parameter 1 must be an integer, got a string"));
  CHECK(has_problem(p, "step 'c': missing parameter 2"));
  CHECK(has_problem(p, "duplicate step name 'c'"));
  CHECK(has_problem(p, "unknown function 'nope.nothing'"));
  CHECK(has_problem(p, "step 'd': command must be a non-empty array of strings"));
  CHECK(has_problem(p, "cycle: 'a' -> 'b' -> 'a'"));
  try {
    dx::workflow::from_json(text);
    FAIL("from_json accepted an invalid workflow");
  } catch (const dx::workflow_error& e) {
    const std::string what = e.what();
    CHECK(what.starts_with("the workflow is not valid: 9 problems\n  - "));
    for (const auto& problem : p) CHECK(what.find(problem) != std::string::npos);
  }
  CHECK_THROWS_AS(dx::workflow::from_json_unchecked(text), dx::workflow_error);
  // Without the registry, only the shape is checked: a workflow naming unknown functions reads.
  auto unchecked = dx::workflow::from_json_unchecked(one_step(R"({"name": "a", "function": "not.here"})"));
  CHECK(unchecked.problems().size() == 1);
  CHECK_THROWS_AS(unchecked.steps(), dx::workflow_error);
}

TEST_CASE("Hostile JSON gets a clear error, not a crash", "[workflow]") {
  auto rejects = [](const std::string& text, const std::string& part) {
    INFO(text.substr(0, 80));
    try {
      dx::workflow::from_json(text);
      FAIL("accepted");
    } catch (const dx::workflow_error& e) {
      CHECK(std::string(e.what()).find(part) != std::string::npos);
    }
  };
  rejects(std::string(100000, '[') + std::string(100000, ']'), "nests deeper than 128 levels");
  rejects("{\"name\": \"w\", \"steps\": [", "not valid JSON");
  rejects("{\"name\": \"\xff\xfe\", \"steps\": []}", "not valid JSON");
  rejects("[1, 2]", "a workflow is a JSON object, got array");
  rejects(R"({"name": 5, "steps": {}})", "the workflow needs a \"name\"");
  rejects(R"({"name": "w", "steps": {}})", "the workflow's steps must be an array");
  rejects(R"({"name": "w", "steps": [7]})", "step #1 is not an object");
  rejects(R"({"name": "w", "steps": [{"name": "a", "command": ["true"], "split": {"range": [0, 1e400]}}]})",
          "not valid JSON");
  rejects(
      R"({"name": "w", "steps": [{"name": "a", "command": ["true"], "split": {"range": [0, 99999999999999999999]}}]})",
      "split.range must be [start, end], two integers");
  rejects(one_step(R"({"name": "s", "function": "wft.small", "parameters": [1e3, 300]})"),
          "parameter 0 must be an integer, got a number");
  rejects(one_step(R"({"name": "s", "function": "wft.small", "parameters": [40000, 1]})"),
          "parameter 0 must be an integer from -32768 to 32767, got 40000");
  rejects(one_step(R"({"name": "s", "function": "wft.small", "parameters": [1, -1]})"),
          "parameter 1 must be an integer from 0 to 255, got -1");
}

TEST_CASE("JSON converts to every supported parameter type, as a submit encodes it", "[workflow]") {
  const std::string params = R"([true, -7, 7, 9007199254740993, 1.5, 2.25, "hé", [1, 2, 3], {"a": 1, "b": 2.5},
      null, {"start": 3, "end": 9, "items": ["x", "y"], "index": 1, "count": 4}, [[1.0], [2.0, 3.0]],
      {"x": 1, "y": -2}, {"k": "v"}])";
  dx::detail::ordered_json values = dx::detail::ordered_json::parse(params);
  const auto* f = dx::detail::find_remote("wft.every_kind");
  REQUIRE(f);
  REQUIRE(f->from_json);
  REQUIRE(f->arity == 14);
  CHECK(f->json_params[0].type == dx::json_type::boolean);
  CHECK(f->json_params[1].type == dx::json_type::integer);
  CHECK(f->json_params[4].type == dx::json_type::number);
  CHECK(f->json_params[6].type == dx::json_type::string);
  CHECK(f->json_params[7].type == dx::json_type::array);
  CHECK(f->json_params[8].type == dx::json_type::object);
  CHECK(f->json_params[9].nullable);
  CHECK(f->json_params[10].chunk);
  CHECK(f->json_params[12].any);

  std::vector<std::string> bytes(14);
  for (std::size_t i = 0; i < 14; ++i) {
    std::string why;
    INFO(i << ": " << why);
    REQUIRE(f->from_json(i, dx::detail::view_of(values[i]), bytes[i], why));
  }
  // The same bytes as a submit of the same values encodes.
  std::vector<dx::detail::remote_arg> direct;
  dx::detail::encode_remote_arg<bool>(direct, true);
  dx::detail::encode_remote_arg<int>(direct, -7);
  dx::detail::encode_remote_arg<unsigned>(direct, 7u);
  dx::detail::encode_remote_arg<long long>(direct, 9007199254740993LL);
  dx::detail::encode_remote_arg<float>(direct, 1.5f);
  dx::detail::encode_remote_arg<double>(direct, 2.25);
  dx::detail::encode_remote_arg<std::string>(direct, std::string("hé"));
  dx::detail::encode_remote_arg<std::vector<int>>(direct, std::vector<int>{1, 2, 3});
  dx::detail::encode_remote_arg<std::map<std::string, double>>(direct,
                                                               std::map<std::string, double>{{"a", 1}, {"b", 2.5}});
  dx::detail::encode_remote_arg<std::optional<int>>(direct, std::optional<int>{});
  dx::detail::encode_remote_arg<dx::chunk>(direct, dx::chunk{3, 9, {"x", "y"}, 1, 4});
  for (std::size_t i = 0; i < direct.size(); ++i) {
    INFO(i);
    CHECK(bytes[i] == direct[i].bytes);
  }
  // The function's invoker decodes them and calls it.
  std::vector<dx::detail::byte_view> args;
  for (auto& b : bytes) args.emplace_back(b.data(), b.size());
  const std::string result = f->invoke(args);
  CHECK(dx::detail::read_value<std::string>(result) ==
        wft::every_kind(true, -7, 7, 9007199254740993LL, 1.5f, 2.25, "hé", {1, 2, 3}, {{"a", 1}, {"b", 2.5}}, {},
                        dx::chunk{3, 9, {"x", "y"}, 1, 4}, {{1.0}, {2.0, 3.0}}, {1, -2}, {{"k", "v"}}));

  // Optional present, unsigned above the signed range.
  std::string b, why;
  REQUIRE(convert("wft.every_kind", 9, "5", b, why));
  CHECK(dx::detail::read_value<std::optional<int>>(b) == 5);
}

TEST_CASE("Wrong JSON kinds are explained with where they are", "[workflow]") {
  CHECK(why_not("wft.every_kind", 0, "1") == "must be a boolean, got an integer");
  CHECK(why_not("wft.every_kind", 1, "\"3\"") == "must be an integer, got a string");
  CHECK(why_not("wft.every_kind", 2, "-1") == "must be an integer from 0 to 4294967295, got -1");
  CHECK(why_not("wft.every_kind", 5, "true") == "must be a number, got a boolean");
  CHECK(why_not("wft.every_kind", 6, "null") == "must be a string, got null");
  CHECK(why_not("wft.every_kind", 7, "[1, 2.5]") == "element 1 must be an integer, got a number");
  CHECK(why_not("wft.every_kind", 8, R"({"a": "x"})") == "member 'a' must be a number, got a string");
  CHECK(why_not("wft.every_kind", 9, "\"x\"") == "must be an integer, got a string");
  CHECK(why_not("wft.every_kind", 10, R"({"start": 1, "stop": 2})").starts_with("has an unknown member 'stop'"));
  CHECK(why_not("wft.every_kind", 11, "[[1], 2]") == "element 1 must be an array, got an integer");
  CHECK(why_not("wft.every_kind", 12, R"({"x": 1})") == "does not convert: a point is {\"x\": n, \"y\": n}");
  CHECK(why_not("wft.every_kind", 14, "1") == "is not a parameter of this function");
}

TEST_CASE("A runner gets each argument's bytes, inputs and the chunk", "[workflow]") {
  auto steps = dx::workflow::from_json(example("monte_carlo.json")).steps();
  auto args = dx::detail::encode_step_arguments(steps[0]);
  REQUIRE(args.size() == 2);
  CHECK(args[0].chunk);
  CHECK(args[1].bytes == [] {
    std::string s;
    dx::detail::write_value(s, 42);
    return s;
  }());
  const std::string chunk_bytes = dx::detail::encode_chunk(dx::chunk{0, 10, {}, 0, 1});
  std::vector<dx::detail::byte_view> call{{chunk_bytes.data(), chunk_bytes.size()},
                                          {args[1].bytes.data(), args[1].bytes.size()}};
  CHECK(dx::detail::read_value<double>(dx::detail::find_remote("example.count_inside")->invoke(call)) == 52.0);

  auto train = dx::workflow::from_json(example("train.json")).steps();
  auto fit = dx::detail::encode_step_arguments(train[2]);
  CHECK(fit[0].input == "clean");
  CHECK(dx::detail::read_value<int>(fit[1].bytes) == 10);
  CHECK(dx::detail::read_value<std::string>(fit[2].bytes) == "sgd");
}

TEST_CASE("A step's digest follows its definition, not its place in the file", "[workflow]") {
  const std::string text = example("train.json");
  auto digests = [](const dx::workflow& wf) {
    std::map<std::string, std::string> out;
    for (auto& s : wf.steps()) out[s.name] = s.hash;
    return out;
  };
  auto base = digests(dx::workflow::from_json(text));
  CHECK(base.at("load").size() == 64);
  CHECK(base.at("fit_fast") != base.at("fit_slow"));

  // Steps in another order, fields in another order, other options: the same digests.
  auto j = nlohmann::ordered_json::parse(text);
  auto& steps = j["steps"];
  std::reverse(steps.begin(), steps.end());
  steps[0]["cache"] = true;
  steps[1]["timeout"] = "2h";
  steps[1]["priority"] = 9;
  CHECK(digests(dx::workflow::from_json(j.dump())) == base);

  // A parameter changed: that step and those after it change, the others do not.
  auto k = nlohmann::ordered_json::parse(text);
  k["steps"][1]["parameters"]["min_fare"] = 3.0;
  auto changed = digests(dx::workflow::from_json(k.dump()));
  CHECK(changed.at("load") == base.at("load"));
  CHECK(changed.at("clean") != base.at("clean"));
  CHECK(changed.at("fit_fast") != base.at("fit_fast"));
  CHECK(changed.at("best") != base.at("best"));
}

TEST_CASE("Edit distance ranks the suggested names", "[workflow]") {
  CHECK(dx::detail::edit_distance("fit", "fit") == 0);
  CHECK(dx::detail::edit_distance("fitt", "fit") == 1);
  CHECK(dx::detail::edit_distance("kitten", "sitting") == 3);
  CHECK(dx::detail::edit_distance("", "abc") == 3);
  auto p = problems_of(one_step(R"({"name": "a", "function": "exmaple.ad", "parameters": [1, 2]})"));
  REQUIRE(p.size() == 1);
  CHECK(p[0].starts_with("step 'a': unknown function 'exmaple.ad' (closest registered: example.add, "));
}

TEST_CASE("A stop token is not a JSON parameter, unregistered functions and bad strings are refused", "[workflow]") {
  const auto* f = dx::detail::find_remote("wft.with_token");
  REQUIRE(f);
  REQUIRE(f->from_json);
  CHECK(f->arity == 1);
  CHECK(problems_of(one_step(R"({"name": "t", "function": "wft.with_token", "parameters": [21]})")).empty());
  dx::workflow wf{"w"};
  wf.step("t", wft::with_token, 21);
  CHECK(wf.problems().empty());
  CHECK_THROWS_WITH(wf.step("u", wft::unregistered, 1), Catch::Contains("not registered"));
  CHECK_THROWS_WITH(wf.step("v", wft::load, std::string("\xff")), Catch::Contains("not valid UTF-8"));
  CHECK_THROWS_WITH(wf.step("x", wft::best, 1.0, std::nan("")), Catch::Contains("not finite"));
  CHECK(wf.size() == 1);
}
