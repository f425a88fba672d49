// dx/options.hpp — how a dx::cluster is set up, as a chain of named settings.
//
//   dx::cluster local{dx::options{}.threads(4)};                         // local threads only
//   dx::cluster lc{dx::options{}.local_processes(2)};                    // + 2 worker processes
//   dx::cluster head{dx::options{}.listen("127.0.0.1:7700").token_file("dx.token")};  // peers join
#pragma once

#include <dx/detail/chrono.hpp>
#include <dx/tls.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace dx {

/// How the head and its workers exchange frames.
enum class transport_kind : std::uint8_t {
  /// TCP sockets (Boost.Asio): workers are processes, here or on other machines.
  tcp,
  /// Queues between threads of this process: local_processes() become worker threads that speak the
  /// same protocol. For tests and for debugging the distributed runtime without sockets.
  in_process,
  /// MPI messages between the ranks of an MPI job (mpirun, or srun with MPI): the workers are the
  /// job's other ranks, running the same program, and results move rank to rank. Chosen by itself
  /// when the program runs under mpirun with more than one rank (README, "Distributed", under
  /// MPI); a dx built without MPI throws dx::error when it is asked for.
  mpi,
};

/// How the head places ready tasks on workers.
enum class scheduling_policy : std::uint8_t {
  /// Where the task is predicted to finish first (learned durations, worker speeds and transfer
  /// costs), ordered by priority and critical path, with idle workers taking queued work. The
  /// default.
  predictive,
  /// Baselines, for comparison: each ready task to the next worker in turn, to a random worker,
  /// to the worker with the fewest tasks per thread, or by Dask's rules (occupancy from per-kind
  /// averages without worker speeds, input-free tasks held at the head, idle workers steal).
  round_robin,
  random,
  least_loaded,
  dask_like,
};

/// Settings of a cluster. Each setter returns *this so settings chain. A cluster is distributed
/// (it has a head that places registered functions on workers) when listen() or
/// local_processes() is set; otherwise everything runs on the local threads.
class options {
 public:
  /// Worker threads of the local executor (0, the default: the hardware concurrency).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& threads(std::size_t n) noexcept {
    threads_ = n;
    return *this;
  }
  std::size_t threads() const noexcept { return threads_; }

  /// Accept workers at "host:port" ("127.0.0.1:0" picks a free port; cluster::endpoint() tells
  /// which). The default when only local_processes() is set is "127.0.0.1:0".
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& listen(std::string address) {
    listen_ = std::move(address);
    return *this;
  }
  const std::string& listen() const noexcept { return listen_; }

  /// The shared secret a worker must prove it knows (HMAC-SHA256 challenge) before anything else
  /// is accepted, and that the HTTP routes which change the cluster require ("Authorization:
  /// Bearer <token>", unless http_token names another). Empty: no authentication, which is fine on
  /// loopback only.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& token(std::string secret) {
    token_ = std::move(secret);
    return *this;
  }
  const std::string& token() const noexcept { return token_; }
  /// Reads the token from a file (first line, surrounding whitespace trimmed) when the cluster
  /// starts; a missing or empty file is an error.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& token_file(std::string path) {
    token_file_ = std::move(path);
    return *this;
  }
  const std::string& token_file() const noexcept { return token_file_; }

  /// Mutual TLS on every link of the cluster: workers joining the head, workers fetching results
  /// from each other, local_processes() workers, and the HTTP endpoint (https, wss). See
  /// dx/tls.hpp. Off by default; a head listening on an address other than loopback without it
  /// logs a warning. Setter not thread-safe, getter thread-safe; neither blocks.
  options& tls(tls_options settings) {
    tls_ = std::move(settings);
    return *this;
  }
  const tls_options& tls() const noexcept { return tls_; }

  /// Whether the head's own threads also run registered functions (default true).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& head_runs_tasks(bool yes) noexcept {
    head_runs_tasks_ = yes;
    return *this;
  }
  bool head_runs_tasks() const noexcept { return head_runs_tasks_; }

  /// Starts n worker processes of the current program on loopback, like Dask's LocalCluster, and
  /// stops them when the cluster is destroyed.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& local_processes(std::size_t n) noexcept {
    local_processes_ = n;
    return *this;
  }
  std::size_t local_processes() const noexcept { return local_processes_; }
  /// Threads of each local worker process (default 1).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& threads_per_process(std::size_t n) noexcept {
    threads_per_process_ = n;
    return *this;
  }
  std::size_t threads_per_process() const noexcept { return threads_per_process_; }

  /// Sets transport. Setter not thread-safe, getter thread-safe; neither blocks.
  options& transport(transport_kind kind) noexcept {
    transport_ = kind;
    return *this;
  }
  transport_kind transport() const noexcept { return transport_; }

  /// The largest frame on the wire (default 256 MiB): what one read may allocate, and before a
  /// peer has passed the handshake, the largest message it may send at all (a larger one closes
  /// its connection). Once it has passed, a larger message travels as a stream of chunks of at
  /// most this size, received straight into its destination, up to max_value_size.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& max_frame_size(std::uint64_t bytes) noexcept {
    max_frame_size_ = bytes;
    return *this;
  }
  std::uint64_t max_frame_size() const noexcept { return max_frame_size_; }

  /// The largest message that carries a value (default 4 GiB): a task's arguments with its run
  /// message, a result with its reply. Checked where the value is made: an argument list over it
  /// fails its task at submit, a result over it fails its task on the worker, each with a dx::error
  /// naming the size, the limit and this option; the connection and the worker go on. Workers the
  /// head starts get the same limit (dx-worker --max-value-size).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& max_value_size(std::uint64_t bytes) noexcept {
    max_value_size_ = bytes;
    return *this;
  }
  std::uint64_t max_value_size() const noexcept { return max_value_size_; }

  /// How often peers send heartbeats, and how long a silent peer is given before it is removed.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& heartbeat(std::chrono::milliseconds interval, std::chrono::milliseconds timeout) noexcept {
    heartbeat_interval_ = interval;
    heartbeat_timeout_ = timeout;
    return *this;
  }
  std::chrono::milliseconds heartbeat_interval() const noexcept { return heartbeat_interval_; }
  std::chrono::milliseconds heartbeat_timeout() const noexcept { return heartbeat_timeout_; }

  /// How long a worker whose link is lost keeps the work sent to it (default 0: the work moves at
  /// once). A volunteer's machine may go offline for a while (a laptop closed, a network down)
  /// and go on computing: within this time it joins again under its name, says what it still
  /// holds, and sends the answers it computed while away; what it no longer holds, and all of its
  /// work once this time has passed, is placed elsewhere. Meanwhile it is shown `offline` and
  /// receives nothing new. Workers the head starts itself never wait. A task's own hard deadline
  /// (dx/replicate.hpp) still moves it sooner. Setter not thread-safe, getter thread-safe; neither
  /// blocks.
  options& offline_grace(std::chrono::milliseconds grace) noexcept {
    offline_grace_ = grace;
    return *this;
  }
  std::chrono::milliseconds offline_grace() const noexcept { return offline_grace_; }

  /// A task that was on this many workers that died fails with dx::worker_lost (default 3).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& allowed_failures(std::size_t n) noexcept {
    allowed_failures_ = n;
    return *this;
  }
  std::size_t allowed_failures() const noexcept { return allowed_failures_; }

  /// Results up to this size travel to the head with the completion; larger ones stay on the
  /// worker until fetched (default 64 KiB).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& inline_result_limit(std::size_t bytes) noexcept {
    inline_result_limit_ = bytes;
    return *this;
  }
  std::size_t inline_result_limit() const noexcept { return inline_result_limit_; }

  /// Program started by local_processes() (default: this program, /proc/self/exe).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& worker_program(std::string path) {
    worker_program_ = std::move(path);
    return *this;
  }
  const std::string& worker_program() const noexcept { return worker_program_; }

  /// How ready tasks are placed (default scheduling_policy::predictive).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& scheduling(scheduling_policy p) noexcept {
    scheduling_ = p;
    return *this;
  }
  scheduling_policy scheduling() const noexcept { return scheduling_; }

  /// Where the learned cost model is kept between runs: loaded (merged) when the cluster starts,
  /// saved (merged, atomically) when it stops. Default: $DX_COSTMODEL, else
  /// $XDG_STATE_HOME/dx/cost_model.txt, else ~/.local/state/dx/cost_model.txt.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& cost_model_file(std::string path) {
    cost_model_file_ = std::move(path);
    return *this;
  }
  const std::string& cost_model_file() const noexcept { return cost_model_file_; }
  /// Whether the cost model is loaded and saved at all (default true; false: every run starts cold).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& persist_cost_model(bool yes) noexcept {
    persist_cost_model_ = yes;
    return *this;
  }
  bool persist_cost_model() const noexcept { return persist_cost_model_; }

  /// Serves the head's metrics (/metrics, Prometheus format), state (/api/state, JSON), recent
  /// task events (/api/tasks), workflow runs (/api/runs), their changes live (/api/events, a
  /// WebSocket) and a dashboard (/) over HTTP at "host:port" ("127.0.0.1:0" picks a free port;
  /// cluster::http_endpoint() tells which). Off by default. Setting it makes the cluster
  /// distributed (a head; its own threads run registered functions).
  ///
  /// Who may do what (docs/http-api.md): the routes that change the cluster (start, cancel,
  /// resume runs) need the HTTP token (http_token, else the cluster's token) when there is one,
  /// else a client on this machine. Reading (GET /api/*, the WebSocket, /metrics) is open on a
  /// loopback address; bound to any other address ("0.0.0.0:8787") with a token, reading needs
  /// the token too (/metrics stays open with metrics_open(true)).
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& http(std::string address) {
    http_ = std::move(address);
    return *this;
  }
  const std::string& http() const noexcept { return http_; }

  /// The token HTTP clients give ("Authorization: Bearer <token>", or "?token=" for the
  /// WebSocket) when it should not be the one workers prove they know. Empty (the default): the
  /// cluster's token (token, token_file). Setter not thread-safe, getter thread-safe; neither
  /// blocks.
  options& http_token(std::string secret) {
    http_token_ = std::move(secret);
    return *this;
  }
  const std::string& http_token() const noexcept { return http_token_; }

  /// Keeps GET /metrics open to anyone who reaches the HTTP endpoint even where reading needs the
  /// token (an address other than loopback, with a token), so that a Prometheus without the token
  /// can scrape it (default false). Setter not thread-safe, getter thread-safe; neither blocks.
  options& metrics_open(bool yes) noexcept {
    metrics_open_ = yes;
    return *this;
  }
  bool metrics_open() const noexcept { return metrics_open_; }

  /// At most this many clients of the WebSocket /api/events at once (default 16; over it an
  /// upgrade is answered 503). Setter not thread-safe, getter thread-safe; neither blocks.
  options& websocket_clients(std::size_t n) noexcept {
    websocket_clients_ = n;
    return *this;
  }
  std::size_t websocket_clients() const noexcept { return websocket_clients_; }

  /// Bytes of events a WebSocket client may leave unread (default 8 MiB): one message more and
  /// the head drops that client (close code 1008, "too slow"; counted in
  /// dx_http_websocket_dropped_total), so a slow reader never holds the head's memory or time.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& websocket_queue_bytes(std::size_t n) noexcept {
    websocket_queue_bytes_ = n;
    return *this;
  }
  std::size_t websocket_queue_bytes() const noexcept { return websocket_queue_bytes_; }

  /// Whether the head keeps its runtime metrics (per kind and worker counts, durations, the task
  /// history) at all (default true). Off only to measure what they cost.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& metrics(bool yes) noexcept {
    metrics_ = yes;
    return *this;
  }
  bool metrics() const noexcept { return metrics_; }

  /// How many finished task attempts (and as many result transfers) the head keeps for the
  /// dashboard's task stream, /api/tasks and cluster::write_trace (default 100,000, about 40
  /// bytes each; 0 keeps none). The oldest are dropped first.
  /// Setter not thread-safe, getter thread-safe; neither blocks.
  options& task_history(std::size_t n) noexcept {
    task_history_ = n;
    return *this;
  }
  std::size_t task_history() const noexcept { return task_history_; }

  /// Whether the settings make a head with workers (listen, local_processes or http set).
  /// Thread-safe; does not block.
  bool distributed() const noexcept { return !listen_.empty() || local_processes_ > 0 || !http_.empty(); }

 private:
  std::size_t threads_ = 0;
  std::string listen_;
  std::string token_;
  std::string token_file_;
  tls_options tls_;
  bool head_runs_tasks_ = true;
  std::size_t local_processes_ = 0;
  std::size_t threads_per_process_ = 1;
  transport_kind transport_ = transport_kind::tcp;
  std::uint64_t max_frame_size_ = std::uint64_t{256} << 20;
  std::uint64_t max_value_size_ = std::uint64_t{4} << 30;
  std::chrono::milliseconds heartbeat_interval_{500};
  std::chrono::milliseconds heartbeat_timeout_{10'000};
  std::size_t allowed_failures_ = 3;
  std::chrono::milliseconds offline_grace_{0};
  std::size_t inline_result_limit_ = 64 * 1024;
  std::string worker_program_;
  scheduling_policy scheduling_ = scheduling_policy::predictive;
  std::string cost_model_file_;
  bool persist_cost_model_ = true;
  std::string http_;
  std::string http_token_;
  bool metrics_open_ = false;
  std::size_t websocket_clients_ = 16;
  std::size_t websocket_queue_bytes_ = std::size_t{8} << 20;
  bool metrics_ = true;
  std::size_t task_history_ = 100'000;
};

}  // namespace dx
