// dx/forecast.hpp — what the scheduler predicts for the rest of a run.
//
//   dx::forecast f = cl.forecast();
//   std::printf("done in %.1f s (+- %.1f); bottleneck: %s\n", f.remaining_seconds, f.remaining_sd,
//               f.bottleneck.c_str());
//   for (auto& w : f.workers) std::printf("%s: %.2f s queued per thread\n", w.id.c_str(), w.backlog_seconds);
//
// The point estimate comes from running the placement policy forward over the tasks not finished
// yet with the cost model's predictions (what is placed stays where it is, what is not yet ready
// is placed where it would finish first); the spread is propagated from the predictions' spreads
// on the worker that finishes last. Tasks not submitted yet are not foreseen. Until the cost model
// has seen a kind run a few times its predictions are guesses: `calibrated` says so, and which
// kinds.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace dx {

/// One worker's share of what is left. A plain value: safe to copy and read from many threads.
struct worker_backlog {
  std::string id;
  double backlog_seconds = 0;  ///< predicted work placed there and not finished, per thread
  std::size_t tasks = 0;       ///< tasks placed there and not finished
};

/// What cluster::forecast() returns (every field 0 or empty on a cluster without a head). A plain
/// value: safe to copy and read from many threads.
struct forecast {
  double remaining_seconds = 0;  ///< until every submitted task has finished
  double remaining_sd = 0;
  double lower_bound_seconds = 0;  ///< max(critical path left, work left / threads)
  std::size_t tasks_left = 0;
  std::vector<worker_backlog> workers;
  std::string bottleneck;  ///< "worker w2" (it finishes well after the others) or "kind fft" (most work)
  std::vector<std::string> critical_path;  ///< kinds along the longest chain left, first to last
  /// False while some of the tasks left are predicted from a guess (a kind run fewer than the
  /// cost model's min_samples() times, or at sizes far from those seen; an unseen kind counts as
  /// 0.5 s): remaining_seconds is then no more than a guess. dx::progress and the dashboard say
  /// "calibrating" and estimate from the observed completion rate instead.
  bool calibrated = true;
  std::size_t uncalibrated_tasks = 0;           ///< tasks left whose prediction is a guess
  std::vector<std::string> uncalibrated_kinds;  ///< their kinds, sorted
};

}  // namespace dx
