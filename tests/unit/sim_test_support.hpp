// What the simulator's test files share: the tasks a run left unfinished, as text for INFO.
#pragma once

#include "sim/simulator.hpp"

#include <string>

namespace sim_test {

inline std::string unfinished(const dx::sim::result& r) {
  std::string s;
  for (const std::string& u : r.unfinished) s += u + "\n";
  return s;
}

}  // namespace sim_test
