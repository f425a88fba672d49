// A consumer of dx through its CMake package: uses the API the README shows and checks results.
#include <dx/dx.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

static int square(int x) { return x * x; }

int main() {
  dx::cluster cl{dx::options{}.threads(2)};
  std::vector<dx::future<int>> parts;
  for (int i = 1; i <= 100; ++i) parts.push_back(cl.submit(square, i));
  int total = dx::when_all(std::move(parts))
                  .then([](std::vector<int> v) { return std::accumulate(v.begin(), v.end(), 0); })
                  .get();

  dx::task_graph g;
  int stage = 0;
  auto a = g.emplace([&] { stage = stage * 10 + 1; });
  auto b = g.emplace([&] { stage = stage * 10 + 2; });
  a.precede(b);
  cl.run(g).get();

  std::printf("dx %s: sum of squares 1..100 = %d, graph order %d\n", dx::version_string, total, stage);
  return total == 338350 && stage == 12 ? 0 : 1;
}
