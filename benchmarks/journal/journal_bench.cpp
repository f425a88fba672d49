// How many task transitions per second the workflow journal makes durable when a head commits them
// in groups of N (one transaction and one fsync per group, synchronous=FULL), for N = 1, 100 and
// 1000: the rate a scheduler tick of N changes can sustain. Each run is a fresh journal in a new
// folder under --dir; every record changes its task's status, so each writes a row of the
// transition log as well as the task's row.
//
//   dx_bench_journal [--dir /tmp] [--runs 5]
#include "journal/journal.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace {

using dx::detail::journal;
using clock_type = std::chrono::steady_clock;

struct rate {
  double transitions_per_s;
  double groups_per_s;
};

/// One run: `groups` commits of `group_size` records each, into a fresh journal under `dir`.
rate run_once(const std::filesystem::path& dir, int group_size, int groups, int round) {
  const std::filesystem::path folder = dir / ("dx_bench_journal_" + std::to_string(::getpid()) + "_" +
                                              std::to_string(group_size) + "_" + std::to_string(round));
  std::filesystem::remove_all(folder);
  rate result{};
  {
    auto j = journal::open(folder / "journal.sqlite", journal::open_mode::write);
    const std::string run = j->create_run("bench", "{}");
    j->commit();
    // 1000 tasks whose statuses go round, so that every record is a transition.
    static constexpr std::string_view statuses[] = {"READY", "RUNNING", "SUCCEEDED", "PENDING"};
    std::vector<std::string> keys;
    for (int k = 0; k < 1000; ++k) keys.push_back("step#" + std::to_string(k));
    dx::detail::task_record t;
    t.assigned_to = "worker-1";
    t.parent = "step";
    t.is_subtask = true;
    std::size_t n = 0;
    const auto start = clock_type::now();
    for (int g = 0; g < groups; ++g) {
      for (int i = 0; i < group_size; ++i, ++n) {
        t.key = keys[n % keys.size()];
        t.status = statuses[(n / keys.size()) % 4];
        t.attempts = static_cast<std::int64_t>(n / keys.size());
        j->record(run, t);
      }
      j->commit();
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    result = {static_cast<double>(n) / seconds, groups / seconds};
  }
  std::filesystem::remove_all(folder);
  return result;
}

struct summary {
  double median, min, max;
};

summary summarize(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const std::size_t m = xs.size() / 2;
  const double median = xs.size() % 2 == 1 ? xs[m] : (xs[m - 1] + xs[m]) / 2;
  return {median, xs.front(), xs.back()};
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = "/tmp";
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (arg == "--runs" && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: %s [--dir DIR] [--runs N]\n", argv[0]);
      return 2;
    }
  }
  std::printf("journal in %s, %d runs per size; median [min-max]\n", dir.c_str(), runs);
  std::printf("%-12s %-8s %-36s %-30s\n", "group size", "groups", "transitions/s", "groups/s");
  // Enough groups for one to three seconds per run on a disk with ~1-5 ms fsyncs, and for the
  // WAL to be checkpointed (every 1000 pages) several times within a run, as it is in a long one.
  const struct { int group_size, groups; } sizes[] = {{1, 300}, {100, 500}, {1000, 100}};
  for (const auto& s : sizes) {
    std::vector<double> transitions, groups;
    for (int r = 0; r < runs; ++r) {
      const rate x = run_once(dir, s.group_size, s.groups, r);
      transitions.push_back(x.transitions_per_s);
      groups.push_back(x.groups_per_s);
    }
    const summary t = summarize(transitions), g = summarize(groups);
    char tcell[64], gcell[64];
    std::snprintf(tcell, sizeof tcell, "%.0f [%.0f-%.0f]", t.median, t.min, t.max);
    std::snprintf(gcell, sizeof gcell, "%.1f [%.1f-%.1f]", g.median, g.min, g.max);
    std::printf("%-12d %-8d %-36s %-30s\n", s.group_size, s.groups, tcell, gcell);
    std::fflush(stdout);
  }
}
