// dx-worker: joins a dx head and runs the registered functions of the plugins it loads.
//
//   dx-worker --connect head:7700 --token-file dx.token --plugin ./libmytasks.so --threads 16
#include <dx/cluster.hpp>

#include <vector>

int main(int argc, char** argv) {
  // --dx-worker says these arguments are dx-worker's, also under srun, where a program's own
  // arguments would not be.
  static char flag[] = "--dx-worker";
  std::vector<char*> args(argv, argv + argc);
  args.insert(args.begin() + 1, flag);
  args.push_back(nullptr);
  return dx::worker_main(argc + 1, args.data());
}
