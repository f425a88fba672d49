// The process-wide table of registered functions (DX_REMOTE) and result comparators
// (DX_COMPARATOR), filled during static initialisation, read afterwards.
#include <dx/remote.hpp>
#include <dx/table.hpp>

#include "cluster/builtins.hpp"
#include "cluster/registry.hpp"

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace dx::detail {

namespace {
struct registry {
  std::mutex mutex;
  std::unordered_map<std::string, remote_function> by_name;
  std::unordered_map<void (*)(), const remote_function*> by_address;
  std::unordered_map<std::string, result_comparator> comparators;  // DX_COMPARATOR
};
// A function-local static: registrations run during other translation units' static
// initialisation, in an order the linker chooses.
registry& the_registry() {
  static registry r;
  return r;
}

// The built-in functions register on the first lookup rather than from a static initialiser of
// their own file, which a static link would drop as unreferenced (and dx-worker with it).
void register_builtins_once() noexcept { [[maybe_unused]] static const bool done = register_builtin_functions(); }
}  // namespace

bool register_remote(const char* name, remote_invoker invoke, void (*address)(), std::size_t arity) noexcept {
  try {
    registry& r = the_registry();
    std::lock_guard lock(r.mutex);
    auto [it, inserted] = r.by_name.try_emplace(name, remote_function{name, invoke, address, arity});
    if (!inserted && it->second.address != address) {
      std::fprintf(stderr, "dx: DX_REMOTE name '%s' is taken by another function; this registration is ignored\n",
                   name);
      return false;
    }
    r.by_address.try_emplace(address, &it->second);
    return true;
  } catch (...) {
    return false;
  }
}

bool register_remote_json(const char* name, void (*address)(), json_argument_converter convert,
                          const json_param* params) noexcept {
  try {
    registry& r = the_registry();
    std::lock_guard lock(r.mutex);
    auto it = r.by_name.find(name);
    if (it == r.by_name.end() || it->second.address != address) return false;
    it->second.from_json = convert;
    it->second.json_params = params;
    return true;
  } catch (...) {
    return false;
  }
}

namespace {

/// Sets one further field of the registration of `address` under `name`.
template <class Field>
bool set_registered(const char* name, void (*address)(), Field remote_function::*field, Field value) noexcept {
  try {
    registry& r = the_registry();
    std::lock_guard lock(r.mutex);
    auto it = r.by_name.find(name);
    if (it == r.by_name.end() || it->second.address != address) return false;
    it->second.*field = value;
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace

bool register_remote_tolerance(const char* name, void (*address)(), result_tolerance compare) noexcept {
  return set_registered(name, address, &remote_function::tolerance, compare);
}

bool register_remote_preview(const char* name, void (*address)(), result_preview preview) noexcept {
  return set_registered(name, address, &remote_function::preview, preview);
}

bool register_comparator(const char* name, result_comparator compare) noexcept {
  try {
    registry& r = the_registry();
    std::lock_guard lock(r.mutex);
    auto [it, inserted] = r.comparators.try_emplace(name, compare);
    if (!inserted && it->second != compare) {
      std::fprintf(stderr, "dx: DX_COMPARATOR name '%s' is taken by another comparator; this registration is ignored\n",
                   name);
      return false;
    }
    return true;
  } catch (...) {
    return false;
  }
}

result_comparator find_comparator(std::string_view name) noexcept {
  try {
    registry& r = the_registry();
    std::lock_guard lock(r.mutex);
    auto it = r.comparators.find(std::string(name));
    return it == r.comparators.end() ? nullptr : it->second;
  } catch (...) {
    return nullptr;
  }
}

std::vector<std::string> remote_function_names() {
  register_builtins_once();
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> names;
  names.reserve(r.by_name.size());
  for (const auto& [name, fn] : r.by_name) {
    // cluster::map's chunk runners are registered beside their functions; nobody names them.
    if (name.ends_with("/map") && fn.arity == 1 && r.by_name.count(name.substr(0, name.size() - 4)) != 0) continue;
    names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

const remote_function* find_remote(std::string_view name) noexcept {
  register_builtins_once();
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_name.find(std::string(name));
  return it == r.by_name.end() ? nullptr : &it->second;
}

const remote_function* find_remote_by_address(void (*address)()) noexcept {
  register_builtins_once();
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  auto it = r.by_address.find(address);
  return it == r.by_address.end() ? nullptr : it->second;
}

void throw_undecodable_argument(std::size_t index, const char* what) {
  throw_error(error_kind::protocol, "argument " + std::to_string(index) + " does not decode: " + what);
}

void check_argument_count(std::size_t given, std::size_t expected) {
  if (given != expected) throw_undecodable_argument(given, "wrong number of arguments");
}

bool json_wrong_type(const json_view& v, const char* want, std::string& why) {
  why = std::string("must be ") + want + ", got " + json_type_phrase(v.type());
  return false;
}

bool json_out_of_range(const json_view& v, std::int64_t min, std::uint64_t max, std::string& why) {
  why = "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", got " + v.dump();
  return false;
}

void json_in_element(std::size_t i, std::string& why) { why = "element " + std::to_string(i) + " " + why; }

void json_in_member(std::string_view key, std::string& why) { why = "member '" + std::string(key) + "' " + why; }

bool json_not_converted(const char* what, std::string& why) {
  why = what ? std::string("does not convert: ") + what : std::string("does not convert");
  return false;
}

#define DX_DETAIL_DEFINE_BUILTIN_JSON_CONVERTER(...)                                                          \
  bool builtin_json_converter<__VA_ARGS__>::convert(const json_view& v, std::string& out, std::string& why) { \
    return convert_json_parameter<__VA_ARGS__>(v, out, why);                                                  \
  }
DX_DETAIL_SCALAR_CODECS(DX_DETAIL_DEFINE_BUILTIN_JSON_CONVERTER)
DX_DETAIL_CONTAINER_CODECS(DX_DETAIL_DEFINE_BUILTIN_JSON_CONVERTER)
#undef DX_DETAIL_DEFINE_BUILTIN_JSON_CONVERTER

std::exception_ptr undecodable_result(const char* what) {
  return make_error(error_kind::protocol, std::string("a remote result does not decode: ") + what);
}

}  // namespace dx::detail

namespace dx::detail {

// A plugin loaded by dx-worker calls the common types' encoders (src/wire/values.cpp,
// src/dataframe/table_codec.cpp) in the executable, which links the registry for it: these
// references link the encoders along with it.
[[gnu::used]] static void (*const keep_builtin_codecs)(std::string&, const int&) = &builtin_codec<int>::write;
[[gnu::used]] static void (*const keep_table_codecs)(std::string&, const table&) = &builtin_codec<table>::write;
[[gnu::used]] static void (*const keep_chunk_codecs)(std::string&, const chunk&) = &builtin_codec<chunk>::write;
// The chunk runners DX_REMOTE registers for cluster::map (dx/detail/map_chunk.hpp) call these.
[[gnu::used]] static std::size_t (*const keep_map_chunk_framing)(std::span<const char>,
                                                                 map_chunk_header&) = &read_map_chunk_header;

}  // namespace dx::detail
