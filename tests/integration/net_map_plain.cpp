// cluster::map of a registered function whose chunk runner cannot be registered: this file does
// not include <dx/archive.hpp>, and std::vector<short> has no encoder compiled into dx, so DX_REMOTE
// registers the function alone and map sends one task per input.
#include <dx/cluster.hpp>
#include <dx/remote.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <vector>

namespace net_map_plain {
int widen(short x) { return x * 1000; }
}  // namespace net_map_plain

DX_REMOTE(net_map_plain::widen);

TEST_CASE("map: a function without a chunk runner is mapped with one remote task per input (in-process)") {
  REQUIRE(dx::detail::find_remote("net_map_plain::widen") != nullptr);
  CHECK(dx::detail::find_remote("net_map_plain::widen/map") == nullptr);
  dx::cluster cl{dx::options{}
                     .threads(2)
                     .transport(dx::transport_kind::in_process)
                     .local_processes(1)
                     .head_runs_tasks(false)
                     .persist_cost_model(false)};
  std::vector<short> in{1, 2, 3, 4, 5};
  auto out = cl.map(net_map_plain::widen, in);
  for (std::size_t i = 0; i < in.size(); ++i) {
    REQUIRE(out[i].wait_for(std::chrono::seconds(60)) == dx::future_status::ready);
    CHECK(out[i].get() == in[i] * 1000);
  }
  cl.wait_idle();
  std::size_t samples = 0;
  for (const auto& a : cl.cost_model_snapshot().accuracy())
    if (a.kind == "net_map_plain::widen") samples = a.samples;
  CHECK(samples == in.size());
}
