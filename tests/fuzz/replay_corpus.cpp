// The wire fuzzer's harness as an ordinary test, built with the normal compiler: checks that the
// samples round-trip, that forged sizes and values are rejected with the right reason and without
// large allocations, then runs the harness over every file of the corpus and over a bounded number
// of deterministic random mutations of it.
//
//   dx_fuzz_replay [CORPUS_DIR [MUTATIONS]]
#include "sample_messages.hpp"
#include "wire_harness.hpp"

#include "wire/frame.hpp"
#include "wire/messages.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

#ifndef DX_FUZZ_CORPUS_DIR
#define DX_FUZZ_CORPUS_DIR "tests/fuzz/corpus"
#endif

// ---- the largest single allocation while a check runs ---------------------------------------------

namespace {
bool g_tracking = false;
std::size_t g_largest = 0;

void* counted_alloc(std::size_t n) {
  if (g_tracking && n > g_largest) g_largest = n;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

struct allocation_probe {
  allocation_probe() {
    g_largest = 0;
    g_tracking = true;
  }
  ~allocation_probe() { g_tracking = false; }
  std::size_t largest() const { return g_largest; }
};
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

namespace wire = dx::wire;

int g_failures = 0;
int g_checks = 0;

#define CHECK(cond)                                                                 \
  do {                                                                              \
    ++g_checks;                                                                     \
    if (!(cond)) {                                                                  \
      ++g_failures;                                                                 \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
    }                                                                               \
  } while (0)

/// No input of n bytes may make decoding allocate more than this in one piece.
std::size_t allocation_bound(std::size_t n) { return 16 * n + 64 * 1024; }

/// check_message's reason for `f` (empty when accepted), with the largest allocation made.
std::string reason_of(const wire::frame& f, std::size_t* largest = nullptr) {
  allocation_probe probe;
  auto why = wire::check_message(f);
  if (largest) *largest = probe.largest();
  return why ? *why : std::string();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Expects check_message to reject `f` with a reason containing `part`, cheaply.
void expect_rejected(const wire::frame& f, const std::string& part, int line) {
  std::size_t largest = 0;
  const std::string why = reason_of(f, &largest);
  ++g_checks;
  if (why.empty() || !contains(why, part)) {
    ++g_failures;
    std::fprintf(stderr, "line %d: expected a rejection containing \"%s\", got \"%s\"\n", line, part.c_str(),
                 why.empty() ? "(accepted)" : why.c_str());
  }
  ++g_checks;
  if (largest > allocation_bound(f.archive.size())) {
    ++g_failures;
    std::fprintf(stderr, "line %d: decoding %zu bytes allocated %zu bytes at once\n", line, f.archive.size(), largest);
  }
}
#define EXPECT_REJECTED(f, part) expect_rejected(f, part, __LINE__)

template <class T>
void put(std::string& s, std::size_t at, T v) {
  CHECK(at + sizeof v <= s.size());
  if (at + sizeof v <= s.size()) std::memcpy(s.data() + at, &v, sizeof v);
}

// Every archive starts with the message class's preamble, a tracking byte and a 4-byte version;
// so does each collection of classes (std::vector<handed_back>, std::map) and the first element
// of a collection of classes.
constexpr std::size_t preamble = 5;

void test_samples_round_trip() {
  std::set<std::uint16_t> types;
  dx::fuzz::for_each_sample([&](const char* name, const auto& msg, std::shared_ptr<const std::string> payload) {
    using M = std::remove_cvref_t<decltype(msg)>;
    const wire::frame f = wire::encode(msg, payload);
    types.insert(f.type);
    const std::string why = reason_of(f);
    if (!why.empty()) std::fprintf(stderr, "sample %s rejected: %s\n", name, why.c_str());
    CHECK(why.empty());
    CHECK(wire::decode<M>(f) == msg);
    wire::frame parsed;
    CHECK(!wire::parse_frame(wire::frame_bytes(f), dx::fuzz::harness_max_body, parsed));
    CHECK(parsed.type == f.type && parsed.archive == f.archive);
    CHECK(wire::decode<M>(parsed) == msg);
    CHECK((parsed.payload ? *parsed.payload : std::string()) == (payload ? *payload : std::string()));
  });
  CHECK(types.size() == wire::max_msg_type);
}

void test_forged_sizes() {
  // A string length far beyond the archive.
  wire::frame reject = wire::encode(wire::reject_msg{"abc"});
  CHECK(reject.archive.size() == preamble + 8 + 3);
  {
    auto f = reject;
    put<std::uint64_t>(f.archive, preamble, std::uint64_t{1} << 62);
    EXPECT_REJECTED(f, "a string of 4611686018427387904 bytes");
  }
  {
    auto f = reject;
    put<std::uint64_t>(f.archive, preamble, 4);  // one byte more than there is
    EXPECT_REJECTED(f, "only 3 bytes are left");
  }
  // Collection counts: std::vector<std::uint64_t> (one block), std::vector of structs, std::map.
  const wire::frame release = wire::encode(wire::release_msg{{1, 2, 3, 4}});
  CHECK(release.archive.size() == preamble + 8 + 4 * 8);
  {
    auto f = release;
    put<std::uint64_t>(f.archive, preamble, std::numeric_limits<std::uint64_t>::max());
    EXPECT_REJECTED(f, "a collection of");
  }
  {
    auto f = release;
    put<std::uint64_t>(f.archive, preamble, 32);  // 32 bytes left: fine for a count, not for 32 u64
    EXPECT_REJECTED(f, "a vector of 32 elements of 8 bytes");
  }
  {
    auto f = wire::encode(wire::leaving_msg{{{1, 1}, {2, 2}}});
    CHECK(f.archive.size() == preamble + preamble + 8 + 4 + preamble + 2 * (8 + 4));
    put<std::uint64_t>(f.archive, 2 * preamble, std::uint64_t{1} << 40);
    EXPECT_REJECTED(f, "a collection of");
  }
  {
    // hello: role (int), two strings and threads come before the map's preamble and count.
    auto f = wire::encode(wire::hello_msg{wire::peer_role::worker, "", "", 4, {{"cpu", 1.0}}, "", 1});
    put<std::uint64_t>(f.archive, preamble + 4 + 8 + 8 + 4 + preamble, std::uint64_t{1} << 50);
    EXPECT_REJECTED(f, "a collection of");
  }
  {
    // A vector of arg_ref that claims as many elements as there are bytes: decodes element by
    // element and fails at the end of the data, without allocating count * sizeof(arg_ref).
    wire::run_task_msg m{1, 1, "f", {}};
    m.args.resize(64);
    auto f = wire::encode(m);
    const std::size_t count_at = preamble + 8 + 4 + 8 + 1 + preamble;
    CHECK(f.archive.compare(count_at, 8, std::string("\x40\0\0\0\0\0\0\0", 8)) == 0);
    put<std::uint64_t>(f.archive, count_at, f.archive.size() - count_at - 8);
    EXPECT_REJECTED(f, "input stream error");
  }
}

void test_forged_values() {
  {
    auto f = wire::encode(wire::challenge_msg{"n", true});
    f.archive.back() = 2;
    EXPECT_REJECTED(f, "invalid bool byte 2");
  }
  {
    auto f = wire::encode(wire::hello_msg{});
    put<std::int32_t>(f.archive, preamble, 7);
    EXPECT_REJECTED(f, "invalid peer role 7");
  }
  {
    auto f = wire::encode(wire::task_failed_msg{});
    put<std::int32_t>(f.archive, preamble + 8 + 4, 0);
    EXPECT_REJECTED(f, "invalid failure kind 0");
  }
  {
    auto f = wire::encode(wire::reject_msg{"abc"});
    f.archive += 'x';
    EXPECT_REJECTED(f, "1 bytes left over");
  }
  {
    auto f = wire::encode(wire::reject_msg{"abc"});
    f.archive.pop_back();
    EXPECT_REJECTED(f, "undecodable reject message");
  }
  {
    auto f = wire::encode(wire::heartbeat_msg{});
    f.archive.clear();
    EXPECT_REJECTED(f, "undecodable heartbeat message (0 bytes)");
  }
  for (std::uint16_t type : {std::uint16_t{0}, std::uint16_t{wire::max_msg_type + 1}, std::uint16_t{65535}}) {
    auto f = wire::encode(wire::heartbeat_msg{});
    f.type = type;
    EXPECT_REJECTED(f, "unknown message type " + std::to_string(type));
  }
  // A decode_error names the type; decode still throws it.
  bool threw = false;
  try {
    wire::frame f;
    f.type = 5;
    (void)wire::decode<wire::run_task_msg>(f);
  } catch (const wire::decode_error& e) {
    threw = contains(e.what(), "run_task");
  }
  CHECK(threw);
}

void test_payloads() {
  const auto bytes = std::make_shared<const std::string>("12345678");
  EXPECT_REJECTED(wire::encode(wire::heartbeat_msg{}, bytes), "heartbeat message carries an unexpected payload of 8");
  EXPECT_REJECTED(wire::encode(wire::task_done_msg{1, 1, 9, true, 0}, bytes), "inline result of 9 bytes");
  EXPECT_REJECTED(wire::encode(wire::task_done_msg{1, 1, 8, false, 0}, bytes), "unexpected payload");
  EXPECT_REJECTED(wire::encode(wire::fetch_reply_msg{1, 1, false}, bytes), "unexpected payload");
  CHECK(reason_of(wire::encode(wire::task_done_msg{1, 1, 8, true, 0}, bytes)).empty());
  CHECK(reason_of(wire::encode(wire::task_done_msg{1, 1, 0, true, 0})).empty());
  CHECK(reason_of(wire::encode(wire::fetch_reply_msg{1, 1, true}, bytes)).empty());
  CHECK(reason_of(wire::encode(wire::heartbeat_msg{}, std::make_shared<const std::string>())).empty());
  // tasks_done carries its inline results in the archive, one per completion.
  const wire::task_done_msg inline_done{1, 1, 3, true, 0}, stored_done{2, 1, 100, false, 0};
  CHECK(reason_of(wire::encode(wire::tasks_done_msg{{inline_done, stored_done}, {"abc", ""}})).empty());
  EXPECT_REJECTED(wire::encode(wire::tasks_done_msg{{inline_done, stored_done}, {"abc"}}),
                  "2 completions but 1 results");
  EXPECT_REJECTED(wire::encode(wire::tasks_done_msg{{inline_done}, {"abcd"}}), "expects 3 result bytes, has 4");
  EXPECT_REJECTED(wire::encode(wire::tasks_done_msg{{stored_done}, {"x"}}), "expects 0 result bytes, has 1");
  EXPECT_REJECTED(wire::encode(wire::tasks_done_msg{{inline_done}, {"abc"}}, bytes), "unexpected payload");
}

void test_parse_frame() {
  const std::string good = wire::frame_bytes(wire::encode(wire::reject_msg{"no"}, nullptr));
  const auto parse = [](const std::string& bytes, std::uint64_t max_body = dx::fuzz::harness_max_body) {
    wire::frame f;
    auto why = wire::parse_frame(bytes, max_body, f);
    return why ? *why : std::string();
  };
  CHECK(parse(good).empty());
  CHECK(contains(parse(good.substr(0, 23)), "truncated frame: 23 bytes"));
  CHECK(contains(parse(""), "truncated frame: 0 bytes"));
  CHECK(contains(parse(good.substr(0, good.size() - 1)), "truncated frame: the header announces"));
  CHECK(contains(parse(good + "zz"), "2 bytes after the end of the frame"));
  {
    auto bad = good;
    bad[0] = 'X';
    CHECK(contains(parse(bad), "not a dx frame"));
  }
  {
    auto bad = good;
    put<std::uint16_t>(bad, 4, 9);
    CHECK(contains(parse(bad), "protocol version 9"));
  }
  {
    auto bad = good;
    put<std::uint64_t>(bad, 16, std::uint64_t{1} << 63);
    CHECK(contains(parse(bad), "over the limit"));
  }
  {
    // archive + payload would wrap around 2^64: still over any limit.
    auto bad = good;
    put<std::uint64_t>(bad, 16, std::numeric_limits<std::uint64_t>::max() - 2);
    CHECK(contains(parse(bad, std::numeric_limits<std::uint64_t>::max()), "over the limit"));
  }
  wire::frame f;
  f.type = 99;
  CHECK(!wire::parse_frame(good, 1024, f) && f.type == 4 && !f.payload);
}

std::vector<std::string> read_corpus(const std::filesystem::path& dir, int& valid_files) {
  std::vector<std::string> inputs;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::set<std::uint16_t> valid_types;
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::size_t largest = 0;
    {
      allocation_probe probe;
      dx::fuzz::run_wire_input(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
      largest = probe.largest();
    }
    CHECK(largest <= allocation_bound(bytes.size()));
    if (path.filename().string().rfind("valid-", 0) == 0) {
      ++valid_files;
      wire::frame f;
      auto why = wire::parse_frame(bytes, dx::fuzz::harness_max_body, f);
      if (!why) why = wire::check_message(f);
      if (why)
        std::fprintf(stderr, "%s is rejected (%s): regenerate the corpus with make_corpus\n", path.c_str(),
                     why->c_str());
      CHECK(!why);
      if (!why) valid_types.insert(f.type);
    }
    inputs.push_back(std::move(bytes));
  }
  CHECK(valid_types.size() == wire::max_msg_type);
  return inputs;
}

/// Deterministic mutations in the spirit of libFuzzer's: bit flips, random bytes, forged 64- and
/// 32-bit sizes, insertions, deletions, truncations, splices.
std::string mutate(std::string s, const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  const auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : static_cast<std::size_t>(rng() % n); };
  static constexpr std::uint64_t interesting[] = {
      0, 1, 7, 8, 0x7f, 0xff, 0x100, 0x7fffffff, 0xffffffff, 1ull << 32, 1ull << 40, 1ull << 62, ~0ull >> 1, ~0ull};
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    switch (rng() % 8) {
      case 0:
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng());
        break;
      case 2:
        if (s.size() >= 8) {
          const std::uint64_t v = interesting[pick(std::size(interesting))];
          std::memcpy(s.data() + pick(s.size() - 7), &v, 8);
        }
        break;
      case 3:
        if (s.size() >= 4) {
          const auto v = static_cast<std::uint32_t>(interesting[pick(std::size(interesting))]);
          std::memcpy(s.data() + pick(s.size() - 3), &v, 4);
        }
        break;
      case 4:
        s.insert(pick(s.size() + 1), std::string(1 + pick(16), static_cast<char>(rng())));
        break;
      case 5:
        if (!s.empty()) {
          const std::size_t at = pick(s.size());
          s.erase(at, 1 + pick(std::min<std::size_t>(16, s.size() - at)));
        }
        break;
      case 6:
        s.resize(pick(s.size() + 1));
        break;
      case 7: {
        const std::string& other = corpus[pick(corpus.size())];
        const std::size_t from = pick(other.size() + 1);
        s.insert(pick(s.size() + 1), other.substr(from, pick(other.size() - from + 1)));
        break;
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path corpus_dir = argc > 1 ? argv[1] : DX_FUZZ_CORPUS_DIR;
  const long mutations = argc > 2 ? std::strtol(argv[2], nullptr, 10) : 4000;

  test_samples_round_trip();
  test_forged_sizes();
  test_forged_values();
  test_payloads();
  test_parse_frame();

  int valid_files = 0;
  const std::vector<std::string> corpus = read_corpus(corpus_dir, valid_files);
  CHECK(!corpus.empty());

  std::mt19937_64 rng(20240611);
  long accepted = 0;
  std::size_t worst_ratio_input = 0, worst_largest = 0;
  for (long i = 0; i < mutations && !corpus.empty(); ++i) {
    std::string input;
    if (i % 8 == 7) {
      input.resize(static_cast<std::size_t>(rng() % 256));
      for (char& c : input) c = static_cast<char>(rng());
    } else {
      input = mutate(corpus[static_cast<std::size_t>(rng() % corpus.size())], corpus, rng);
    }
    std::size_t largest = 0;
    {
      allocation_probe probe;
      accepted += dx::fuzz::run_wire_input(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
      largest = probe.largest();
    }
    if (largest > allocation_bound(input.size())) {
      ++g_failures;
      std::fprintf(stderr, "mutation %ld: %zu input bytes allocated %zu bytes at once\n", i, input.size(), largest);
    }
    if (largest > worst_largest) {
      worst_largest = largest;
      worst_ratio_input = input.size();
    }
  }

  std::printf(
      "%d checks, %d failures; %zu corpus files (%d valid seeds); %ld mutations, %ld decodes accepted; largest "
      "allocation %zu bytes (input of %zu bytes)\n",
      g_checks, g_failures, corpus.size(), valid_files, mutations, accepted, worst_largest, worst_ratio_input);
  return g_failures == 0 ? 0 : 1;
}
