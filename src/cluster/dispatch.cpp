// Dispatch: the scheduler's decisions become frames (runs and cancels batched one frame per worker
// per round, move requests and their answers; recomputes go to recovery), and the scheduler's alerts go to
// the alert center.
#include "cluster/head_state.hpp"
#include "common/log.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

namespace dx::detail {

void head_impl::dispatch_locked(deferred& d) {
  decisions_.clear();
  sched_->decide(now_seconds(), decisions_);
  std::vector<worker_rec*> touched;
  std::vector<worker_rec*> cancelled;
  for (const sched::decision& dec : decisions_) {
    switch (dec.kind) {
      case sched::decision_kind::run: {
        // Current by the scheduler's word: the task is sent there and the worker has not left
        // (the head tells the scheduler of a closed connection before it decides again).
        worker_rec* w = by_sid_locked(dec.to);
        auto it = tasks_.find(dec.task);
        if (!w || !w->conn || it == tasks_.end()) {
          log(log_level::warn, "dx internal error: a run decision for task {} names {} {}", dec.task,
              it == tasks_.end() ? "a task the head does not know" : "a worker without a connection",
              w ? w->id : std::string("?"));
          sched_->task_returned(dec.task, dec.to, now_seconds());
          continue;
        }
        send_task_locked(it->second, *w, touched, d);
        break;
      }
      case sched::decision_kind::move: {
        worker_rec* victim = by_sid_locked(dec.from);
        auto it = tasks_.find(dec.task);
        if (!victim || it == tasks_.end()) continue;
        if (!victim->conn) {  // offline: it cannot be asked, so the task stays there
          sched_->move_answered(dec.task, dec.from, false, now_seconds());
          continue;
        }
        victim->conn->send(wire::encode(wire::steal_msg{dec.task, it->second.attempt}));
        log(log_level::debug, "asking {} to give task {} up for {}", victim->id, dec.task, dec.to);
        break;
      }
      case sched::decision_kind::recompute:
        recompute_decided_locked(dec.task, d);
        break;
      case sched::decision_kind::cancel: {
        // Batched like runs: cancelling many queued tasks costs one frame per worker.
        worker_rec* w = by_sid_locked(dec.from);
        if (!w || !w->conn) continue;  // gone: nothing of it runs any more
        if (w->cancel_outbox.task_ids.empty()) cancelled.push_back(w);
        w->cancel_outbox.task_ids.push_back(dec.task);
        log(log_level::debug, "task {} given up: telling {}", dec.task, w->id);
        break;
      }
    }
  }
  for (worker_rec* w : cancelled) {
    w->conn->send(wire::encode(w->cancel_outbox));
    w->cancel_outbox.task_ids.clear();
  }
  // One frame per worker per round (a Boost archive costs about a microsecond to set up), unless
  // their arguments together would be over the value limit.
  for (worker_rec* w : touched) flush_outbox_locked(*w);
  collect_alerts_locked();
}

void head_impl::flush_outbox_locked(worker_rec& w) {
  if (w.outbox.tasks.empty()) return;
  w.sent_tasks += w.outbox.tasks.size();
  ++w.sent_frames;
  w.conn->send(wire::encode(w.outbox));
  const std::uint64_t through = w.conn->bytes_sent();
  for (const wire::run_task_msg& m : w.outbox.tasks)
    if (auto it = tasks_.find(m.task_id); it != tasks_.end()) it->second.sent_through = through;
  w.outbox.tasks.clear();
  w.outbox_bytes = 0;
}

namespace {

/// At least the bytes a run message carrying m alone takes (the body of its frame), cheaply:
/// a Boost binary archive writes each length and number in a few bytes at most, plus a little
/// for each class the first time.
std::uint64_t run_message_bound(const wire::run_task_msg& m) {
  std::uint64_t bytes = 512 + m.function.size();
  for (const wire::arg_ref& a : m.args) {
    bytes += 64 + a.bytes.size();
    for (const std::string& h : a.holders) bytes += 16 + h.size();
  }
  return bytes;
}

/// Exactly the bytes of the run message that carries m alone: the envelope encoded without the
/// argument bytes (a length takes the same room whatever it says), plus those bytes.
std::uint64_t run_message_bytes(const wire::run_task_msg& m) {
  wire::run_tasks_msg envelope;
  wire::run_task_msg& e = envelope.tasks.emplace_back();
  e.task_id = m.task_id;
  e.attempt = m.attempt;
  e.function = m.function;
  e.result_to_head = m.result_to_head;
  std::uint64_t values = 0;
  for (const wire::arg_ref& a : m.args) {
    wire::arg_ref& r = e.args.emplace_back();
    r.is_ref = a.is_ref;
    r.task_id = a.task_id;
    r.holders = a.holders;
    values += a.bytes.size();
  }
  return wire::encode(envelope).archive.size() + values;
}

}  // namespace

void head_impl::send_task_locked(task_entry& t, worker_rec& w, std::vector<worker_rec*>& touched, deferred& d) {
  wire::run_task_msg m;
  m.task_id = t.id;
  m.attempt = ++t.attempt;
  m.function = t.function;
  m.args.resize(t.args.size());
  for (std::size_t i = 0; i < t.args.size(); ++i) {
    if (!t.args[i].ref) {
      m.args[i].bytes = t.args[i].bytes;
      continue;
    }
    const task_entry& in = tasks_.at(t.args[i].ref);
    if (in.inline_result) {
      m.args[i].bytes = *in.inline_result;
    } else {
      m.args[i].is_ref = true;
      m.args[i].task_id = in.id;
      for (sched::worker_id h : sched_->holders(in.id))
        if (const worker_rec* holder = by_sid_locked(h)) m.args[i].holders.push_back(holder->data_address);
    }
  }
  // A value over the limit fails this task alone, before it is sent anywhere: the worker and the
  // connection go on.
  const std::uint64_t limit = opts_.max_value_size();
  std::uint64_t bytes = run_message_bound(m);
  if (bytes > limit && (bytes = run_message_bytes(m)) > limit) {
    std::uint64_t values = 0;
    for (const wire::arg_ref& a : m.args) values += a.bytes.size();
    const std::string why = fmt::format(
        "the arguments of task {} ({}) are {} bytes, {} bytes with the message that carries them: over the value limit "
        "of {} bytes (options::max_value_size)",
        t.id, t.function, values, bytes, limit);
    log(log_level::warn, "{}", why);
    fail_locked(t.id, make_error(error_kind::generic, why), d);
    return;
  }
  if (!w.outbox.tasks.empty() && w.outbox_bytes + bytes > limit) flush_outbox_locked(w);
  if (w.outbox.tasks.empty()) touched.push_back(&w);
  w.outbox_bytes += bytes;
  w.outbox.tasks.push_back(std::move(m));
  const wire::run_task_msg& sent = w.outbox.tasks.back();
  t.dispatched_at = head_clock::now();
  t.running_since = -1;
  if (t.copy_of) {
    m.result_to_head = true;  // compared at the head
    const auto hard = t.replicas->deadline.hard;
    if (hard.count() > 0)
      add_timer_locked(task_timer{t.dispatched_at + hard, t.id, 0, sent.attempt, timer_kind::hard_deadline});
  }
  if (t.future && t.future->wants_notes) note_locked(t, {remote_result::note::kind::sent, sent.attempt, w.id, {}}, d);
  log(log_level::debug, "task {} ({}) attempt {} -> {}", t.id, t.function, sent.attempt, w.id);
}

void head_impl::note_locked(task_entry& t, remote_result::note n, deferred& d) {
  if (!t.future || !t.future->wants_notes || t.delivered || !t.future->state().try_add_ref()) return;
  try {
    d.notes.emplace_back(t.future, std::move(n));
  } catch (...) {  // a note is information only: without memory for it, it is dropped
    t.future->state().release();
  }
}

worker_rec* head_impl::by_sid_locked(sched::worker_id sid) const {
  return sid < by_sid_.size() ? by_sid_[sid] : nullptr;
}

/// The scheduler's alerts go to the alert center; the tick thread runs the callbacks.
void head_impl::collect_alerts_locked() {
  std::vector<sched::alert_event> raised;
  sched_->take_alerts(raised);
  for (auto& a : raised) {
    alert out;
    out.kind = a.kind;
    out.subject = std::move(a.subject);
    out.message = std::move(a.message);
    out.value = a.value;
    out.threshold = a.threshold;
    out.time = std::chrono::system_clock::now();
    alerts_.raise(std::move(out));
  }
  if (!raised.empty()) tick_cv_.notify_all();
}

void head_impl::steal_reply_locked(worker_rec& w, const wire::steal_reply_msg& m) {
  auto it = tasks_.find(m.task_id);
  // An answer for an older attempt is not an answer to this move: the task runs where it is.
  const bool current = it != tasks_.end() && current_attempt_locked(it->second, w, m.attempt);
  const bool given_up = current && m.given_up;
  if (given_up) {
    task_entry& t = it->second;
    if (observe_) ++kinds_[t.kind]->moved;
    t.handed_back.push_back(t.attempt);
  }
  sched_->move_answered(m.task_id, w.sid, given_up, now_seconds());  // it places a given-up task again
}

}  // namespace dx::detail
