// dx-worker: joins a dx head and runs the registered functions of the plugins it loads.
//
//   dx-worker --connect head:7700 --token-file dx.token --plugin ./libmytasks.so --threads 16
#include <dx/cluster.hpp>

int main(int argc, char** argv) { return dx::worker_main(argc, argv); }
