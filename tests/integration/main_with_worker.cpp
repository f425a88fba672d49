// The integration tests' main: the same binary serves as the worker program that
// options::local_processes() and spawn_self start.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <dx/dx.hpp>

int main(int argc, char** argv) {
  if (dx::is_worker(argc, argv)) return dx::worker_main(argc, argv);
  return Catch::Session().run(argc, argv);
}
