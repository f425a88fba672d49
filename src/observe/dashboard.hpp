// The dashboard page the head serves at "/": one self-contained HTML file (dashboard.html),
// embedded into the library when it is built.
#pragma once

#include <string_view>

namespace dx::detail {

std::string_view dashboard_page() noexcept;

}  // namespace dx::detail
