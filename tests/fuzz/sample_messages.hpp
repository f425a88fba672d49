// Realistic, valid instances of every wire message, shared by make_corpus (which writes them as
// the fuzzer's seed corpus) and replay_corpus (which checks that they round-trip).
#pragma once

#include "wire/frame.hpp"
#include "wire/messages.hpp"

#include <dx/serialize.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dx::fuzz {

/// Calls `f(name, message, payload)` for each sample; names are unique and file-name safe, and
/// every message type has at least one sample. `payload` is null for messages without one.
template <class F>
void for_each_sample(F&& f) {
  using namespace dx::wire;
  const auto bytes_of = [](const auto& value) {
    std::string out;
    dx::detail::write_value(out, value);
    return out;
  };
  const auto payload_of = [&](const auto& value) { return std::make_shared<const std::string>(bytes_of(value)); };
  const std::string nonce =
      "\x3a\x91\x07\xc4\x5e\x22\xd8\x10\x6b\xf3\x48\x99\x01\xae\x7c\x35"
      "\xe2\x54\x0f\xb8\x66\x1d\xc9\x83\x27\x70\x4a\xde\x12\x8f\x5b\x04";

  f("challenge", challenge_msg{nonce, true}, nullptr);
  f("challenge-no-token", challenge_msg{nonce, false}, nullptr);
  f("hello-worker",
    hello_msg{peer_role::worker,
              std::string(32, '\x5c'),
              "worker-3",
              8,
              {{"cpu", 8.0}, {"gpu", 1.0}, {"mem_gb", 31.5}},
              "127.0.0.1:40123",
              4242,
              "node-17",
              ""},
    nullptr);
  f("hello-peer", hello_msg{peer_role::peer, "", "", 0, {}, "", 4243}, nullptr);
  f("welcome", welcome_msg{"worker-3", 500, 5000, 64 * 1024}, nullptr);
  f("welcome-resumed", welcome_msg{"worker-3", 500, 5000, 64 * 1024, true}, nullptr);
  f("reject", reject_msg{"authentication failed: wrong or missing token"}, nullptr);
  f("run-task",
    run_task_msg{1042,
                 1,
                 "pi_chunk",
                 {arg_ref{false, bytes_of(std::uint64_t{1000000}), 0, {}},
                  arg_ref{true, "", 1041, {"127.0.0.1:40123", "127.0.0.1:40124"}},
                  arg_ref{false, bytes_of(std::vector<double>{0.5, 1.5, 2.5}), 0, {}}}},
    nullptr);
  {
    auto result = payload_of(std::vector<double>{3.14159, 2.71828, 1.41421});
    f("task-done-inline", task_done_msg{1042, 1, result->size(), true, 1234567, 1}, result);
  }
  f("task-done-stored", task_done_msg{1043, 2, 1u << 20, false, 98765432, 0}, nullptr);
  f("task-failed",
    task_failed_msg{1044,
                    1,
                    failure_kind::exception,
                    "std::range_error",
                    "negative sample count",
                    0,
                    52000,
                    1,
                    {"std::runtime_error", "std::exception"}},
    nullptr);
  f("task-failed-input-lost",
    task_failed_msg{1045, 3, failure_kind::input_lost, "dx::error", "no holder of task 1041 answered", 1041, 0, 0, {}},
    nullptr);
  f("fetch", fetch_msg{7, 1041}, nullptr);
  f("fetch-reply-found", fetch_reply_msg{7, 1041, true}, payload_of(std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  f("fetch-reply-missing", fetch_reply_msg{8, 1040, false}, nullptr);
  f("release", release_msg{{1, 2, 3, 1041}}, nullptr);
  f("heartbeat",
    heartbeat_msg{2,
                  5,
                  1u << 20,
                  48u << 20,
                  {running_task{1046, 1, 2500, 0}, running_task{1047, 2, 90, 1}},
                  {transfer_note{"127.0.0.1:40123", 1u << 20, 830, 1041, 12000}},
                  0,
                  17,
                  0,
                  4u << 20},
    nullptr);
  f("heartbeat-ping", heartbeat_msg{0, 0, 0, 0, {}, {}, 18, 0, 12000, 0}, nullptr);
  f("leaving", leaving_msg{{handed_back{1050, 1}, handed_back{1051, 2}}}, nullptr);
  f("shutdown", shutdown_msg{"the head is stopping"}, nullptr);
  f("run-tasks",
    run_tasks_msg{{run_task_msg{2001, 1, "square", {arg_ref{false, bytes_of(std::int32_t{7}), 0, {}}}},
                   run_task_msg{2002, 1, "sum", {arg_ref{true, "", 2001, {"127.0.0.1:40123"}}}}}},
    nullptr);
  {
    const std::string result = bytes_of(std::int64_t{49});
    f("tasks-done",
      tasks_done_msg{{task_done_msg{2001, 1, result.size(), true, 5400}, task_done_msg{2002, 1, 1u << 20, false, 8100}},
                     {result, ""}},
      nullptr);
  }
  f("steal", steal_msg{2003, 1}, nullptr);
  f("steal-reply", steal_reply_msg{2003, 1, true}, nullptr);
  f("cancel", cancel_msg{{2003, 2004}}, nullptr);
  f("resume", resume_msg{{{2005, 1}, {2006, 3}}}, nullptr);
}

}  // namespace dx::fuzz
