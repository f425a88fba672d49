// dx::json_view over nlohmann::json: the table of readers the header-only templates call, and
// the checked parsing and writing of JSON text that workflows use.
#include <dx/detail/json_view.hpp>

#include "workflow/workflow_impl.hpp"

#include <dx/error.hpp>

#include <cmath>
#include <cstdint>
#include <string>

namespace dx::detail {

namespace {

const ordered_json& node(const void* p) noexcept { return *static_cast<const ordered_json*>(p); }

json_type type_of(const void* p) noexcept {
  const ordered_json& j = node(p);
  switch (j.type()) {
    case ordered_json::value_t::null:
    case ordered_json::value_t::discarded:
    case ordered_json::value_t::binary:
      return json_type::null;
    case ordered_json::value_t::boolean:
      return json_type::boolean;
    case ordered_json::value_t::number_integer:
    case ordered_json::value_t::number_unsigned:
      return json_type::integer;
    case ordered_json::value_t::number_float:
      return json_type::number;
    case ordered_json::value_t::string:
      return json_type::string;
    case ordered_json::value_t::array:
      return json_type::array;
    case ordered_json::value_t::object:
      return json_type::object;
  }
  return json_type::null;
}

bool boolean_of(const void* p) noexcept { return node(p).is_boolean() && node(p).get<bool>(); }

bool int64_of(const void* p, std::int64_t& out) noexcept {
  const ordered_json& j = node(p);
  if (j.is_number_unsigned()) {
    const auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out = static_cast<std::int64_t>(u);
    return true;
  }
  if (!j.is_number_integer()) return false;
  out = j.get<std::int64_t>();
  return true;
}

bool uint64_of(const void* p, std::uint64_t& out) noexcept {
  const ordered_json& j = node(p);
  if (j.is_number_unsigned()) {
    out = j.get<std::uint64_t>();
    return true;
  }
  if (!j.is_number_integer() || j.get<std::int64_t>() < 0) return false;
  out = static_cast<std::uint64_t>(j.get<std::int64_t>());
  return true;
}

double number_of(const void* p) noexcept { return node(p).is_number() ? node(p).get<double>() : 0.0; }

std::string_view string_of(const void* p) noexcept {
  return node(p).is_string() ? std::string_view(node(p).get_ref<const std::string&>()) : std::string_view();
}

std::size_t size_of(const void* p) noexcept {
  const ordered_json& j = node(p);
  return j.is_array() || j.is_object() ? j.size() : 0;
}

const void* element_of(const void* p, std::size_t i) noexcept { return &node(p)[i]; }

const void* member_of(const void* p, std::string_view key) noexcept {
  const ordered_json& j = node(p);
  if (!j.is_object()) return nullptr;
  auto it = j.find(std::string(key));
  return it == j.end() ? nullptr : &*it;
}

void members_of(const void* p, void* context, void (*each)(void*, std::string_view, const void*)) {
  const ordered_json& j = node(p);
  if (!j.is_object()) return;
  for (auto it = j.begin(); it != j.end(); ++it) each(context, it.key(), &it.value());
}

void dump_of(const void* p, std::string& out) noexcept {
  try {
    out = node(p).dump(-1, ' ', false, ordered_json::error_handler_t::replace);
  } catch (...) {
    out = "?";
  }
}

constexpr json_view::ops nlohmann_ops{&type_of, &boolean_of, &int64_of,  &uint64_of,  &number_of, &string_of,
                                      &size_of, &element_of, &member_of, &members_of, &dump_of};

// Nesting depth of JSON text, counted outside strings, so that hostile input is refused before
// a recursive walk (destruction, dump, comparison) could exhaust the stack.
std::size_t nesting_depth(std::string_view text) noexcept {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

json_view view_of(const ordered_json& v) noexcept { return json_view{&v, &nlohmann_ops}; }

bool parse_json(std::string_view text, ordered_json& out, std::string& error) {
  if (nesting_depth(text) > max_json_depth) {
    error = "the JSON nests deeper than " + std::to_string(max_json_depth) + " levels";
    return false;
  }
  try {
    out = ordered_json::parse(text.begin(), text.end());
    return true;
  } catch (const ordered_json::exception& e) {
    // nlohmann's messages start with "[json.exception.parse_error.101] "; the rest says where.
    std::string what = e.what();
    if (auto close = what.find("] "); what.starts_with("[json.exception") && close != std::string::npos) {
      what = what.substr(close + 2);
    }
    error = "not valid JSON: " + what;
    return false;
  }
}

nlohmann::json canonical_json(const ordered_json& v) {
  switch (v.type()) {
    case ordered_json::value_t::object: {
      nlohmann::json o = nlohmann::json::object();
      for (auto it = v.begin(); it != v.end(); ++it) o[it.key()] = canonical_json(it.value());
      return o;
    }
    case ordered_json::value_t::array: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& e : v) a.push_back(canonical_json(e));
      return a;
    }
    case ordered_json::value_t::boolean:
      return v.get<bool>();
    case ordered_json::value_t::number_integer:
      return v.get<std::int64_t>();
    case ordered_json::value_t::number_unsigned:
      return v.get<std::uint64_t>();
    case ordered_json::value_t::number_float:
      return v.get<double>();
    case ordered_json::value_t::string:
      return v.get<std::string>();
    default:
      return nullptr;
  }
}

void append_json_string(std::string& out, std::string_view v) {
  try {
    out += nlohmann::json(std::string(v)).dump();
  } catch (const nlohmann::json::exception&) {
    throw_error(error_kind::workflow, "a string parameter is not valid UTF-8");
  }
}

void append_json_number(std::string& out, double v) {
  if (!std::isfinite(v))
    throw_error(error_kind::workflow, "a number parameter is not finite (JSON has no NaN or infinity)");
  out += nlohmann::json(v).dump();
}

}  // namespace dx::detail
