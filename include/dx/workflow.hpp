// dx/workflow.hpp — workflows: named steps (registered functions or commands) and the edges
// between them, defined in C++ or in JSON (docs/workflow-format.md), checked before anything runs.
//
//   double load(std::string path);            DX_REMOTE(load);
//   double fit(double data, int iterations);   DX_REMOTE(fit);
//
//   dx::workflow wf{"train"};
//   auto l = wf.step("load", load, std::string("data.csv"));
//   auto f = wf.step("fit", fit, l, 100).with(dx::task_options{}.with_timeout(std::chrono::minutes(5)));
//   wf.command("report", {"python3", "report.py", "--out", "{dir}"}, {{"dir", "out"}}).after(f);
//   wf.validate();                               // dx::workflow_error listing every problem
//   std::string text = wf.to_json();             // dx::workflow::from_json(text) gives it back
//
// A step is a registered function with its parameters as JSON values (a step_ref argument takes
// that step's result), or a command (argv with {param} placeholders), or an aggregate of a split
// step's results. A split step runs once per chunk of an index range, a list of items or the
// lines of a file. Validation names the step and the problem: cycles, unknown steps and functions
// (with the closest registered names), parameters of the wrong type, missing or extra ones,
// durations, splits, resources no worker has.
#pragma once

#include <dx/chunk.hpp>
#include <dx/detail/json_view.hpp>
#include <dx/error.hpp>
#include <dx/export.hpp>
#include <dx/stop_token.hpp>
#include <dx/task_options.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace dx {

/// Where a workflow run is. to_string gives the upper-case name ("RUNNING").
enum class workflow_status : std::uint8_t {
  created,
  validated,
  submitted,
  splitting,
  running,
  succeeded,
  failed,
  cancelled,
  interrupted
};

/// Where one task of a workflow run is. to_string gives the upper-case name ("CACHED").
enum class task_status : std::uint8_t {
  pending,
  ready,
  running,
  retrying,
  succeeded,
  failed,
  cancelled,
  skipped,
  cached
};

/// "CREATED", "RUNNING", ... Thread-safe; does not block.
DX_API std::string_view to_string(workflow_status s) noexcept;
/// "PENDING", "CACHED", ... Thread-safe; does not block.
DX_API std::string_view to_string(task_status s) noexcept;
/// The status named by to_string's text, if it is one. Thread-safe; does not block.
DX_API std::optional<workflow_status> parse_workflow_status(std::string_view name) noexcept;
/// The status named by to_string's text, if it is one. Thread-safe; does not block.
DX_API std::optional<task_status> parse_task_status(std::string_view name) noexcept;

/// How a split step divides its work into chunks (see dx::chunk). A plain value: safe to read
/// from many threads; nothing blocks.
struct split {
  enum class kind : std::uint8_t { range, items, lines };
  kind by = kind::range;
  std::int64_t start = 0, end = 0;  ///< range: the half-open interval [start, end)
  /// items: a string item as it is, any other JSON item as its JSON text (what a chunk carries).
  std::vector<std::string> items;
  std::string path;        ///< lines: the file whose lines are the items
  std::int64_t chunk = 0;  ///< indices or items per chunk; 0: chosen by dx ("auto")

  /// [begin, end) in chunks of `chunk` indices (0: automatic). Does not block.
  static split range(std::int64_t begin, std::int64_t end, std::int64_t chunk = 0) {
    return {kind::range, begin, end, {}, {}, chunk};
  }
  /// These items, `chunk` per chunk (0: automatic). Does not block.
  static split over_items(std::vector<std::string> items, std::int64_t chunk = 0) {
    return {kind::items, 0, 0, std::move(items), {}, chunk};
  }
  /// The lines of the file at `path`, `chunk` per chunk (0: automatic). Does not block.
  static split lines(std::string path, std::int64_t chunk = 0) {
    return {kind::lines, 0, 0, {}, std::move(path), chunk};
  }
};

/// How an aggregate step combines the results of the split step `of`: a registered function of
/// two results (associative: dx applies it as a tree), or a command that reads them on stdin.
struct aggregate {
  std::string of;
  std::string function;
  std::vector<std::string> command;
};

/// One step as a runner sees it: its defaults applied, its references checked. A plain value:
/// safe to read from many threads; nothing blocks.
struct workflow_step {
  std::string name;
  std::string function;              ///< the registered name, for a function step
  std::vector<std::string> command;  ///< argv with {placeholders}, for a command step
  /// The `parameters` JSON text as written ("null" when none): an array by position or an
  /// object (see parameter_names).
  std::string parameters;
  /// For a function step, the names by which `parameters` and `inputs` may refer to its
  /// parameters (empty: by position "0", "1", ...).
  std::vector<std::string> parameter_names;
  /// Parameter (a name, or a position for a function step) -> the step whose result it takes.
  std::map<std::string, std::string> inputs;
  std::vector<std::string> after;       ///< steps that must succeed first, as written
  std::vector<std::string> depends_on;  ///< after, inputs and the aggregated step, once each
  task_options options;                 ///< priority, resources, timeout, retries, replication, deadlines
  std::optional<dx::split> split;
  std::optional<dx::aggregate> aggregate;
  bool cache = true;
  /// For a function step, where each parameter comes from: `arguments[i]` is the JSON text of
  /// parameter i, or empty when it is an input (input_of[i] names the step) or the chunk.
  std::vector<std::string> arguments;
  std::vector<std::string> input_of;
  std::optional<std::size_t> chunk_parameter;  ///< the dx::chunk parameter a split fills
  /// A digest of what the step computes: its function or command, parameters, split, aggregate,
  /// and the digests of the steps it depends on (not its name, options or place in the file).
  std::string hash;
};

class workflow;
namespace detail {
struct workflow_impl;
class run_engine;
}  // namespace detail

/// A step of a workflow under construction, to chain settings on. Refers to its workflow (valid
/// while that lives, moves included). Not thread-safe (build a workflow on one thread); does not
/// block.
class DX_API step_ref {
 public:
  /// The step's name. Does not block.
  const std::string& name() const noexcept { return name_; }
  /// This step runs after `others` have succeeded. Not thread-safe; does not block.
  template <class... S>
  step_ref& after(const S&... others) {
    (add_after(others), ...);
    return *this;
  }
  /// Takes priority, resources, timeout, the retry policy, replication and deadlines (a hard
  /// deadline in whole milliseconds, rounded up) from `o`; throws dx::workflow_error
  /// for what a workflow cannot express (a kind, a hint, exception filters). Not thread-safe;
  /// does not block.
  step_ref& with(const task_options& o);
  /// Whether a result computed before from the same definition may be reused (default true). Not
  /// thread-safe; does not block.
  step_ref& cache(bool enabled);

 private:
  friend class workflow;
  step_ref(detail::workflow_impl* wf, std::string name) : wf_(wf), name_(std::move(name)) {}
  void add_after(const step_ref& other);
  detail::workflow_impl* wf_;
  std::string name_;
};

namespace detail {

/// Appends `v` as JSON text; throws dx::workflow_error for a non-finite number or a string that is
/// not UTF-8. Thread-safe; does not block.
DX_API void append_json_string(std::string& out, std::string_view v);
DX_API void append_json_number(std::string& out, double v);

template <class T>
struct json_writer {
  static constexpr bool defined = false;
};
template <class T>
concept json_writable = json_writer<T>::defined;

template <class T>
void write_json(std::string& out, const T& v) {
  json_writer<T>::write(out, v);
}

template <class T>
requires(std::is_arithmetic_v<T>) struct json_writer<T> {
  static constexpr bool defined = true;
  static void write(std::string& out, T v) {
    if constexpr (std::is_same_v<T, bool>) {
      out += v ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
      out += std::to_string(v);
    } else {
      append_json_number(out, static_cast<double>(v));
    }
  }
};
template <>
struct json_writer<std::string> {
  static constexpr bool defined = true;
  static void write(std::string& out, const std::string& v) { append_json_string(out, v); }
};
template <class T, class A>
requires(json_writable<T>) struct json_writer<std::vector<T, A>> {
  static constexpr bool defined = true;
  static void write(std::string& out, const std::vector<T, A>& v) {
    out += '[';
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) out += ',';
      write_json<T>(out, v[i]);
    }
    out += ']';
  }
};
template <class M>
struct json_object_writer {
  static constexpr bool defined = true;
  static void write(std::string& out, const M& m) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : m) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, k);
      out += ':';
      write_json<typename M::mapped_type>(out, v);
    }
    out += '}';
  }
};
template <class T, class C, class A>
requires(json_writable<T>) struct json_writer<std::map<std::string, T, C, A>>
    : json_object_writer<std::map<std::string, T, C, A>> {
};
template <class T, class H, class E, class A>
requires(json_writable<T>) struct json_writer<std::unordered_map<std::string, T, H, E, A>>
    : json_object_writer<std::unordered_map<std::string, T, H, E, A>> {
};
template <class T>
requires(json_writable<T>) struct json_writer<std::optional<T>> {
  static constexpr bool defined = true;
  static void write(std::string& out, const std::optional<T>& v) {
    if (v) {
      write_json<T>(out, *v);
    } else {
      out += "null";
    }
  }
};
template <>
struct json_writer<chunk> {
  static constexpr bool defined = true;
  static void write(std::string& out, const chunk& c) {
    out += "{\"start\":" + std::to_string(c.start) + ",\"end\":" + std::to_string(c.end) + ",\"items\":";
    write_json(out, c.items);
    out += ",\"index\":" + std::to_string(c.index) + ",\"count\":" + std::to_string(c.count) + "}";
  }
};

/// One argument of a step built in C++: a JSON value, or the name of the step whose result it is.
struct step_argument {
  std::string json;
  std::string input;
};

template <class A>
constexpr bool is_step_ref_v = std::is_same_v<std::remove_cvref_t<A>, step_ref>;

template <class P, class A>
step_argument make_step_argument(A&& a) {
  if constexpr (is_step_ref_v<A>) {
    return {{}, a.name()};
  } else {
    static_assert(json_writable<P>,
                  "dx: a workflow step's parameter must be writable as JSON: an arithmetic type, bool, "
                  "std::string, dx::chunk, or a std::vector, std::optional or string-keyed map of these");
    step_argument out;
    const P converted(std::forward<A>(a));
    write_json<P>(out.json, converted);
    return out;
  }
}

template <class P, class A>
constexpr bool step_argument_ok() {
  return is_step_ref_v<A> || std::is_convertible_v<A, P>;
}

template <class F>
struct step_signature;
template <class R, class... P>
struct step_signature<R (*)(P...)> {
  using params = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct step_signature<R (*)(P...) noexcept> : step_signature<R (*)(P...)> {};
template <class R, class... P>
struct step_signature<R (*)(stop_token, P...)> {
  using params = std::tuple<std::decay_t<P>...>;
};
template <class R, class... P>
struct step_signature<R (*)(const stop_token&, P...)> : step_signature<R (*)(stop_token, P...)> {};

/// Where a split step's chunk goes among F's parameters (the first dx::chunk), or the count.
template <class Params>
struct chunk_position;
template <class... P>
struct chunk_position<std::tuple<P...>> {
  static constexpr std::size_t value = [] {
    constexpr bool is_chunk[] = {std::is_same_v<P, chunk>..., false};
    std::size_t i = 0;
    while (i < sizeof...(P) && !is_chunk[i]) ++i;
    return i;
  }();
};

}  // namespace detail

/// A workflow definition: its steps, their parameters, edges and options. Copyable and movable
/// (a moved-from workflow is empty). Reading a workflow from several threads is safe; changing it
/// is not (build it on one thread). Nothing here blocks.
class DX_API workflow {
 public:
  /// An empty workflow called `name`. Does not block.
  explicit workflow(std::string name);
  workflow(const workflow& other);
  workflow& operator=(const workflow& other);
  workflow(workflow&&) noexcept;
  workflow& operator=(workflow&&) noexcept;
  ~workflow();

  /// Reads a workflow from its JSON form (docs/workflow-format.md) and validates it. Throws
  /// dx::workflow_error listing every problem (text that is not JSON, fields of the wrong shape,
  /// and everything validate() checks). Thread-safe; does not block.
  static workflow from_json(std::string_view text);
  /// The same, checking only the shape of the JSON (not the registry of functions, nor the
  /// parameters against them): for tools that show or store a workflow they will not run.
  /// Thread-safe; does not block.
  static workflow from_json_unchecked(std::string_view text);
  /// The JSON form, which from_json reads back into an equal workflow. `indent` < 0: one line.
  /// Thread-safe; does not block.
  std::string to_json(int indent = 2) const;

  /// The workflow's name. Thread-safe; does not block.
  const std::string& name() const noexcept;
  /// Sets what the workflow is for. Not thread-safe; does not block.
  workflow& describe(std::string text);
  /// Sets the workflow's priority (its steps' default task priority). Not thread-safe.
  workflow& set_priority(int p);
  /// Adds a tag. Not thread-safe; does not block.
  workflow& tag(std::string t);

  /// Adds a step calling the registered function `fn` (DX_REMOTE) with `args`: values become
  /// its JSON parameters, a step_ref makes the parameter that step's result. Throws
  /// dx::workflow_error when `fn` is not registered or `name` is taken. Not thread-safe; does not
  /// block.
  template <class R, class... P, class... A>
  step_ref step(std::string name, R (*fn)(P...), A&&... args) {
    using params = typename detail::step_signature<R (*)(P...)>::params;
    return add_call<false>(std::move(name), fn, static_cast<params*>(nullptr), nullptr, std::forward<A>(args)...);
  }

  /// Adds a step calling `fn` once per chunk of `s`: its dx::chunk parameter receives the chunk,
  /// `args` are its other parameters in order. Throws as step() does. Not thread-safe.
  template <class R, class... P, class... A>
  step_ref map(std::string name, R (*fn)(P...), const split& s, A&&... args) {
    using params = typename detail::step_signature<R (*)(P...)>::params;
    return add_call<true>(std::move(name), fn, static_cast<params*>(nullptr), &s, std::forward<A>(args)...);
  }

  /// Adds a step combining the results of the split step `of` with the registered function
  /// `fn(a, b)`, applied as a tree (so it must be associative). Throws as step() does. Not
  /// thread-safe; does not block.
  template <class R, class A, class B>
  step_ref reduce(std::string name, R (*fn)(A, B), const step_ref& of) {
    return add_reduce(std::move(name), reinterpret_cast<void (*)()>(fn), of.name(), {});
  }
  /// Adds a step combining the results of the split step `of` with a command that reads them on
  /// its standard input. Not thread-safe; does not block.
  step_ref reduce(std::string name, std::vector<std::string> argv, const step_ref& of) {
    return add_reduce(std::move(name), nullptr, of.name(), std::move(argv));
  }

  /// Adds a step running a program: `argv` may hold {name} placeholders filled from
  /// `parameters` (and, in a split step, {start}, {end}, {item}, {items_file}). Not thread-safe.
  step_ref command(std::string name, std::vector<std::string> argv, std::map<std::string, std::string> parameters = {});
  /// The same, split: the command runs once per chunk of `s`. Not thread-safe.
  step_ref command(std::string name, std::vector<std::string> argv, const split& s,
                   std::map<std::string, std::string> parameters = {});

  /// Throws dx::workflow_error listing every problem (see problems()). Thread-safe; does not
  /// block.
  void validate(const std::vector<std::map<std::string, double>>& worker_capacities = {}) const;
  /// Every problem, each naming its step: cycles (with the steps on them, in order), unknown
  /// steps in after/inputs/aggregate, unknown functions (with the closest registered names),
  /// parameters of the wrong type, missing or extra parameters, duplicate names, bad durations,
  /// splits and aggregates, and (given workers' capacities) resources no worker has. Empty when
  /// the workflow is valid. Thread-safe; does not block.
  std::vector<std::string> problems(const std::vector<std::map<std::string, double>>& worker_capacities = {}) const;

  /// The steps in an order where each comes after those it depends on (ties in the order they
  /// were defined), with defaults applied and digests computed. Throws dx::workflow_error when the
  /// workflow is not valid. Thread-safe; does not block.
  std::vector<workflow_step> steps() const;
  /// The number of steps. Thread-safe; does not block.
  std::size_t size() const noexcept;

 private:
  template <bool Split, class R, class... P, class... Params, class... A>
  step_ref add_call(std::string name, R (*fn)(P...), std::tuple<Params...>*, const split* s, A&&... args) {
    constexpr std::size_t chunk_at = detail::chunk_position<std::tuple<Params...>>::value;
    std::vector<detail::step_argument> converted;
    if constexpr (Split) {
      converted = arguments_around_chunk<chunk_at, std::tuple<Params...>>(std::forward<A>(args)...);
    } else {
      static_assert(sizeof...(A) == sizeof...(Params), "dx: wf.step takes one argument per parameter of the function");
      static_assert((detail::step_argument_ok<Params, std::decay_t<A>>() && ...),
                    "dx: an argument of wf.step does not convert to its parameter (or is not a step_ref)");
      converted = {detail::make_step_argument<Params>(std::forward<A>(args))...};
    }
    return add_function_step(std::move(name), reinterpret_cast<void (*)()>(fn), std::move(converted), s,
                             chunk_at < sizeof...(Params) ? chunk_at : static_cast<std::size_t>(-1));
  }

  template <std::size_t ChunkAt, class Params, class... A>
  static std::vector<detail::step_argument> arguments_around_chunk(A&&... args) {
    if constexpr (ChunkAt >= std::tuple_size_v<Params>) {
      return {};  // reported by add_function_step: a split function needs a dx::chunk parameter
    } else {
      static_assert(sizeof...(A) + 1 == std::tuple_size_v<Params>,
                    "dx: wf.map takes one argument per parameter of the function but its dx::chunk");
      std::vector<detail::step_argument> out;
      std::tuple<A&&...> given(std::forward<A>(args)...);
      [&]<std::size_t... I>(std::index_sequence<I...>) {
        // Parameter K takes argument K, or K - 1 past the chunk.
        auto one = [&]<std::size_t K>(std::integral_constant<std::size_t, K>) {
          if constexpr (K == ChunkAt) {
            out.push_back({});
          } else {
            constexpr std::size_t from = K < ChunkAt ? K : K - 1;
            using P = std::tuple_element_t<K, Params>;
            using Arg = std::tuple_element_t<from, std::tuple<A...>>;
            static_assert(detail::step_argument_ok<P, std::decay_t<Arg>>(),
                          "dx: an argument of wf.map does not convert to its parameter (or is not a step_ref)");
            out.push_back(detail::make_step_argument<P>(std::forward<Arg>(std::get<from>(given))));
          }
        };
        (one(std::integral_constant<std::size_t, I>{}), ...);
      }
      (std::make_index_sequence<std::tuple_size_v<Params>>{});
      return out;
    }
  }

  // A resumed run parses its recorded definition and analyses it once, through steps().
  friend class detail::run_engine;
  static workflow parse(std::string_view text);
  step_ref add_function_step(std::string name, void (*fn)(), std::vector<detail::step_argument> args, const split* s,
                             std::size_t chunk_at);
  step_ref add_reduce(std::string name, void (*fn)(), const std::string& of, std::vector<std::string> argv);

  std::unique_ptr<detail::workflow_impl> impl_;
};

namespace detail {
/// "250ms", "30s", "5m", "1h" (a whole number and a unit) as a duration; nullopt for anything
/// else, negative or too large. Thread-safe; does not block.
DX_API std::optional<std::chrono::nanoseconds> parse_workflow_duration(std::string_view text) noexcept;
/// The inverse of parse_workflow_duration for a whole number of milliseconds (rounded up
/// otherwise) in the largest unit that writes it exactly. Thread-safe; does not block.
DX_API std::string format_workflow_duration(std::chrono::nanoseconds d);
}  // namespace detail

}  // namespace dx
