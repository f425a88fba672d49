// dx/detail/chrono.hpp — std::chrono's durations, time points, clocks and literals for dx's public
// headers. Not for users: include <chrono> for the rest of it.
//
// In libstdc++, <chrono> is <bits/chrono.h> plus C++20's calendars, time zones and their stream
// output, which bring <sstream> and cost every file including dx about a third of a second to
// compile; dx's headers need only the first part.
#pragma once

#include <version>

#if defined(__GLIBCXX__) && __has_include(<bits/chrono.h>)
#include <bits/chrono.h>
#else
#include <chrono>
#endif
