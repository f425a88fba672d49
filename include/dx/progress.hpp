// dx/progress.hpp — a console progress bar over futures, like Dask's progress().
//
//   std::vector<dx::future<double>> parts;
//   for (int i = 0; i < 1000; ++i) parts.push_back(cl.submit(simulate, i, 1000));
//   dx::progress(cl, parts);   // blocks until all are ready, showing count, rate and ETA
//   // [##########----------] 512/1000  51%  240.3/s  ETA 2.1 s
//
// On a terminal the bar redraws in place; otherwise (a log file, CI) a plain line is printed
// every few seconds and once at the end. With a cluster, the ETA is the cluster's forecast of
// its remaining work; without one, it is extrapolated from the rate so far, as it is while the
// cluster's cost model is still learning the kinds left ("ETA 12.0 s (calibrating)": its
// predictions would be default durations). Readiness is tested
// the way is_ready() does (a remote result is fetched); values are not consumed.
#pragma once

#include <dx/detail/chrono.hpp>
#include <dx/export.hpp>
#include <dx/future.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace dx {

class cluster;

/// How progress() shows itself. A plain value: safe to copy and read from many threads.
struct progress_options {
  enum class display : std::uint8_t {
    automatic,  ///< a bar when the stream is a terminal, lines otherwise
    bar,
    lines,
  };
  display mode = display::automatic;
  std::FILE* stream = nullptr;           ///< nullptr: stderr
  std::chrono::milliseconds interval{};  ///< 0: 100 ms for a bar, 5 s for lines
  std::string label;                     ///< printed first ("fit", "load")
};

namespace detail {
DX_API void run_progress(std::vector<state_base*> states, const cluster* cl, const progress_options& opts);
/// One line of the display (without the redraw codes). `calibrating`: `eta` comes from the rate
/// so far because the cluster's predictions are still guesses.
DX_API std::string describe_progress(std::size_t total, std::size_t done, std::size_t failed, double elapsed,
                                     const progress_options& opts, double eta, bool bar, bool calibrating);

template <class Range>
std::vector<state_base*> states_of(Range& futures) {
  std::vector<state_base*> out;
  for (auto& f : futures) out.push_back(future_access::state(f).get());  // empty futures count as done
  return out;
}
}  // namespace detail

/// Shows progress until every future in `futures` (a range of dx::future or dx::shared_future)
/// is ready; failed ones are counted and shown. Thread-safe while nobody consumes the futures
/// (values are not taken); blocks until every future is ready.
template <class Range>
void progress(Range& futures, const progress_options& opts = {}) {
  detail::run_progress(detail::states_of(futures), nullptr, opts);
}

/// The same, with the ETA from `cl`'s forecast. Thread-safe as above; blocks until every future
/// is ready.
template <class Range>
void progress(const cluster& cl, Range& futures, const progress_options& opts = {}) {
  detail::run_progress(detail::states_of(futures), &cl, opts);
}

}  // namespace dx
