// The messages of dx's protocol, one struct per frame type, and their encoding. A frame's body is
// the Boost binary archive of one of these; large bytes (results, fetched values) travel in the
// frame's payload instead.
//
// Connection start: the accepting side sends `challenge`; the connecting side answers `hello`,
// carrying the HMAC-SHA256 of the challenge's nonce under the shared token when one is
// configured; the acceptor answers `welcome` or `reject` and closes. Nothing else is accepted
// before the handshake completes.
#pragma once

#include "wire/frame.hpp"

#include <dx/error.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace dx::wire {

enum class msg : std::uint16_t {
  challenge = 1,
  hello = 2,
  welcome = 3,
  reject = 4,
  run_task = 5,
  task_done = 6,
  task_failed = 7,
  fetch = 8,
  fetch_reply = 9,
  release = 10,
  heartbeat = 11,
  leaving = 12,
  shutdown = 13,
  run_tasks = 14,
  tasks_done = 15,
  steal = 16,
  steal_reply = 17,
  cancel = 18,
  resume = 19,
};
inline constexpr std::uint16_t max_msg_type = 19;

const char* msg_name(std::uint16_t type) noexcept;

enum class peer_role : std::uint8_t { worker = 1, peer = 2 };

struct challenge_msg {
  static constexpr msg type = msg::challenge;
  std::string nonce;
  bool token_required = false;

  bool operator==(const challenge_msg&) const = default;
};

struct hello_msg {
  static constexpr msg type = msg::hello;
  peer_role role = peer_role::worker;
  std::string proof;  // HMAC-SHA256(token, nonce), empty without a token
  std::string name;   // the worker's name (its id in the cluster); empty: the head names it
  std::uint32_t threads = 0;
  std::map<std::string, double> resources;
  std::string data_address;  // where peers fetch this worker's results
  std::int64_t pid = 0;
  std::string host;      // the worker's host name: the head names an unnamed worker after it
  std::string head_key;  // the head's own threads: a secret of that head, proving it; else empty
  /// The worker lost its link to this head and still holds work of it (tasks queued, running or
  /// answered while it was away): it asks to take its place back (welcome_msg::resumed).
  bool resuming = false;

  bool operator==(const hello_msg&) const = default;
};

struct welcome_msg {
  static constexpr msg type = msg::welcome;
  std::string worker_id;
  std::uint32_t heartbeat_ms = 0;
  std::uint32_t heartbeat_timeout_ms = 0;
  std::uint64_t inline_result_limit = 0;
  /// The head kept this worker's place while it was away (options::offline_grace): it answers
  /// with a resume_msg listing what it holds, then its answers.
  bool resumed = false;

  bool operator==(const welcome_msg&) const = default;
};

struct reject_msg {
  static constexpr msg type = msg::reject;
  std::string reason;

  bool operator==(const reject_msg&) const = default;
};

/// An argument of a dispatched task: bytes, or a reference to another task's result held by
/// workers (tried in order).
struct arg_ref {
  bool is_ref = false;
  std::string bytes;
  std::uint64_t task_id = 0;
  std::vector<std::string> holders;  // data addresses

  bool operator==(const arg_ref&) const = default;
};

struct run_task_msg {
  static constexpr msg type = msg::run_task;
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;
  std::string function;
  std::vector<arg_ref> args;
  bool result_to_head = false;  // send the result with the completion whatever its size (a copy to compare)

  bool operator==(const run_task_msg&) const = default;
};

struct task_done_msg {
  static constexpr msg type = msg::task_done;
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;
  std::uint64_t result_size = 0;
  bool inline_result = false;  // the result is the frame's payload
  std::uint64_t duration_ns = 0;
  std::uint32_t thread = 0;  // the worker thread that ran it (for timelines)

  bool operator==(const task_done_msg&) const = default;
};

enum class failure_kind : std::uint8_t {
  exception = 1,       // the function threw
  not_registered = 2,  // no such function on the worker
  input_lost = 3,      // an argument could not be fetched from any holder
  bad_arguments = 4,   // arguments did not decode
  too_large = 5,       // the result with its reply is over the value limit (options::max_value_size)
};

struct task_failed_msg {
  static constexpr msg type = msg::task_failed;
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;
  failure_kind kind = failure_kind::exception;
  std::string type_name;
  std::string message;
  std::uint64_t lost_input = 0;
  std::uint64_t duration_ns = 0;  // how long it ran before failing (0 if it never ran)
  std::uint32_t thread = 0;
  std::vector<std::string> type_bases;  // public base classes of the exception's type, nearest first

  bool operator==(const task_failed_msg&) const = default;
};

struct fetch_msg {
  static constexpr msg type = msg::fetch;
  std::uint64_t request_id = 0;
  std::uint64_t task_id = 0;

  bool operator==(const fetch_msg&) const = default;
};

struct fetch_reply_msg {
  static constexpr msg type = msg::fetch_reply;
  std::uint64_t request_id = 0;
  std::uint64_t task_id = 0;
  bool found = false;  // the value is the frame's payload

  bool operator==(const fetch_reply_msg&) const = default;
};

struct release_msg {
  static constexpr msg type = msg::release;
  std::vector<std::uint64_t> task_ids;

  bool operator==(const release_msg&) const = default;
};

/// A task a worker is running, as its heartbeat reports it.
struct running_task {
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;
  std::uint64_t elapsed_us = 0;
  std::uint32_t thread = 0;

  bool operator==(const running_task&) const = default;
};

/// A result fetched from a peer, or a large frame of tasks from the head, as a worker's heartbeat
/// reports it (the head learns link costs).
struct transfer_note {
  std::string from;  // the holder's data address; empty: the head
  std::uint64_t bytes = 0;
  std::uint64_t micros = 0;
  std::uint64_t task_id = 0;  // whose result moved
  std::uint64_t age_us = 0;   // from the end of the transfer to the heartbeat that reports it

  bool operator==(const transfer_note&) const = default;
};

/// Both ways. From a worker: its load, running tasks and transfers. From the head: a ping the
/// worker answers at once with a heartbeat echoing its number (the head's round trip to it),
/// and how long the head waits for a silent worker (the worker waits as long for the head).
struct heartbeat_msg {
  static constexpr msg type = msg::heartbeat;
  std::uint32_t running = 0;
  std::uint32_t queued = 0;
  std::uint64_t stored_bytes = 0;
  std::uint64_t memory_bytes = 0;  // resident set of the worker process
  std::vector<running_task> running_tasks;
  std::vector<transfer_note> transfers;  // since the previous heartbeat
  std::uint64_t ping = 0;                // head -> worker: answer with echo = ping (0: none)
  std::uint64_t echo = 0;                // worker -> head: the ping this heartbeat answers
  std::uint32_t deadline_ms = 0;         // head -> worker: the silence either side tolerates (0: as welcomed)
  std::uint64_t receiving = 0;           // worker -> head: bytes of a frame from the head it is receiving
  /// worker -> head: bytes of the head's frames on this connection (headers included, as the
  /// head's connection::bytes_sent counts them) whose handling had finished when this heartbeat
  /// was made: a task sent in a frame that ends beyond it has not been seen yet.
  std::uint64_t handled = 0;

  bool operator==(const heartbeat_msg&) const = default;
};

struct handed_back {
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;

  bool operator==(const handed_back&) const = default;
};

/// A worker that stops taking work: the listed queued tasks were not started and are the head's
/// again; running ones still complete.
struct leaving_msg {
  static constexpr msg type = msg::leaving;
  std::vector<handed_back> tasks;

  bool operator==(const leaving_msg&) const = default;
};

struct shutdown_msg {
  static constexpr msg type = msg::shutdown;
  std::string reason;

  bool operator==(const shutdown_msg&) const = default;
};

/// Several tasks for one worker in one frame (what the head sends when it places a burst).
struct run_tasks_msg {
  static constexpr msg type = msg::run_tasks;
  std::vector<run_task_msg> tasks;

  bool operator==(const run_tasks_msg&) const = default;
};

/// Several completions in one frame; results[i] holds done[i]'s result when it is inline.
struct tasks_done_msg {
  static constexpr msg type = msg::tasks_done;
  std::vector<task_done_msg> done;
  std::vector<std::string> results;

  bool operator==(const tasks_done_msg&) const = default;
};

/// The head asks a worker to give a queued task back so another worker can run it.
struct steal_msg {
  static constexpr msg type = msg::steal;
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;

  bool operator==(const steal_msg&) const = default;
};

/// The answer: given_up when the task had not started (the worker will not run it); otherwise
/// it runs there and reports as usual.
struct steal_reply_msg {
  static constexpr msg type = msg::steal_reply;
  std::uint64_t task_id = 0;
  std::uint32_t attempt = 0;
  bool given_up = false;

  bool operator==(const steal_reply_msg&) const = default;
};

/// The head gave these tasks up (cancelled or timed out): a worker drops the ones it has not
/// started and asks the running ones to stop (their stop token). It answers nothing; what a
/// running one reports later is a late result to the head. Any attempt of a listed task is meant.
struct cancel_msg {
  static constexpr msg type = msg::cancel;
  std::vector<std::uint64_t> task_ids;

  bool operator==(const cancel_msg&) const = default;
};

/// A worker taken back after a time away (welcome_msg::resumed): the tasks it still holds, queued,
/// running or answered since. The head places the others it had sent there again.
struct resume_msg {
  static constexpr msg type = msg::resume;
  std::vector<handed_back> held;

  bool operator==(const resume_msg&) const = default;
};

/// A body that does not decode as the type its header names: dx::decode_error (a
/// dx::protocol_error), raised through dx::detail::throw_error with error_kind::decode.
using decode_error = dx::decode_error;

/// Every message struct in type order: `std::tuple_element_t<t - 1, message_types>` is the struct of
/// message type t, for t in 1..max_msg_type.
using message_types =
    std::tuple<challenge_msg, hello_msg, welcome_msg, reject_msg, run_task_msg, task_done_msg, task_failed_msg,
               fetch_msg, fetch_reply_msg, release_msg, heartbeat_msg, leaving_msg, shutdown_msg, run_tasks_msg,
               tasks_done_msg, steal_msg, steal_reply_msg, cancel_msg, resume_msg>;
static_assert(std::tuple_size_v<message_types> == max_msg_type);

template <class M>
frame encode(const M& m, std::shared_ptr<const std::string> payload = nullptr);

/// Decodes the frame's archive as M; throws decode_error naming the message type on failure.
///
/// The archive comes from a peer and is treated as hostile: every length and element count in it
/// is checked against the bytes actually left in the archive before anything is allocated, so a
/// forged size fails at once instead of allocating gigabytes; bools must be 0 or 1, enums must
/// name one of their enumerators, and the message must use up the archive exactly (no trailing
/// bytes). Decoding allocates at most a small multiple of the archive's size.
template <class M>
M decode(const frame& f);

/// Validates a received frame completely, independently of any transport: the type is a known
/// message type (1..max_msg_type), the archive decodes as that type (see decode), and the payload
/// agrees with the message (only an inline task_done and a found fetch_reply carry one; an inline
/// task_done's payload is exactly result_size bytes), and a tasks_done has one result per
/// completion, of result_size bytes when inline and empty otherwise. Returns why the frame is
/// unacceptable, or nullopt when it is fine. Every exception decoding throws becomes the reason.
std::optional<std::string> check_message(const frame& f);

}  // namespace dx::wire
