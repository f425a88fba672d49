// Encoding a function step's JSON parameters into the bytes its registered function decodes.
#include "workflow/arguments.hpp"

#include "workflow/workflow_impl.hpp"

#include <dx/remote.hpp>

namespace dx::detail {

std::vector<step_call_argument> encode_step_arguments(const workflow_step& s) {
  const remote_function* fn = find_remote(s.function);
  if (!fn) throw_error(error_kind::workflow, "step '" + s.name + "': unknown function '" + s.function + "'");
  if (!fn->from_json || fn->arity != s.arguments.size()) {
    throw_error(error_kind::workflow, "step '" + s.name + "': function '" + s.function +
                                          "' does not take the parameters the workflow was validated with");
  }
  std::vector<step_call_argument> out(fn->arity);
  for (std::size_t i = 0; i < fn->arity; ++i) {
    if (s.chunk_parameter == i) {
      out[i].chunk = true;
    } else if (i < s.input_of.size() && !s.input_of[i].empty()) {
      out[i].input = s.input_of[i];
    } else {
      ordered_json value;
      std::string error, why;
      if (!parse_json(s.arguments[i], value, error))
        throw_error(error_kind::workflow, "step '" + s.name + "': " + error);
      if (!fn->from_json(i, view_of(value), out[i].bytes, why)) {
        throw_error(error_kind::workflow, "step '" + s.name + "': parameter " + std::to_string(i) + " " + why);
      }
    }
  }
  return out;
}

std::string encode_chunk(const chunk& c) {
  std::string out;
  write_value(out, c);
  return out;
}

}  // namespace dx::detail
