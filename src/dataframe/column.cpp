// dx::column and dx::table: storage, access, printing, timestamps.
#include <dx/table.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ostream>
#include <unordered_set>

#include "dataframe/kernels.hpp"

namespace dx {

std::string_view type_name(column_type t) noexcept {
  switch (t) {
    case column_type::int64:
      return "int64";
    case column_type::float64:
      return "float64";
    case column_type::boolean:
      return "bool";
    case column_type::string:
      return "string";
    case column_type::timestamp:
      return "timestamp";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Timestamps: proleptic Gregorian calendar, days from civil date (Howard Hinnant's algorithm).

namespace {

constexpr std::int64_t nanos_per_second = 1'000'000'000;
constexpr std::int64_t nanos_per_day = 86'400 * nanos_per_second;

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) noexcept {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) noexcept {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

bool read_digits(std::string_view s, std::size_t& pos, std::size_t count, int& out) noexcept {
  if (pos + count > s.size()) return false;
  int v = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  pos += count;
  out = v;
  return true;
}

}  // namespace

std::string format_timestamp(timestamp t) {
  std::int64_t days = t.nanoseconds / nanos_per_day;
  std::int64_t rest = t.nanoseconds % nanos_per_day;
  if (rest < 0) {
    rest += nanos_per_day;
    --days;
  }
  std::int64_t y = 0;
  unsigned m = 0, d = 0;
  civil_from_days(days, y, m, d);
  const std::int64_t secs = rest / nanos_per_second;
  const std::int64_t frac = rest % nanos_per_second;
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", y, m, d, secs / 3600, secs / 60 % 60, secs % 60);
  if (frac != 0) {
    std::string digits = fmt::format("{:09}", frac);
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    out += '.';
    out += digits;
  }
  return out;
}

std::optional<timestamp> parse_timestamp(std::string_view s) noexcept {
  std::size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!read_digits(s, pos, 4, year) || pos >= s.size() || s[pos++] != '-' || !read_digits(s, pos, 2, month) ||
      pos >= s.size() || s[pos++] != '-' || !read_digits(s, pos, 2, day)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  std::int64_t fraction = 0;
  std::int64_t offset_seconds = 0;
  if (pos < s.size()) {
    if (s[pos] != 'T' && s[pos] != ' ') return std::nullopt;
    ++pos;
    if (!read_digits(s, pos, 2, hour) || pos >= s.size() || s[pos++] != ':' || !read_digits(s, pos, 2, minute)) {
      return std::nullopt;
    }
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!read_digits(s, pos, 2, second)) return std::nullopt;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        std::int64_t scale = 100'000'000;
        const std::size_t start = pos;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          fraction += (s[pos] - '0') * scale;
          scale /= 10;
          ++pos;
        }
        if (pos == start) return std::nullopt;
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return std::nullopt;
    if (pos < s.size()) {
      if (s[pos] == 'Z' && pos + 1 == s.size()) {
        ++pos;
      } else if (s[pos] == '+' || s[pos] == '-') {
        const int sign = s[pos] == '-' ? -1 : 1;
        ++pos;
        int oh = 0, om = 0;
        if (!read_digits(s, pos, 2, oh)) return std::nullopt;
        if (pos < s.size() && s[pos] == ':') ++pos;
        if (!read_digits(s, pos, 2, om)) return std::nullopt;
        offset_seconds = sign * (oh * 3600 + om * 60);
      }
    }
  }
  if (pos != s.size()) return std::nullopt;
  const std::int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const std::int64_t seconds = days * 86'400 + hour * 3600 + minute * 60 + second - offset_seconds;
  return timestamp{seconds * nanos_per_second + fraction};
}

// ---------------------------------------------------------------------------------------------
// column

namespace {

using detail::column_storage;

std::shared_ptr<const column_storage> empty_storage(column_type t) {
  auto s = std::make_shared<column_storage>();
  s->type = t;
  if (t == column_type::string) s->offsets.push_back(0);
  return s;
}

template <class T, class F>
std::shared_ptr<const column_storage> from_optionals(column_type t, const std::vector<std::optional<T>>& values,
                                                     F&& store) {
  auto s = std::make_shared<column_storage>();
  s->type = t;
  s->size = values.size();
  if (t == column_type::string) s->offsets.push_back(0);
  bool any_null = false;
  for (const auto& v : values) any_null |= !v.has_value();
  if (any_null) s->validity.assign((values.size() + 63) / 64, 0);
  for (std::size_t i = 0; i < values.size(); ++i) {
    store(*s, values[i] ? &*values[i] : nullptr);
    if (any_null && values[i]) s->validity[i >> 6] |= std::uint64_t{1} << (i & 63);
  }
  return s;
}

[[noreturn]] void wrong_type(column_type actual, std::string_view wanted) {
  dx::detail::throw_error(dx::detail::error_kind::dataframe,
                          fmt::format("column of type {} read as {}", type_name(actual), wanted));
}

}  // namespace

column::column() : column(empty_storage(column_type::int64)) {}

column::column(std::shared_ptr<const detail::column_storage> storage) {
  if (!storage) dx::detail::throw_error(dx::detail::error_kind::dataframe, "column: no storage");
  const column_storage& s = *storage;
  bool ok = true;
  switch (s.type) {
    case column_type::int64:
    case column_type::timestamp:
      ok = s.ints.size() == s.size;
      break;
    case column_type::float64:
      ok = s.doubles.size() == s.size;
      break;
    case column_type::boolean:
      ok = s.bools.size() == s.size;
      break;
    case column_type::string:
      ok = s.offsets.size() == s.size + 1 && s.offsets.front() == 0 && s.offsets.back() == s.chars.size() &&
           std::is_sorted(s.offsets.begin(), s.offsets.end());
      break;
    default:
      ok = false;
  }
  if (ok && !s.validity.empty()) ok = s.validity.size() == (s.size + 63) / 64;
  if (!ok)
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("column: malformed {} storage of {} rows", type_name(s.type), s.size));
  storage_ = std::move(storage);
  offset_ = 0;
  size_ = storage_->size;
}

column::column(std::shared_ptr<const detail::column_storage> storage, std::size_t offset, std::size_t length)
    : storage_(std::move(storage)), offset_(offset), size_(length) {}

column::column(std::vector<std::int64_t> values) {
  auto s = std::make_shared<column_storage>();
  s->type = column_type::int64;
  s->size = values.size();
  s->ints = std::move(values);
  *this = column(std::shared_ptr<const column_storage>(std::move(s)));
}
column::column(std::vector<double> values) {
  auto s = std::make_shared<column_storage>();
  s->type = column_type::float64;
  s->size = values.size();
  s->doubles = std::move(values);
  *this = column(std::shared_ptr<const column_storage>(std::move(s)));
}
column::column(std::vector<bool> values) {
  auto s = std::make_shared<column_storage>();
  s->type = column_type::boolean;
  s->size = values.size();
  s->bools.assign(values.begin(), values.end());
  *this = column(std::shared_ptr<const column_storage>(std::move(s)));
}
column::column(std::vector<std::string> values) {
  auto s = std::make_shared<column_storage>();
  s->type = column_type::string;
  s->size = values.size();
  s->offsets.reserve(values.size() + 1);
  s->offsets.push_back(0);
  for (const auto& v : values) {
    s->chars += v;
    s->offsets.push_back(s->chars.size());
  }
  *this = column(std::shared_ptr<const column_storage>(std::move(s)));
}
column::column(std::vector<timestamp> values) {
  auto s = std::make_shared<column_storage>();
  s->type = column_type::timestamp;
  s->size = values.size();
  s->ints.reserve(values.size());
  for (timestamp t : values) s->ints.push_back(t.nanoseconds);
  *this = column(std::shared_ptr<const column_storage>(std::move(s)));
}
column::column(std::vector<std::optional<std::int64_t>> values)
    : column(from_optionals(column_type::int64, values,
                            [](column_storage& s, const std::int64_t* v) { s.ints.push_back(v ? *v : 0); })) {}
column::column(std::vector<std::optional<double>> values)
    : column(from_optionals(column_type::float64, values,
                            [](column_storage& s, const double* v) { s.doubles.push_back(v ? *v : 0.0); })) {}
column::column(std::vector<std::optional<bool>> values)
    : column(from_optionals(column_type::boolean, values,
                            [](column_storage& s, const bool* v) { s.bools.push_back(v && *v ? 1 : 0); })) {}
column::column(std::vector<std::optional<std::string>> values)
    : column(from_optionals(column_type::string, values, [](column_storage& s, const std::string* v) {
        if (v) s.chars += *v;
        s.offsets.push_back(s.chars.size());
      })) {}
column::column(std::vector<std::optional<timestamp>> values)
    : column(from_optionals(column_type::timestamp, values,
                            [](column_storage& s, const timestamp* v) { s.ints.push_back(v ? v->nanoseconds : 0); })) {}

column column::nulls(column_type type, std::size_t rows) {
  auto s = std::make_shared<column_storage>();
  s->type = type;
  s->size = rows;
  switch (type) {
    case column_type::int64:
    case column_type::timestamp:
      s->ints.assign(rows, 0);
      break;
    case column_type::float64:
      s->doubles.assign(rows, 0.0);
      break;
    case column_type::boolean:
      s->bools.assign(rows, 0);
      break;
    case column_type::string:
      s->offsets.assign(rows + 1, 0);
      break;
  }
  s->validity.assign((rows + 63) / 64, 0);
  if (rows == 0) s->validity.clear();
  return column(std::shared_ptr<const column_storage>(std::move(s)));
}

bool column::has_nulls() const noexcept {
  if (storage_->validity.empty()) return false;
  return null_count() != 0;
}

std::size_t column::null_count() const noexcept {
  if (storage_->validity.empty() || size_ == 0) return 0;
  const std::vector<std::uint64_t>& v = storage_->validity;
  std::size_t valid = 0;
  std::size_t bit = offset_;
  const std::size_t end = offset_ + size_;
  while (bit < end && (bit & 63) != 0) valid += (v[bit >> 6] >> (bit & 63)) & 1u, ++bit;
  while (bit + 64 <= end) valid += static_cast<std::size_t>(std::popcount(v[bit >> 6])), bit += 64;
  while (bit < end) valid += (v[bit >> 6] >> (bit & 63)) & 1u, ++bit;
  return size_ - valid;
}

std::int64_t column::int64_at(std::size_t row) const {
  if (type() != column_type::int64) wrong_type(type(), "int64");
  return storage_->ints[offset_ + row];
}
double column::float64_at(std::size_t row) const {
  if (type() != column_type::float64) wrong_type(type(), "float64");
  return storage_->doubles[offset_ + row];
}
bool column::bool_at(std::size_t row) const {
  if (type() != column_type::boolean) wrong_type(type(), "bool");
  return storage_->bools[offset_ + row] != 0;
}
std::string_view column::string_at(std::size_t row) const {
  if (type() != column_type::string) wrong_type(type(), "string");
  const std::uint64_t b = storage_->offsets[offset_ + row];
  const std::uint64_t e = storage_->offsets[offset_ + row + 1];
  return std::string_view(storage_->chars.data() + b, e - b);
}
timestamp column::timestamp_at(std::size_t row) const {
  if (type() != column_type::timestamp) wrong_type(type(), "timestamp");
  return timestamp{storage_->ints[offset_ + row]};
}
double column::numeric_at(std::size_t row) const {
  switch (type()) {
    case column_type::int64:
    case column_type::timestamp:
      return static_cast<double>(storage_->ints[offset_ + row]);
    case column_type::float64:
      return storage_->doubles[offset_ + row];
    case column_type::boolean:
      return storage_->bools[offset_ + row];
    case column_type::string:
      break;
  }
  wrong_type(type(), "a number");
}

const std::int64_t* column::int64_data() const noexcept {
  return type() == column_type::int64 || type() == column_type::timestamp ? storage_->ints.data() + offset_ : nullptr;
}
const double* column::float64_data() const noexcept {
  return type() == column_type::float64 ? storage_->doubles.data() + offset_ : nullptr;
}
const std::uint8_t* column::bool_data() const noexcept {
  return type() == column_type::boolean ? storage_->bools.data() + offset_ : nullptr;
}

std::string column::format(std::size_t row) const {
  if (is_null(row)) return "null";
  switch (type()) {
    case column_type::int64:
      return fmt::format("{}", int64_at(row));
    case column_type::float64: {
      const double v = float64_at(row);
      if (std::isnan(v)) return "NaN";
      if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
      // Six significant digits like pandas, without trailing zeros, and never in scientific
      // notation for the magnitudes tables usually hold.
      const double mag = std::fabs(v);
      if (mag != 0 && (mag >= 1e15 || mag < 1e-4)) return fmt::format("{:.6g}", v);
      std::string s = fmt::format("{:.6f}", v);
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.push_back('0');
      return s;
    }
    case column_type::boolean:
      return bool_at(row) ? "true" : "false";
    case column_type::string:
      return std::string(string_at(row));
    case column_type::timestamp:
      return format_timestamp(timestamp_at(row));
  }
  return {};
}

column column::slice(std::size_t offset, std::size_t length) const {
  if (offset > size_ || length > size_ - offset) {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("slice [{}, {}) of a column of {} rows", offset, offset + length, size_));
  }
  return column(storage_, offset_ + offset, length);
}

column column::compact() const {
  if (offset_ == 0 && size_ == storage_->size) return *this;
  detail::df::column_builder b(type(), size_);
  for (std::size_t i = 0; i < size_; ++i) b.append_from(*this, i);
  return b.finish();
}

std::size_t column::byte_size() const noexcept {
  std::size_t bytes = (storage_->validity.empty() ? 0 : (size_ + 7) / 8);
  switch (type()) {
    case column_type::int64:
    case column_type::timestamp:
    case column_type::float64:
      return bytes + 8 * size_;
    case column_type::boolean:
      return bytes + size_;
    case column_type::string:
      return bytes + 8 * (size_ + 1) + (storage_->offsets[offset_ + size_] - storage_->offsets[offset_]);
  }
  return bytes;
}

bool operator==(const column& a, const column& b) {
  if (a.type() != b.type() || a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!detail::df::values_equal(a, i, b, i)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// table

namespace detail {

namespace {
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const bool same =
          std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]));
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

std::string unknown_column_message(std::string_view name, const std::vector<std::string>& known) {
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& k : known) scored.emplace_back(edit_distance(name, k), k);
  std::stable_sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  const std::size_t limit = std::max<std::size_t>(2, name.size() / 2);
  std::string close;
  for (std::size_t i = 0; i < scored.size() && i < 3; ++i) {
    if (scored[i].first > limit) break;
    close += fmt::format("{}'{}'", close.empty() ? "" : ", ", scored[i].second);
  }
  if (!close.empty()) return fmt::format("unknown column '{}'; closest: {}", name, close);
  std::string all;
  for (std::size_t i = 0; i < known.size() && i < 20; ++i) all += fmt::format("{}'{}'", i ? ", " : "", known[i]);
  if (known.size() > 20) all += ", ...";
  return fmt::format("unknown column '{}'; the columns are: {}", name, all.empty() ? "(none)" : all);
}

}  // namespace detail

table::table(std::vector<std::string> names, std::vector<column> columns)
    : names_(std::move(names)), columns_(std::move(columns)) {
  if (names_.size() != columns_.size()) {
    dx::detail::throw_error(dx::detail::error_kind::dataframe,
                            fmt::format("table: {} names for {} columns", names_.size(), columns_.size()));
  }
  std::unordered_set<std::string_view> seen;
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i].empty())
      dx::detail::throw_error(dx::detail::error_kind::dataframe, fmt::format("table: column {} has an empty name", i));
    if (!seen.insert(names_[i]).second)
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              fmt::format("table: duplicate column '{}'", names_[i]));
    if (i > 0 && columns_[i].size() != columns_[0].size()) {
      dx::detail::throw_error(dx::detail::error_kind::dataframe,
                              fmt::format("table: column '{}' has {} rows but '{}' has {}", names_[i],
                                          columns_[i].size(), names_[0], columns_[0].size()));
    }
  }
  rows_ = columns_.empty() ? 0 : columns_[0].size();
}

table::table(std::initializer_list<std::pair<std::string, column>> columns) {
  std::vector<std::string> names;
  std::vector<column> cols;
  for (const auto& [n, c] : columns) {
    names.push_back(n);
    cols.push_back(c);
  }
  *this = table(std::move(names), std::move(cols));
}

const column& table::operator[](std::string_view name) const {
  if (auto i = find(name)) return columns_[*i];
  dx::detail::throw_error(dx::detail::error_kind::dataframe, detail::unknown_column_message(name, names_));
}

std::optional<std::size_t> table::find(std::string_view name) const noexcept {
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return i;
  }
  return std::nullopt;
}

table table::slice(std::size_t offset, std::size_t length) const {
  std::vector<column> cols;
  cols.reserve(columns_.size());
  for (const auto& c : columns_) cols.push_back(c.slice(offset, length));
  table t;
  t.names_ = names_;
  t.columns_ = std::move(cols);
  t.rows_ = columns_.empty() ? 0 : length;
  return t;
}

std::size_t table::byte_size() const noexcept {
  std::size_t n = 0;
  for (const auto& c : columns_) n += c.byte_size();
  return n;
}

namespace {

// Display width of UTF-8 text: code points, with East Asian wide characters and emoji as two.
std::size_t display_width(std::string_view s) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::uint32_t cp = c;
    std::size_t len = 1;
    if (c >= 0xF0 && i + 3 < s.size() + 0) {
      len = 4;
      cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) | (s[i + 3] & 0x3Fu);
    } else if (c >= 0xE0 && i + 2 < s.size()) {
      len = 3;
      cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
    } else if (c >= 0xC0 && i + 1 < s.size()) {
      len = 2;
      cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
    }
    i += len;
    const bool wide =
        (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) || (cp >= 0xAC00 && cp <= 0xD7A3) ||
        (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
        (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1FAFF) || (cp >= 0x20000 && cp <= 0x3FFFD);
    width += wide ? 2 : 1;
  }
  return width;
}

// Cells longer than this are cut with "..." so one long string does not widen the whole table.
constexpr std::size_t max_cell_width = 40;

std::string clip(std::string s) {
  if (display_width(s) <= max_cell_width) return s;
  std::size_t cut = 0, width = 0;
  while (cut < s.size() && width < max_cell_width - 3) {
    std::size_t len = 1;
    const auto c = static_cast<unsigned char>(s[cut]);
    if (c >= 0xF0)
      len = 4;
    else if (c >= 0xE0)
      len = 3;
    else if (c >= 0xC0)
      len = 2;
    width += display_width(std::string_view(s).substr(cut, len));
    cut += len;
  }
  s.resize(std::min(cut, s.size()));
  return s + "...";
}

}  // namespace

std::string table::to_string(std::size_t max_rows) const {
  std::vector<std::size_t> shown;
  bool elided = false;
  if (rows_ <= max_rows) {
    for (std::size_t i = 0; i < rows_; ++i) shown.push_back(i);
  } else {
    const std::size_t half = std::max<std::size_t>(1, max_rows / 2);
    for (std::size_t i = 0; i < half; ++i) shown.push_back(i);
    for (std::size_t i = rows_ - half; i < rows_; ++i) shown.push_back(i);
    elided = true;
  }
  const std::size_t ncols = columns_.size();
  std::vector<std::vector<std::string>> cells(ncols);
  std::vector<std::size_t> width(ncols);
  for (std::size_t c = 0; c < ncols; ++c) {
    width[c] = display_width(names_[c]);
    for (std::size_t r : shown) {
      cells[c].push_back(clip(columns_[c].format(r)));
      width[c] = std::max(width[c], display_width(cells[c].back()));
    }
  }
  auto right_aligned = [&](std::size_t c) {
    const column_type t = columns_[c].type();
    return t == column_type::int64 || t == column_type::float64;
  };
  auto pad = [](std::string& out, const std::string& text, std::size_t w, bool right) {
    const std::size_t fill = w - std::min(w, display_width(text));
    if (right) out.append(fill, ' ');
    out += text;
    if (!right) out.append(fill, ' ');
  };
  std::string out;
  for (std::size_t c = 0; c < ncols; ++c) {
    if (c) out += "  ";
    pad(out, names_[c], width[c], right_aligned(c));
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  out += '\n';
  for (std::size_t c = 0; c < ncols; ++c) {
    if (c) out += "  ";
    out.append(width[c], '-');
  }
  out += '\n';
  for (std::size_t i = 0; i < shown.size(); ++i) {
    if (elided && i == shown.size() / 2) out += "...\n";
    std::string line;
    for (std::size_t c = 0; c < ncols; ++c) {
      if (c) line += "  ";
      pad(line, cells[c][i], width[c], right_aligned(c));
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  out += fmt::format("[{} row{} x {} column{}]\n", rows_, rows_ == 1 ? "" : "s", ncols, ncols == 1 ? "" : "s");
  return out;
}

bool operator==(const table& a, const table& b) {
  return a.names_ == b.names_ && a.rows_ == b.rows_ && a.columns_ == b.columns_;
}

std::ostream& operator<<(std::ostream& os, const table& t) { return os << t.to_string(); }

}  // namespace dx
