// dx/remote.hpp — functions that may run in other processes.
//
//   double simulate(int seed, int steps);
//   DX_REMOTE(simulate);                       // registered as "simulate"
//   DX_REMOTE_AS("mc.simulate", other_fn);      // registered under a chosen, stable name
//
//   dx::cluster cl{dx::options{}.local_processes(2)};
//   dx::future<double> r = cl.submit(simulate, 7, 10'000);   // may run on a peer
//
// A registered function is found by name in every process that links the same registration
// (the application binary started as a worker, or a plugin loaded by dx-worker). Its parameter
// and return types must be dx::serializable; a type that is not fails to compile at DX_REMOTE.
// Lambdas and unregistered callables passed to cl.submit run on the local threads. A parameter or
// result of a type dx does not encode itself (your own struct, a tuple, an optional, ...) needs
// `#include <dx/archive.hpp>` in the file that registers or submits it (see dx/serialize.hpp).
#pragma once

#include <dx/detail/remote_call.hpp>

#define DX_DETAIL_CONCAT2(a, b) a##b
#define DX_DETAIL_CONCAT(a, b) DX_DETAIL_CONCAT2(a, b)

/// Registers `fn` under the stable name `name` so it may run in other processes. Use at namespace
/// scope, any number on one line: it runs during static initialisation; thread-safe, does not
/// block. An overloaded name does not say which function to send: register one overload by its
/// signature, `DX_REMOTE_AS("f", static_cast<double (*)(int)>(f))`, and submit the same cast.
#define DX_REMOTE_AS(name, fn)                                                                                  \
  [[maybe_unused]] static const bool DX_DETAIL_CONCAT(dx_remote_registered_, __COUNTER__) = [](auto dx_probe) { \
    /* The call depends on dx_probe, so an overload set or a non-function fails a requirement */                \
    /* and gets dx's message rather than "unable to deduce". */                                                 \
    if constexpr (requires { decltype(dx_probe)::one_function(fn); }) {                                         \
      return ::dx::detail::register_remote_function<decltype(dx_probe)::one_function(fn)>(name);                \
    } else {                                                                                                    \
      static_assert(::dx::detail::names_one_function<decltype(dx_probe)>,                                       \
                    "dx: DX_REMOTE needs one function, and this name is overloaded or not a "                   \
                    "function (a lambda, a member function, a variable). Register one overload "                \
                    "by its signature: DX_REMOTE_AS(\"f\", static_cast<double (*)(int)>(f)).");                 \
      return false;                                                                                             \
    }                                                                                                           \
  }(::dx::detail::function_probe{})

/// Registers `fn` under its spelled name (`DX_REMOTE(ns::f)` registers "ns::f"). Thread-safe;
/// does not block.
#define DX_REMOTE(fn) DX_REMOTE_AS(#fn, fn)
