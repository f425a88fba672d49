// Must compile: the control for call_misuse.cpp, its calls written correctly, so that the
// compile_fail tests cannot pass because of an unrelated error.
#include <dx/cluster.hpp>
#include <dx/remote.hpp>

#include <string>

int square(int x) { return x * x; }
long widen(int x) { return x; }
int twice(int x) { return 2 * x; }
double twice(double x) { return 2 * x; }

// Any number of registrations may share a line; an overloaded name is registered by signature.
DX_REMOTE(square);
DX_REMOTE(widen);
DX_REMOTE_AS("twice", static_cast<double (*)(double)>(twice));
// A function that takes the task's stop token first, noexcept or not; callers pass only the rest.
int count_to(dx::stop_token st, int n) noexcept { return st.stop_requested() ? 0 : n; }
DX_REMOTE(count_to);

void use(dx::cluster& cl) {
  cl.submit(square, 7);
  cl.submit(dx::priority::high, square, 7);
  cl.submit(static_cast<double (*)(double)>(twice), 1.5);
  dx::future<long> wide = cl.submit(widen, 3);
  cl.submit(square, std::move(wide));  // future<long> for an int parameter converts
  cl.submit([](int a, int b) { return a + b; }, 1, 2);
  cl.local().submit(square, 2);
  cl.submit(count_to, 5);
}
