// Steps for the dx command's crash tests (cli_crash.cpp), loaded with `dx --plugin`. Every step
// that runs appends one line naming its task to a file of marks: one write() on a descriptor
// opened with O_APPEND, so lines of concurrent workers never interleave and a line is there once
// the call has returned. The tests count the lines to know how often each task ran.
#include <dx/chunk.hpp>
#include <dx/remote.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>

namespace crash_steps {

namespace {

void mark(const std::string& file, const std::string& line) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open the marks file " + file);
  const std::string text = line + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) throw std::runtime_error("cannot write the marks file " + file);
}

/// A 64-bit mix (splitmix64's finaliser): results depend on every input, in order.
std::uint64_t mix(std::uint64_t h, std::uint64_t v) {
  std::uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

void work(std::int64_t micros) {
  if (micros > 0) std::this_thread::sleep_for(std::chrono::microseconds(micros));
}

}  // namespace

/// A step with no inputs.
std::int64_t root(std::string marks, std::string key, std::int64_t work_us) {
  work(work_us);
  mark(marks, key);
  return static_cast<std::int64_t>(mix(hash(key), 0));
}

/// A step with two inputs.
std::int64_t node(std::string marks, std::string key, std::int64_t work_us, std::int64_t a, std::int64_t b) {
  work(work_us);
  mark(marks, key);
  return static_cast<std::int64_t>(mix(mix(hash(key), static_cast<std::uint64_t>(a)), static_cast<std::uint64_t>(b)));
}

/// A chunk of a split step `step`: marks "step#index"; its result is a sum over the chunk's
/// indices, so the step's total does not depend on how the range was cut.
std::int64_t part(dx::chunk c, std::string marks, std::string step, std::int64_t work_us, std::int64_t seed) {
  work(work_us);
  mark(marks, step + "#" + std::to_string(c.index));
  std::uint64_t sum = 0;
  for (std::int64_t i = c.start; i < c.end; ++i)
    sum += mix(static_cast<std::uint64_t>(seed), static_cast<std::uint64_t>(i));
  return static_cast<std::int64_t>(sum);
}

/// The reducer of the split steps' aggregates (wrapping addition: associative).
std::int64_t add(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}

/// A long step that never looks at its stop token: only killing its worker ends it early.
std::int64_t nap(std::int64_t ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

}  // namespace crash_steps

DX_REMOTE_AS("crash.root", crash_steps::root);
DX_REMOTE_AS("crash.node", crash_steps::node);
DX_REMOTE_AS("crash.part", crash_steps::part);
DX_REMOTE_AS("crash.add", crash_steps::add);
DX_REMOTE_AS("crash.nap", crash_steps::nap);
