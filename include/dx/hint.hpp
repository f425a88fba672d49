// dx/hint.hpp — dx::hint, a task's size as the caller knows it, on its own so that
// dx/task_options.hpp can name it without pulling in the cost model.
//
//   cl.submit(dx::hint{.size = rows}, parse, chunk);   // bigger calls take longer
//   dx::task_options{}.with_hint(dx::hint{.size = 1e6});
//
// The cost model learns durations per kind in buckets of size; a hint replaces the input bytes as
// that size. dx/cost_model.hpp and dx/task_options.hpp both include this header.
#pragma once

namespace dx {

/// A user's size hint for a task, passed at submit: `cl.submit(dx::hint{.size = n}, f, args...)`.
/// Any measure that grows with the work (elements, rows, iterations); used instead of the input
/// bytes to tell small calls of a kind from large ones. 0 (the default) means no hint. A plain
/// value: safe to copy and read from many threads; nothing here blocks.
struct hint {
  double size = 0;
};

}  // namespace dx
