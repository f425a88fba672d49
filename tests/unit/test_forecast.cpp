// dx::forecast: what a cluster predicts for the rest of its run. A cluster without a head has no
// scheduler to forecast with, so its forecast is empty.
#include <dx/forecast.hpp>

#include <dx/cluster.hpp>

#include <catch2/catch.hpp>

TEST_CASE("an empty forecast has nothing left", "[forecast]") {
  const dx::forecast f;
  CHECK(f.remaining_seconds == 0);
  CHECK(f.remaining_sd == 0);
  CHECK(f.lower_bound_seconds == 0);
  CHECK(f.tasks_left == 0);
  CHECK(f.workers.empty());
  CHECK(f.bottleneck.empty());
  CHECK(f.critical_path.empty());
  CHECK(dx::worker_backlog{}.tasks == 0);
}

TEST_CASE("a cluster on local threads forecasts nothing, even after work", "[forecast][cluster]") {
  dx::cluster cl{dx::options{}.threads(2)};
  CHECK(cl.submit([] { return 1; }).get() == 1);
  const dx::forecast f = cl.forecast();
  CHECK(f.tasks_left == 0);
  CHECK(f.remaining_seconds == 0);
  CHECK(f.workers.empty());
}
