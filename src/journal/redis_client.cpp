// The journal's Redis connection (redis_client.hpp) over hiredis.
#include "journal/redis_client.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <sys/time.h>
#include <charconv>

namespace dx::detail {

namespace {

[[noreturn]] void bad_location(std::string_view text, std::string_view why) {
  throw_error(error_kind::generic, fmt::format("not a Redis journal location: \"{}\": {} (expected "
                                               "redis://[:password@]host[:port][/db][?wait=N])",
                                               text, why));
}

int parse_number(std::string_view text, std::string_view all, std::string_view what, int low, int high) {
  int value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < low || value > high)
    bad_location(all, fmt::format("its {} \"{}\" is not a number from {} to {}", what, text, low, high));
  return value;
}

redis_value convert(const redisReply* r) {
  redis_value v;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      v.kind = redis_value::type::integer;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      v.kind = redis_value::type::string;
      v.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      v.kind = redis_value::type::status;
      v.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.kind = redis_value::type::error;
      v.text.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      v.kind = redis_value::type::array;
      v.elements.reserve(r->elements);
      for (std::size_t i = 0; i < r->elements; ++i) v.elements.push_back(convert(r->element[i]));
      break;
    default:
      break;  // nil
  }
  return v;
}

}  // namespace

redis_location parse_redis_location(std::string_view text) {
  constexpr std::string_view scheme = "redis://";
  if (text.substr(0, scheme.size()) != scheme) bad_location(text, "it does not start with redis://");
  redis_location out;
  std::string_view rest = text.substr(scheme.size());
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view user_info = rest.substr(0, at);
    if (const auto colon = user_info.find(':'); colon != std::string_view::npos)
      user_info = user_info.substr(colon + 1);
    out.password = std::string(user_info);
    rest = rest.substr(at + 1);
  }
  std::string_view host_port = rest;
  if (const auto slash = rest.find('/'); slash != std::string_view::npos) {
    host_port = rest.substr(0, slash);
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) out.db = parse_number(db, text, "database number", 0, 1'000'000);
  }
  if (const auto colon = host_port.rfind(':'); colon != std::string_view::npos) {
    out.port = parse_number(host_port.substr(colon + 1), text, "port", 1, 65535);
    host_port = host_port.substr(0, colon);
  }
  if (host_port.empty()) bad_location(text, "it names no host");
  out.host = std::string(host_port);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.substr(0, 5) == "wait=") {
      out.wait_replicas = parse_number(item.substr(5), text, "wait", 0, 1000);
    } else if (!item.empty()) {
      bad_location(text, fmt::format("unknown option \"{}\"", item));
    }
  }
  out.text = fmt::format("redis://{}:{}/{}", out.host, out.port, out.db);
  if (out.wait_replicas > 0) out.text += fmt::format("?wait={}", out.wait_replicas);
  return out;
}

redis_client::redis_client(redis_location where, std::chrono::milliseconds timeout)
    : where_(std::move(where)), timeout_(timeout) {}

redis_client::~redis_client() { disconnect(); }

void redis_client::disconnect() noexcept {
  if (context_ != nullptr) redisFree(context_);
  context_ = nullptr;
}

void redis_client::connect() {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout_.count() % 1000) * 1000);
  redisContext* c = redisConnectWithTimeout(where_.host.c_str(), where_.port, tv);
  if (c == nullptr) throw redis_unreachable(fmt::format("Redis at {} cannot be reached: out of memory", where_.text));
  if (c->err != 0) {
    const std::string why = c->errstr;
    redisFree(c);
    throw redis_unreachable(fmt::format("Redis at {} cannot be reached: {}", where_.text, why));
  }
  redisSetTimeout(c, tv);
  context_ = c;
  // Set up the session: authentication and the database. Their failures are not outages.
  if (!where_.password.empty()) {
    const redis_value v = call({"AUTH", where_.password});
    if (v.is_error()) {
      disconnect();
      throw_error(error_kind::generic, fmt::format("Redis at {} refused the password: {}", where_.text, v.text));
    }
  }
  if (where_.db != 0) {
    const std::string db = std::to_string(where_.db);
    const redis_value v = call({"SELECT", db});
    if (v.is_error()) {
      disconnect();
      throw_error(error_kind::generic,
                  fmt::format("Redis at {} has no database {}: {}", where_.text, where_.db, v.text));
    }
  }
}

redis_value redis_client::call(const std::vector<std::string_view>& args) {
  if (context_ == nullptr) connect();
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  auto* reply =
      static_cast<redisReply*>(redisCommandArgv(context_, static_cast<int>(argv.size()), argv.data(), lengths.data()));
  if (reply == nullptr) {
    const std::string why = context_->errstr;
    disconnect();
    throw redis_unreachable(
        fmt::format("Redis at {} did not answer: {}", where_.text, why.empty() ? "timed out" : why));
  }
  redis_value v = convert(reply);
  freeReplyObject(reply);
  // A Redis that is starting (loading its files), busy with a script, or a replica cut off from its
  // master answers, but cannot serve yet: for the journal that is Redis away for a moment.
  if (v.is_error()) {
    for (const std::string_view transient : {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"}) {
      if (v.text.rfind(transient, 0) == 0)
        throw redis_unreachable(fmt::format("Redis at {} cannot serve yet: {}", where_.text, v.text));
    }
  }
  return v;
}

redis_value redis_client::call_checked(const std::vector<std::string_view>& args, std::string_view what) {
  redis_value v = call(args);
  if (v.is_error()) throw_error(error_kind::generic, fmt::format("{} in journal {}: {}", what, where_.text, v.text));
  return v;
}

}  // namespace dx::detail
