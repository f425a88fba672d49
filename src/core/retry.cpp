// Retry decisions, shared by local tasks and the head: which exceptions a policy retries, and the
// pauses between attempts. Also the names of exception types as they travel between processes.
#include "core/type_names.hpp"

#include <dx/error.hpp>
#include <dx/retry.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <random>

namespace dx::detail {

std::string type_name_of(const std::type_info& t) {
  int status = 0;
  char* name = abi::__cxa_demangle(t.name(), nullptr, nullptr, &status);
  std::string out = (status == 0 && name) ? name : t.name();
  std::free(name);
  return out;
}

std::vector<std::string> public_base_names(const std::type_info& t) {
  // The Itanium ABI's type_info of a class says what it derives from: one public non-virtual base
  // (__si_class_type_info) or a list with flags (__vmi_class_type_info). Walked breadth first, so
  // the nearest bases come first.
  std::vector<std::string> out;
  std::deque<const std::type_info*> todo{&t};
  constexpr std::size_t max_names = 32;  // deep or wide hierarchies are cut, not walked forever
  while (!todo.empty() && out.size() < max_names) {
    const std::type_info* cur = todo.front();
    todo.pop_front();
    auto visit = [&](const std::type_info* base) {
      const std::string name = type_name_of(*base);
      if (std::find(out.begin(), out.end(), name) != out.end()) return;
      out.push_back(name);
      todo.push_back(base);
    };
    if (const auto* si = dynamic_cast<const abi::__si_class_type_info*>(cur)) {
      visit(si->__base_type);
    } else if (const auto* vmi = dynamic_cast<const abi::__vmi_class_type_info*>(cur)) {
      for (unsigned i = 0; i < vmi->__base_count; ++i) {
        const auto& b = vmi->__base_info[i];
        if (b.__is_public_p()) visit(b.__base_type);
      }
    }
  }
  return out;
}

namespace {

const std::string remote_error_name = type_name_of(typeid(remote_error));

/// Outcomes another attempt cannot change.
bool never_retried(const std::exception_ptr& e) noexcept {
  try {
    std::rethrow_exception(e);
  } catch (const cancelled&) {
    return true;
  } catch (const timeout&) {
    return true;
  } catch (const not_registered&) {
    return true;
  } catch (const protocol_error&) {
    return true;
  } catch (const executor_shutdown&) {
    return true;
  } catch (...) {
    return false;
  }
}

/// Whether `f` names e's type: for a remote exception, by its original type's name or a public
/// base's (dx::remote_error names them all; its own bases, such as std::runtime_error, count only
/// as the original type's); else by catching it.
bool named_by(const exception_filter& f, const std::exception_ptr& e, const remote_error* remote) noexcept {
  if (remote) {
    if (f.name == remote_error_name || remote->type_name() == f.name) return true;
    const auto& bases = remote->type_bases();
    return std::find(bases.begin(), bases.end(), f.name) != bases.end();
  }
  return f.matches && f.matches(e);
}

double uniform_draw() noexcept {
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

}  // namespace

std::chrono::nanoseconds backoff_before(const retry_policy& p, std::uint32_t n) noexcept {
  const double factor = std::max(1.0, p.factor);
  const double cap = static_cast<double>(std::max<std::int64_t>(0, p.max_backoff.count()));
  double b = static_cast<double>(std::max<std::int64_t>(0, p.initial_backoff.count()));
  for (std::uint32_t i = 1; i < n && b < cap; ++i) b *= factor;
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::min(b, cap)));
}

std::chrono::nanoseconds jittered(const retry_policy& p, std::chrono::nanoseconds b, double u) noexcept {
  const double j = std::clamp(p.jitter, 0.0, 1.0);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(static_cast<double>(b.count()) * (1.0 - j * u)));
}

bool retry_after(const retry_rules& rules, const std::exception_ptr& e, std::uint32_t failures,
                 std::chrono::nanoseconds& pause) noexcept {
  if (!e || !rules.policy_set || failures >= rules.policy.max_attempts || never_retried(e)) return false;
  auto passes = [&](const remote_error* remote) noexcept {
    for (const auto& f : rules.never)
      if (named_by(f, e, remote)) return false;
    return rules.only.empty() ||
           std::any_of(rules.only.begin(), rules.only.end(), [&](const auto& f) { return named_by(f, e, remote); });
  };
  bool retry = false;
  try {
    std::rethrow_exception(e);
  } catch (const remote_error& r) {
    retry = passes(&r);
  } catch (...) {
    retry = passes(nullptr);
  }
  if (!retry) return false;
  pause = jittered(rules.policy, backoff_before(rules.policy, failures), uniform_draw());
  return true;
}

}  // namespace dx::detail
