// Wire decoding fails only with dx errors: a body that is not the message its header names is a
// dx::decode_error (a dx::protocol_error) whose message names the message type and the reason.
#include "wire/messages.hpp"

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <string>

namespace wire = dx::wire;

namespace {
/// The exception decode<M>(f) throws, as a dx::error; FAILs when it throws something else or nothing.
template <class M>
std::string decode_failure(const wire::frame& f) {
  try {
    (void)wire::decode<M>(f);
  } catch (const dx::decode_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("decode threw an exception that is not a dx::decode_error: " << e.what());
  }
  FAIL("decode accepted the frame");
  return {};
}
}  // namespace

TEST_CASE("an empty body is a decode_error naming the message", "[wire][error]") {
  auto f = wire::encode(wire::heartbeat_msg{});
  f.archive.clear();
  CHECK_THAT(decode_failure<wire::heartbeat_msg>(f), Catch::Contains("undecodable heartbeat message (0 bytes)"));
}

TEST_CASE("bytes left over after a message are a decode_error saying how many", "[wire][error]") {
  auto f = wire::encode(wire::steal_msg{7, 1});
  f.archive += "xyz";
  CHECK_THAT(decode_failure<wire::steal_msg>(f), Catch::Contains("3 bytes left over"));
}

TEST_CASE("a forged length is a decode_error before anything is allocated", "[wire][error]") {
  auto f = wire::encode(wire::run_task_msg{1, 1, "f", {}});
  // The function name's length follows the task id and the attempt: make it claim far more bytes
  // than the archive holds.
  std::string archive = f.archive;
  bool found = false;
  for (std::size_t i = 0; i + sizeof(std::size_t) <= archive.size(); ++i) {
    std::size_t n = 0;
    std::memcpy(&n, archive.data() + i, sizeof n);
    if (n == 1 && i + sizeof n < archive.size() && archive[i + sizeof n] == 'f') {
      const std::size_t huge = std::size_t{1} << 40;
      std::memcpy(archive.data() + i, &huge, sizeof huge);
      found = true;
      break;
    }
  }
  REQUIRE(found);
  f.archive = archive;
  const std::string why = decode_failure<wire::run_task_msg>(f);
  CHECK_THAT(why, Catch::Contains("undecodable run_task message") && Catch::Contains("a string of"));
}

TEST_CASE("a decode_error is caught as protocol_error and as wire::decode_error", "[wire][error]") {
  auto f = wire::encode(wire::heartbeat_msg{});
  f.archive.clear();
  CHECK_THROWS_AS(wire::decode<wire::heartbeat_msg>(f), dx::protocol_error);
  CHECK_THROWS_AS(wire::decode<wire::heartbeat_msg>(f), wire::decode_error);
  CHECK(wire::check_message(f).value_or("").find("undecodable heartbeat") != std::string::npos);
}
