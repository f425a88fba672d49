// dx::options: a cluster's settings as chained setters, their defaults, and which settings make a
// cluster distributed.
#include <dx/options.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

TEST_CASE("options have the documented defaults", "[options]") {
  const dx::options o;
  CHECK(o.threads() == 0);
  CHECK(o.listen().empty());
  CHECK(o.head_runs_tasks());
  CHECK(o.local_processes() == 0);
  CHECK(o.threads_per_process() == 1);
  CHECK(o.transport() == dx::transport_kind::tcp);
  CHECK(o.max_frame_size() == (std::uint64_t{256} << 20));
  CHECK(o.max_value_size() == (std::uint64_t{4} << 30));
  CHECK(o.heartbeat_interval() == std::chrono::milliseconds(500));
  CHECK(o.heartbeat_timeout() == std::chrono::seconds(10));
  CHECK(o.allowed_failures() == 3);
  CHECK(o.inline_result_limit() == 64 * 1024);
  CHECK(o.scheduling() == dx::scheduling_policy::predictive);
  CHECK(o.persist_cost_model());
  CHECK(o.metrics());
  CHECK(o.task_history() == 100'000);
  CHECK(o.http_token().empty());
  CHECK(!o.metrics_open());
  CHECK(o.websocket_clients() == 16);
  CHECK(o.websocket_queue_bytes() == std::size_t{8} << 20);
  CHECK(!o.distributed());
}

TEST_CASE("the HTTP endpoint's settings chain", "[options]") {
  const auto o = dx::options{}.http_token("web").metrics_open(true).websocket_clients(2).websocket_queue_bytes(4096);
  CHECK(o.http_token() == "web");
  CHECK(o.metrics_open());
  CHECK(o.websocket_clients() == 2);
  CHECK(o.websocket_queue_bytes() == 4096);
  CHECK(!o.distributed());  // only http() makes a head
}

TEST_CASE("options setters chain and each sets its own setting", "[options]") {
  const auto o = dx::options{}
                     .threads(3)
                     .token("s3cret")
                     .threads_per_process(2)
                     .transport(dx::transport_kind::in_process)
                     .heartbeat(std::chrono::milliseconds(50), std::chrono::milliseconds(400))
                     .scheduling(dx::scheduling_policy::round_robin)
                     .persist_cost_model(false)
                     .task_history(0);
  CHECK(o.threads() == 3);
  CHECK(o.token() == "s3cret");
  CHECK(o.threads_per_process() == 2);
  CHECK(o.transport() == dx::transport_kind::in_process);
  CHECK(o.heartbeat_interval() == std::chrono::milliseconds(50));
  CHECK(o.heartbeat_timeout() == std::chrono::milliseconds(400));
  CHECK(o.scheduling() == dx::scheduling_policy::round_robin);
  CHECK(!o.persist_cost_model());
  CHECK(o.task_history() == 0);
  CHECK(!o.distributed());  // none of these makes a head
}

TEST_CASE("listen, local_processes or http make a cluster distributed", "[options]") {
  CHECK(dx::options{}.listen("127.0.0.1:0").distributed());
  CHECK(dx::options{}.local_processes(2).distributed());
  CHECK(dx::options{}.http("127.0.0.1:0").distributed());
  CHECK(!dx::options{}.threads(8).distributed());
}
