// The functions of the example task library. The head links the same source (so it can name
// them in cl.submit); dx-worker loads them from the plugin module.
#pragma once

#include <string>
#include <vector>

namespace tasks {
std::string shout(std::string s);
std::vector<long> primes_below(long n);
}  // namespace tasks
