// The arguments of a workflow's function step as a runner sends them: each parameter's bytes
// (exactly what cl.submit(fn, args...) encodes), or where its value comes from.
#pragma once

#include <dx/chunk.hpp>
#include <dx/workflow.hpp>

#include <string>
#include <vector>

namespace dx::detail {

/// One argument of a function step: `bytes` of a parameter given in JSON, or the step whose
/// result it takes (`input`), or the split's chunk (`chunk`).
struct step_call_argument {
  std::string bytes;
  std::string input;
  bool chunk = false;
};

/// The arguments of the function step `s` (from workflow::steps()), by position. Throws
/// dx::workflow_error when its function is no longer registered or a parameter does not convert.
/// Thread-safe; does not block.
std::vector<step_call_argument> encode_step_arguments(const workflow_step& s);

/// The bytes of the chunk argument `c`. Thread-safe; does not block.
std::string encode_chunk(const chunk& c);

}  // namespace dx::detail
