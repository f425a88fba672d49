// Must NOT compile, one mistake per macro (the compile_fail tests define one): each is rejected
// with dx's message naming the mistake and the fix, not the standard library's. call_control.cpp
// is the same code written correctly.
#include <dx/cluster.hpp>
#include <dx/remote.hpp>

#include <string>

int square(int x) { return x * x; }
DX_REMOTE(square);

int twice(int x) { return 2 * x; }
double twice(double x) { return 2 * x; }
#ifdef OVERLOADED_REMOTE
DX_REMOTE(twice);
#endif

#ifdef LAMBDA_REMOTE
inline auto lambda = [](int x) { return x; };
DX_REMOTE(lambda);
#endif

void use(dx::cluster& cl) {
#ifdef WRONG_ARITY
  cl.submit(square, 1, 2);
#endif
#ifdef WRONG_ARGUMENT
  cl.submit(square, std::string("seven"));
#endif
#ifdef WRONG_FUTURE_ARGUMENT
  dx::future<std::string> text = cl.submit([] { return std::string("seven"); });
  cl.submit(square, std::move(text));
#endif
#ifdef LVALUE_FUTURE
  dx::future<int> seven = cl.submit([] { return 7; });
  cl.submit(square, seven);
#endif
#ifdef NOT_CALLABLE
  cl.submit(42);
#endif
#ifdef LAMBDA_WRONG_ARGUMENTS
  cl.submit([](int a, int b) { return a + b; }, 1);
#endif
#ifdef EXECUTOR_WRONG_ARITY
  cl.local().submit(square);
#endif
  (void)cl;
}
