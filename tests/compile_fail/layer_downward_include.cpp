// Compiled as a file of the sched layer: including its own headers and a lower layer's (model,
// core) compiles. The control of layer_upward_include.cpp.
#include "sched/scheduler.hpp"
#include "model/cost_model_impl.hpp"
#include "core/executor_impl.hpp"

int main() { return 0; }
