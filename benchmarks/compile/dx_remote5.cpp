// Five remote functions of ordinary types, each submitted once.
#include <dx/dx.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

int twice(int x) { return 2 * x; }
double half(double x) { return x / 2; }
std::string shout(std::string s) { return s + "!"; }
double sum(std::vector<double> v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
std::map<std::string, int> count(std::map<std::string, int> m) {
  m["total"] = static_cast<int>(m.size());
  return m;
}

DX_REMOTE(twice);
DX_REMOTE(half);
DX_REMOTE(shout);
DX_REMOTE(sum);
DX_REMOTE(count);

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  dx::cluster cl;
  auto a = cl.submit(twice, 21);
  auto b = cl.submit(half, 3.0);
  auto c = cl.submit(shout, std::string("hi"));
  auto d = cl.submit(sum, std::vector<double>{1, 2, 3});
  auto e = cl.submit(count, std::map<std::string, int>{{"a", 1}});
  std::printf("%d %g %s %g %zu\n", a.get(), b.get(), c.get().c_str(), d.get(), e.get().size());
  return 0;
}
