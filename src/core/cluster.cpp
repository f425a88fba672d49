#include <dx/cluster.hpp>
#include <dx/task_graph.hpp>

namespace dx {

cluster::cluster() : cluster(options{}) {}

cluster::cluster(const options& opts)
    : options_(opts),
      local_(std::make_unique<executor>(opts.threads() == 0 ? executor::default_threads() : opts.threads())) {}

cluster::~cluster() = default;

future<void> cluster::run(task_graph& g) { return local_->run(g); }
void cluster::wait_idle() { local_->wait_idle(); }

}  // namespace dx
