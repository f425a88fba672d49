// Checking a workflow definition and resolving its steps: shapes of fields, references between
// steps, cycles, functions and their parameters against the registry, resources against workers'
// capacities; then the topological order and each step's digest.
#include <dx/remote.hpp>
#include <dx/replicate.hpp>
#include <dx/workflow.hpp>

#include "cluster/registry.hpp"
#include "common/sha256.hpp"
#include "workflow/workflow_impl.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

namespace dx::detail {

namespace {

const std::set<std::string> step_fields{"name",      "function",  "command",   "parameters", "parameter_names", "after",
                                        "inputs",    "resources", "retries",   "timeout",    "priority",        "split",
                                        "aggregate", "cache",     "replicate", "deadline"};
const std::set<std::string> default_fields{"resources", "retries",   "timeout", "priority",
                                           "cache",     "replicate", "deadline"};
const std::set<std::string> top_fields{"name", "description", "priority", "tags", "metadata", "defaults", "steps"};
const std::set<std::string> split_placeholders{"start", "end", "item", "items_file"};

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

bool is_identifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// {name} placeholders of a command argument; "{{" and "}}" stand for braces.
std::vector<std::string> placeholders_of(std::string_view arg) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < arg.size(); ++i) {
    if (arg[i] != '{') continue;
    if (i + 1 < arg.size() && arg[i + 1] == '{') {
      ++i;
      continue;
    }
    const auto close = arg.find('}', i);
    if (close == std::string_view::npos) break;
    const auto name = arg.substr(i + 1, close - i - 1);
    if (is_identifier(name)) out.emplace_back(name);
    i = close;
  }
  return out;
}

std::string closest_names(const std::string& name, const std::vector<std::string>& names) {
  if (names.empty()) return " (no function is registered in this process)";
  std::vector<std::pair<std::size_t, std::string>> scored;
  for (const auto& n : names) scored.emplace_back(edit_distance(name, n), n);
  std::sort(scored.begin(), scored.end());
  std::string out = " (closest registered: ";
  for (std::size_t i = 0; i < std::min<std::size_t>(3, scored.size()); ++i) out += (i ? ", " : "") + scored[i].second;
  return out + ")";
}

struct checker {
  const workflow_impl& wf;
  bool with_registry;
  const std::vector<std::map<std::string, double>>& capacities;
  workflow_analysis result;
  std::unordered_map<std::string, std::size_t> index;  // step name -> first position
  std::vector<std::string> registered;
  const ordered_json* defaults = nullptr;

  void problem(std::string p) { result.problems.push_back(std::move(p)); }

  std::string label(std::size_t i) const {
    const auto& s = wf.steps[i];
    if (s.is_object()) {
      auto n = s.find("name");
      if (n != s.end() && n->is_string() && !n->get_ref<const std::string&>().empty()) {
        return "step " + in_quotes(n->get<std::string>());
      }
    }
    return "step #" + std::to_string(i + 1);
  }

  // The step's own field, else the workflow's default for it.
  const ordered_json* field(const ordered_json& s, const char* key) const {
    if (auto it = s.find(key); it != s.end()) return &*it;
    if (defaults && default_fields.count(key)) {
      if (auto it = defaults->find(key); it != defaults->end()) return &*it;
    }
    return nullptr;
  }

  std::optional<std::chrono::nanoseconds> duration(const std::string& who, const char* what, const ordered_json& v) {
    if (v.is_string()) {
      if (auto d = parse_workflow_duration(v.get<std::string>())) return d;
    }
    problem(who + ": " + what + " " + v.dump(-1, ' ', false, ordered_json::error_handler_t::replace) +
            " is not a duration (write a whole number and a unit: \"250ms\", \"30s\", \"5m\", \"1h\")");
    return std::nullopt;
  }

  // Checks the options fields (own or default) and fills `o`.
  void options(const std::string& who, const ordered_json& s, task_options& o) {
    o.priority = top_priority;
    if (const auto* p = field(s, "priority")) {
      if (p->is_number_integer() && p->get<std::int64_t>() >= std::numeric_limits<int>::min() &&
          p->get<std::int64_t>() <= std::numeric_limits<int>::max()) {
        o.priority = p->get<int>();
      } else {
        problem(who + ": priority must be an integer, got " + p->dump());
      }
    }
    if (const auto* r = field(s, "resources")) {
      if (!r->is_object()) {
        problem(who + ": resources must be an object of amounts ({\"cpu\": 1, \"mem_mb\": 512}), got " +
                std::string(r->type_name()));
      } else {
        for (auto it = r->begin(); it != r->end(); ++it) {
          if (!it->is_number() || !(it->get<double>() >= 0) || !std::isfinite(it->get<double>())) {
            problem(who + ": resource " + in_quotes(it.key()) + " must be a non-negative number, got " + it->dump());
          } else {
            o.resources.amounts[it.key()] = it->get<double>();
          }
        }
      }
    }
    if (const auto* t = field(s, "timeout")) {
      if (auto d = duration(who, "timeout", *t)) o.timeout = *d;
    }
    if (const auto* r = field(s, "retries")) {
      if (!r->is_object()) {
        problem(who + ": retries must be an object {\"max_attempts\", \"backoff\", \"factor\", \"max_backoff\"}");
      } else {
        retry_policy p;
        for (auto it = r->begin(); it != r->end(); ++it) {
          const auto& k = it.key();
          if (k == "max_attempts") {
            if (it->is_number_integer() && it->get<std::int64_t>() >= 1 && it->get<std::int64_t>() <= 1'000'000) {
              p.max_attempts = it->get<std::uint32_t>();
            } else {
              problem(who + ": retries.max_attempts must be an integer from 1 to 1000000, got " + it->dump());
            }
          } else if (k == "backoff") {
            if (auto d = duration(who, "retries.backoff", *it)) p.initial_backoff = *d;
          } else if (k == "max_backoff") {
            if (auto d = duration(who, "retries.max_backoff", *it)) p.max_backoff = *d;
          } else if (k == "factor") {
            if (it->is_number() && it->get<double>() >= 1 && std::isfinite(it->get<double>())) {
              p.factor = it->get<double>();
            } else {
              problem(who + ": retries.factor must be a number of at least 1, got " + it->dump());
            }
          } else {
            problem(who + ": retries has an unknown field " + in_quotes(k) +
                    " (it takes max_attempts, backoff, factor, max_backoff)");
          }
        }
        o.with_retries(p);
      }
    }
    if (const auto* r = field(s, "replicate")) {
      if (auto rep = read_replicate(who, *r)) o.with_replicate(*rep);
    }
    if (const auto* d = field(s, "deadline")) {
      if (auto dl = read_deadline(who, *d)) o.with_deadline(*dl);
    }
  }

  // A finite number of at least 0, else a problem naming `what`.
  std::optional<double> non_negative(const std::string& who, const std::string& what, const ordered_json& v) {
    if (v.is_number() && v.get<double>() >= 0 && std::isfinite(v.get<double>())) return v.get<double>();
    problem(who + ": " + what + " must be a finite number of at least 0, got " +
            v.dump(-1, ' ', false, ordered_json::error_handler_t::replace));
    return std::nullopt;
  }

  // An integer from `low` to `high`, else nothing (the caller names the range).
  static std::optional<std::uint32_t> integer_in(const ordered_json& v, std::int64_t low, std::int64_t high) {
    if (!v.is_number_integer()) return std::nullopt;
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(high)) return std::nullopt;
    const auto n = v.get<std::int64_t>();
    if (n < low || n > high) return std::nullopt;
    return static_cast<std::uint32_t>(n);
  }

  std::optional<comparison> read_comparison(const std::string& who, const ordered_json& v) {
    const auto shape = [&] {
      problem(who +
              ": replicate.compare must be \"exact\", {\"tolerance\": {\"rel\": x, \"abs\": y}} or "
              "{\"comparator\": \"name\"}, got " +
              v.dump(-1, ' ', false, ordered_json::error_handler_t::replace));
      return std::nullopt;
    };
    if (v.is_string()) {
      if (v.get_ref<const std::string&>() == "exact") return comparison::exact();
      return shape();
    }
    if (!v.is_object() || v.size() != 1) return shape();
    const auto it = v.begin();
    if (it.key() == "tolerance") {
      if (!it->is_object()) {
        problem(who + ": replicate.compare.tolerance must be an object {\"rel\": x, \"abs\": y}, got " +
                it->dump(-1, ' ', false, ordered_json::error_handler_t::replace));
        return std::nullopt;
      }
      comparison c = comparison::tolerance(0, 0);
      bool ok = true;
      for (auto t = it->begin(); t != it->end(); ++t) {
        if (t.key() == "rel" || t.key() == "abs") {
          if (auto x = non_negative(who, "replicate.compare.tolerance." + t.key(), *t)) {
            (t.key() == "rel" ? c.relative : c.absolute) = *x;
          } else {
            ok = false;
          }
        } else {
          problem(who + ": replicate.compare.tolerance has an unknown field " + in_quotes(t.key()) +
                  " (it takes rel, abs)");
          ok = false;
        }
      }
      return ok ? std::optional<comparison>(c) : std::nullopt;
    }
    if (it.key() == "comparator") {
      if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
        problem(who + ": replicate.compare.comparator must be the registered name of a comparator, got " +
                it->dump(-1, ' ', false, ordered_json::error_handler_t::replace));
        return std::nullopt;
      }
      const auto& name = it->get_ref<const std::string&>();
      if (with_registry && !find_comparator(name)) {
        problem(who + ": replicate.compare.comparator " + in_quotes(name) +
                " is not registered in this process (DX_COMPARATOR)");
        return std::nullopt;
      }
      return comparison::named(name);
    }
    return shape();
  }

  // "replicate": copies on distinct workers, a quorum of agreeing results. An omitted copies is
  // max(2, quorum), an omitted quorum min(2, copies), an omitted max_copies 0 (dx chooses).
  std::optional<replicate> read_replicate(const std::string& who, const ordered_json& v) {
    if (!v.is_object()) {
      problem(who +
              ": replicate must be an object {\"copies\", \"quorum\", \"max_copies\", \"compare\", "
              "\"distinct_hosts\", \"adaptive\"}, got " +
              std::string(v.type_name()));
      return std::nullopt;
    }
    replicate r;
    bool ok = true;
    const ordered_json *copies = nullptr, *quorum = nullptr, *max_copies = nullptr;
    for (auto it = v.begin(); it != v.end(); ++it) {
      const auto& k = it.key();
      if (k == "copies") {
        copies = &*it;
      } else if (k == "quorum") {
        quorum = &*it;
      } else if (k == "max_copies") {
        max_copies = &*it;
      } else if (k == "compare") {
        if (auto c = read_comparison(who, *it)) {
          r.compare = std::move(*c);
        } else {
          ok = false;
        }
      } else if (k == "distinct_hosts" || k == "adaptive") {
        if (it->is_boolean()) {
          (k == "adaptive" ? r.adaptive : r.distinct_hosts) = it->get<bool>();
        } else {
          problem(who + ": replicate." + k + " must be true or false, got " +
                  it->dump(-1, ' ', false, ordered_json::error_handler_t::replace));
          ok = false;
        }
      } else {
        problem(who + ": replicate has an unknown field " + in_quotes(k) +
                " (it takes copies, quorum, max_copies, compare, distinct_hosts, adaptive)");
        ok = false;
      }
    }
    const auto got = [](const ordered_json* j) {
      return j->dump(-1, ' ', false, ordered_json::error_handler_t::replace);
    };
    constexpr std::int64_t most_copies = 100, most_issued = 1000;
    bool copies_known = false;  // given and valid: the quorum and max_copies are checked against it
    if (copies) {
      if (auto n = integer_in(*copies, 1, most_copies)) {
        r.copies = *n;
        copies_known = true;
      } else {
        problem(who + ": replicate.copies must be an integer from 1 to " + std::to_string(most_copies) + ", got " +
                got(copies));
        ok = false;
      }
    }
    if (quorum) {
      // Against the copies given; with none given, copies follows the quorum (up to 100).
      const std::int64_t top = copies_known ? r.copies : most_copies;
      if (auto n = integer_in(*quorum, 1, top)) {
        r.quorum = *n;
        if (!copies) r.copies = std::max<std::uint32_t>(2, r.quorum);
      } else {
        problem(who + ": replicate.quorum must be an integer from 1 to " +
                (copies_known ? "copies (" + std::to_string(r.copies) + ")" : std::to_string(most_copies)) + ", got " +
                got(quorum));
        ok = false;
      }
    } else {
      r.quorum = std::min<std::uint32_t>(2, r.copies);
    }
    if (max_copies) {
      const bool against_copies = copies_known || !copies;
      if (auto n = integer_in(*max_copies, against_copies ? r.copies : 1, most_issued)) {
        r.max_copies = *n;
      } else {
        problem(who + ": replicate.max_copies must be an integer from " +
                (against_copies ? "copies (" + std::to_string(r.copies) + ")" : std::string("1")) + " to " +
                std::to_string(most_issued) + ", got " + got(max_copies));
        ok = false;
      }
    }
    return ok ? std::optional<replicate>(std::move(r)) : std::nullopt;
  }

  // "deadline": a speculative twin past soft_factor times the prediction, a reissue after hard.
  std::optional<deadline> read_deadline(const std::string& who, const ordered_json& v) {
    if (!v.is_object()) {
      problem(who + ": deadline must be an object {\"soft_factor\", \"hard\"}, got " + std::string(v.type_name()));
      return std::nullopt;
    }
    deadline d;
    bool ok = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      const auto& k = it.key();
      if (k == "soft_factor") {
        if (auto x = non_negative(who, "deadline.soft_factor", *it)) {
          d.soft_factor = *x;
        } else {
          ok = false;
        }
      } else if (k == "hard") {
        if (auto t = duration(who, "deadline.hard", *it)) {
          d.hard = *t;
        } else {
          ok = false;
        }
      } else {
        problem(who + ": deadline has an unknown field " + in_quotes(k) + " (it takes soft_factor, hard)");
        ok = false;
      }
    }
    return ok ? std::optional<deadline>(d) : std::nullopt;
  }

  std::optional<split> read_split(const std::string& who, const ordered_json& v) {
    if (!v.is_object()) {
      problem(who + ": split must be an object with one of \"range\", \"items\" or \"lines\"");
      return std::nullopt;
    }
    split out;
    int kinds = 0;
    bool ok = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      const auto& k = it.key();
      if (k == "range") {
        ++kinds;
        out.by = split::kind::range;
        const auto& r = *it;
        if (!r.is_array() || r.size() != 2 || !r[0].is_number_integer() || !r[1].is_number_integer() ||
            (r[0].is_number_unsigned() && r[0].get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) ||
            (r[1].is_number_unsigned() && r[1].get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))) {
          problem(who + ": split.range must be [start, end], two integers, got " + r.dump());
          ok = false;
        } else if (r[0].get<std::int64_t>() > r[1].get<std::int64_t>()) {
          problem(who + ": split.range [" + std::to_string(r[0].get<std::int64_t>()) + ", " +
                  std::to_string(r[1].get<std::int64_t>()) + "] ends before it starts");
          ok = false;
        } else {
          out.start = r[0].get<std::int64_t>();
          out.end = r[1].get<std::int64_t>();
        }
      } else if (k == "items") {
        ++kinds;
        out.by = split::kind::items;
        if (!it->is_array()) {
          problem(who + ": split.items must be an array, got " + std::string(it->type_name()));
          ok = false;
        } else {
          for (const auto& item : *it) {
            out.items.push_back(item.is_string() ? item.get<std::string>()
                                                 : item.dump(-1, ' ', false, ordered_json::error_handler_t::replace));
          }
        }
      } else if (k == "lines") {
        ++kinds;
        out.by = split::kind::lines;
        if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
          problem(who + ": split.lines must be the path of a file, got " + it->dump());
          ok = false;
        } else {
          out.path = it->get<std::string>();
        }
      } else if (k == "chunk") {
        if (it->is_string() && it->get_ref<const std::string&>() == "auto") {
          out.chunk = 0;
        } else if (it->is_number_integer() && it->get<std::int64_t>() >= 1) {
          out.chunk = it->get<std::int64_t>();
        } else {
          problem(who + ": split.chunk must be \"auto\" or a positive integer, got " + it->dump());
          ok = false;
        }
      } else {
        problem(who + ": split has an unknown field " + in_quotes(k) + " (it takes range, items or lines, and chunk)");
        ok = false;
      }
    }
    if (kinds != 1) {
      problem(who + ": split must have exactly one of \"range\", \"items\" or \"lines\"");
      ok = false;
    }
    return ok ? std::optional<split>(out) : std::nullopt;
  }

  std::optional<std::vector<std::string>> string_array(const std::string& who, const char* what, const ordered_json& v,
                                                       bool non_empty) {
    bool ok = v.is_array() && (!non_empty || !v.empty());
    if (ok) {
      for (const auto& e : v) ok = ok && e.is_string();
    }
    if (!ok) {
      problem(who + ": " + what + " must be " + (non_empty ? "a non-empty array" : "an array") + " of strings, got " +
              v.dump(-1, ' ', false, ordered_json::error_handler_t::replace));
      return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& e : v) out.push_back(e.get<std::string>());
    return out;
  }

  const remote_function* registered_function(const std::string& who, const std::string& name) {
    if (!with_registry) return nullptr;
    const remote_function* fn = find_remote(name);
    if (!fn) problem(who + ": unknown function " + in_quotes(name) + closest_names(name, registered));
    return fn;
  }

  // The parameters of a function step, by position, against what the function takes.
  void function_parameters(const std::string& who, const ordered_json& s, const remote_function& fn,
                           workflow_step& out) {
    if (!fn.from_json) {
      problem(who + ": function " + in_quotes(fn.name) +
              " takes a parameter that cannot be given in JSON (a type without from_json(const dx::json_view&, T&))");
      return;
    }
    const std::size_t n = fn.arity;
    auto& names = out.parameter_names;
    if (!names.empty() && names.size() != n) {
      problem(who + ": parameter_names lists " + std::to_string(names.size()) + " names, but " + in_quotes(fn.name) +
              " takes " + std::to_string(n) + " parameters");
      names.clear();
    }
    auto describe = [&](std::size_t i) {
      return "parameter " + std::to_string(i) + (i < names.size() ? " (" + in_quotes(names[i]) + ")" : std::string());
    };
    auto position = [&](const std::string& key) -> std::optional<std::size_t> {
      if (auto it = std::find(names.begin(), names.end(), key); it != names.end()) return it - names.begin();
      if (!key.empty() && key.size() < 8 &&
          std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        const std::size_t i = std::stoul(key);
        if (i < n) return i;
      }
      return std::nullopt;
    };
    auto unknown = [&](const std::string& where, const std::string& key) {
      problem(who + ": " + where + "extra parameter " + in_quotes(key) + ": " + in_quotes(fn.name) + " takes " +
              std::to_string(n) + " parameters" +
              (names.empty() ? std::string(", named by position \"0\" to \"" + std::to_string(n ? n - 1 : 0) + "\"")
                             : std::string()));
    };
    std::vector<const ordered_json*> given(n, nullptr);
    out.input_of.assign(n, {});
    const ordered_json* params = s.contains("parameters") ? &s.at("parameters") : nullptr;
    if (params && params->is_array()) {
      if (params->size() > n) {
        problem(who + ": " + std::to_string(params->size() - n) + " extra parameter(s): " + in_quotes(fn.name) +
                " takes " + std::to_string(n) + ", given " + std::to_string(params->size()));
      }
      for (std::size_t i = 0; i < std::min(n, params->size()); ++i) given[i] = &(*params)[i];
    } else if (params && params->is_object()) {
      for (auto it = params->begin(); it != params->end(); ++it) {
        if (auto p = position(it.key())) {
          given[*p] = &it.value();
        } else {
          unknown("", it.key());
        }
      }
    } else if (params && !params->is_null()) {
      problem(who + ": parameters must be an array (by position) or an object, got " +
              std::string(params->type_name()));
      return;
    }
    for (const auto& [key, producer] : out.inputs) {
      if (auto p = position(key)) {
        if (given[*p]) {
          problem(who + ": " + describe(*p) + " is given both in parameters and in inputs");
        } else {
          out.input_of[*p] = producer;
        }
      } else {
        unknown("inputs: ", key);
      }
    }
    std::optional<std::size_t> chunk_at;
    for (std::size_t i = 0; i < n; ++i) {
      if (fn.json_params[i].chunk) {
        chunk_at = i;
        break;
      }
    }
    if (out.split) {
      if (!chunk_at) {
        problem(who + ": is split, but function " + in_quotes(fn.name) +
                " has no dx::chunk parameter to receive a chunk");
      } else if (given[*chunk_at] || !out.input_of[*chunk_at].empty()) {
        problem(who + ": " + describe(*chunk_at) + " is the dx::chunk the split fills; do not give it");
      } else {
        out.chunk_parameter = chunk_at;
      }
    }
    out.arguments.assign(n, {});
    for (std::size_t i = 0; i < n; ++i) {
      if (out.chunk_parameter == i || !out.input_of[i].empty()) continue;
      if (!given[i]) {
        problem(who + ": missing " + describe(i) + " (" + in_quotes(fn.name) + " takes " + std::to_string(n) + ")");
        continue;
      }
      std::string bytes, why;
      bool ok = false;
      try {
        ok = fn.from_json(i, view_of(*given[i]), bytes, why);
      } catch (const std::exception& e) {
        why = std::string("does not convert: ") + e.what();
      }
      if (!ok) {
        problem(who + ": " + describe(i) + " " + why);
      } else {
        out.arguments[i] = given[i]->dump(-1, ' ', false, ordered_json::error_handler_t::replace);
      }
    }
  }

  int top_priority = 0;

  void top_level() {
    const auto& top = wf.top;
    for (auto it = top.begin(); it != top.end(); ++it) {
      if (!top_fields.count(it.key())) problem("the workflow has an unknown field " + in_quotes(it.key()));
    }
    auto name = top.find("name");
    if (name == top.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      problem("the workflow needs a \"name\" (a non-empty string)");
    }
    if (auto d = top.find("description"); d != top.end() && !d->is_string()) {
      problem("the workflow's description must be a string");
    }
    if (auto p = top.find("priority"); p != top.end()) {
      if (p->is_number_integer() && p->get<std::int64_t>() >= std::numeric_limits<int>::min() &&
          p->get<std::int64_t>() <= std::numeric_limits<int>::max()) {
        top_priority = p->get<int>();
      } else {
        problem("the workflow's priority must be an integer, got " + p->dump());
      }
    }
    if (auto t = top.find("tags"); t != top.end()) string_array("the workflow", "tags", *t, false);
    if (auto m = top.find("metadata"); m != top.end() && !m->is_object()) {
      problem("the workflow's metadata must be an object");
    }
    if (auto d = top.find("defaults"); d != top.end()) {
      if (!d->is_object()) {
        problem("the workflow's defaults must be an object");
      } else {
        defaults = &*d;
        for (auto it = d->begin(); it != d->end(); ++it) {
          if (!default_fields.count(it.key())) {
            problem("defaults: field " + in_quotes(it.key()) +
                    " cannot have a default (defaults take resources, retries, timeout, priority, cache, replicate, "
                    "deadline)");
          }
        }
      }
    }
    if (top.contains("steps")) problem("the workflow's steps must be an array");
    if (wf.steps.empty() && !top.contains("steps")) problem("the workflow has no steps");
  }

  void run() {
    if (with_registry) registered = remote_function_names();
    top_level();
    result.steps.resize(wf.steps.size());
    // Names first, so that references may point forward.
    for (std::size_t i = 0; i < wf.steps.size(); ++i) {
      const auto& s = wf.steps[i];
      if (!s.is_object()) {
        problem("step #" + std::to_string(i + 1) + " is not an object");
        continue;
      }
      auto n = s.find("name");
      if (n == s.end() || !n->is_string() || n->get_ref<const std::string&>().empty()) {
        problem("step #" + std::to_string(i + 1) + " needs a \"name\" (a non-empty string)");
        continue;
      }
      const auto& name = n->get_ref<const std::string&>();
      auto [it, inserted] = index.try_emplace(name, i);
      if (!inserted) {
        problem("duplicate step name " + in_quotes(name) + " (steps #" + std::to_string(it->second + 1) + " and #" +
                std::to_string(i + 1) + ")");
      }
      result.steps[i].name = name;
    }
    for (std::size_t i = 0; i < wf.steps.size(); ++i) {
      if (wf.steps[i].is_object()) step(i);
    }
    cycles();
    if (!capacities.empty()) resources_fit();
    if (result.problems.empty()) finish();
  }

  bool known_step(const std::string& who, const std::string& where, const std::string& name) {
    if (index.count(name)) return true;
    std::string hint;
    std::size_t best = std::numeric_limits<std::size_t>::max();
    for (const auto& [other, _] : index) {
      const auto d = edit_distance(name, other);
      if (d < best || (d == best && other < hint)) best = d, hint = other;
    }
    problem(who + ": " + where + " names unknown step " + in_quotes(name) +
            (best <= 2 ? " (did you mean " + in_quotes(hint) + "?)" : std::string()));
    return false;
  }

  void step(std::size_t i) {
    const auto& s = wf.steps[i];
    const std::string who = label(i);
    workflow_step& out = result.steps[i];
    for (auto it = s.begin(); it != s.end(); ++it) {
      if (!step_fields.count(it.key())) problem(who + ": unknown field " + in_quotes(it.key()));
    }
    const bool is_aggregate = s.contains("aggregate");
    const bool has_function = s.contains("function"), has_command = s.contains("command");
    if (is_aggregate) {
      for (const char* f : {"function", "command", "parameters", "parameter_names", "inputs", "split"}) {
        if (s.contains(f))
          problem(who + ": an aggregate step takes no " + in_quotes(f) + " (the aggregate says what runs)");
      }
    } else if (has_function && has_command) {
      problem(who + ": has both \"function\" and \"command\"; give exactly one");
    } else if (!has_function && !has_command) {
      problem(who + ": has neither \"function\" nor \"command\" (nor \"aggregate\"); give exactly one");
    }
    options(who, s, out.options);
    if (const auto* c = field(s, "cache")) {
      if (c->is_boolean()) {
        out.cache = c->get<bool>();
      } else {
        problem(who + ": cache must be true or false, got " + c->dump());
      }
    }
    if (auto a = s.find("after"); a != s.end()) {
      if (auto names = string_array(who, "after", *a, false)) {
        for (const auto& n : *names) {
          if (known_step(who, "after", n)) out.after.push_back(n);
        }
      }
    }
    if (auto in = s.find("inputs"); in != s.end()) {
      if (!in->is_object()) {
        problem(who + ": inputs must be an object (parameter -> step), got " + std::string(in->type_name()));
      } else {
        for (auto it = in->begin(); it != in->end(); ++it) {
          if (!it->is_string()) {
            problem(who + ": inputs." + it.key() + " must name a step, got " + it->dump());
          } else if (known_step(who, "inputs." + it.key(), it->get<std::string>())) {
            out.inputs[it.key()] = it->get<std::string>();
          }
        }
      }
    }
    if (auto sp = s.find("split"); sp != s.end() && !is_aggregate) out.split = read_split(who, *sp);
    if (auto pn = s.find("parameter_names"); pn != s.end()) {
      if (has_command) problem(who + ": parameter_names is for function steps (a command's parameters have names)");
      if (auto names = string_array(who, "parameter_names", *pn, false)) {
        std::set<std::string> seen;
        for (const auto& n : *names) {
          if (!seen.insert(n).second) problem(who + ": parameter_names lists " + in_quotes(n) + " twice");
        }
        out.parameter_names = *names;
      }
    }
    out.parameters = s.contains("parameters")
                         ? s.at("parameters").dump(-1, ' ', false, ordered_json::error_handler_t::replace)
                         : "null";
    if (has_function && !has_command && !is_aggregate) {
      const auto& f = s.at("function");
      if (!f.is_string() || f.get_ref<const std::string&>().empty()) {
        problem(who + ": function must be the registered name of a function, got " + f.dump());
      } else {
        out.function = f.get<std::string>();
        if (const remote_function* fn = registered_function(who, out.function)) function_parameters(who, s, *fn, out);
      }
    }
    if (has_command && !has_function && !is_aggregate) command(who, s, out);
    if (is_aggregate) aggregate_of(who, s.at("aggregate"), out);
    // depends_on: after, inputs, the aggregated step, once each.
    auto add = [&](const std::string& n) {
      if (std::find(out.depends_on.begin(), out.depends_on.end(), n) == out.depends_on.end())
        out.depends_on.push_back(n);
    };
    for (const auto& n : out.after) add(n);
    for (const auto& [_, n] : out.inputs) add(n);
    if (out.aggregate && index.count(out.aggregate->of)) add(out.aggregate->of);
  }

  void command(const std::string& who, const ordered_json& s, workflow_step& out) {
    auto argv = string_array(who, "command", s.at("command"), true);
    if (!argv) return;
    out.command = *argv;
    std::set<std::string> known;
    if (auto p = s.find("parameters"); p != s.end()) {
      if (!p->is_object()) {
        problem(who + ": a command's parameters must be an object ({\"name\": value}), got " +
                std::string(p->type_name()));
      } else {
        for (auto it = p->begin(); it != p->end(); ++it) {
          known.insert(it.key());
          if (!it->is_string() && !it->is_number() && !it->is_boolean()) {
            problem(who + ": parameter " + in_quotes(it.key()) +
                    " of a command must be a string, number or boolean, got " + std::string(it->type_name()));
          }
        }
      }
    }
    for (const auto& [k, _] : out.inputs) known.insert(k);
    for (const auto& arg : out.command) {
      for (const auto& ph : placeholders_of(arg)) {
        if (known.count(ph)) continue;
        if (split_placeholders.count(ph)) {
          if (!out.split) problem(who + ": placeholder {" + ph + "} is filled only in a split step");
          continue;
        }
        problem(who + ": placeholder {" + ph + "} in the command is not a parameter or input of the step");
      }
    }
  }

  void aggregate_of(const std::string& who, const ordered_json& a, workflow_step& out) {
    if (!a.is_object()) {
      problem(who +
              ": aggregate must be an object {\"of\": step, \"function\": name} or {\"of\": step, \"command\": [...]}");
      return;
    }
    aggregate agg;
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (it.key() != "of" && it.key() != "function" && it.key() != "command") {
        problem(who + ": aggregate has an unknown field " + in_quotes(it.key()) +
                " (it takes of, and function or command)");
      }
    }
    auto of = a.find("of");
    if (of == a.end() || !of->is_string()) {
      problem(who + ": aggregate needs \"of\", the name of the split step whose results it combines");
    } else {
      agg.of = of->get<std::string>();
      if (known_step(who, "aggregate.of", agg.of)) {
        const auto& target = wf.steps[index.at(agg.of)];
        if (!target.is_object() || !target.contains("split")) {
          problem(who + ": aggregates step " + in_quotes(agg.of) + ", which is not split");
        }
      }
    }
    const bool f = a.contains("function"), c = a.contains("command");
    if (f == c) {
      problem(who + ": aggregate needs exactly one of \"function\" (a registered reducer) or \"command\"");
    } else if (f) {
      const auto& fv = a.at("function");
      if (!fv.is_string()) {
        problem(who + ": aggregate.function must be a registered name, got " + fv.dump());
      } else {
        agg.function = fv.get<std::string>();
        if (const remote_function* fn = registered_function(who, agg.function); fn && fn->arity != 2) {
          problem(who + ": aggregate function " + in_quotes(agg.function) +
                  " must take two parameters (two results to "
                  "combine), it takes " +
                  std::to_string(fn->arity));
        }
      }
    } else if (auto argv = string_array(who, "aggregate.command", a.at("command"), true)) {
      agg.command = *argv;
    }
    out.aggregate = std::move(agg);
  }

  /// "cycle: 'a' -> 'b' -> 'a' (...)"; a long cycle shows its first and last steps and how many
  /// are between, so that a cycle through a large workflow does not make a message of megabytes.
  template <class It>
  std::string cycle_text(It from, It to, std::size_t back_to) const {
    const auto length = static_cast<std::size_t>(to - from);
    constexpr std::size_t shown_at_each_end = 5;
    std::string text = length > 2 * shown_at_each_end ? fmt::format("cycle of {} steps: ", length) : "cycle: ";
    std::size_t i = 0;
    for (auto it = from; it != to; ++it, ++i) {
      if (length > 2 * shown_at_each_end && i == shown_at_each_end) {
        text += fmt::format("... ({} more) -> ", length - 2 * shown_at_each_end);
        it += static_cast<std::ptrdiff_t>(length - 2 * shown_at_each_end - 1);
        i += length - 2 * shown_at_each_end - 1;
        continue;
      }
      text += in_quotes(result.steps[it->first].name) + " -> ";
    }
    return text + in_quotes(result.steps[back_to].name) + " (each runs after the one before it)";
  }

  void cycles() {
    // Depth-first over "runs before" edges (a dependency to its dependent), in file order.
    const std::size_t n = result.steps.size();
    std::vector<std::vector<std::size_t>> next(n);
    for (std::size_t i = 0; i < n; ++i) {
      for (const auto& d : result.steps[i].depends_on) {
        if (auto it = index.find(d); it != index.end()) {
          if (it->second == i) {
            problem(label(i) + ": depends on itself");
          } else {
            next[it->second].push_back(i);
          }
        }
      }
    }
    // An explicit stack (a step and how many of its edges were followed), not recursion: a chain of
    // a million steps must not exhaust the thread's stack.
    std::vector<int> color(n, 0);
    std::vector<std::pair<std::size_t, std::size_t>> path;
    for (std::size_t root = 0; root < n; ++root) {
      if (color[root] != 0) continue;
      color[root] = 1;
      path.emplace_back(root, 0);
      while (!path.empty()) {
        auto& [v, edge] = path.back();
        if (edge == next[v].size()) {
          color[v] = 2;
          path.pop_back();
          continue;
        }
        const std::size_t w = next[v][edge++];
        if (color[w] == 1) {
          const auto from = std::find_if(path.begin(), path.end(), [&](const auto& p) { return p.first == w; });
          problem(cycle_text(from, path.end(), w));
        } else if (color[w] == 0) {
          color[w] = 1;
          path.emplace_back(w, 0);  // `v` and `edge` are not used past this point: the vector may move
        }
      }
    }
  }

  void resources_fit() {
    for (std::size_t i = 0; i < result.steps.size(); ++i) {
      const auto& need = result.steps[i].options.resources.amounts;
      if (need.empty()) continue;
      const bool fits = std::any_of(capacities.begin(), capacities.end(), [&](const auto& cap) {
        return std::all_of(need.begin(), need.end(), [&](const auto& r) {
          auto it = cap.find(r.first);
          return r.second <= 0 || (it != cap.end() && it->second >= r.second);
        });
      });
      if (!fits) {
        std::string text;
        for (const auto& [k, v] : need) text += (text.empty() ? "" : ", ") + k + " " + nlohmann::json(v).dump();
        problem(label(i) + ": no worker can provide its resources (" + text + ")");
      }
    }
  }

  void finish() {
    const std::size_t n = result.steps.size();
    std::vector<std::size_t> waiting(n, 0);
    std::vector<std::vector<std::size_t>> next(n);
    for (std::size_t i = 0; i < n; ++i) {
      for (const auto& d : result.steps[i].depends_on) {
        next[index.at(d)].push_back(i);
        ++waiting[i];
      }
    }
    std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> ready;
    for (std::size_t i = 0; i < n; ++i) {
      if (waiting[i] == 0) ready.push(i);
    }
    while (!ready.empty()) {
      const std::size_t v = ready.top();
      ready.pop();
      result.order.push_back(v);
      for (std::size_t w : next[v]) {
        if (--waiting[w] == 0) ready.push(w);
      }
    }
    // Digests in topological order, so each sees its dependencies' digests.
    for (std::size_t v : result.order) {
      workflow_step& st = result.steps[v];
      const auto& s = wf.steps[v];
      nlohmann::json h = nlohmann::json::object();
      if (!st.function.empty()) h["function"] = st.function;
      if (!st.command.empty()) h["command"] = st.command;
      if (auto p = s.find("parameters"); p != s.end()) h["parameters"] = canonical_json(*p);
      if (!st.parameter_names.empty()) h["parameter_names"] = st.parameter_names;
      if (auto sp = s.find("split"); sp != s.end()) h["split"] = canonical_json(*sp);
      nlohmann::json inputs = nlohmann::json::object();
      for (const auto& [k, producer] : st.inputs) inputs[k] = result.steps[index.at(producer)].hash;
      if (!inputs.empty()) h["inputs"] = std::move(inputs);
      std::vector<std::string> after;
      for (const auto& a : st.after) after.push_back(result.steps[index.at(a)].hash);
      std::sort(after.begin(), after.end());
      if (!after.empty()) h["after"] = after;
      if (st.aggregate) {
        nlohmann::json a = nlohmann::json::object();
        a["of"] = result.steps[index.at(st.aggregate->of)].hash;
        if (!st.aggregate->function.empty()) a["function"] = st.aggregate->function;
        if (!st.aggregate->command.empty()) a["command"] = st.aggregate->command;
        h["aggregate"] = std::move(a);
      }
      st.hash = sha256_hex(h.dump());
    }
  }
};

}  // namespace

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

workflow_analysis analyse(const workflow_impl& wf, bool with_registry,
                          const std::vector<std::map<std::string, double>>& capacities) {
  checker c{wf, with_registry, capacities, {}, {}, {}, nullptr};
  c.run();
  return std::move(c.result);
}

}  // namespace dx::detail
