// dx/cluster.hpp — the entry point: where tasks run.
//
//   dx::cluster cl;                                    // embedded: local threads only
//   auto f = cl.submit([](int x) { return x * x; }, 7);
//   fmt::print("{}\n", f.get());                        // 49
//
// A default-constructed cluster runs everything on a local work-stealing executor. The same API
// will place tasks on peer processes once peers are configured.
#pragma once

#include <dx/executor.hpp>
#include <dx/export.hpp>
#include <dx/future.hpp>
#include <dx/options.hpp>

#include <memory>
#include <type_traits>
#include <utility>

namespace dx {

class task_graph;

/// Runs tasks; in the embedded mode on local threads. Thread-safe.
class DX_API cluster {
 public:
  /// Embedded local mode with the default options.
  cluster();
  explicit cluster(const options& opts);
  ~cluster();
  cluster(const cluster&) = delete;
  cluster& operator=(const cluster&) = delete;

  /// Runs `f(args...)` somewhere in the cluster; see executor::submit for arguments and futures.
  template <class F, class... A>
  auto submit(F&& f, A&&... args) {
    return local().submit(std::forward<F>(f), std::forward<A>(args)...);
  }
  /// Fire and forget; see executor::post.
  template <class F>
  void post(F&& f) {
    local().post(std::forward<F>(f));
  }
  /// Runs a task graph; see executor::run.
  future<void> run(task_graph& g);
  /// Blocks until all submitted work has finished; see executor::wait_idle.
  void wait_idle();

  /// The local executor behind the cluster.
  executor& local() noexcept { return *local_; }
  const options& config() const noexcept { return options_; }

 private:
  options options_;
  std::unique_ptr<executor> local_;
};

}  // namespace dx
