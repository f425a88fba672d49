// The cost model's file: the versioned text format (serialize, parse), save() under a file lock
// merged with what the file holds, load(), and where the file lives by default (default_path()).
// The statistics it stores are learned in cost_model.cpp.
#include "model/cost_model_impl.hpp"

#include "common/atomic_file.hpp"
#include "common/log.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <system_error>
#include <utility>

namespace dx {

namespace {

using impl = cost_model::impl;

constexpr std::string_view file_magic = "dx-cost-model";
constexpr int file_version = 1;
constexpr double max_size = impl::max_task_size;

// ---- file format helpers ---------------------------------------------------------------------------

/// Names may hold any bytes; in the file they are single tokens. Whitespace, '%' and bytes that are
/// not printable ASCII become %XX; the empty name is a lone "%" (which no other name encodes to).
std::string escape_name(std::string_view name) {
  if (name.empty()) return "%";
  std::string out;
  out.reserve(name.size());
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '%') {
      static constexpr char hex[] = "0123456789ABCDEF";
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += ch;
    }
  }
  return out;
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool unescape_name(std::string_view token, std::string& out) {
  out.clear();
  if (token == "%") return true;
  for (std::size_t i = 0; i < token.size(); ++i) {
    if (token[i] != '%') {
      out += token[i];
      continue;
    }
    if (i + 2 >= token.size()) return false;
    const int hi = hex_digit(token[i + 1]), lo = hex_digit(token[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

/// One line of a model file, split into tokens, with typed readers that throw dx::error naming
/// the file and line.
class line_reader {
 public:
  line_reader(std::string_view line, const std::string& path, std::size_t number) : path_(path), number_(number) {
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      if (i > start) tokens_.push_back(line.substr(start, i - start));
    }
  }

  std::size_t size() const noexcept { return tokens_.size(); }
  std::string_view token(std::size_t i) const { return tokens_[i]; }

  void expect_fields(std::size_t n) const {
    if (tokens_.size() != n)
      fail(fmt::format("'{}' record has {} fields, expected {}", tokens_[0], tokens_.size() - 1, n - 1));
  }

  std::string name(std::size_t i) const {
    std::string out;
    if (!unescape_name(tokens_[i], out)) fail(fmt::format("bad name '{}'", tokens_[i]));
    return out;
  }

  std::uint64_t count(std::size_t i) const {
    std::uint64_t v = 0;
    const std::string_view t = tokens_[i];
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || end != t.data() + t.size()) fail(fmt::format("bad count '{}'", t));
    return v;
  }

  /// A finite number in [lo, hi].
  double number(std::size_t i, double lo, double hi) const {
    double v = 0;
    const std::string_view t = tokens_[i];
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec != std::errc{} || end != t.data() + t.size() || !std::isfinite(v)) fail(fmt::format("bad number '{}'", t));
    if (v < lo || v > hi) fail(fmt::format("{} out of range [{}, {}]", t, lo, hi));
    return v;
  }

  [[noreturn]] void fail(const std::string& why) const {
    detail::throw_error(detail::error_kind::generic,
                        fmt::format("cost model file {}: line {}: {}", path_, number_, why));
  }

 private:
  std::vector<std::string_view> tokens_;
  const std::string& path_;
  std::size_t number_;
};

// ---- files -----------------------------------------------------------------------------------------

class unique_fd {
 public:
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  ~unique_fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

[[noreturn]] void throw_io(const std::string& what, const std::filesystem::path& path, int err) {
  detail::throw_error(detail::error_kind::generic,
                      fmt::format("cost model: cannot {} {}: {}", what, path.string(),
                                  std::error_code(err, std::generic_category()).message()));
}

/// The file's contents, or false when it does not exist.
bool read_file(const std::filesystem::path& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    if (err == ENOENT) return false;
    throw_io("read", path, err);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw_io("read", path, errno);
  out = std::move(text).str();
  return true;
}

}  // namespace

// ---- file format -------------------------------------------------------------------------------------
//
//   dx-cost-model 1
//   bucket  <kind> <class> <log2 size> <count> <mean> <M2> <ema> <rejected> <min size> <max size> <mean log2 size>
//   worker  <name> <class> <factor> <updates>
//   link    <from> <to> <latency> <latency samples> <bandwidth> <bandwidth samples>
//   network <latency> <latency samples> <bandwidth> <bandwidth samples>
//
// Names are escaped (escape_name), numbers printed with 17 significant digits so that they read
// back exactly. Blank lines and lines starting with '#' are ignored.

std::string impl::serialize() const {
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "{} {}\n", file_magic, file_version);
  for (std::size_t k = 0; k < kinds_.size(); ++k) {
    for (std::size_t c = 0; c < kinds_[k].by_class.size(); ++c) {
      for (const bucket& b : kinds_[k].by_class[c].buckets) {
        fmt::format_to(std::back_inserter(out),
                       "bucket {} {} {} {} {:.17g} {:.17g} {:.17g} {} {:.17g} {:.17g} {:.17g}\n",
                       escape_name(kind_names_.names[k]), escape_name(class_names_.names[c]), b.index, b.all.n,
                       b.all.mean, b.all.m2, b.ema, b.rejected, b.min_size, b.max_size, b.all.log_size);
      }
    }
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const worker_state& w = workers_[i];
    if (!w.updates) continue;
    fmt::format_to(std::back_inserter(out), "worker {} {} {:.17g} {}\n", escape_name(worker_names_.names[i]),
                   escape_name(class_names_.names[w.worker_class]), w.factor, w.updates);
  }
  std::vector<std::uint64_t> keys;
  for (const auto& [key, l] : links_) {
    if (l.latency.n || l.bandwidth.n) keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());  // a stable file for a given model
  for (const std::uint64_t key : keys) {
    const link_state& l = links_.at(key);
    fmt::format_to(std::back_inserter(out), "link {} {} {:.17g} {} {:.17g} {}\n",
                   escape_name(worker_names_.names[key >> 32]), escape_name(worker_names_.names[key & 0xffffffffu]),
                   l.latency.value, l.latency.n, l.bandwidth.value, l.bandwidth.n);
  }
  if (network_.latency.n || network_.bandwidth.n) {
    fmt::format_to(std::back_inserter(out), "network {:.17g} {} {:.17g} {}\n", network_.latency.value,
                   network_.latency.n, network_.bandwidth.value, network_.bandwidth.n);
  }
  return fmt::to_string(out);
}

bool impl::parse(std::string_view text, const std::string& path) {
  std::size_t number = 0;
  bool header_seen = false;
  while (!text.empty()) {
    const std::size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const line_reader in(line, path, number);
    if (!header_seen) {
      if (in.size() != 2 || in.token(0) != file_magic) in.fail("not a dx cost model file (bad header)");
      int version = 0;
      const std::string_view v = in.token(1);
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), version);
      if (ec != std::errc{} || end != v.data() + v.size()) in.fail(fmt::format("bad version '{}'", v));
      if (version != file_version) return false;
      header_seen = true;
      continue;
    }
    if (in.size() == 0 || in.token(0).front() == '#') continue;
    const std::string_view type = in.token(0);
    if (type == "bucket") {
      in.expect_fields(12);
      const std::string kind = in.name(1), worker_class = in.name(2);
      const std::uint64_t bucket_index = in.count(3);
      if (bucket_index >= bucket_count) in.fail(fmt::format("bucket index {} out of range", bucket_index));
      const auto index = static_cast<int>(bucket_index);
      bucket b;
      b.index = static_cast<std::uint8_t>(index);
      b.all.n = in.count(4);
      if (!b.all.n) in.fail("bucket with no samples");
      b.all.mean = in.number(5, 0, max_size);
      b.all.m2 = in.number(6, 0, std::numeric_limits<double>::max());
      b.ema = in.number(7, 0, max_size);
      if (!(b.all.mean > 0) || !(b.ema > 0)) in.fail("durations must be positive");
      b.rejected = in.count(8);
      b.min_size = in.number(9, 0, max_size);
      b.max_size = in.number(10, b.min_size, max_size);
      b.all.log_size = in.number(11, 0, 64);
      entry& e = entry_for(kind_index(kind), class_index(worker_class));
      const bool existed = e.find(index) != nullptr;
      bucket& into = e.find_or_insert(index);
      if (!existed) {
        into = b;
      } else {  // the same bucket twice: both count
        into.ema = weighted_average(into.ema, into.all.n, b.ema, b.all.n);
        into.all.combine(b.all);
        into.rejected += b.rejected;
        into.min_size = std::min(into.min_size, b.min_size);
        into.max_size = std::max(into.max_size, b.max_size);
      }
    } else if (type == "worker") {
      in.expect_fields(5);
      const std::string name = in.name(1), worker_class = in.name(2);
      const double factor = in.number(3, min_factor, max_factor);
      const std::uint64_t updates = in.count(4);
      index id = worker_names_.find(name);
      if (id == no_index) id = worker_index(name, class_index(worker_class));
      worker_state& w = workers_[id];
      w.factor = weighted_average(w.factor, w.updates, factor, updates);
      w.updates += updates;
    } else if (type == "link" || type == "network") {
      const bool is_link = type == "link";
      in.expect_fields(is_link ? 7 : 5);
      const std::size_t first = is_link ? 3 : 1;
      const double latency = in.number(first, 0, 1e9);
      const std::uint64_t latency_n = in.count(first + 1);
      const double bandwidth = in.number(first + 2, 0, std::numeric_limits<double>::max());
      const std::uint64_t bandwidth_n = in.count(first + 3);
      if (bandwidth_n && !(bandwidth > 0)) in.fail("bandwidth must be positive");
      link_state* l = &network_;
      if (is_link) {
        const index from = worker_for_transfer(in.name(1)), to = worker_for_transfer(in.name(2));
        l = &links_[link_key(from, to)];
      }
      l->latency.combine(latency, latency_n);
      l->bandwidth.combine(bandwidth, bandwidth_n);
    } else {
      in.fail(fmt::format("unknown record '{}'", type));
    }
  }
  if (!header_seen)
    detail::throw_error(detail::error_kind::generic, fmt::format("cost model file {}: line 1: empty file", path));
  refresh_all();
  return true;
}

// ---- cost_model: files ------------------------------------------------------------------------------

void cost_model::save(const std::string& path_text) const {
  const std::filesystem::path path(path_text);
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) throw_io("create the directory of", path, ec.value());
  }
  const std::filesystem::path lock_path = path.string() + ".lock";
  unique_fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (lock.get() < 0) throw_io("create", lock_path, errno);
  while (::flock(lock.get(), LOCK_EX) != 0) {
    if (errno != EINTR) throw_io("lock", lock_path, errno);
  }

  // Under the lock nobody else writes the file: read what it holds now and add what this model
  // learned since it last read or wrote a file, so neither our samples nor another program's
  // are lost and what was loaded is not counted twice.
  impl on_disk;
  std::string text;
  bool merge_new_only = false;
  if (read_file(path, text)) {
    try {
      merge_new_only = on_disk.parse(text, path.string());
      if (!merge_new_only) {
        detail::log(detail::log_level::warn, "cost model {}: another format version; replacing it", path.string());
      }
    } catch (const error& e) {
      detail::log(detail::log_level::warn, "{}; replacing the file", e.what());
    }
    if (!merge_new_only) on_disk = impl{};
  }
  // Nothing usable there: the whole model goes in.
  on_disk.merge(*impl_, merge_new_only ? impl::merge_scope::unsaved : impl::merge_scope::everything);
  detail::write_file_atomically(path, on_disk.serialize());
  // What the model predicts is unchanged; only the record of what is already on disk moves.
  impl_->mark_saved();
}

bool cost_model::load(const std::string& path_text) {
  const std::filesystem::path path(path_text);
  std::string text;
  if (!read_file(path, text)) return false;
  impl loaded;
  if (!loaded.parse(text, path.string())) {
    detail::log(detail::log_level::warn, "cost model {}: another format version; ignored", path.string());
    return false;
  }
  impl_->merge(loaded, impl::merge_scope::everything);
  return true;
}

namespace {

std::filesystem::path default_model_path() {
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  if (std::string p = env("DX_COSTMODEL"); !p.empty()) return p;
  const std::filesystem::path relative = std::filesystem::path("dx") / "cost_model.txt";
  // The XDG spec says a relative XDG_STATE_HOME is invalid and to be ignored.
  if (std::filesystem::path state = env("XDG_STATE_HOME"); state.is_absolute()) return state / relative;
  std::string home = env("HOME");
  if (home.empty()) {
    if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) home = pw->pw_dir;
  }
  if (home.empty()) return std::filesystem::temp_directory_path() / relative;
  return std::filesystem::path(home) / ".local" / "state" / relative;
}

}  // namespace

std::string cost_model::default_path() { return default_model_path().string(); }

}  // namespace dx
