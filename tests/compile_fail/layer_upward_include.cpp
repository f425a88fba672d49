// Compiled as a file of the sched layer: an include of a higher layer (cluster) must not compile,
// because each layer sees only its own folder and the layers below it.
#include "cluster/head.hpp"
#include "sched/scheduler.hpp"

int main() { return 0; }
