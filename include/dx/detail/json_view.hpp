// dx/detail/json_view.hpp — reading JSON values into C++ parameters without a JSON library in
// dx's headers: dx::json_view, a read-only view of one JSON value that dx's compiled code hands
// out, and the readers DX_REMOTE instantiates to turn a workflow step's JSON parameters into the
// bytes `cl.submit(fn, args...)` would send. Included by <dx/remote.hpp>; not for users to
// include themselves.
//
// A type of your own becomes a JSON parameter through a free function found by ADL:
//
//   struct point { double x, y; template <class A> void serialize(A& a, unsigned) { a & x & y; } };
//   void from_json(const dx::json_view& v, point& p) {
//     auto x = v.member("x"), y = v.member("y");
//     if (!x || !y || !x->is_number() || !y->is_number()) throw std::invalid_argument("want {x, y}");
//     p = {x->as_double(), y->as_double()};
//   }
//
// The view calls through a table of function pointers that dx fills in; the few functions the
// readers call are plugin entry points, so a plugin built against dx::plugin instantiates these
// templates too.
#pragma once

#ifndef DX_PLUGIN_API
#define DX_PLUGIN_API __attribute__((visibility("default")))
#endif

#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dx {

/// The type of a JSON value. `integer` is a number written without fraction or exponent that
/// fits 64 bits; `number` is any other number.
enum class json_type : std::uint8_t { null, boolean, integer, number, string, array, object };

/// "an integer", "a string", ... for messages. Thread-safe; does not block.
constexpr const char* json_type_phrase(json_type t) noexcept {
  switch (t) {
    case json_type::null:
      return "null";
    case json_type::boolean:
      return "a boolean";
    case json_type::integer:
      return "an integer";
    case json_type::number:
      return "a number";
    case json_type::string:
      return "a string";
    case json_type::array:
      return "an array";
    case json_type::object:
      return "an object";
  }
  return "a JSON value";
}

/// A read-only view of one JSON value owned by dx (it lives as long as the call it was given to).
/// Cheap to copy. Every method is thread-safe (nothing is modified) and none blocks.
class json_view {
 public:
  /// How dx reads the value behind `node`; filled in by dx's compiled code.
  struct ops {
    json_type (*type)(const void* node) noexcept;
    bool (*boolean)(const void* node) noexcept;
    bool (*int64)(const void* node, std::int64_t& out) noexcept;
    bool (*uint64)(const void* node, std::uint64_t& out) noexcept;
    double (*number)(const void* node) noexcept;
    std::string_view (*string)(const void* node) noexcept;
    std::size_t (*size)(const void* node) noexcept;
    const void* (*element)(const void* node, std::size_t i) noexcept;
    const void* (*member)(const void* node, std::string_view key) noexcept;
    // Not noexcept: an exception from `each` (a user's from_json) passes through.
    void (*members)(const void* node, void* context,
                    void (*each)(void* context, std::string_view key, const void* value));
    void (*dump)(const void* node, std::string& out) noexcept;
  };

  json_view(const void* node, const ops* o) noexcept : node_(node), ops_(o) {}

  json_type type() const noexcept { return ops_->type(node_); }
  bool is_null() const noexcept { return type() == json_type::null; }
  bool is_bool() const noexcept { return type() == json_type::boolean; }
  /// A number without fraction or exponent (that fits 64 bits).
  bool is_int() const noexcept { return type() == json_type::integer; }
  /// Any number, integers included.
  bool is_number() const noexcept { return type() == json_type::integer || type() == json_type::number; }
  bool is_string() const noexcept { return type() == json_type::string; }
  bool is_array() const noexcept { return type() == json_type::array; }
  bool is_object() const noexcept { return type() == json_type::object; }

  /// The boolean (false when it is not one).
  bool as_bool() const noexcept { return ops_->boolean(node_); }
  /// The integer, when it is one that fits std::int64_t.
  std::optional<std::int64_t> as_int() const noexcept {
    std::int64_t v = 0;
    return ops_->int64(node_, v) ? std::optional<std::int64_t>(v) : std::nullopt;
  }
  /// The integer, when it is a non-negative one that fits std::uint64_t.
  std::optional<std::uint64_t> as_uint() const noexcept {
    std::uint64_t v = 0;
    return ops_->uint64(node_, v) ? std::optional<std::uint64_t>(v) : std::nullopt;
  }
  /// The number as a double (0 when it is not a number).
  double as_double() const noexcept { return ops_->number(node_); }
  /// The string, valid while the view is (empty when it is not a string).
  std::string_view as_string() const noexcept { return ops_->string(node_); }
  /// The number of elements of an array or members of an object (0 otherwise).
  std::size_t size() const noexcept { return ops_->size(node_); }
  /// Element `i` of an array; `i` must be below size().
  json_view operator[](std::size_t i) const noexcept { return {ops_->element(node_, i), ops_}; }
  /// The member `key` of an object, if there is one.
  std::optional<json_view> member(std::string_view key) const noexcept {
    const void* m = ops_->member(node_, key);
    return m ? std::optional<json_view>(json_view{m, ops_}) : std::nullopt;
  }
  /// Calls f(std::string_view key, json_view value) for each member of an object, in key order.
  /// An exception from `f` ends the walk and propagates.
  template <class F>
  void for_each_member(F&& f) const {
    struct context {
      F* f;
      const ops* o;
    } c{&f, ops_};
    ops_->members(node_, &c, [](void* p, std::string_view key, const void* value) {
      auto* ctx = static_cast<context*>(p);
      (*ctx->f)(key, json_view{value, ctx->o});
    });
  }
  /// The value as compact JSON text.
  std::string dump() const {
    std::string out;
    ops_->dump(node_, out);
    return out;
  }

 private:
  const void* node_;
  const ops* ops_;
};

namespace detail {

/// How a C++ parameter type reads from JSON: `defined` says whether it can, `type` what JSON it
/// wants, `read` converts or explains why not (a phrase such as "must be an integer, got a
/// string", prefixed with "element 3 " or "member 'x' " for what is inside). Specialised below
/// and by dx::chunk; any other type with an ADL `from_json(const dx::json_view&, T&)` reads
/// through it.
template <class T, class = void>
struct json_reader {
  static constexpr bool defined = false;
};

template <class T>
concept json_readable_by_adl = std::is_default_constructible_v<T> && requires(const json_view& v, T& t) {
  from_json(v, t);
};

template <class T>
concept json_readable = json_reader<T>::defined || json_readable_by_adl<T>;

// The messages are built out of line (in the registry, which plugins find in dx-worker), so that
// each registered function instantiates little string code.

/// Sets `why` to "must be <want>, got <v's type>"; returns false.
DX_PLUGIN_API bool json_wrong_type(const json_view& v, const char* want, std::string& why);
/// Sets `why` to "must be an integer from <min> to <max>, got <v>"; returns false.
DX_PLUGIN_API bool json_out_of_range(const json_view& v, std::int64_t min, std::uint64_t max, std::string& why);
/// Prefixes `why` with "element <i> ".
DX_PLUGIN_API void json_in_element(std::size_t i, std::string& why);
/// Prefixes `why` with "member '<key>' ".
DX_PLUGIN_API void json_in_member(std::string_view key, std::string& why);
/// Sets `why` to "does not convert: <what>" (`what` null: the exception is unknown); returns false.
DX_PLUGIN_API bool json_not_converted(const char* what, std::string& why);

template <class T>
bool read_json(const json_view& v, T& out, std::string& why);

template <>
struct json_reader<bool> {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::boolean;
  static bool read(const json_view& v, bool& out, std::string& why) {
    if (!v.is_bool()) return json_wrong_type(v, "a boolean", why);
    out = v.as_bool();
    return true;
  }
};

template <class T>
struct json_reader<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::integer;
  static bool read(const json_view& v, T& out, std::string& why) {
    if (!v.is_int()) return json_wrong_type(v, "an integer", why);
    using lim = std::numeric_limits<T>;
    if (auto i = v.as_int()) {
      if (std::is_signed_v<T> ? (*i >= static_cast<std::int64_t>(lim::min()) &&
                                 (sizeof(T) >= 8 || *i <= static_cast<std::int64_t>(lim::max())))
                              : (*i >= 0 && static_cast<std::uint64_t>(*i) <= static_cast<std::uint64_t>(lim::max()))) {
        out = static_cast<T>(*i);
        return true;
      }
    } else if (auto u = v.as_uint(); u && !std::is_signed_v<T> && *u <= static_cast<std::uint64_t>(lim::max())) {
      out = static_cast<T>(*u);
      return true;
    }
    return json_out_of_range(v, static_cast<std::int64_t>(lim::min()), static_cast<std::uint64_t>(lim::max()), why);
  }
};

template <class T>
struct json_reader<T, std::enable_if_t<std::is_floating_point_v<T>>> {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::number;
  static bool read(const json_view& v, T& out, std::string& why) {
    if (!v.is_number()) return json_wrong_type(v, "a number", why);
    out = static_cast<T>(v.as_double());
    return true;
  }
};

template <>
struct json_reader<std::string> {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::string;
  static bool read(const json_view& v, std::string& out, std::string& why) {
    if (!v.is_string()) return json_wrong_type(v, "a string", why);
    out = std::string(v.as_string());
    return true;
  }
};

template <class T, class A>
struct json_reader<std::vector<T, A>, std::enable_if_t<json_readable<T>>> {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::array;
  static bool read(const json_view& v, std::vector<T, A>& out, std::string& why) {
    if (!v.is_array()) return json_wrong_type(v, "an array", why);
    out.clear();
    const std::size_t n = v.size();
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      T item{};
      if (!read_json(v[i], item, why)) {
        json_in_element(i, why);
        return false;
      }
      out.push_back(std::move(item));
    }
    return true;
  }
};

/// std::map and std::unordered_map with string keys.
template <class M>
struct json_object_reader {
  static constexpr bool defined = true;
  static constexpr json_type type = json_type::object;
  static bool read(const json_view& v, M& out, std::string& why) {
    if (!v.is_object()) return json_wrong_type(v, "an object", why);
    out.clear();
    bool ok = true;
    v.for_each_member([&](std::string_view key, const json_view& value) {
      if (!ok) return;
      typename M::mapped_type item{};
      if (!read_json(value, item, why)) {
        json_in_member(key, why);
        ok = false;
        return;
      }
      out.emplace(std::string(key), std::move(item));
    });
    return ok;
  }
};
template <class T, class C, class A>
struct json_reader<std::map<std::string, T, C, A>, std::enable_if_t<json_readable<T>>>
    : json_object_reader<std::map<std::string, T, C, A>> {};
template <class T, class H, class E, class A>
struct json_reader<std::unordered_map<std::string, T, H, E, A>, std::enable_if_t<json_readable<T>>>
    : json_object_reader<std::unordered_map<std::string, T, H, E, A>> {};

template <class T>
struct json_reader<std::optional<T>, std::enable_if_t<json_readable<T>>> {
  static constexpr bool defined = true;
  static constexpr bool nullable = true;
  static bool read(const json_view& v, std::optional<T>& out, std::string& why) {
    if (v.is_null()) {
      out.reset();
      return true;
    }
    T item{};
    if (!read_json(v, item, why)) return false;
    out = std::move(item);
    return true;
  }
};

template <class T>
bool read_json(const json_view& v, T& out, std::string& why) {
  if constexpr (json_reader<T>::defined) {
    return json_reader<T>::read(v, out, why);
  } else {
    // A user's from_json reports a bad value by throwing; the message becomes the reason.
    try {
      from_json(v, out);
      return true;
    } catch (const std::exception& e) {
      return json_not_converted(e.what(), why);
    } catch (...) {
      return json_not_converted(nullptr, why);
    }
  }
}

/// What validation knows of one parameter without converting: the JSON it wants (`any` for a
/// type read by its own from_json), whether null is accepted, and whether it is the dx::chunk a
/// split step's function receives.
struct json_param {
  json_type type = json_type::null;
  bool any = false;
  bool nullable = false;
  bool chunk = false;
};

template <class T>
struct json_param_traits {
  static constexpr json_param value() noexcept {
    if constexpr (json_reader<T>::defined) {
      return {json_reader<T>::type, false, false, false};
    } else {
      return {json_type::null, true, false, false};
    }
  }
};
template <class T>
struct json_param_traits<std::optional<T>> {
  static constexpr json_param value() noexcept {
    json_param p = json_param_traits<T>::value();
    p.nullable = true;
    return p;
  }
};

/// Converts the JSON value of parameter `index` and appends its encoding (write_value) to `out`;
/// on failure leaves the reason in `why` and returns false. Thread-safe; does not block.
using json_argument_converter = bool (*)(std::size_t index, const json_view& value, std::string& out, std::string& why);

}  // namespace detail
}  // namespace dx
