// Worker names: which a head accepts (a name arrives in a handshake, so this is all it trusts of
// it), the name a worker gets from its host, and which of a head's refusals may pass.
#include "cluster/worker.hpp"

#include <fmt/format.h>

#include <unistd.h>

namespace dx::detail {

namespace {

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_' || c == ':' || c == '@' || c == '+';
}

}  // namespace

std::string worker_name_problem(std::string_view name) {
  if (name.empty()) return "it is empty";
  if (name.size() > max_worker_name)
    return fmt::format("it has {} characters, at most {} are allowed", name.size(), max_worker_name);
  for (char c : name)
    if (!name_char(c)) {
      const auto u = static_cast<unsigned char>(c);
      const std::string shown = u >= 0x20 && u < 0x7f ? fmt::format("'{}'", c) : fmt::format("byte 0x{:02x}", u);
      return fmt::format("it holds {}; only letters, digits and .-_:@+ are allowed", shown);
    }
  if (name == "head") return "'head' is the name of the head's own threads";
  if (name == "none") return "'none' means no worker in dx's metrics";
  return {};
}

bool rejection_may_pass(std::string_view reason) {
  // The head's wording (membership.cpp): a live worker holds the name, or the head is stopping.
  return reason.find("is already connected") != std::string_view::npos ||
         reason.find("accepts workers only") != std::string_view::npos;
}

std::string host_part(std::string_view host) {
  std::string out(host.substr(0, host.find('.')));
  std::erase_if(out, [](char c) { return !name_char(c); });
  if (out.size() > max_worker_name - 8) out.resize(max_worker_name - 8);
  return out.empty() ? std::string("worker") : out;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return host_part({});
  return host_part(buf);
}

}  // namespace dx::detail
