// The worker runtime: its link to the head (handshake, heartbeats, going offline and taking its
// place back), the tasks it runs and the answers it sends, the results it keeps and serves to peers.
#include "cluster/worker.hpp"

#include "cluster/auth.hpp"
#include "common/log.hpp"
#include "common/process_stats.hpp"
#include "core/executor_impl.hpp"
#include "core/type_names.hpp"
#include "transport/address.hpp"
#include "transport/transport.hpp"
#include "wire/messages.hpp"

#include <dx/error.hpp>
#include <dx/executor.hpp>
#include <dx/remote.hpp>

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dx::detail {

namespace {

using clock = std::chrono::steady_clock;

enum class job_state : int { waiting_inputs, queued, running, handed_back };

struct job {
  wire::run_task_msg msg;
  std::vector<std::shared_ptr<const std::string>> inputs;
  std::size_t missing = 0;
  std::atomic<job_state> state{job_state::waiting_inputs};
  std::atomic<std::int64_t> started_ns{0};  // steady clock, once running (heartbeats report it)
  std::atomic<std::uint32_t> thread{0};     // the executor thread running it
  // What the running function's dx::stop_token and dx::this_task read; the head's cancel_msg
  // requests the stop.
  detail::state_ptr<detail::shared_state<void>> stop{new detail::shared_state<void>};
};

std::string default_data_listen(const std::string& connect) {
  const auto colon = connect.rfind(':');
  const std::string host = colon == std::string::npos ? connect : connect.substr(0, colon);
  if (host == "127.0.0.1" || host == "localhost" || host.starts_with("inproc")) return "127.0.0.1:0";
  // The interface that reaches the head: the head and the peers find this worker there, and the
  // port is not opened on the machine's other networks.
  const std::string local = transport::local_address_toward(host);
  if (local.empty()) return "0.0.0.0:0";
  return local.find(':') == std::string::npos ? local + ":0" : "[" + local + "]:0";
}

}  // namespace

namespace {
// The worker whose task this thread is running, so that code inside a task can name it.
thread_local worker_runtime::impl* running_on = nullptr;

struct running_scope {
  explicit running_scope(worker_runtime::impl* w) noexcept : previous(std::exchange(running_on, w)) {}
  ~running_scope() { running_on = previous; }
  worker_runtime::impl* previous;
};
}  // namespace

struct worker_runtime::impl : std::enable_shared_from_this<impl> {
  worker_config cfg;
  std::unique_ptr<transport::transport> net;
  std::unique_ptr<executor> own_exec;
  executor* exec = nullptr;

  mutable std::mutex mutex;
  std::condition_variable cv;
  std::string id;
  bool welcomed = false;
  std::string rejected;
  static constexpr const char* tls_hint =
      " (no challenge came from the head: does it require TLS? --tls-cert, --tls-key, --tls-ca)";
  std::string lost_why;
  bool challenged = false;  // the head's challenge arrived: the link works at least that far
  bool finished = false;
  int exit_code = 0;
  bool leaving = false;
  std::uint64_t inline_limit = 64 * 1024;
  std::chrono::milliseconds heartbeat_every{500};
  std::chrono::milliseconds heartbeat_timeout{10'000};
  std::chrono::milliseconds welcomed_timeout{10'000};  // before the head's deadline for this link
  clock::time_point last_from_head = clock::now();
  std::uint64_t head_arrived_seen = 0;  // the head connection's bytes_arrived at the last liveness check
  std::shared_ptr<transport::connection> head;
  // Away from the head with its work (worker_config::keep_work_offline): tasks go on, answers wait.
  bool offline = false;
  bool resuming = false;                           // the handshake in progress asks to take this worker's place back
  bool resumed = false;                            // and the head said yes
  bool link_closed = false;                        // that handshake's connection closed before an answer
  std::shared_ptr<transport::connection> joining;  // its connection, until the head answers
  // Failures reported while offline, sent once the head takes this worker back.
  struct held_answer {
    std::uint64_t task = 0;
    std::uint32_t attempt = 0;
    wire::frame f;
  };
  std::vector<held_answer> held_answers;
  std::string data_address;

  std::unordered_map<std::uint64_t, std::shared_ptr<const std::string>> store;
  std::uint64_t stored_bytes = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<job>> jobs;  // by task id: not finished
  std::atomic<std::uint32_t> running{0};
  std::atomic<std::size_t> answers_unsent{0};  // answers taken out of `jobs`, not yet given to the connection
  // --corrupt-results: a draw in [0, 1) per result, from any task thread.
  std::mutex corrupt_mutex;
  std::mt19937_64 corrupt_rng{std::random_device{}()};
  double corrupt_draw() {
    std::lock_guard lock(corrupt_mutex);
    return std::uniform_real_distribution<double>(0, 1)(corrupt_rng);
  }
  wire::tasks_done_msg done_batch;
  std::atomic<std::uint64_t> got_frames{0}, got_tasks{0}, sent_frames{0}, sent_tasks{0};

  // Outgoing data connections to peers, by address, with fetches waiting for them.
  struct pending_fetch {
    std::shared_ptr<job> j;
    std::size_t arg = 0;
    std::vector<std::string> other_holders;
    std::string from;
    clock::time_point asked{};
  };
  // Fetches measured since the last heartbeat (bounded: the head needs samples, not all of them).
  std::vector<std::pair<wire::transfer_note, clock::time_point>> transfer_notes;  // with when each ended
  static constexpr std::size_t max_transfer_notes = 256;
  struct peer_link {
    std::shared_ptr<transport::connection> conn;
    bool ready = false;
    std::vector<wire::frame> queued;
    std::vector<std::uint64_t> requests;
  };
  std::unordered_map<std::string, std::shared_ptr<peer_link>> peers;
  std::unordered_map<std::uint64_t, pending_fetch> fetches;
  std::uint64_t next_request = 1;

  std::thread ticker;
  bool ticker_stop = false;

  explicit impl(worker_config c) : cfg(std::move(c)) {}

  // ---- handlers ---------------------------------------------------------------------------------

  struct head_handler final : transport::handler {
    std::weak_ptr<impl> owner;
    void on_frame(transport::connection& c, wire::frame&& f) override {
      if (auto o = owner.lock()) o->from_head(c, std::move(f));
    }
    void on_closed(transport::connection& c, const std::string& reason) override {
      if (auto o = owner.lock()) o->head_lost(&c, reason);
    }
  };

  // A connection a peer (or the head) opened to fetch results.
  struct data_handler final : transport::handler {
    std::weak_ptr<impl> owner;
    std::string nonce;
    bool authed = false;
    void on_frame(transport::connection& c, wire::frame&& f) override {
      auto o = owner.lock();
      if (!o) return;
      try {
        if (!authed) {
          if (f.type != static_cast<std::uint16_t>(wire::msg::hello)) {
            c.close(fmt::format("expected hello, got {}", wire::msg_name(f.type)));
            return;
          }
          auto h = wire::decode<wire::hello_msg>(f);
          if (!o->cfg.token.empty() && !proof_valid(o->cfg.token, nonce, h.proof)) {
            c.send(wire::encode(wire::reject_msg{"authentication failed: wrong or missing token"}));
            c.close("authentication failed: wrong or missing token");
            return;
          }
          authed = true;
          c.trust();
          c.send(wire::encode(wire::welcome_msg{o->id_copy(), 0, 0, 0}));
          return;
        }
        if (f.type != static_cast<std::uint16_t>(wire::msg::fetch)) {
          c.close(fmt::format("unexpected {} message on a data connection", wire::msg_name(f.type)));
          return;
        }
        o->serve_fetch(c, f);
      } catch (const wire::decode_error& e) {
        log_limited(log_level::warn, "closing data connection from {}: {}", c.remote_address(), e.what());
        c.close(e.what());
      }
    }
    void on_closed(transport::connection&, const std::string&) override {}
  };

  // A connection this worker opened to a peer to fetch from it.
  struct fetch_handler final : transport::handler {
    std::weak_ptr<impl> owner;
    std::string address;
    void on_frame(transport::connection& c, wire::frame&& f) override {
      if (auto o = owner.lock()) o->from_peer(c, address, std::move(f));
    }
    void on_closed(transport::connection&, const std::string& reason) override {
      if (auto o = owner.lock()) o->peer_lost(address, reason);
    }
  };

  std::string id_copy() {
    std::lock_guard lock(mutex);
    return id;
  }

  /// Answers a fetch (from the head or a peer) with the stored value as the payload, or "not found".
  void serve_fetch(transport::connection& c, const wire::frame& f) {
    auto m = wire::decode<wire::fetch_msg>(f);
    auto value = lookup(m.task_id);
    const bool found = value != nullptr;  // before the move below: argument order is unspecified
    c.send(wire::encode(wire::fetch_reply_msg{m.request_id, m.task_id, found}, std::move(value)));
  }

  std::shared_ptr<const std::string> lookup(std::uint64_t task) {
    std::lock_guard lock(mutex);
    auto it = store.find(task);
    return it == store.end() ? nullptr : it->second;
  }

  // ---- start --------------------------------------------------------------------------------------

  void start() {
    transport::config tc;
    tc.max_frame_size = cfg.max_frame_size;
    tc.max_value_size = cfg.max_value_size;
    tc.connect_timeout = cfg.connect_timeout;
    // The data port's connections are untrusted until their hello passes (data_handler).
    tc.untrusted_frame_limit = transport::handshake_frame_limit;
    tc.handshake_timeout = cfg.handshake_timeout;
    if (cfg.transport == transport_kind::tcp) {
      tc.tls = transport::make_tls_credentials(cfg.tls);
      const auto at = transport::parse_address(cfg.connect);
      if (!tc.tls && cfg.head_key.empty() && at && !transport::is_loopback_host(at->host))
        log(log_level::warn,
            "worker: connecting to {} without TLS: the token proves who joins, but tasks and results cross the "
            "network readable (dx-worker --tls-cert, --tls-key, --tls-ca)",
            cfg.connect);
    }
    net = transport::make_transport(cfg.transport, tc);
    if (cfg.executor) {
      exec = cfg.executor;
    } else {
      own_exec = std::make_unique<executor>(cfg.threads == 0 ? 1 : cfg.threads);
      exec = own_exec.get();
    }
    const std::string listen_at = cfg.data_listen.empty() ? default_data_listen(cfg.connect) : cfg.data_listen;
    std::weak_ptr<impl> weak = weak_from_this();
    data_address = net->listen(listen_at, [weak](std::shared_ptr<transport::connection> c) {
      auto o = weak.lock();
      auto h = std::make_shared<data_handler>();
      h->owner = weak;
      h->nonce = make_nonce();
      c->set_handler(h);
      c->send(wire::encode(wire::challenge_msg{h->nonce, o && !o->cfg.token.empty()}));
    });
    // Behind a NAT, a proxy or a tunnel, peers reach this worker at another address than it binds.
    if (!cfg.data_advertise.empty()) data_address = cfg.data_advertise;
    auto h = std::make_shared<head_handler>();
    h->owner = weak;
    auto conn = net->connect(cfg.connect, h);
    {
      std::lock_guard lock(mutex);
      head = conn;
    }
    std::unique_lock lock(mutex);
    if (!cv.wait_for(lock, cfg.connect_timeout, [&] { return welcomed || !rejected.empty() || finished; })) {
      const std::string hint = challenged || cfg.tls.enabled() ? "" : tls_hint;
      lock.unlock();
      conn->close("no welcome from the head");
      throw_error(error_kind::generic,
                  fmt::format("cannot join the head at {}: no answer to the handshake{}", cfg.connect, hint));
    }
    if (!rejected.empty()) {
      const std::string why = rejected;
      lock.unlock();
      throw_error(error_kind::protocol, fmt::format("the head at {} rejected this worker: {}", cfg.connect, why));
    }
    if (!welcomed) {
      std::string why = lost_why.empty() ? "connection closed" : lost_why;
      // A head that wants TLS waits for a TLS hello this worker never sends, then hangs up.
      if (!challenged && !cfg.tls.enabled()) why += tls_hint;
      throw_error(error_kind::generic, fmt::format("cannot join the head at {}: {}", cfg.connect, why));
    }
    lock.unlock();
    ticker = std::thread([this] { tick(); });
  }

  void tick() {
    std::unique_lock lock(mutex);
    while (!ticker_stop) {
      cv.wait_for(lock, heartbeat_every);
      if (ticker_stop) break;
      if (offline) continue;  // nobody to beat for
      // A large message still arriving from the head (its frames wait behind it) is life too.
      if (head && head->bytes_arrived() != head_arrived_seen) {
        head_arrived_seen = head->bytes_arrived();
        last_from_head = clock::now();
      }
      if (clock::now() - last_from_head > heartbeat_timeout) {
        lock.unlock();
        head_lost(nullptr, fmt::format("no message from the head for {} ms", heartbeat_timeout.count()));
        lock.lock();
        continue;
      }
      if (stall_trace_enabled()) {
        std::size_t st[4] = {};
        for (auto& [t, j] : jobs) ++st[static_cast<int>(j->state.load())];
        log(log_level::warn,
            "stall trace worker {}: jobs {} (inputs {} queued {} running {} back {}), batch {}; got {} in {}, sent {} "
            "in {}",
            id, jobs.size(), st[0], st[1], st[2], st[3], done_batch.done.size(), got_tasks.load(), got_frames.load(),
            sent_tasks.load(), sent_frames.load());
      }
      wire::heartbeat_msg hb = heartbeat_locked();
      auto conn = head;
      lock.unlock();
      if (conn) conn->send(wire::encode(hb));
      lock.lock();
    }
  }

  /// What this worker runs, holds and measured, for the head.
  wire::heartbeat_msg heartbeat_locked() {
    wire::heartbeat_msg hb;
    hb.running = running.load(std::memory_order_relaxed);
    // A task whose answer is not yet handed to the connection still counts: a heartbeat sent
    // from this thread could otherwise overtake the answer and tell the head the worker is idle.
    hb.queued = static_cast<std::uint32_t>(jobs.size() + answers_unsent.load(std::memory_order_acquire));
    hb.stored_bytes = stored_bytes;
    hb.memory_bytes = resident_memory_bytes();
    if (head) {
      hb.receiving = head->receiving();
      hb.handled = head->bytes_received();
    }
    const auto now = clock::now();
    for (auto& [note, ended] : transfer_notes) {
      note.age_us = static_cast<std::uint64_t>(
          std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(now - ended).count()));
      hb.transfers.push_back(std::move(note));
    }
    transfer_notes.clear();
    const auto now_ns = now.time_since_epoch().count();
    for (auto& [task, j] : jobs) {
      if (j->state.load(std::memory_order_relaxed) != job_state::running) continue;
      const std::int64_t since = j->started_ns.load(std::memory_order_relaxed);
      if (since == 0) continue;
      hb.running_tasks.push_back({task, j->msg.attempt,
                                  static_cast<std::uint64_t>(std::max<std::int64_t>(0, now_ns - since) / 1000),
                                  j->thread.load(std::memory_order_relaxed)});
    }
    return hb;
  }

  /// A large frame of tasks from the head measures its link's bandwidth: the next heartbeat
  /// reports how long its body took (a transfer note from nobody: the head).
  void note_head_transfer(const wire::frame& f) {
    if (f.body_size() < head_transfer_bytes || f.receive_us == 0) return;
    std::lock_guard lock(mutex);
    if (transfer_notes.size() >= max_transfer_notes) return;
    wire::transfer_note note;
    note.bytes = f.body_size();
    note.micros = f.receive_us;
    transfer_notes.emplace_back(std::move(note), clock::now());
  }
  static constexpr std::uint64_t head_transfer_bytes = std::uint64_t{1} << 20;

  /// A ping from the head: answered at once (the head times the exchange on its own clock), and
  /// the head's deadline for this link is ours for the head too.
  void answer_ping(transport::connection& c, const wire::heartbeat_msg& ping) {
    wire::heartbeat_msg hb;
    {
      std::lock_guard lock(mutex);
      if (ping.deadline_ms) heartbeat_timeout = std::max(welcomed_timeout, std::chrono::milliseconds(ping.deadline_ms));
      if (!ping.ping) return;
      hb = heartbeat_locked();
    }
    hb.echo = ping.ping;
    c.send(wire::encode(hb));
  }

  // ---- messages from the head ---------------------------------------------------------------------

  void from_head(transport::connection& c, wire::frame&& f) {
    {
      std::lock_guard lock(mutex);
      last_from_head = clock::now();
    }
    try {
      switch (static_cast<wire::msg>(f.type)) {
        case wire::msg::challenge: {
          auto m = wire::decode<wire::challenge_msg>(f);
          {
            std::lock_guard lock(mutex);
            challenged = true;
          }
          wire::hello_msg h;
          h.role = wire::peer_role::worker;
          if (!cfg.token.empty()) h.proof = prove(cfg.token, m.nonce);
          {
            std::lock_guard lock(mutex);
            h.resuming = resuming;
            h.name = resuming ? id : cfg.name;  // back under the name the head knows it by
          }
          h.threads = static_cast<std::uint32_t>(cfg.threads);
          h.resources = cfg.resources;
          h.data_address = data_address;
          h.pid = ::getpid();
          h.host = host_name();
          h.head_key = cfg.head_key;
          c.send(wire::encode(h));
          return;
        }
        case wire::msg::welcome: {
          auto m = wire::decode<wire::welcome_msg>(f);
          c.trust();  // tasks with arguments over a frame may come, as chunks
          std::lock_guard lock(mutex);
          id = m.worker_id;
          if (m.heartbeat_ms) heartbeat_every = std::chrono::milliseconds(m.heartbeat_ms);
          if (m.heartbeat_timeout_ms)
            heartbeat_timeout = welcomed_timeout = std::chrono::milliseconds(m.heartbeat_timeout_ms);
          inline_limit = m.inline_result_limit;
          welcomed = true;
          if (resuming && m.resumed) resumed = true;  // rejoin() takes it from here
          cv.notify_all();
          return;
        }
        case wire::msg::reject: {
          auto m = wire::decode<wire::reject_msg>(f);
          std::lock_guard lock(mutex);
          rejected = m.reason.empty() ? "rejected" : m.reason;
          cv.notify_all();
          return;
        }
        case wire::msg::run_task:
          note_head_transfer(f);
          run_task(wire::decode<wire::run_task_msg>(f));
          return;
        case wire::msg::run_tasks: {
          note_head_transfer(f);
          auto batch = wire::decode<wire::run_tasks_msg>(f);
          got_frames.fetch_add(1);
          got_tasks.fetch_add(batch.tasks.size());
          for (auto& t : batch.tasks) run_task(std::move(t));
          return;
        }
        case wire::msg::fetch:
          serve_fetch(c, f);
          return;
        case wire::msg::release: {
          auto m = wire::decode<wire::release_msg>(f);
          std::lock_guard lock(mutex);
          for (auto t : m.task_ids) {
            auto it = store.find(t);
            if (it == store.end()) continue;
            stored_bytes -= it->second->size();
            store.erase(it);
          }
          return;
        }
        case wire::msg::heartbeat:
          answer_ping(c, wire::decode<wire::heartbeat_msg>(f));
          return;
        case wire::msg::steal:
          give_up(c, wire::decode<wire::steal_msg>(f));
          return;
        case wire::msg::cancel:
          cancel(wire::decode<wire::cancel_msg>(f));
          return;
        case wire::msg::shutdown:
          finish(0);
          return;
        default:
          c.close(fmt::format("unexpected {} message from the head", wire::msg_name(f.type)));
      }
    } catch (const wire::decode_error& e) {
      log(log_level::warn, "closing the connection to the head: {}", e.what());
      c.close(e.what());
    }
  }

  /// The head's connection `c` (nullptr: the current one) is lost. A worker that keeps its work
  /// goes offline (wait() returns 2, rejoin() takes its place back); any other ends (wait()
  /// returns 1).
  void head_lost(const transport::connection* c, const std::string& reason) {
    std::shared_ptr<transport::connection> dropped;
    {
      std::lock_guard lock(mutex);
      if (finished) return;
      if (offline) {  // the connection of an attempt to join again
        if (!c || c == joining.get()) {
          link_closed = true;
          cv.notify_all();
        }
        return;
      }
      if (c && head && head.get() != c) return;  // one this worker no longer uses
      if (cfg.keep_work_offline && welcomed && !leaving) {
        offline = true;
        dropped = std::move(head);
        head.reset();
        lost_why = reason;
        cv.notify_all();
      }
    }
    if (dropped) {
      log(log_level::info, "worker {}: the head is lost ({}); its {} tasks go on while it joins again", id_copy(),
          reason, jobs_count());
      dropped->close(reason);
      return;
    }
    log(log_level::info, "worker {}: the head is gone ({})", id_copy(), reason);
    {
      std::lock_guard lock(mutex);
      if (lost_why.empty()) lost_why = reason;
    }
    finish(1);
  }

  std::size_t jobs_count() {
    std::lock_guard lock(mutex);
    return jobs.size();
  }

  /// Joins the head again after wait() returned 2, keeping this worker's work: true when the head
  /// took it back, false when it holds nothing for it (it was away past its grace, or it is
  /// another head): the caller starts afresh. Throws dx::error when the head cannot be reached.
  bool rejoin() {
    auto h = std::make_shared<head_handler>();
    h->owner = weak_from_this();
    {
      std::lock_guard lock(mutex);
      welcomed = false;
      rejected.clear();
      resuming = true;
      resumed = false;
      link_closed = false;
    }
    std::shared_ptr<transport::connection> conn;
    try {
      conn = net->connect(cfg.connect, h);
    } catch (...) {
      std::lock_guard lock(mutex);
      resuming = false;
      throw;
    }
    std::unique_lock lock(mutex);
    joining = conn;
    const bool answered = cv.wait_for(
        lock, cfg.connect_timeout, [&] { return resumed || welcomed || !rejected.empty() || link_closed || finished; });
    joining.reset();
    resuming = false;
    if (resumed) {
      // What it holds, then what it answered while away, before anything else it sends.
      wire::resume_msg m;
      for (auto& [task, j] : jobs)
        if (j->state.load() != job_state::handed_back) m.held.push_back({task, j->msg.attempt});
      for (const auto& d : done_batch.done) m.held.push_back({d.task_id, d.attempt});
      for (const auto& a : held_answers) m.held.push_back({a.task, a.attempt});
      std::vector<held_answer> answers = std::move(held_answers);
      held_answers.clear();
      head = conn;
      offline = false;
      last_from_head = clock::now();
      lock.unlock();
      conn->send(wire::encode(m));
      for (auto& a : answers) conn->send(std::move(a.f));
      flush_done();
      return true;
    }
    const std::string refusal = rejected;
    const bool closed = link_closed;
    lock.unlock();
    conn->close("not taken back");
    if (!refusal.empty() || (answered && !closed)) return false;
    throw_error(error_kind::generic, fmt::format("cannot join the head at {} again: {}", cfg.connect,
                                                 closed ? "the connection closed" : "no answer to the handshake"));
  }

  void finish(int code) {
    std::lock_guard lock(mutex);
    if (finished) return;
    finished = true;
    exit_code = code;
    cv.notify_all();
  }

  // ---- running tasks -------------------------------------------------------------------------------

  void run_task(wire::run_task_msg&& m) {
    auto j = std::make_shared<job>();
    j->inputs.resize(m.args.size());
    const std::uint64_t task = m.task_id;
    j->msg = std::move(m);
    std::vector<std::size_t> to_fetch;
    {
      std::lock_guard lock(mutex);
      if (leaving) {
        auto conn = head;
        wire::leaving_msg back;
        back.tasks.push_back({task, j->msg.attempt});
        if (conn) conn->send(wire::encode(back));
        return;
      }
      jobs[task] = j;
      for (std::size_t i = 0; i < j->msg.args.size(); ++i) {
        auto& a = j->msg.args[i];
        if (!a.is_ref) continue;
        auto it = store.find(a.task_id);
        if (it != store.end()) {
          j->inputs[i] = it->second;
        } else {
          to_fetch.push_back(i);
        }
      }
      j->missing = to_fetch.size();
    }
    if (to_fetch.empty()) {
      schedule(j);
      return;
    }
    for (std::size_t i : to_fetch) fetch_input(j, i, j->msg.args[i].holders);
  }

  void fetch_input(const std::shared_ptr<job>& j, std::size_t arg, std::vector<std::string> holders) {
    for (;;) {
      if (holders.empty()) {
        input_lost(j, arg);
        return;
      }
      std::string address = holders.front();
      holders.erase(holders.begin());
      if (address == data_address) {
        auto v = lookup(j->msg.args[arg].task_id);
        if (v) {
          input_arrived(j, arg, std::move(v));
          return;
        }
        continue;
      }
      std::shared_ptr<peer_link> link;
      std::uint64_t request = 0;
      {
        std::lock_guard lock(mutex);
        request = next_request++;
        fetches[request] = pending_fetch{j, arg, holders, address, clock::now()};
        auto it = peers.find(address);
        if (it != peers.end()) link = it->second;
      }
      if (!link) {
        link = std::make_shared<peer_link>();
        auto h = std::make_shared<fetch_handler>();
        h->owner = weak_from_this();
        h->address = address;
        try {
          link->conn = net->connect(address, h);
        } catch (const std::exception& e) {
          log(log_level::info, "worker {}: cannot reach {} for a result: {}", id_copy(), address, e.what());
          std::lock_guard lock(mutex);
          fetches.erase(request);
          continue;
        }
        std::lock_guard lock(mutex);
        auto [it, inserted] = peers.try_emplace(address, link);
        if (!inserted) link = it->second;
      }
      wire::frame f = wire::encode(wire::fetch_msg{request, j->msg.args[arg].task_id});
      std::lock_guard lock(mutex);
      link->requests.push_back(request);
      if (link->ready) {
        link->conn->send(std::move(f));
      } else {
        link->queued.push_back(std::move(f));
      }
      return;
    }
  }

  void from_peer(transport::connection& c, const std::string& address, wire::frame&& f) {
    try {
      switch (static_cast<wire::msg>(f.type)) {
        case wire::msg::challenge: {
          auto m = wire::decode<wire::challenge_msg>(f);
          wire::hello_msg h;
          h.role = wire::peer_role::peer;
          if (!cfg.token.empty()) h.proof = prove(cfg.token, m.nonce);
          h.data_address = data_address;
          c.send(wire::encode(h));
          std::lock_guard lock(mutex);
          auto it = peers.find(address);
          if (it == peers.end()) return;
          it->second->ready = true;
          for (auto& q : it->second->queued) c.send(std::move(q));
          it->second->queued.clear();
          return;
        }
        case wire::msg::welcome:
          c.trust();  // results over a frame may come, as chunks
          return;
        case wire::msg::reject:
          c.close("the peer rejected this worker");
          return;
        case wire::msg::fetch_reply: {
          auto m = wire::decode<wire::fetch_reply_msg>(f);
          pending_fetch p;
          {
            std::lock_guard lock(mutex);
            auto it = fetches.find(m.request_id);
            if (it == fetches.end()) return;
            p = std::move(it->second);
            fetches.erase(it);
          }
          if (m.found && f.payload) {
            {
              std::lock_guard lock(mutex);
              if (transfer_notes.size() < max_transfer_notes) {
                const auto now = clock::now();
                wire::transfer_note note;
                note.from = p.from;
                note.bytes = f.payload->size();
                note.micros = static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::microseconds>(now - p.asked).count());
                note.task_id = p.j->msg.args[p.arg].task_id;
                transfer_notes.emplace_back(std::move(note), now);
              }
            }
            input_arrived(p.j, p.arg, f.payload);
          } else {
            fetch_input(p.j, p.arg, std::move(p.other_holders));
          }
          return;
        }
        default:
          c.close(fmt::format("unexpected {} message from a peer", wire::msg_name(f.type)));
      }
    } catch (const wire::decode_error& e) {
      c.close(e.what());
    }
  }

  void peer_lost(const std::string& address, const std::string&) {
    std::vector<pending_fetch> retry;
    {
      std::lock_guard lock(mutex);
      auto it = peers.find(address);
      if (it == peers.end()) return;
      for (auto r : it->second->requests) {
        auto f = fetches.find(r);
        if (f == fetches.end()) continue;
        retry.push_back(std::move(f->second));
        fetches.erase(f);
      }
      peers.erase(it);
    }
    for (auto& p : retry) fetch_input(p.j, p.arg, std::move(p.other_holders));
  }

  void input_arrived(const std::shared_ptr<job>& j, std::size_t arg, std::shared_ptr<const std::string> bytes) {
    bool ready = false;
    {
      std::lock_guard lock(mutex);
      j->inputs[arg] = std::move(bytes);
      ready = --j->missing == 0;
    }
    if (ready) schedule(j);
  }

  void input_lost(const std::shared_ptr<job>& j, std::size_t arg) {
    wire::task_failed_msg m;
    m.task_id = j->msg.task_id;
    m.attempt = j->msg.attempt;
    m.kind = wire::failure_kind::input_lost;
    m.lost_input = j->msg.args[arg].task_id;
    m.message = fmt::format("the result of task {} could not be fetched from any holder", m.lost_input);
    job_state expected = job_state::waiting_inputs;
    if (!j->state.compare_exchange_strong(expected, job_state::handed_back)) return;  // reported once
    send_to_head(wire::encode(m), j->msg.task_id);
  }

  /// The head moves a task elsewhere: it is given up only if it has not started here.
  void give_up(transport::connection& c, const wire::steal_msg& m) {
    wire::steal_reply_msg reply{m.task_id, m.attempt, false};
    {
      std::lock_guard lock(mutex);
      auto it = jobs.find(m.task_id);
      if (it != jobs.end() && it->second->msg.attempt == m.attempt) {
        job_state s = it->second->state.load();
        while ((s == job_state::waiting_inputs || s == job_state::queued) &&
               !it->second->state.compare_exchange_weak(s, job_state::handed_back)) {
        }
        if (s == job_state::waiting_inputs || s == job_state::queued) {
          reply.given_up = true;
          jobs.erase(it);
        }
      }
    }
    c.send(wire::encode(reply));
  }

  /// The head gave tasks up: those not started are dropped (never run, nothing reported), the
  /// running ones are asked to stop through their stop token.
  void cancel(const wire::cancel_msg& m) {
    std::lock_guard lock(mutex);
    for (std::uint64_t task : m.task_ids) {
      auto it = jobs.find(task);
      if (it == jobs.end()) continue;  // finished already, or never arrived
      job& j = *it->second;
      j.stop->request_stop(nullptr);
      job_state s = j.state.load();
      while ((s == job_state::waiting_inputs || s == job_state::queued) &&
             !j.state.compare_exchange_weak(s, job_state::handed_back)) {
      }
      const bool dropped = s == job_state::waiting_inputs || s == job_state::queued;
      log(log_level::debug, "worker {}: task {} given up by the head: {}", id, task,
          dropped ? "dropped unstarted" : "asked to stop");
      if (dropped) jobs.erase(it);
    }
  }

  void send_to_head(wire::frame f, std::uint64_t finished_task) {
    std::shared_ptr<transport::connection> conn;
    {
      std::lock_guard lock(mutex);
      auto it = jobs.find(finished_task);
      if (offline) {  // kept for the head, and told to it when it takes this worker back
        held_answers.push_back({finished_task, it == jobs.end() ? 0 : it->second->msg.attempt, std::move(f)});
        if (it != jobs.end()) jobs.erase(it);
        return;
      }
      answers_unsent.fetch_add(1, std::memory_order_acq_rel);
      if (it != jobs.end()) jobs.erase(it);
      conn = head;
    }
    if (conn) conn->send(std::move(f));
    answers_unsent.fetch_sub(1, std::memory_order_acq_rel);
  }

  void schedule(const std::shared_ptr<job>& j) {
    job_state expected = job_state::waiting_inputs;
    if (!j->state.compare_exchange_strong(expected, job_state::queued)) return;
    auto self = shared_from_this();
    exec->post([self, j] { self->execute(*j); });
  }

  void execute(job& j) {
    job_state expected = job_state::queued;
    if (!j.state.compare_exchange_strong(expected, job_state::running)) return;  // handed back
    running.fetch_add(1, std::memory_order_relaxed);
    const auto started = clock::now();
    j.thread.store(current_thread_index(), std::memory_order_relaxed);
    j.started_ns.store(started.time_since_epoch().count(), std::memory_order_relaxed);
    wire::task_failed_msg failure;
    failure.task_id = j.msg.task_id;
    failure.attempt = j.msg.attempt;
    std::string result;
    bool ok = false;
    if (const remote_function* fn = find_remote(j.msg.function)) {
      const running_scope running(this);
      std::vector<byte_view> views(j.msg.args.size());
      for (std::size_t i = 0; i < views.size(); ++i) {
        const std::string& b = j.msg.args[i].is_ref ? *j.inputs[i] : j.msg.args[i].bytes;
        views[i] = byte_view(b.data(), b.size());
      }
      try {
        current_task_scope scope(j.stop.get());
        result = fn->invoke(views);
        ok = true;
      } catch (const protocol_error& e) {
        failure.kind = wire::failure_kind::bad_arguments;
        failure.type_name = "dx::protocol_error";
        failure.message = e.what();
      } catch (const std::exception& e) {
        failure.kind = wire::failure_kind::exception;
        failure.type_name = type_name_of(typeid(e));
        failure.type_bases = public_base_names(typeid(e));
        failure.message = e.what();
      } catch (...) {
        failure.kind = wire::failure_kind::exception;
        failure.type_name = "unknown exception";
        failure.message = "a value that is not a std::exception was thrown";
      }
    } else {
      failure.kind = wire::failure_kind::not_registered;
      failure.type_name = "dx::not_registered";
      failure.message = fmt::format("function '{}' is not registered on worker {}", j.msg.function, id_copy());
    }
    const auto elapsed = clock::now() - started;
    if (cfg.slowdown > 1.0) std::this_thread::sleep_for(elapsed * (cfg.slowdown - 1.0));
    running.fetch_sub(1, std::memory_order_relaxed);
    const std::uint32_t thread = current_thread_index();
    failure.thread = thread;
    failure.duration_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - started).count());
    if (!ok) {
      send_to_head(wire::encode(failure), j.msg.task_id);
      return;
    }
    // Checked with the message that carries it (an inline completion or a fetch reply), against
    // the limit every receiver applies: over it, this task fails alone and the worker goes on.
    if (result.size() > cfg.max_value_size || result.size() + result_envelope_bytes() > cfg.max_value_size) {
      failure.kind = wire::failure_kind::too_large;
      failure.type_name = "dx::error";
      failure.message = fmt::format(
          "the result of task {} ({}) is {} bytes, {} bytes with the message that carries it: over the value limit of "
          "{} bytes on worker {} (options::max_value_size, dx-worker --max-value-size)",
          j.msg.task_id, j.msg.function, result.size(), result.size() + result_envelope_bytes(), cfg.max_value_size,
          id_copy());
      log(log_level::warn, "worker {}: {}", id_copy(), failure.message);
      std::string().swap(result);
      send_to_head(wire::encode(failure), j.msg.task_id);
      return;
    }
    if (cfg.corrupt_results > 0 && !result.empty() && corrupt_draw() < cfg.corrupt_results) {
      // One byte anywhere, changed to any other value: two corrupted copies rarely agree.
      const auto at = static_cast<std::size_t>(corrupt_draw() * static_cast<double>(result.size()));
      const auto flip = static_cast<unsigned char>(1 + static_cast<int>(corrupt_draw() * 255));
      result[at] = static_cast<char>(static_cast<unsigned char>(result[at]) ^ flip);
    }
    wire::task_done_msg done;
    done.task_id = j.msg.task_id;
    done.attempt = j.msg.attempt;
    done.result_size = result.size();
    done.duration_ns = failure.duration_ns;
    done.thread = thread;
    if (result.size() <= inline_limit || j.msg.result_to_head) {
      done.inline_result = true;
      report_done(done, std::move(result));
      return;
    }
    auto bytes = std::make_shared<const std::string>(std::move(result));
    {
      std::lock_guard lock(mutex);
      auto [it, inserted] = store.try_emplace(j.msg.task_id, bytes);
      if (!inserted) {
        stored_bytes -= it->second->size();
        it->second = bytes;
      }
      stored_bytes += bytes->size();
    }
    report_done(done, std::string());
  }

  /// The most a result's reply adds to it: a completion carrying it inline alone, or a fetch
  /// reply with it as the payload (a Boost binary archive's lengths take the same room whatever
  /// they say, so an empty result measures it).
  static std::uint64_t result_envelope_bytes() {
    static const std::uint64_t bytes = [] {
      wire::tasks_done_msg inline_done;
      inline_done.done.emplace_back();
      inline_done.results.emplace_back();
      const std::uint64_t done = wire::encode(inline_done).archive.size();
      const std::uint64_t reply =
          wire::encode(wire::fetch_reply_msg{~std::uint64_t{0}, ~std::uint64_t{0}, true}).archive.size();
      return std::max(done, reply);
    }();
    return bytes;
  }

  /// Completions queue up and go out as one frame from the network thread, so a burst of short
  /// tasks costs one archive and one write.
  void report_done(const wire::task_done_msg& done, std::string inline_bytes) {
    bool first = false;
    {
      std::lock_guard lock(mutex);
      answers_unsent.fetch_add(1, std::memory_order_acq_rel);
      jobs.erase(done.task_id);
      first = done_batch.done.empty();
      done_batch.done.push_back(done);
      done_batch.results.push_back(std::move(inline_bytes));
    }
    if (first) {
      auto self = shared_from_this();
      net->post([self] { self->flush_done(); });
    }
  }

  void flush_done() {
    wire::tasks_done_msg batch;
    std::shared_ptr<transport::connection> conn;
    {
      std::lock_guard lock(mutex);
      if (offline) return;  // the answers wait for the head to take this worker back
      std::swap(batch, done_batch);
      conn = head;
    }
    const std::size_t answers = batch.done.size();
    std::uint64_t total = 0;
    for (const std::string& r : batch.results) total += r.size() + result_envelope_bytes();
    if (conn && answers > 0 && total <= cfg.max_value_size) {
      sent_frames.fetch_add(1);
      sent_tasks.fetch_add(answers);
      conn->send(wire::encode(batch));
    } else if (conn && answers > 0) {
      // Several frames: the results together would be over the value limit.
      wire::tasks_done_msg part;
      std::uint64_t part_bytes = 0;
      const auto send_part = [&] {
        sent_frames.fetch_add(1);
        sent_tasks.fetch_add(part.done.size());
        conn->send(wire::encode(part));
        part.done.clear();
        part.results.clear();
        part_bytes = 0;
      };
      for (std::size_t i = 0; i < answers; ++i) {
        const std::uint64_t bytes = batch.results[i].size() + result_envelope_bytes();
        if (!part.done.empty() && part_bytes + bytes > cfg.max_value_size) send_part();
        part.done.push_back(batch.done[i]);
        part.results.push_back(std::move(batch.results[i]));
        part_bytes += bytes;
      }
      send_part();
    }
    answers_unsent.fetch_sub(answers, std::memory_order_acq_rel);
  }

  // ---- leaving and stopping -------------------------------------------------------------------------

  void leave() {
    wire::leaving_msg back;
    std::shared_ptr<transport::connection> conn;
    {
      std::lock_guard lock(mutex);
      if (leaving || finished) return;
      leaving = true;
      for (auto& [task, j] : jobs) {
        job_state s = j->state.load();
        while ((s == job_state::waiting_inputs || s == job_state::queued) &&
               !j->state.compare_exchange_weak(s, job_state::handed_back)) {
        }
        if (s == job_state::waiting_inputs || s == job_state::queued) back.tasks.push_back({task, j->msg.attempt});
      }
      for (auto& t : back.tasks) jobs.erase(t.task_id);
      conn = head;
    }
    if (conn) conn->send(wire::encode(back));
    exec->wait_idle();  // running tasks finish and report
    flush_done();
    if (conn) conn->close("worker left");
    finish(0);
  }

  void shutdown_all() {
    {
      std::lock_guard lock(mutex);
      ticker_stop = true;
      finished = true;
      cv.notify_all();
    }
    if (ticker.joinable()) ticker.join();
    if (net) net->stop();
    if (own_exec) own_exec->shutdown();
  }
};

worker_runtime::worker_runtime(worker_config cfg) : impl_(std::make_shared<impl>(std::move(cfg))) {}
worker_runtime::~worker_runtime() { impl_->shutdown_all(); }

void worker_runtime::start() { impl_->start(); }

int worker_runtime::wait() {
  std::unique_lock lock(impl_->mutex);
  impl_->cv.wait(lock, [&] { return impl_->finished || impl_->offline; });
  return impl_->finished ? impl_->exit_code : 2;
}

bool worker_runtime::rejoin() { return impl_->rejoin(); }

void worker_runtime::leave() { impl_->leave(); }

void worker_runtime::kill() {
  {
    std::lock_guard lock(impl_->mutex);
    // Jobs not started never start: a dead process runs nothing more.
    for (auto& [task, j] : impl_->jobs) j->state.store(job_state::handed_back);
  }
  impl_->shutdown_all();
}

std::string worker_runtime::id() const { return impl_->id_copy(); }

std::string worker_runtime::lost_reason() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->lost_why;
}

std::string worker_runtime::rejection() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->rejected;
}

void worker_runtime::stop_tasks() {
  std::lock_guard lock(impl_->mutex);
  for (auto& [task, j] : impl_->jobs) j->stop->request_stop(nullptr);
}

std::size_t worker_runtime::running_tasks() const noexcept { return impl_->running.load(std::memory_order_relaxed); }

std::string running_worker_id() { return running_on ? running_on->id_copy() : std::string(); }

}  // namespace dx::detail
