#include <dx/cluster.hpp>
#include <dx/progress.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>

namespace dx::detail {

namespace {

using clock = std::chrono::steady_clock;

std::string format_seconds(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) return fmt::format("{:.1f} s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  return fmt::format("{}h{:02}m", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
}

struct progress_state {
  std::size_t total = 0;
  std::size_t done = 0;
  std::size_t failed = 0;
  double elapsed = 0;
};

}  // namespace

/// `calibrating`: the cluster's predictions are still guesses, so `eta` is the completion rate's.
std::string describe_progress(std::size_t total, std::size_t done, std::size_t failed, double elapsed,
                              const progress_options& o, double eta, bool bar, bool calibrating) {
  progress_state p{total, done, failed, elapsed};
  std::string out;
  if (!o.label.empty()) out += o.label + " ";
  const double fraction = p.total ? static_cast<double>(p.done) / static_cast<double>(p.total) : 1.0;
  if (bar) {
    constexpr int width = 30;
    const int filled = static_cast<int>(std::floor(fraction * width));
    out += '[';
    out.append(static_cast<std::size_t>(filled), '#');
    out.append(static_cast<std::size_t>(width - filled), '-');
    out += "] ";
  }
  const double rate = p.elapsed > 0 ? static_cast<double>(p.done) / p.elapsed : 0;
  out += fmt::format("{}/{} {:3.0f}%  {:.1f}/s", p.done, p.total, fraction * 100, rate);
  if (p.done < p.total) {
    out += "  ETA " + format_seconds(eta);
    if (calibrating) out += " (calibrating)";
  } else {
    out += "  done in " + format_seconds(p.elapsed);
  }
  if (p.failed) out += fmt::format("  ({} failed)", p.failed);
  return out;
}

void run_progress(std::vector<state_base*> states, const cluster* cl, const progress_options& opts) {
  std::FILE* out = opts.stream ? opts.stream : stderr;
  const bool bar = opts.mode == progress_options::display::bar ||
                   (opts.mode == progress_options::display::automatic && ::isatty(::fileno(out)));
  const auto interval = opts.interval.count() > 0 ? opts.interval : std::chrono::milliseconds(bar ? 100 : 5000);
  progress_state p;
  p.total = states.size();
  std::vector<state_base*> pending;
  for (state_base* s : states) {
    if (!s) {
      ++p.done;
    } else {
      pending.push_back(s);
    }
  }
  const auto start = clock::now();
  auto last_print = start - interval;
  auto update = [&] {
    std::erase_if(pending, [&](state_base* s) {
      if (!s->is_ready()) return false;
      ++p.done;
      if (s->has_error()) ++p.failed;
      return true;
    });
    p.elapsed = std::chrono::duration<double>(clock::now() - start).count();
  };
  // The forecast list-schedules everything left at the head: asked for at most once a second.
  // While its predictions are guesses (kinds not seen often enough), the rate so far is the estimate.
  double forecast_left = std::nan("");
  bool calibrating = false;
  auto forecast_at = start - std::chrono::seconds(2);
  auto eta = [&] {
    if (cl) {
      const auto now = clock::now();
      if (now - forecast_at >= std::chrono::seconds(1)) {
        const dx::forecast f = cl->forecast();
        calibrating = !f.calibrated;
        forecast_left =
            (f.tasks_left > 0 || f.remaining_seconds > 0) && f.calibrated ? f.remaining_seconds : std::nan("");
        forecast_at = now;
      }
      if (!std::isnan(forecast_left))
        return std::max(0.0, forecast_left - std::chrono::duration<double>(now - forecast_at).count());
    }
    const double rate = p.elapsed > 0 ? static_cast<double>(p.done) / p.elapsed : 0;
    return rate > 0 ? static_cast<double>(p.total - p.done) / rate : std::nan("");
  };
  auto print = [&](bool last) {
    const double left = p.done < p.total ? eta() : 0;
    const std::string line = describe_progress(p.total, p.done, p.failed, p.elapsed, opts, left, bar, calibrating);
    if (bar) {
      // \r and erase-to-end redraw the line in place.
      std::fprintf(out, "\r%s\x1b[K%s", line.c_str(), last ? "\n" : "");
    } else {
      std::fprintf(out, "%s\n", line.c_str());
    }
    std::fflush(out);
  };
  update();
  while (!pending.empty()) {
    const auto now = clock::now();
    if (now - last_print >= interval) {
      print(false);
      last_print = now;
    }
    // Sleeps until the oldest pending future is ready or the next poll is due.
    pending.front()->wait_until(now + std::min<clock::duration>(interval, std::chrono::milliseconds(100)));
    update();
  }
  print(true);
}

}  // namespace dx::detail
