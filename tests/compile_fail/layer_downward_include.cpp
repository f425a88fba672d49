// Compiled as a file of the sched layer: including its own headers and a lower layer's (model,
// core) compiles. The control of layer_upward_include.cpp.
#include "core/executor_impl.hpp"
#include "model/cost_model_impl.hpp"
#include "sched/scheduler.hpp"

int main() { return 0; }
