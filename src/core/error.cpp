#include <dx/error.hpp>

namespace dx {

remote_error::remote_error(std::string type_name, std::string message, std::string worker)
    : error(type_name + " on worker " + worker + ": " + message),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      worker_(std::move(worker)) {}

remote_error::remote_error(std::string type_name, std::vector<std::string> type_bases, std::string message,
                           std::string worker)
    : remote_error(std::move(type_name), std::move(message), std::move(worker)) {
  type_bases_ = std::move(type_bases);
}

command_failed::command_failed(const std::string& what, int exit_code, int signal, std::string stderr_tail,
                               std::string worker)
    : error(what),
      exit_code_(exit_code),
      signal_(signal),
      stderr_tail_(std::move(stderr_tail)),
      worker_(std::move(worker)) {}

}  // namespace dx

namespace dx::detail {

namespace {
template <class E>
[[noreturn]] void raise(const std::string& what) {
  throw E(what);
}
}  // namespace

void throw_error(error_kind kind, const std::string& what) {
  switch (kind) {
    case error_kind::no_state:
      raise<no_state>(what);
    case error_kind::broken_promise:
      raise<broken_promise>(what);
    case error_kind::cancelled:
      raise<cancelled>(what);
    case error_kind::executor_shutdown:
      raise<executor_shutdown>(what);
    case error_kind::cycle:
      raise<cycle_error>(what);
    case error_kind::timeout:
      raise<timeout>(what);
    case error_kind::worker_lost:
      raise<worker_lost>(what);
    case error_kind::protocol:
      raise<protocol_error>(what);
    case error_kind::not_registered:
      raise<not_registered>(what);
    case error_kind::dataframe:
      raise<dataframe_error>(what);
    case error_kind::decode:
      raise<decode_error>(what);
    case error_kind::workflow:
      raise<workflow_error>(what);
    case error_kind::generic:
      break;
  }
  raise<error>(what);
}

std::exception_ptr make_error(error_kind kind, const std::string& what) {
  try {
    throw_error(kind, what);
  } catch (...) {
    return std::current_exception();
  }
}

}  // namespace dx::detail
