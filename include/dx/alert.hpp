// dx/alert.hpp — what the scheduler warns about while a cluster runs.
//
//   cl.on_alert([](const dx::alert& a) { fmt::print(stderr, "[{}] {}\n", dx::to_string(a.kind), a.message); });
//
// Each rule fires when its condition starts, and again only after it has cleared. Alerts are
// also written to dx's log (warning level).
#pragma once

#include <dx/export.hpp>

#include <chrono>
#include <cstdint>
#include <string>

namespace dx {

enum class alert_kind : std::uint8_t {
  saturation,        ///< every worker is backed up: more workers would finish sooner
  imbalance,         ///< one worker's backlog far above the mean while another idles
  network_bound,     ///< moving inputs is predicted to cost more than computing
  straggler,         ///< a task has run past 2x its prediction
  prediction_drift,  ///< a kind's recent prediction error is far above its usual
  worker_lost,       ///< a worker went away without leaving
  unplaceable,       ///< a task needs resources no worker has
};

DX_API const char* to_string(alert_kind k) noexcept;

struct alert {
  alert_kind kind = alert_kind::saturation;
  std::string subject;   ///< the worker, kind or task it is about ("cluster" for the whole)
  std::string message;   ///< a sentence with the numbers
  double value = 0;      ///< the measured quantity
  double threshold = 0;  ///< what it was compared with
  std::chrono::system_clock::time_point time;
};

}  // namespace dx
