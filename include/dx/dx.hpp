// dx/dx.hpp — everything dx offers, in one include.
//
//   #include <dx/dx.hpp>
//   dx::cluster cl;
//   auto f = cl.submit([] { return 6 * 7; });
//   assert(f.get() == 42);
#pragma once

#include <dx/alert.hpp>
#include <dx/as_completed.hpp>
#include <dx/chunk.hpp>
#include <dx/cluster.hpp>
#include <dx/command.hpp>
#include <dx/cost_model.hpp>
#include <dx/dataframe.hpp>
#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/forecast.hpp>
#include <dx/future.hpp>
#include <dx/hint.hpp>
#include <dx/journal_lease.hpp>
#include <dx/log.hpp>
#include <dx/map.hpp>
#include <dx/metrics.hpp>
#include <dx/options.hpp>
#include <dx/parallel_for.hpp>
#include <dx/progress.hpp>
#include <dx/remote.hpp>
#include <dx/retry.hpp>
#include <dx/serialize.hpp>
#include <dx/stop_token.hpp>
#include <dx/table.hpp>
#include <dx/task.hpp>
#include <dx/task_graph.hpp>
#include <dx/task_group.hpp>
#include <dx/task_options.hpp>
#include <dx/tls.hpp>
#include <dx/version.hpp>
#include <dx/when_all.hpp>
#include <dx/when_any.hpp>
#include <dx/workflow.hpp>
#include <dx/workflow_run.hpp>
