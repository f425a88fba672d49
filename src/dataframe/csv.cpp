// CSV reading and writing for dx::dataframe: glob expansion, header and type inference, splitting
// files into byte ranges at row boundaries, and a fast per-range parser.
//
// Quoting follows pandas' C parser: a field that starts with the quote character runs to the
// matching quote ("" inside is one quote); text after the closing quote still belongs to the field;
// a quote inside an unquoted field is an ordinary character. Blank lines are skipped, "\r\n" ends a
// line like "\n", and a UTF-8 byte order mark at the start of a file is ignored.
#include "dataframe/kernels.hpp"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace dx::detail::df {
namespace {

constexpr std::string_view utf8_bom = "\xEF\xBB\xBF";

[[noreturn]] void fail(const std::string& message) {
  dx::detail::throw_error(dx::detail::error_kind::dataframe, message);
}

std::string quoted_name(std::string_view s) { return "'" + std::string(s) + "'"; }

/// A short excerpt of a field for error messages: long values would drown the message.
std::string excerpt(std::string_view text) {
  constexpr std::size_t limit = 40;
  if (text.size() <= limit) return quoted_name(text);
  return quoted_name(std::string(text.substr(0, limit)) + "...");
}

// ---------------------------------------------------------------------------------------------
// Files

class input_file {
 public:
  explicit input_file(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) fail_io(errno);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) fail_io(errno);
    if (S_ISDIR(st.st_mode)) fail_io(EISDIR);
    size_ = static_cast<std::uint64_t>(st.st_size);
  }
  input_file(const input_file&) = delete;
  input_file& operator=(const input_file&) = delete;
  ~input_file() {
    if (fd_ >= 0) ::close(fd_);
  }

  std::uint64_t size() const noexcept { return size_; }

  /// Reads up to `bytes` from `offset`; fewer only at the end of the file.
  std::size_t read_at(std::uint64_t offset, char* out, std::size_t bytes) const {
    std::size_t done = 0;
    while (done < bytes) {
      const ssize_t n = ::pread(fd_, out + done, bytes - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        fail_io(errno);
      }
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  std::string read_string(std::uint64_t offset, std::size_t bytes) const {
    std::string s(bytes, '\0');
    s.resize(read_at(offset, s.data(), bytes));
    return s;
  }

 private:
  [[noreturn]] void fail_io(int error) const {
    fail("read_csv: cannot read '" + path_ + "': " + std::generic_category().message(error));
  }

  std::string path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
};

bool has_wildcard(std::string_view pattern) { return pattern.find_first_of("*?[") != std::string_view::npos; }

std::vector<std::string> expand_glob(const std::string& pattern) {
  std::vector<std::string> files;
  if (!has_wildcard(pattern)) {
    std::error_code ec;
    if (std::filesystem::exists(pattern, ec)) files.push_back(pattern);
  } else {
    glob_t matches{};
    if (::glob(pattern.c_str(), 0, nullptr, &matches) == 0) {
      for (std::size_t i = 0; i < matches.gl_pathc; ++i) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(matches.gl_pathv[i], ec)) files.emplace_back(matches.gl_pathv[i]);
      }
    }
    ::globfree(&matches);
  }
  if (files.empty()) fail("read_csv: no file matches '" + pattern + "'");
  std::sort(files.begin(), files.end());
  return files;
}

// ---------------------------------------------------------------------------------------------
// Tokenizing whole rows (headers, type inference, finding a bad row's end)

/// std::count widens every byte to a 64-bit counter; counting in blocks of 255 into a byte lets
/// the compiler compare 16 or 32 bytes at a time (about ten times faster).
std::uint64_t count_newlines(const char* p, const char* end) noexcept {
  std::uint64_t total = 0;
  while (p < end) {
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(end - p), 255);
    std::uint8_t block = 0;
    for (std::size_t i = 0; i < n; ++i) block += static_cast<std::uint8_t>(p[i] == '\n');
    total += block;
    p += n;
  }
  return total;
}

bool is_blank_line(const char* p, const char* end) {
  return *p == '\n' || (*p == '\r' && (p + 1 == end || p[1] == '\n'));
}

/// Moves past a blank line ("\n", "\r\n" or a final "\r").
const char* skip_blank_line(const char* p, const char* end) {
  if (*p == '\r') ++p;
  return p < end ? p + 1 : p;
}

struct row_scan {
  const char* next = nullptr;  // past the row's terminator
  std::uint64_t newlines = 0;  // '\n' consumed, inside quotes and at the end
  bool terminated = false;     // ended by '\n' rather than by the end of the buffer
  bool unclosed_quote = false;
  std::size_t field_count = 0;
};

/// Splits the row at `p` into its unquoted fields (appended to `fields` unless null).
row_scan scan_row(const char* p, const char* end, char delimiter, char quote, std::vector<std::string>* fields) {
  row_scan result;
  std::string field;
  while (true) {
    field.clear();
    if (p < end && *p == quote) {
      ++p;
      while (true) {
        const char* close = static_cast<const char*>(std::memchr(p, quote, static_cast<std::size_t>(end - p)));
        if (close == nullptr) {
          result.newlines += count_newlines(p, end);
          result.unclosed_quote = true;
          result.next = end;
          ++result.field_count;
          return result;
        }
        result.newlines += count_newlines(p, close);
        field.append(p, close);
        p = close + 1;
        if (p < end && *p == quote) {
          field.push_back(quote);
          ++p;
          continue;
        }
        break;
      }
    }
    const char* start = p;
    while (p < end && *p != delimiter && *p != '\n') ++p;
    std::string_view rest(start, static_cast<std::size_t>(p - start));
    if (!rest.empty() && rest.back() == '\r' && (p == end || *p == '\n')) rest.remove_suffix(1);
    field.append(rest);
    ++result.field_count;
    if (fields != nullptr) fields->push_back(field);
    if (p == end) {
      result.next = end;
      return result;
    }
    if (*p == '\n') {
      ++result.newlines;
      result.terminated = true;
      result.next = p + 1;
      return result;
    }
    ++p;
  }
}

// ---------------------------------------------------------------------------------------------
// Field conversion, shared by inference and the parser so that both accept the same text

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// from_chars rejects a leading '+', which CSV writers (and pandas) accept.
std::string_view strip_plus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  return s;
}

/// Up to 18 digits with an optional '-', which cannot overflow; nullptr for anything else
/// (longer numbers take the checked path). Faster than from_chars for the common short integer.
inline const char* parse_short_int64(const char* p, const char* end, std::int64_t& out) noexcept {
  const bool negative = p < end && *p == '-';
  if (negative) ++p;
  const char* const digits = p;
  const char* const limit = end - p > 18 ? p + 18 : end;
  std::uint64_t value = 0;
  while (p < limit && static_cast<unsigned char>(*p - '0') < 10) {
    value = value * 10 + static_cast<unsigned char>(*p - '0');
    ++p;
  }
  if (p == digits || (p < end && static_cast<unsigned char>(*p - '0') < 10)) return nullptr;
  out = negative ? -static_cast<std::int64_t>(value) : static_cast<std::int64_t>(value);
  return p;
}

bool to_int64(std::string_view text, std::int64_t& out) {
  text = strip_plus(trim_spaces(text));
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

bool to_float64(std::string_view text, double& out) {
  text = strip_plus(trim_spaces(text));
  if (text.empty()) return false;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && ptr == text.data() + text.size();
}

bool to_bool(std::string_view text, bool& out, bool accept_digits) {
  text = trim_spaces(text);
  if (text == "true" || text == "True" || text == "TRUE" || (accept_digits && text == "1")) {
    out = true;
    return true;
  }
  if (text == "false" || text == "False" || text == "FALSE" || (accept_digits && text == "0")) {
    out = false;
    return true;
  }
  return false;
}

bool to_timestamp(std::string_view text, std::int64_t& out) {
  const std::optional<timestamp> t = parse_timestamp(trim_spaces(text));
  if (!t) return false;
  out = t->nanoseconds;
  return true;
}

/// The null markers of csv_options, with a quick rejection by length for the common non-null field.
class null_markers {
 public:
  explicit null_markers(const std::vector<std::string>& values) : values_(values) {
    for (const std::string& v : values_) {
      if (v.size() < 64)
        length_mask_ |= std::uint64_t{1} << v.size();
      else
        long_markers_ = true;
    }
  }
  bool matches(std::string_view text) const noexcept {
    if (text.size() < 64 && ((length_mask_ >> text.size()) & 1u) == 0) return false;
    if (text.size() >= 64 && !long_markers_) return false;
    for (const std::string& v : values_)
      if (v == text) return true;
    return false;
  }

 private:
  std::vector<std::string> values_;
  std::uint64_t length_mask_ = 0;
  bool long_markers_ = false;
};

/// Empty fields are missing for every type but string; for strings only when "" is a marker.
bool is_null_field(std::string_view text, column_type type, const null_markers& nulls) {
  if (text.empty() && type != column_type::string) return true;
  return nulls.matches(text);
}

std::string_view article(column_type t) { return t == column_type::int64 ? "an " : "a "; }

// ---------------------------------------------------------------------------------------------
// Headers and schema

struct file_start {
  std::uint64_t data_offset = 0;   // first byte after the BOM and the header
  std::uint64_t lines_before = 0;  // '\n' before data_offset
  std::vector<std::string> header;
  bool has_header_row = false;
};

/// Finds where the data of a file begins, reading its header when options.header.
file_start locate_data(const input_file& file, const std::string& path, const csv_options& options) {
  std::size_t prefix = 64 * 1024;
  while (true) {
    const std::string buffer = file.read_string(0, prefix);
    const bool whole_file = buffer.size() >= file.size();
    const char* const begin = buffer.data();
    const char* const end = begin + buffer.size();
    const char* p = begin;
    if (std::string_view(buffer).starts_with(utf8_bom)) p += utf8_bom.size();
    file_start start;
    if (!options.header) {
      start.data_offset = static_cast<std::uint64_t>(p - begin);
      return start;
    }
    bool need_more = false;
    while (p < end && is_blank_line(p, end)) {
      if (*p == '\r' && p + 1 == end && !whole_file) {
        need_more = true;
        break;
      }
      p = skip_blank_line(p, end);
      ++start.lines_before;
    }
    if (!need_more && p == end) {
      if (whole_file) {
        start.data_offset = buffer.size();
        return start;
      }
      need_more = true;
    }
    if (!need_more) {
      const row_scan row = scan_row(p, end, options.delimiter, options.quote, &start.header);
      if (row.terminated || whole_file) {
        if (row.unclosed_quote)
          fail(path + ":" + std::to_string(start.lines_before + 1) + ": unclosed quote in the header");
        start.data_offset = static_cast<std::uint64_t>(row.next - begin);
        start.lines_before += row.newlines;
        start.has_header_row = true;
        return start;
      }
    }
    prefix *= 2;
  }
}

std::string join_fields(const std::vector<std::string>& fields, char delimiter) {
  std::string s;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) s += delimiter;
    s += fields[i];
  }
  return s;
}

/// pandas' names for a header: empty ones become "Unnamed: i", repeats get ".1", ".2", ...
std::vector<std::string> unique_names(std::vector<std::string> names) {
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i].empty()) names[i] = "Unnamed: " + std::to_string(i);
  std::set<std::string> taken(names.begin(), names.end());
  std::set<std::string> seen;
  std::map<std::string, std::size_t> repeats;
  for (std::string& name : names) {
    if (seen.insert(name).second) continue;
    std::size_t& n = repeats[name];
    std::string candidate;
    do candidate = name + "." + std::to_string(++n);
    while (taken.count(candidate) != 0);
    taken.insert(candidate);
    seen.insert(candidate);
    name = candidate;
  }
  return names;
}

/// What the values seen so far of one column could be.
struct type_candidates {
  bool any_value = false;
  bool int64 = true;
  bool float64 = true;
  bool boolean = true;
  bool timestamp = true;

  void observe(std::string_view text) {
    any_value = true;
    std::int64_t i = 0;
    double d = 0;
    bool b = false;
    if (int64 && !to_int64(text, i)) int64 = false;
    if (float64 && !to_float64(text, d)) float64 = false;
    if (boolean && !to_bool(text, b, false)) boolean = false;
    if (timestamp && !to_timestamp(text, i)) timestamp = false;
  }

  column_type result() const {
    if (!any_value) return column_type::string;
    if (int64) return column_type::int64;
    if (float64) return column_type::float64;
    if (boolean) return column_type::boolean;
    if (timestamp) return column_type::timestamp;
    return column_type::string;
  }
};

struct sample_rows {
  std::vector<std::vector<std::string>> rows;
};

/// Whole rows from the first `bytes` of data (at least the first row, when there is one).
sample_rows read_sample(const input_file& file, std::uint64_t data_offset, std::size_t bytes,
                        const csv_options& options) {
  std::size_t want = std::max<std::size_t>(bytes, 1);
  while (true) {
    const std::string buffer = file.read_string(data_offset, want);
    const bool to_eof = data_offset + buffer.size() >= file.size();
    const char* p = buffer.data();
    const char* const end = p + buffer.size();
    sample_rows sample;
    while (p < end) {
      if (is_blank_line(p, end)) {
        p = skip_blank_line(p, end);
        continue;
      }
      std::vector<std::string> fields;
      const row_scan row = scan_row(p, end, options.delimiter, options.quote, &fields);
      if (!row.terminated && !to_eof) break;  // cut off by the sample's end
      if (row.unclosed_quote) break;
      sample.rows.push_back(std::move(fields));
      p = row.next;
    }
    if (!sample.rows.empty() || to_eof) return sample;
    want *= 2;
  }
}

// ---------------------------------------------------------------------------------------------
// The range parser

enum class field_kind : std::uint8_t { skip, int64, float64, boolean, string, timestamp };

field_kind kind_of(column_type t) {
  switch (t) {
    case column_type::int64:
      return field_kind::int64;
    case column_type::float64:
      return field_kind::float64;
    case column_type::boolean:
      return field_kind::boolean;
    case column_type::string:
      return field_kind::string;
    case column_type::timestamp:
      return field_kind::timestamp;
  }
  return field_kind::string;
}

/// The values of one wanted column; validity bytes only once a null appears.
struct column_values {
  column_type type = column_type::string;
  std::vector<std::int64_t> ints;  // int64 and timestamp
  std::vector<double> doubles;
  std::vector<std::uint8_t> bools;
  std::string chars;
  std::vector<std::uint64_t> offsets{0};
  std::vector<std::uint8_t> valid;
  bool has_nulls = false;

  void reserve(std::size_t rows) {
    switch (type) {
      case column_type::int64:
      case column_type::timestamp:
        ints.reserve(rows);
        break;
      case column_type::float64:
        doubles.reserve(rows);
        break;
      case column_type::boolean:
        bools.reserve(rows);
        break;
      case column_type::string:
        offsets.reserve(rows + 1);
        break;
    }
  }

  void mark_present() {
    if (has_nulls) valid.push_back(1);
  }

  void append_null(std::size_t rows_before) {
    if (!has_nulls) {
      valid.assign(rows_before, 1);
      has_nulls = true;
    }
    valid.push_back(0);
    switch (type) {
      case column_type::int64:
      case column_type::timestamp:
        ints.push_back(0);
        break;
      case column_type::float64:
        doubles.push_back(0);
        break;
      case column_type::boolean:
        bools.push_back(0);
        break;
      case column_type::string:
        offsets.push_back(chars.size());
        break;
    }
  }

  /// Drops values past `rows` (the rest of a malformed row).
  void truncate(std::size_t rows) {
    switch (type) {
      case column_type::int64:
      case column_type::timestamp:
        ints.resize(std::min(ints.size(), rows));
        break;
      case column_type::float64:
        doubles.resize(std::min(doubles.size(), rows));
        break;
      case column_type::boolean:
        bools.resize(std::min(bools.size(), rows));
        break;
      case column_type::string:
        if (offsets.size() > rows + 1) {
          offsets.resize(rows + 1);
          chars.resize(offsets.back());
        }
        break;
    }
    if (has_nulls) valid.resize(std::min(valid.size(), rows));
  }

  column finish(std::size_t rows) {
    // The reservation was an estimate; a far-off one should not stay allocated with the column.
    const auto trim = [](auto& v) {
      if (v.capacity() > 2 * v.size() + 1024) v.shrink_to_fit();
    };
    trim(ints);
    trim(doubles);
    trim(bools);
    trim(offsets);
    const std::vector<std::uint8_t>* validity = has_nulls ? &valid : nullptr;
    switch (type) {
      case column_type::int64:
        return make_int64(std::move(ints), validity);
      case column_type::timestamp:
        return make_timestamp(std::move(ints), validity);
      case column_type::float64:
        return make_float64(std::move(doubles), validity);
      case column_type::boolean:
        return make_bool(std::move(bools), validity);
      case column_type::string:
        break;
    }
    auto storage = std::make_shared<detail::column_storage>();
    storage->type = column_type::string;
    storage->size = rows;
    storage->offsets = std::move(offsets);
    storage->chars = std::move(chars);
    if (has_nulls) {
      storage->validity.assign((rows + 63) / 64, 0);
      for (std::size_t i = 0; i < rows; ++i)
        if (valid[i] != 0) storage->validity[i >> 6] |= std::uint64_t{1} << (i & 63);
    }
    return column(std::shared_ptr<const detail::column_storage>(std::move(storage)));
  }
};

class range_parser {
 public:
  range_parser(const csv_source& source, const std::string& path, const std::vector<bool>& wanted)
      : path_(path),
        delimiter_(source.options.delimiter),
        quote_(source.options.quote),
        skip_bad_rows_(source.options.skip_bad_rows),
        nulls_(source.options.null_values),
        names_(source.names),
        types_(source.types) {
    // from_chars could read past a delimiter that may appear inside a number.
    const std::string_view number_chars = "0123456789+-.eEinfatyINFATY";
    fast_numbers_ = number_chars.find(delimiter_) == std::string_view::npos && delimiter_ != quote_;
    kinds_.resize(names_.size(), field_kind::skip);
    slot_.resize(names_.size(), 0);
    for (std::size_t i = 0; i < names_.size(); ++i) {
      if (!wanted.empty() && !wanted[i]) continue;
      kinds_[i] = kind_of(types_[i]);
      slot_[i] = values_.size();
      values_.emplace_back().type = types_[i];
      output_names_.push_back(names_[i]);
    }
  }

  void start(std::uint64_t first_line, std::size_t expected_rows) {
    line_ = first_line;
    for (column_values& v : values_) v.reserve(expected_rows);
  }

  /// Parses the rows in [begin, end). Unless `last`, more of the range follows and a row cut off
  /// by `end` (only possible inside quotes, as `end` follows a '\n') is left for the next call:
  /// the return value is where parsing stopped.
  const char* parse(const char* begin, const char* end, bool last) {
    p_ = begin;
    end_ = end;
    while (p_ < end_) {
      if (is_blank_line(p_, end_)) {
        p_ = skip_blank_line(p_, end_);
        ++line_;
        continue;
      }
      const char* const row_start = p_;
      const std::uint64_t row_line = line_;
      if (parse_row()) {
        ++rows_;
        continue;
      }
      for (column_values& v : values_) v.truncate(rows_);
      const row_scan row = scan_row(row_start, end_, delimiter_, quote_, nullptr);
      if (row.unclosed_quote && !last) {
        line_ = row_line;
        return row_start;
      }
      if (!skip_bad_rows_) fail(path_ + ":" + std::to_string(row_line) + ": " + describe_error(row_start));
      p_ = row.next;
      line_ = row_line + row.newlines;
      ++skipped_rows_;
    }
    return p_;
  }

  csv_read_result finish() {
    std::vector<column> columns;
    columns.reserve(values_.size());
    for (column_values& v : values_) columns.push_back(v.finish(rows_));
    csv_read_result result;
    result.data = table(output_names_, std::move(columns));
    result.skipped_rows = skipped_rows_;
    return result;
  }

 private:
  enum class row_error : std::uint8_t { none, too_few_fields, too_many_fields, bad_value, unclosed_quote };

  bool parse_row() {
    const std::size_t columns = kinds_.size();
    for (std::size_t c = 0; c < columns; ++c) {
      if (!parse_field(c)) return false;
      if (c + 1 < columns) {
        if (p_ < end_ && *p_ == delimiter_) {
          ++p_;
          continue;
        }
        error_ = row_error::too_few_fields;
        return false;
      }
      if (p_ == end_) return true;
      if (*p_ == '\n') {
        ++p_;
        ++line_;
        return true;
      }
      error_ = row_error::too_many_fields;
      return false;
    }
    // No columns at all: the whole line is the row.
    const row_scan row = scan_row(p_, end_, delimiter_, quote_, nullptr);
    p_ = row.next;
    line_ += row.newlines;
    return true;
  }

  /// A numeric fast path ends here: at a delimiter, a line end or the end of the range.
  const char* field_end(const char* ptr) const noexcept {
    if (ptr == end_ || *ptr == delimiter_ || *ptr == '\n') return ptr;
    if (*ptr == '\r' && (ptr + 1 == end_ || ptr[1] == '\n')) return ptr + 1;
    return nullptr;
  }

  bool parse_field(std::size_t c) {
    switch (kinds_[c]) {
      case field_kind::skip:
        return skip_field();
      case field_kind::int64: {
        column_values& v = values_[slot_[c]];
        if (fast_numbers_ && p_ < end_ && *p_ != quote_) {
          std::int64_t value = 0;
          if (const char* ptr = parse_short_int64(p_, end_, value)) {
            if (const char* after = field_end(ptr)) {
              v.ints.push_back(value);
              v.mark_present();
              p_ = after;
              return true;
            }
          }
        }
        return convert_field<std::int64_t>(c, column_type::int64, v, to_int64,
                                           [](column_values& out, std::int64_t x) { out.ints.push_back(x); });
      }
      case field_kind::float64: {
        column_values& v = values_[slot_[c]];
        if (fast_numbers_ && p_ < end_ && *p_ != quote_) {
          double value = 0;
          const auto [ptr, ec] = std::from_chars(p_, end_, value);
          // NaN text may be a null marker ("NaN", "nan"): the slow path decides.
          if (ec == std::errc{} && value == value) {
            if (const char* after = field_end(ptr)) {
              v.doubles.push_back(value);
              v.mark_present();
              p_ = after;
              return true;
            }
          }
        }
        return convert_field<double>(c, column_type::float64, v, to_float64,
                                     [](column_values& out, double x) { out.doubles.push_back(x); });
      }
      case field_kind::boolean: {
        return convert_field<bool>(
            c, column_type::boolean, values_[slot_[c]],
            [](std::string_view text, bool& x) { return to_bool(text, x, true); },
            [](column_values& out, bool x) { out.bools.push_back(x ? 1 : 0); });
      }
      case field_kind::timestamp: {
        return convert_field<std::int64_t>(c, column_type::timestamp, values_[slot_[c]], to_timestamp,
                                           [](column_values& out, std::int64_t x) { out.ints.push_back(x); });
      }
      case field_kind::string: {
        column_values& v = values_[slot_[c]];
        std::string_view text;
        if (!read_field(text)) return false;
        if (is_null_field(text, column_type::string, nulls_)) {
          v.append_null(rows_);
        } else {
          v.chars.append(text);
          v.offsets.push_back(v.chars.size());
          v.mark_present();
        }
        return true;
      }
    }
    return true;
  }

  // The general path of a typed field: read it (quoted or not), then a null, a value, or an error.
  template <class T, class Convert, class Store>
  bool convert_field(std::size_t c, column_type type, column_values& v, Convert convert, Store store) {
    std::string_view text;
    if (!read_field(text)) return false;
    T value{};
    if (is_null_field(text, type, nulls_)) {
      v.append_null(rows_);
    } else if (convert(text, value)) {
      store(v, value);
      v.mark_present();
    } else {
      return bad_value(c, text);
    }
    return true;
  }

  bool skip_field() {
    if (p_ < end_ && *p_ == quote_) {
      std::string_view ignored;
      return read_field(ignored);
    }
    const char delimiter = delimiter_;
    const char* p = p_;
    const char* const end = end_;
    while (p < end && *p != delimiter && *p != '\n') ++p;
    p_ = p;
    return true;
  }

  /// The field's text, unquoted; leaves p_ at the delimiter or line end after it.
  bool read_field(std::string_view& text) {
    const char delimiter = delimiter_;
    const char* const end = end_;
    if (p_ < end && *p_ == quote_) {
      const char* p = p_ + 1;
      bool escaped = false;
      scratch_.clear();
      while (true) {
        const char* close = static_cast<const char*>(std::memchr(p, quote_, static_cast<std::size_t>(end - p)));
        if (close == nullptr) {
          error_ = row_error::unclosed_quote;
          return false;
        }
        line_ += count_newlines(p, close);
        if (close + 1 < end && close[1] == quote_) {
          scratch_.append(p, close + 1);
          p = close + 2;
          escaped = true;
          continue;
        }
        if (escaped) scratch_.append(p, close);
        const char* const inner_begin = escaped ? nullptr : p_ + 1;
        const char* const inner_end = close;
        p = close + 1;
        const char* tail = p;
        while (p < end && *p != delimiter && *p != '\n') ++p;
        std::string_view rest(tail, static_cast<std::size_t>(p - tail));
        if (!rest.empty() && rest.back() == '\r' && (p == end || *p == '\n')) rest.remove_suffix(1);
        p_ = p;
        if (!escaped && rest.empty()) {
          text = std::string_view(inner_begin, static_cast<std::size_t>(inner_end - inner_begin));
          return true;
        }
        if (!escaped) scratch_.assign(inner_begin, inner_end);
        scratch_.append(rest);
        text = scratch_;
        return true;
      }
    }
    const char* p = p_;
    while (p < end && *p != delimiter && *p != '\n') ++p;
    text = std::string_view(p_, static_cast<std::size_t>(p - p_));
    if (!text.empty() && text.back() == '\r' && (p == end || *p == '\n')) text.remove_suffix(1);
    p_ = p;
    return true;
  }

  bool bad_value(std::size_t c, std::string_view text) {
    error_ = row_error::bad_value;
    if (!skip_bad_rows_) {
      error_column_ = c;
      error_text_ = std::string(text);
    }
    return false;
  }

  std::string describe_error(const char* row_start) const {
    switch (error_) {
      case row_error::too_few_fields:
      case row_error::too_many_fields: {
        const row_scan row = scan_row(row_start, end_, delimiter_, quote_, nullptr);
        if (row.unclosed_quote) return "unclosed quote";
        return "expected " + std::to_string(kinds_.size()) + " fields, found " + std::to_string(row.field_count);
      }
      case row_error::bad_value:
        return excerpt(error_text_) + " is not " + std::string(article(types_[error_column_])) +
               std::string(type_name(types_[error_column_])) + " (column " + quoted_name(names_[error_column_]) +
               "; pass csv_options::schema to read it as another type)";
      case row_error::unclosed_quote:
        return "unclosed quote";
      case row_error::none:
        break;
    }
    return "malformed row";
  }

  std::string path_;
  char delimiter_;
  char quote_;
  bool skip_bad_rows_;
  bool fast_numbers_ = true;
  null_markers nulls_;
  const std::vector<std::string>& names_;
  const std::vector<column_type>& types_;
  std::vector<field_kind> kinds_;
  std::vector<std::size_t> slot_;
  std::vector<column_values> values_;
  std::vector<std::string> output_names_;

  const char* p_ = nullptr;
  const char* end_ = nullptr;
  std::uint64_t line_ = 1;
  std::size_t rows_ = 0;
  std::size_t skipped_rows_ = 0;
  std::string scratch_;
  row_error error_ = row_error::none;
  std::size_t error_column_ = 0;
  std::string error_text_;
};

// ---------------------------------------------------------------------------------------------
// Splitting

/// Where a row-boundary scan is: only inside quotes can a '\n' not end a row.
enum class quote_state : std::uint8_t { field_start, unquoted, quoted, quote_in_quoted };

class range_cutter {
 public:
  range_cutter(std::uint32_t file, std::uint64_t data_offset, std::uint64_t lines_before, std::uint64_t target,
               char delimiter, char quote, std::vector<csv_range>& out)
      : file_(file),
        target_(target),
        delimiter_(delimiter),
        quote_(quote),
        out_(out),
        range_begin_(data_offset),
        begin_line_(lines_before + 1),
        lines_(lines_before),
        next_cut_(data_offset + target) {}

  /// Feeds the bytes at [base, base + n), in file order.
  void feed(std::uint64_t base, const char* data, std::size_t n) {
    counted_ = 0;
    const bool may_start_quote = state_ != quote_state::quoted && state_ != quote_state::quote_in_quoted;
    if (may_start_quote && std::memchr(data, quote_, n) == nullptr) {
      feed_unquoted(base, data, n);
      const char last = data[n - 1];
      state_ = (last == delimiter_ || last == '\n') ? quote_state::field_start : quote_state::unquoted;
    } else {
      feed_quoted(base, data, n);
    }
    lines_ += count_newlines(data + counted_, data + n);
  }

  void finish(std::uint64_t file_size) {
    if (range_begin_ >= file_size) return;
    // A short tail joins the range before it rather than making a partition of its own.
    if (!out_.empty() && out_.back().file == file_ && out_.back().end == range_begin_ &&
        file_size - range_begin_ < target_ / 2) {
      out_.back().end = file_size;
      return;
    }
    out_.push_back({file_, range_begin_, file_size, begin_line_});
  }

 private:
  /// Cuts after the '\n' at `index` of the current chunk.
  void cut(std::uint64_t base, const char* data, std::size_t index) {
    lines_ += count_newlines(data + counted_, data + index + 1);
    counted_ = index + 1;
    const std::uint64_t at = base + index + 1;
    if (at > range_begin_) out_.push_back({file_, range_begin_, at, begin_line_});
    range_begin_ = at;
    begin_line_ = lines_ + 1;
    next_cut_ = at + target_;
  }

  void feed_unquoted(std::uint64_t base, const char* data, std::size_t n) {
    std::size_t i = 0;
    while (true) {
      // The first '\n' at or after next_cut_ - 1 makes a range of at least target bytes.
      const std::uint64_t from = next_cut_ - 1;
      if (from >= base + n) return;
      if (from > base + i) i = static_cast<std::size_t>(from - base);
      const void* newline = std::memchr(data + i, '\n', n - i);
      if (newline == nullptr) return;
      const std::size_t index = static_cast<std::size_t>(static_cast<const char*>(newline) - data);
      cut(base, data, index);
      i = index + 1;
    }
  }

  void feed_quoted(std::uint64_t base, const char* data, std::size_t n) {
    const char delimiter = delimiter_;
    const char quote = quote_;
    quote_state state = state_;
    std::size_t i = 0;
    while (i < n) {
      if (state == quote_state::quoted) {
        const void* close = std::memchr(data + i, quote, n - i);
        if (close == nullptr) break;
        i = static_cast<std::size_t>(static_cast<const char*>(close) - data) + 1;
        state = quote_state::quote_in_quoted;
        continue;
      }
      const char c = data[i];
      if (state == quote_state::quote_in_quoted) {
        if (c == quote) {
          state = quote_state::quoted;
          ++i;
          continue;
        }
        state = quote_state::unquoted;
      }
      if (c == '\n') {
        state = quote_state::field_start;
        if (base + i + 1 >= next_cut_) cut(base, data, i);
      } else if (c == delimiter) {
        state = quote_state::field_start;
      } else if (state == quote_state::field_start) {
        state = c == quote ? quote_state::quoted : quote_state::unquoted;
      }
      ++i;
    }
    state_ = state;
  }

  std::uint32_t file_;
  std::uint64_t target_;
  char delimiter_;
  char quote_;
  std::vector<csv_range>& out_;
  std::uint64_t range_begin_;
  std::uint64_t begin_line_;
  std::uint64_t lines_;  // '\n' before the current chunk plus those counted in it so far
  std::uint64_t next_cut_;
  std::size_t counted_ = 0;  // bytes of the current chunk whose '\n' are in lines_
  quote_state state_ = quote_state::field_start;
};

// ---------------------------------------------------------------------------------------------
// Writing

bool needs_quotes(std::string_view s, char delimiter, char quote) {
  if (s.empty()) return false;
  if (s.front() == ' ' || s.back() == ' ') return true;
  for (const char c : s)
    if (c == delimiter || c == quote || c == '\n' || c == '\r') return true;
  return false;
}

void append_text(std::string& out, std::string_view s, char delimiter, char quote) {
  if (!needs_quotes(s, delimiter, quote)) {
    out.append(s);
    return;
  }
  out.push_back(quote);
  for (const char c : s) {
    if (c == quote) out.push_back(quote);
    out.push_back(c);
  }
  out.push_back(quote);
}

void append_float64(std::string& out, double v) {
  char buffer[64];
  const auto [ptr, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  std::string_view text(buffer, static_cast<std::size_t>(ptr - buffer));
  out.append(text);
  // "3" would read back as an int64 column; "3.0" stays float64.
  if (text.find_first_of(".eEn") == std::string_view::npos) out.append(".0");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

csv_source open_csv(const std::string& path_or_glob, const csv_options& options) {
  csv_source source;
  source.options = options;
  source.files = expand_glob(path_or_glob);

  std::vector<std::string> header;
  std::uint64_t first_data_offset = 0;
  for (std::size_t i = 0; i < source.files.size(); ++i) {
    const std::string& path = source.files[i];
    const input_file file(path);
    const file_start start = locate_data(file, path, options);
    if (options.header && !start.has_header_row) fail("read_csv: '" + path + "' is empty; expected a header line");
    if (i == 0) {
      header = start.header;
      first_data_offset = start.data_offset;
    } else if (options.header && start.header != header) {
      fail("read_csv: the header of '" + path + "' (" + join_fields(start.header, options.delimiter) +
           ") differs from that of '" + source.files[0] + "' (" + join_fields(header, options.delimiter) +
           "); all files must have the same columns");
    }
  }

  const input_file first(source.files[0]);
  const sample_rows sample = read_sample(first, first_data_offset, options.inference_bytes, options);

  std::vector<std::string> names;
  if (options.header) {
    names = header;
    if (!options.names.empty()) {
      if (options.names.size() != header.size())
        fail("read_csv: " + std::to_string(options.names.size()) + " names given but '" + source.files[0] + "' has " +
             std::to_string(header.size()) + " columns");
      names = options.names;
    }
  } else if (!options.names.empty()) {
    names = options.names;
    if (!sample.rows.empty() && sample.rows[0].size() != names.size())
      fail("read_csv: " + std::to_string(names.size()) + " names given but the first row of '" + source.files[0] +
           "' has " + std::to_string(sample.rows[0].size()) + " fields");
  } else if (!sample.rows.empty()) {
    for (std::size_t i = 0; i < sample.rows[0].size(); ++i) names.push_back("column" + std::to_string(i));
  }
  source.names = unique_names(std::move(names));

  const null_markers nulls(options.null_values);
  std::vector<type_candidates> candidates(source.names.size());
  for (const std::vector<std::string>& row : sample.rows) {
    if (row.size() != source.names.size()) continue;
    for (std::size_t c = 0; c < row.size(); ++c)
      if (!row[c].empty() && !nulls.matches(row[c])) candidates[c].observe(row[c]);
  }
  source.types.reserve(candidates.size());
  for (const type_candidates& t : candidates) source.types.push_back(t.result());

  for (const auto& [name, type] : options.schema) {
    const auto it = std::find(source.names.begin(), source.names.end(), name);
    if (it == source.names.end())
      fail("read_csv: csv_options::schema names " + unknown_column_message(name, source.names));
    source.types[static_cast<std::size_t>(it - source.names.begin())] = type;
  }
  return source;
}

std::vector<csv_range> split_csv(const csv_source& source, std::size_t target_bytes, std::size_t threads) {
  std::vector<std::uint64_t> sizes;
  std::uint64_t total = 0;
  for (const std::string& path : source.files) {
    sizes.push_back(input_file(path).size());
    total += sizes.back();
  }
  std::uint64_t target = target_bytes != 0 ? target_bytes : source.options.partition_bytes;
  if (target == 0) {
    constexpr std::uint64_t min_bytes = 1u << 20;
    constexpr std::uint64_t max_bytes = 64u << 20;
    target = std::clamp<std::uint64_t>(total / (4 * std::max<std::size_t>(threads, 1)), min_bytes, max_bytes);
  }

  constexpr std::size_t chunk_bytes = 4u << 20;
  std::unique_ptr<char[]> chunk(new char[chunk_bytes]);
  std::vector<csv_range> ranges;
  for (std::size_t f = 0; f < source.files.size(); ++f) {
    const std::string& path = source.files[f];
    const input_file file(path);
    const file_start start = locate_data(file, path, source.options);
    range_cutter cutter(static_cast<std::uint32_t>(f), start.data_offset, start.lines_before, target,
                        source.options.delimiter, source.options.quote, ranges);
    for (std::uint64_t offset = start.data_offset; offset < file.size();) {
      const std::size_t n = file.read_at(offset, chunk.get(), chunk_bytes);
      if (n == 0) break;
      cutter.feed(offset, chunk.get(), n);
      offset += n;
    }
    cutter.finish(file.size());
  }
  // A source of header-only files still has one (empty) partition that carries the schema.
  if (ranges.empty() && !source.files.empty()) {
    const input_file file(source.files[0]);
    const file_start start = locate_data(file, source.files[0], source.options);
    ranges.push_back({0, start.data_offset, start.data_offset, start.lines_before + 1});
  }
  return ranges;
}

csv_read_result read_csv_range(const csv_source& source, const csv_range& range, const std::vector<bool>& wanted) {
  if (!wanted.empty() && wanted.size() != source.names.size())
    fail("read_csv: " + std::to_string(wanted.size()) + " column flags for " + std::to_string(source.names.size()) +
         " columns");
  if (range.file >= source.files.size()) fail("read_csv: range names file " + std::to_string(range.file));
  const std::string& path = source.files[range.file];
  const input_file file(path);
  const std::uint64_t end = std::min(range.end, file.size());
  range_parser parser(source, path, wanted);

  // The range is read in chunks into one reused buffer: it stays in cache while parsed, and a
  // 64 MiB partition does not need 64 MiB of freshly mapped memory first.
  std::size_t capacity = 1u << 20;
  std::unique_ptr<char[]> buffer(new char[capacity]);
  std::size_t carried = 0;  // bytes of an unfinished row kept from the previous chunk
  std::uint64_t offset = range.begin;
  bool first_chunk = true;
  while (true) {
    const std::uint64_t left = end > offset ? end - offset : 0;
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(capacity - carried, left));
    const std::size_t got = file.read_at(offset, buffer.get() + carried, want);
    offset += got;
    const bool last = offset >= end || got < want;
    const char* begin = buffer.get();
    const char* const filled = begin + carried + got;
    if (first_chunk) {
      if (range.begin == 0 && std::string_view(begin, carried + got).starts_with(utf8_bom)) begin += utf8_bom.size();
      // Rows are sized from the first chunk so that columns rarely reallocate.
      const char* const sample_end = filled - begin > (64 << 10) ? begin + (64 << 10) : filled;
      const auto rows = static_cast<std::size_t>(count_newlines(begin, sample_end)) + 1;
      const double bytes_per_row = std::max(2.0, static_cast<double>(sample_end - begin) / static_cast<double>(rows));
      parser.start(range.first_line,
                   static_cast<std::size_t>(static_cast<double>(end - range.begin) / bytes_per_row * 1.02) + 16);
      first_chunk = false;
    }
    const char* stop = filled;
    if (!last) {
      const void* newline = ::memrchr(begin, '\n', static_cast<std::size_t>(filled - begin));
      stop = newline != nullptr ? static_cast<const char*>(newline) + 1 : begin;
    }
    const char* const parsed = parser.parse(begin, stop, last);
    if (last) break;
    carried = static_cast<std::size_t>(filled - parsed);
    std::memmove(buffer.get(), parsed, carried);
    if (carried > capacity / 2) {
      // One row (a long quoted field) fills much of the buffer: make room for the rest of it.
      std::unique_ptr<char[]> larger(new char[capacity * 2]);
      std::memcpy(larger.get(), buffer.get(), carried);
      buffer = std::move(larger);
      capacity *= 2;
    }
  }
  return parser.finish();
}

void write_csv(std::string& out, const table& t, const csv_options& options, bool header) {
  const char delimiter = options.delimiter;
  const char quote = options.quote;
  const std::size_t columns = t.num_columns();
  if (header && columns > 0) {
    for (std::size_t c = 0; c < columns; ++c) {
      if (c > 0) out.push_back(delimiter);
      append_text(out, t.column_names()[c], delimiter, quote);
    }
    out.push_back('\n');
  }
  // A lone empty field would be a blank line, which readers skip: write it as "" instead.
  const bool single_column = columns == 1;
  const std::string lone_empty = single_column ? std::string{quote, quote} : std::string();
  char number[32];
  const std::size_t rows = t.num_rows();
  const std::size_t start_size = out.size();
  for (std::size_t row = 0; row < rows; ++row) {
    if (row == 1024 && rows > 2048) {
      // Growing a large string by doubling copies it over and over: size it from the first rows.
      const double bytes_per_row = static_cast<double>(out.size() - start_size) / 1024.0;
      out.reserve(out.size() + static_cast<std::size_t>(bytes_per_row * static_cast<double>(rows - row) * 1.1));
    }
    for (std::size_t c = 0; c < columns; ++c) {
      if (c > 0) out.push_back(delimiter);
      const column& col = t.column_at(c);
      if (col.is_null(row)) {
        out.append(lone_empty);
        continue;
      }
      switch (col.type()) {
        case column_type::int64: {
          const auto [ptr, ec] = std::to_chars(number, number + sizeof number, col.int64_data()[row]);
          out.append(number, ptr);
          break;
        }
        case column_type::float64:
          append_float64(out, col.float64_data()[row]);
          break;
        case column_type::boolean:
          out.append(col.bool_data()[row] != 0 ? "true" : "false");
          break;
        case column_type::timestamp:
          out.append(format_timestamp(timestamp{col.int64_data()[row]}));
          break;
        case column_type::string: {
          const std::string_view s = col.string_at(row);
          if (s.empty())
            out.append(lone_empty);
          else
            append_text(out, s, delimiter, quote);
          break;
        }
      }
    }
    out.push_back('\n');
  }
}

}  // namespace dx::detail::df
