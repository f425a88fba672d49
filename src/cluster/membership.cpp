// Membership: connections and the handshake, frames routed to the rooms that handle them,
// heartbeats and load reports, graceful leaving, the worker processes and threads the head starts,
// and the tick that checks liveness, rebalances and evaluates alert rules.
#include "cluster/auth.hpp"
#include "cluster/head_state.hpp"
#include "cluster/process.hpp"
#include "common/log.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <dx/error.hpp>
#include <limits>
#include <set>

namespace dx::detail {

void head_impl::spawn_processes(std::size_t n) {
  const std::string program = opts_.worker_program().empty() ? current_program() : opts_.worker_program();
  std::map<std::string, std::string> env{{"DX_WORKER_OF", std::to_string(::getpid())}};
  if (!token_.empty()) env["DX_TOKEN"] = token_;
  // A level chosen with dx::set_log_level holds for the workers this head starts, too.
  if (log_level_set_in_code()) env["DX_LOG"] = dx::to_string(dx::get_log_level());
  for (std::size_t i = 0; i < n; ++i) {
    // --reconnect-for 0: a worker this head started ends with it, never waits for another head.
    std::vector<std::string> args{"--dx-worker",
                                  "--connect",
                                  endpoint_,
                                  "--threads",
                                  std::to_string(opts_.threads_per_process()),
                                  "--max-frame-size",
                                  std::to_string(opts_.max_frame_size()),
                                  "--max-value-size",
                                  std::to_string(opts_.max_value_size()),
                                  "--name",
                                  next_local_name(),
                                  "--reconnect-for",
                                  "0"};
    if (opts_.transport() == transport_kind::tcp && opts_.tls().enabled()) {
      const tls_options& tls = opts_.tls();
      for (const auto& [flag, file] : {std::pair{"--tls-cert", tls.certificate},
                                       std::pair{"--tls-key", tls.private_key}, std::pair{"--tls-ca", tls.ca}})
        if (!file.empty()) args.insert(args.end(), {flag, file});
      if (tls.min_version == tls_version::tls1_2) args.insert(args.end(), {"--tls-min-version", "1.2"});
    }
    const pid_t pid = spawn_process(program, args, env);
    std::lock_guard lock(mutex_);
    children_.push_back(pid);
  }
}

std::string head_impl::next_local_name() {
  std::lock_guard lock(mutex_);
  std::string name = fmt::format("{}-{}", host_, next_local_++);
  reserved_names_.insert(name);
  return name;
}

std::size_t head_impl::add_local_worker() {
  worker_config wc = worker_template();
  wc.name = next_local_name();
  auto w = std::make_unique<worker_runtime>(wc);
  w->start();
  std::lock_guard lock(mutex_);
  thread_workers_.push_back(std::move(w));
  return thread_workers_.size() - 1;
}

void head_impl::kill_local_worker(std::size_t index) {
  std::unique_ptr<worker_runtime> w;
  {
    std::lock_guard lock(mutex_);
    if (index >= thread_workers_.size() || !thread_workers_[index]) return;
    w = std::move(thread_workers_[index]);
  }
  w->kill();
}

void head_impl::leave_local_worker(std::size_t index) {
  worker_runtime* w = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (index >= thread_workers_.size() || !thread_workers_[index]) return;
    w = thread_workers_[index].get();
  }
  w->leave();
}

std::vector<int> head_impl::worker_pids() const {
  std::lock_guard lock(mutex_);
  return std::vector<int>(children_.begin(), children_.end());
}

void head_impl::on_frame(session& s, transport::connection& c, wire::frame&& f) {
  deferred d;
  try {
    std::unique_lock lock(mutex_);
    if (!s.authed) {
      handshake_locked(s, c, f, d);
      if (s.authed) c.trust();  // messages over a frame may come from it now, as chunks
      lock.unlock();
      d.run();
      return;
    }
    worker_rec* w = s.worker;
    if (!w) return;
    w->last_seen = head_clock::now();
    switch (static_cast<wire::msg>(f.type)) {
      case wire::msg::task_done:
        task_done_locked(*w, wire::decode<wire::task_done_msg>(f), std::move(f.payload), d);
        break;
      case wire::msg::tasks_done: {
        auto batch = wire::decode<wire::tasks_done_msg>(f);
        ++w->done_frames;
        w->done_tasks += batch.done.size();
        for (std::size_t i = 0; i < batch.done.size(); ++i) {
          std::shared_ptr<const std::string> result;
          if (batch.done[i].inline_result && i < batch.results.size())
            result = std::make_shared<const std::string>(std::move(batch.results[i]));
          task_done_locked(*w, batch.done[i], std::move(result), d);
        }
        break;
      }
      case wire::msg::task_failed:
        task_failed_locked(*w, wire::decode<wire::task_failed_msg>(f), d);
        break;
      case wire::msg::fetch_reply:
        fetch_reply_locked(*w, wire::decode<wire::fetch_reply_msg>(f), std::move(f.payload), d);
        break;
      case wire::msg::heartbeat:
        heartbeat_locked(*w, wire::decode<wire::heartbeat_msg>(f), d);
        break;
      case wire::msg::leaving:
        leaving_locked(*w, wire::decode<wire::leaving_msg>(f));
        break;
      case wire::msg::steal_reply:
        steal_reply_locked(*w, wire::decode<wire::steal_reply_msg>(f));
        break;
      case wire::msg::resume:
        resume_locked(*w, wire::decode<wire::resume_msg>(f), d);
        break;
      default:
        lock.unlock();
        protocol_violation(
            c, fmt::format("unexpected {} message (type {}) from worker {}", wire::msg_name(f.type), f.type, w->id));
        return;
    }
    dispatch_locked(d);
    flush_releases_locked();
  } catch (const wire::decode_error& e) {
    protocol_violation(c, e.what());
  }
  d.run();
}

void head_impl::protocol_violation(transport::connection& c, const std::string& why) {
  log_limited(log_level::warn, "closing connection from {}: {}", c.remote_address(), why);
  c.close(why);
}

void head_impl::handshake_locked(session& s, transport::connection& c, const wire::frame& f, deferred& d) {
  if (f.type != static_cast<std::uint16_t>(wire::msg::hello)) {
    const std::string why = fmt::format("expected hello first, got {} (type {})", wire::msg_name(f.type), f.type);
    log_limited(log_level::warn, "closing connection from {}: {}", c.remote_address(), why);
    c.close(why);
    return;
  }
  auto h = wire::decode<wire::hello_msg>(f);
  if (!token_.empty() && !proof_valid(token_, s.nonce, h.proof)) {
    const std::string why = h.proof.empty() ? "authentication failed: no token" : "authentication failed: wrong token";
    log_limited(log_level::warn, "rejecting {}: {}", c.remote_address(), why);
    c.send(wire::encode(wire::reject_msg{why}));
    c.close(why);
    return;
  }
  if (h.role != wire::peer_role::worker || shutting_down_) {
    c.send(wire::encode(wire::reject_msg{"this head accepts workers only"}));
    c.close("not a worker");
    return;
  }
  // The same process back on a new connection before this head saw its old one close (its side
  // timed the link out first): the old connection is done with, its work kept for it.
  if (h.resuming && !h.name.empty() && opts_.offline_grace().count() > 0) {
    auto it = workers_.find(h.name);
    if (it != workers_.end() && it->second->state == worker_state::active && !it->second->local &&
        it->second->pid == h.pid && it->second->conn && it->second->conn != s.conn) {
      auto old = it->second->conn;
      go_offline_locked(*it->second, "it joined again on a new connection", d);
      old->close("the worker joined again on a new connection");
    }
  }
  std::string refusal;
  const std::string name = name_for_locked(h, refusal);
  if (name.empty()) {
    log_limited(log_level::warn, "refusing a worker from {}: {}", c.remote_address(), refusal);
    c.send(wire::encode(wire::reject_msg{refusal}));
    c.close(refusal);
    return;
  }
  auto away = workers_.find(name);
  const bool offline = away != workers_.end() && away->second->state == worker_state::offline;
  if (h.resuming && !offline) {
    const std::string why = fmt::format(
        "this head holds no work for worker '{}' (it was away longer than options::offline_grace, or the head is "
        "not the one it left): join afresh",
        name);
    log(log_level::info, "worker {} asked to take its place back: {}", name, why);
    c.send(wire::encode(wire::reject_msg{why}));
    c.close(why);
    return;
  }
  if (offline && h.resuming) {
    resume_join_locked(s, c, *away->second, h);
    return;
  }
  // A new process under the name of one that is offline: what the old one held is lost.
  if (offline) remove_worker_locked(*away->second, d);
  // One record per name: a worker that left or was lost and joins again under its name takes its
  // record back, with its scheduler id (and so its counters and history); the rest is new.
  auto [it, fresh] = workers_.try_emplace(name);
  if (fresh) it->second = std::make_unique<worker_rec>();
  worker_rec& rec = *it->second;
  const sched::worker_id sid = fresh ? static_cast<sched::worker_id>(by_sid_.size()) : rec.sid;
  const std::uint64_t bytes_to = rec.bytes_to_final, bytes_from = rec.bytes_from_final;
  rec = worker_rec{};
  rec.id = name;
  rec.local = name == "head";
  rec.sid = sid;
  rec.bytes_to_final = bytes_to;
  rec.bytes_from_final = bytes_from;
  rec.conn = s.conn;
  rec.data_address = h.data_address;
  rec.threads = std::max<std::size_t>(1, h.threads);
  rec.resources = h.resources;
  rec.pid = h.pid;
  if (fresh) by_sid_.push_back(&rec);
  s.authed = true;
  s.worker = &rec;
  wire::welcome_msg wm{rec.id, static_cast<std::uint32_t>(opts_.heartbeat_interval().count()),
                       static_cast<std::uint32_t>(opts_.heartbeat_timeout().count()), opts_.inline_result_limit()};
  c.send(wire::encode(wm));
  log(log_level::info, "worker {} {} from {} ({} threads)", rec.id, fresh ? "joined" : "joined again",
      c.remote_address(), rec.threads);
  sched::worker_spec spec;
  spec.id = rec.sid;
  spec.name = rec.id;  // the cost model learns its speed under its name
  spec.threads = static_cast<std::uint32_t>(rec.threads);
  spec.capacity = rec.resources;
  spec.host = h.host;  // copies that must run on distinct hosts tell machines apart by it
  sched_->worker_joined(spec, now_seconds());
  // The challenge and this hello were one exchange: the first measure of its link, so that its
  // window fits it from the first dispatch. A ping follows at once for a second.
  if (s.challenged_at != head_clock::time_point{})
    rec.round_trip.add(std::chrono::duration<double>(head_clock::now() - s.challenged_at).count());
  sched_->worker_round_trip(rec.sid, rec.round_trip.seconds(), rec.round_trip.jitter());
  ping_locked(rec);
  workers_cv_.notify_all();
  dispatch_locked(d);
}

void head_impl::resume_join_locked(session& s, transport::connection& c, worker_rec& w, const wire::hello_msg& h) {
  const auto away_for =
      std::chrono::duration_cast<std::chrono::milliseconds>(head_clock::now() - w.offline_since).count();
  w.conn = s.conn;
  w.state = worker_state::active;
  w.awaiting_resume = true;  // nothing new is placed there until it says what it holds
  w.last_seen = head_clock::now();
  w.pid = h.pid;
  w.data_address = h.data_address;
  s.authed = true;
  s.worker = &w;
  wire::welcome_msg wm{w.id, static_cast<std::uint32_t>(opts_.heartbeat_interval().count()),
                       static_cast<std::uint32_t>(opts_.heartbeat_timeout().count()), opts_.inline_result_limit(),
                       true};
  c.send(wire::encode(wm));
  log(log_level::info, "worker {} is back from {} after {} ms offline; it keeps its work", w.id, c.remote_address(),
      away_for);
  if (s.challenged_at != head_clock::time_point{})
    w.round_trip.add(std::chrono::duration<double>(head_clock::now() - s.challenged_at).count());
  sched_->worker_round_trip(w.sid, w.round_trip.seconds(), w.round_trip.jitter());
  ping_locked(w);
  workers_cv_.notify_all();
}

void head_impl::resume_locked(worker_rec& w, const wire::resume_msg& m, deferred& d) {
  if (!w.awaiting_resume) return;  // said once, as it joins again
  w.awaiting_resume = false;
  std::set<std::pair<std::uint64_t, std::uint32_t>> held;
  for (const auto& t : m.held) held.emplace(t.task_id, t.attempt);
  const double now = now_seconds();
  // Sent there and no longer held (lost on the way, or never received): placed again.
  std::size_t kept = 0, moved = 0;
  for (auto id : sched_->tasks_on(w.sid)) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) continue;
    task_entry& t = it->second;
    if (held.erase({id, t.attempt}) > 0) {
      ++kept;
      t.sent_through = 0;  // it arrived, on the connection before this one
      continue;
    }
    ++moved;
    t.handed_back.push_back(t.attempt);
    sched_->task_returned(id, w.sid, now);
    requeue_locked(t, d);
  }
  // Held there and no longer wanted from it (cancelled, or run elsewhere meanwhile): dropped.
  wire::cancel_msg drop;
  for (const auto& [task, attempt] : held) drop.task_ids.push_back(task);
  if (!drop.task_ids.empty()) w.conn->send(wire::encode(drop));
  log(log_level::info, "worker {} holds {} of the tasks sent to it; {} placed again, {} it holds dropped", w.id, kept,
      moved, drop.task_ids.size());
  sched_->worker_back(w.sid, now);
}

void head_impl::go_offline_locked(worker_rec& w, const std::string& reason, deferred& d) {
  // A link lost again before the worker said what it holds does not restart its grace.
  if (!w.awaiting_resume) w.offline_since = head_clock::now();
  w.awaiting_resume = false;
  w.state = worker_state::offline;
  if (w.conn) {
    w.bytes_to_final += w.conn->bytes_sent();
    w.bytes_from_final += w.conn->bytes_received();
  }
  w.conn.reset();
  sched_->worker_draining(w.sid, now_seconds());  // nothing new goes there; what it was sent stays
  abandon_fetches_from_locked(w, d);
  log(log_level::info, "worker {} is offline ({}): the {} tasks sent to it wait up to {} ms for it to join again", w.id,
      reason, sched_->sent_count(w.sid), opts_.offline_grace().count());
  workers_cv_.notify_all();
  idle_cv_.notify_all();
}

void head_impl::ping_locked(worker_rec& w) {
  wire::heartbeat_msg ping;
  ping.ping = w.next_ping++;
  ping.deadline_ms = static_cast<std::uint32_t>(
      std::min<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(silence_deadline_locked(w)).count(),
                             std::numeric_limits<std::uint32_t>::max()));
  w.round_trip.pinged(ping.ping, head_clock::now());
  w.conn->send(wire::encode(ping));
}

std::chrono::nanoseconds head_impl::link_allowance_locked(const worker_rec& w) const {
  const double seconds = 2 * (w.round_trip.seconds() + 4 * w.round_trip.jitter());
  const auto cap = 3 * std::chrono::duration<double>(opts_.heartbeat_timeout()).count();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::duration<double>(std::min(seconds, cap)));
}

std::chrono::nanoseconds head_impl::silence_deadline_locked(const worker_rec& w) const {
  return opts_.heartbeat_timeout() + link_allowance_locked(w);
}

std::string head_impl::name_for_locked(const wire::hello_msg& h, std::string& refusal) const {
  const bool own = !h.head_key.empty() && h.head_key == head_key_;
  if (own) {
    if (h.name != "head") {
      refusal = "the head's own threads are named 'head'";
      return {};
    }
  } else if (!h.name.empty()) {
    if (std::string why = worker_name_problem(h.name); !why.empty()) {
      refusal = fmt::format("not a worker name: {}", why);
      return {};
    }
  }
  const auto live = [&](const std::string& name) {
    auto it = workers_.find(name);
    return it != workers_.end() && it->second->state != worker_state::gone &&
                   it->second->state != worker_state::quarantined && it->second->state != worker_state::offline
               ? it->second.get()
               : nullptr;
  };
  const auto quarantined = [&](const std::string& name) {
    auto it = reliability_.find(name);
    return it != reliability_.end() && it->second.quarantined;
  };
  if (!h.name.empty()) {
    if (!own && quarantined(h.name)) {
      refusal = fmt::format(
          "worker '{}' is quarantined: too many of its results disagreed with other workers' copies (dx::cluster "
          "workers() shows its record); it may not join this cluster",
          h.name);
      return {};
    }
    if (const worker_rec* other = live(h.name)) {
      refusal = fmt::format(
          "a worker named '{}' is already connected (pid {}); two live workers cannot share a name: pick "
          "another with --name, or join again once that one has left",
          h.name, other->pid);
      return {};
    }
    return h.name;
  }
  // An unnamed worker: after its host (as the worker said it, made fit for a name), with the
  // lowest index free.
  const std::string host = host_part(h.host);
  for (std::size_t n = 1;; ++n) {
    std::string name = fmt::format("{}-{}", host, n);
    if (!live(name) && !reserved_names_.contains(name) && !quarantined(name)) return name;
  }
}

void head_impl::on_closed(session& s, const std::string& reason) {
  deferred d;
  {
    std::lock_guard lock(mutex_);
    worker_rec* w = s.worker;
    s.worker = nullptr;
    // A record that moved on to another connection (joined again) is not this one's to end.
    if (!w || w->conn != s.conn || w->state == worker_state::gone || w->state == worker_state::quarantined ||
        w->state == worker_state::offline)
      return;
    // A worker the head started, or its own threads, never comes back: no grace for them.
    if (w->state == worker_state::active && !shutting_down_ && opts_.offline_grace().count() > 0 && !w->local &&
        !reserved_names_.contains(w->id)) {
      go_offline_locked(*w, reason, d);
    } else {
      if (!shutting_down_) log(log_level::info, "worker {} removed: {}", w->id, reason);
      remove_worker_locked(*w, d);
    }
    dispatch_locked(d);
    flush_releases_locked();
  }
  d.run();
}

std::size_t head_impl::active_workers_locked() const {
  std::size_t k = 0;
  for (const auto& [id, w] : workers_)
    if (w->state == worker_state::active) ++k;
  return k;
}

/// A heartbeat: load, running tasks, transfers measured; an idle worker with open tasks lost them.
void head_impl::heartbeat_locked(worker_rec& w, const wire::heartbeat_msg& m, deferred& d) {
  const double now = now_seconds();
  if (m.echo && w.round_trip.echoed(m.echo, head_clock::now(), silence_deadline_locked(w)))
    sched_->worker_round_trip(w.sid, w.round_trip.seconds(), w.round_trip.jitter());
  sched_->load_report(w.sid, m.running, m.queued, now);
  w.running_reported = m.running;
  w.memory_bytes = m.memory_bytes;
  w.stored_bytes = m.stored_bytes;
  for (const wire::running_task& r : m.running_tasks) {
    auto it = tasks_.find(r.task_id);
    if (it == tasks_.end() || !current_attempt_locked(it->second, w, r.attempt)) continue;
    const bool first_seen = it->second.running_since < 0;
    it->second.running_since = now - static_cast<double>(r.elapsed_us) * 1e-6;
    it->second.running_thread = r.thread;
    sched_->task_started(r.task_id, w.sid, it->second.running_since);
    if (first_seen && it->second.copy_of) copy_started_locked(it->second);
  }
  for (const wire::transfer_note& note : m.transfers) {
    if (note.from.empty()) {
      // From the head: the worker timed the body alone; the head adds the way there.
      const double seconds = static_cast<double>(note.micros) * 1e-6 + w.round_trip.seconds() / 2;
      sched_->head_transfer_measured(w.sid, note.bytes, seconds);
      continue;
    }
    for (const auto& [id, from] : workers_)
      if (from->data_address == note.from && from->sid != sched::no_worker) {
        const double seconds = static_cast<double>(note.micros) * 1e-6;
        sched_->transfer_measured(from->sid, w.sid, note.bytes, seconds);
        if (observe_) {
          observe::link_stats& link = links_[{from->sid, w.sid}];
          link.bytes += note.bytes;
          link.durations.observe(seconds);
          const double end = now - static_cast<double>(note.age_us) * 1e-6;
          transfer_events_.push(
              {note.task_id, end - seconds, static_cast<float>(seconds), from->sid, w.sid, note.bytes});
        }
        break;
      }
  }
  // Idle with tasks open: their dispatch was lost, unless it is still arriving (a large frame on a
  // slow link takes as long as it takes).
  if (m.running == 0 && m.queued == 0 && m.receiving == 0 && sched_->sent_count(w.sid) > 0)
    requeue_stale_locked(w, m.handled, d);
}

void head_impl::leaving_locked(worker_rec& w, const wire::leaving_msg& m) {
  if (w.state == worker_state::active) w.state = worker_state::leaving;
  sched_->worker_draining(w.sid, now_seconds());
  for (const auto& back : m.tasks) {
    auto it = tasks_.find(back.task_id);
    if (it == tasks_.end()) continue;
    task_entry& t = it->second;
    if (!current_attempt_locked(t, w, back.attempt)) continue;
    t.handed_back.push_back(t.attempt);
    sched_->task_returned(t.id, w.sid, now_seconds());  // it places the task again
  }
}

/// A connection that has not completed the handshake; closed if it stays silent too long.
void head_impl::track_pending(const std::shared_ptr<transport::connection>& c) {
  std::lock_guard lock(mutex_);
  pending_.push_back({c, head_clock::now()});
}

void head_impl::tick() {
  std::unique_lock lock(mutex_);
  auto next_beat = head_clock::now() + opts_.heartbeat_interval();
  while (!ticker_stop_) {
    // Wakes for the next beat, for a notification (alerts, stop), or for the earliest timer (a
    // time limit, the end of a retry's pause).
    const auto wake = timers_.empty() ? next_beat : std::min(next_beat, timers_.top().at);
    const bool notified = tick_cv_.wait_until(lock, wake) == std::cv_status::no_timeout;
    if (ticker_stop_) break;
    const bool for_timer = std::exchange(timer_added_, false);
    if (!timers_.empty() && timers_.top().at <= head_clock::now()) {
      deferred d;
      fire_timers_locked(d);
      dispatch_locked(d);  // tells the workers, fills the slots the expired tasks freed, runs retries
      lock.unlock();
      d.run();
      lock.lock();
      if (ticker_stop_) break;
      if (!notified && head_clock::now() < next_beat) continue;
    } else if ((notified && for_timer) || (!notified && head_clock::now() < next_beat)) {
      continue;  // woken only to wait for an earlier timer
    }
    next_beat = head_clock::now() + opts_.heartbeat_interval();
    if (stall_trace_enabled()) {
      std::size_t by[8] = {};
      for (auto& [id, t] : tasks_) ++by[static_cast<int>(phase_locked(id))];
      std::string ws;
      for (auto& [id, w] : workers_)
        ws += fmt::format(" {}:{} (sent {} in {}, done {} in {})", id, sched_->sent_count(w->sid), w->sent_tasks,
                          w->sent_frames, w->done_tasks, w->done_frames);
      log(log_level::warn, "stall trace: waiting {} ready {} sent {} running {} done {} failed {}; unfinished {};{}",
          by[1], by[2], by[3], by[4], by[5], by[6], unfinished_, ws);
    }
    deferred d;
    dispatch_locked(d);  // rebalancing and alert rules also run without events
    lock.unlock();
    d.run();
    alerts_.evaluate(now_seconds());  // reads metrics, which takes the lock
    alerts_.deliver();
    lock.lock();
    if (ticker_stop_) break;
    const auto now = head_clock::now();
    std::vector<std::shared_ptr<transport::connection>> silent;
    std::vector<std::shared_ptr<transport::connection>> no_handshake;
    std::erase_if(pending_, [&](const pending_conn& p) {
      auto c = p.conn.lock();
      if (!c) return true;
      bool joined = false;
      for (const auto& [id, w] : workers_) joined = joined || w->conn == c;
      if (joined) return true;
      if (now - p.since <= handshake_deadline()) return false;
      no_handshake.push_back(std::move(c));
      return true;
    });
    {
      deferred gone;
      bool expired = false;
      for (auto& [id, w] : workers_) {
        if (w->state != worker_state::offline || now - w->offline_since <= opts_.offline_grace()) continue;
        log(log_level::warn, "worker {} stayed offline longer than {} ms (options::offline_grace): its work moves", id,
            opts_.offline_grace().count());
        remove_worker_locked(*w, gone);
        expired = true;
      }
      if (expired) {
        dispatch_locked(gone);
        flush_releases_locked();
        lock.unlock();
        gone.run();
        lock.lock();
        if (ticker_stop_) break;
      }
    }
    std::vector<std::string> silent_why;
    for (auto& [id, w] : workers_) {
      if (w->state == worker_state::gone || !w->conn) continue;
      // A large message still arriving from it (its frames wait behind it) is life too.
      if (const std::uint64_t arrived = w->conn->bytes_arrived(); arrived != w->arrived_seen) {
        w->arrived_seen = arrived;
        w->last_seen = std::max(w->last_seen, now);
      }
      const auto deadline = silence_deadline_locked(*w);
      if (now - w->last_seen > deadline) {
        silent.push_back(w->conn);
        silent_why.push_back(
            fmt::format("no heartbeat for {} ms (the deadline: {} ms, with {} ms for its round trip of {:.1f} ms)",
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - w->last_seen).count(),
                        std::chrono::duration_cast<std::chrono::milliseconds>(deadline).count(),
                        std::chrono::duration_cast<std::chrono::milliseconds>(link_allowance_locked(*w)).count(),
                        w->round_trip.seconds() * 1e3));
      } else {
        ping_locked(*w);
      }
    }
    lock.unlock();
    for (std::size_t i = 0; i < silent.size(); ++i) silent[i]->close(silent_why[i]);
    for (auto& c : no_handshake) {
      const std::string why =
          fmt::format("no handshake within {} ms",
                      std::chrono::duration_cast<std::chrono::milliseconds>(handshake_deadline()).count());
      log_limited(log_level::warn, "closing connection from {}: {}", c->remote_address(), why);
      c->close(why);
    }
    lock.lock();
  }
}

}  // namespace dx::detail
