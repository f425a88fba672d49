// The engine: runs dx's scheduler over a graph and a cluster on a virtual clock (joins, leaves,
// crashes, transfers, completions as events) and records what happened. Scenarios and result
// statistics are in scenario.cpp.
#include "sim/simulator.hpp"

#include "sched/round_trip_meter.hpp"

#include <dx/error.hpp>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <utility>

namespace dx::sim {

namespace {

using sched::task_id;
using sched::worker_id;
using steady = std::chrono::steady_clock;

// Where a result can be read from: the head (it came inline with the completion), the worker that
// computed it, or nowhere (not computed yet, or its holder went away).
constexpr std::uint32_t at_head = 0xFFFFFFFEu;
constexpr std::uint32_t nowhere = 0xFFFFFFFFu;

enum class ev : std::uint8_t {
  join,
  leave,  // the worker starts a graceful leave
  crash,
  zombie,
  declare_lost,  // the head notices a crash
  submit_wave,
  run_msg,       // head -> worker
  move_msg,      // head -> worker
  run_done,      // on the worker
  started_msg,   // worker -> head
  finished_msg,  // worker -> head
  returned_msg,  // worker -> head
  answer_msg,    // worker -> head, for a move
  draining_msg,  // worker -> head
  left_msg,      // worker -> head
  tick,
  heartbeat,  // the head pings every worker
  ping_msg,   // head -> worker
  echo_msg,   // worker -> head: the ping's number and the worker's load
};

constexpr bool periodic(ev e) { return e == ev::tick || e == ev::heartbeat || e == ev::ping_msg || e == ev::echo_msg; }

struct event {
  double time = 0;
  std::uint64_t seq = 0;
  ev type = ev::tick;
  bool flag = false;
  std::uint32_t worker = 0;
  std::uint32_t attempt = 0;
  std::uint64_t arg = 0;  // task, slot, wave, or running and queued (echo_msg)
};

// Min-heap order: earlier time first, then earlier insertion, so equal times replay identically.
struct later {
  bool operator()(const event& a, const event& b) const noexcept {
    return a.time > b.time || (a.time == b.time && a.seq > b.seq);
  }
};

struct fetch_record {
  std::uint32_t from = 0;
  std::uint64_t bytes = 0;
  double seconds = 0;
};

// A task taken by a worker thread, from its start until the head has handled its completion.
struct slot {
  task_id task = 0;
  std::uint32_t worker = 0;
  std::uint32_t attempt = 0;
  double run_seconds = 0;
  std::vector<fetch_record> fetched;
};

enum class phase : std::uint8_t { absent, active, draining, gone, dead };

struct worker_state {
  phase ph = phase::absent;
  bool declared_lost = false;  // the head's view: nothing from it counts any more
  bool zombie = false;
  std::deque<std::pair<task_id, std::uint32_t>> fifo;  // (task, attempt)
  std::uint32_t running = 0;
  std::vector<double> in_use;  // declared needs of running tasks, by resource index
  // Results this worker has locally (computed or fetched) and when they are there. Looked up
  // only, never iterated, so the hash order cannot leak into the outcome.
  std::unordered_map<task_id, double> local;
  std::vector<task_id> held;  // results it computed and holds for others
  double busy = 0;
  std::size_t tasks_run = 0;
};

struct task_state {
  std::uint32_t available_inputs = 0;
  std::uint32_t attempt = 0;
  std::uint32_t source = nowhere;       // at_head, a worker, or nowhere
  std::uint32_t sent_to = nowhere;      // the worker of the latest run decision
  std::uint32_t last_holder = nowhere;  // the worker that last held its result
  std::uint16_t commits = 0;
  std::uint16_t recomputes = 0;
  bool submitted = false;
  bool ready_signalled = false;       // since its inputs last became available
  bool signalled_this_round = false;  // since submission or the last recompute decision
  bool done = false;
  bool recompute_pending = false;
  double ready_time = 0;
};

// One direction of a worker's link to the head. Messages leave in order and arrive in order: a
// message delayed by jitter holds back the ones sent after it, as on one TCP connection.
struct link_direction {
  double latency = 0;
  double jitter = 0;  // mean extra delay, exponential
  std::uint64_t rng = 0;
  double last_arrival = 0;

  double arrival(double now) {
    double t = now + latency;
    if (jitter > 0) t += jitter * -std::log1p(-uniform());
    last_arrival = std::max(last_arrival, t);
    return last_arrival;
  }
  // splitmix64: a few bytes of state per link, so ten thousand workers cost nothing.
  double uniform() {
    std::uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
  }
};

struct head_link {
  link_direction down, up;  // head -> worker, worker -> head
  dx::sched::round_trip_meter meter;
  std::uint32_t next_ping = 1;
};

// The meter keeps time on a steady clock, as the live head does: virtual seconds map onto it.
dx::sched::round_trip_meter::clock::time_point at(double seconds) {
  return dx::sched::round_trip_meter::clock::time_point(
      std::chrono::duration_cast<dx::sched::round_trip_meter::clock::duration>(std::chrono::duration<double>(seconds)));
}

constexpr std::size_t max_alerts = 10'000;

using call = scheduler_call;

class engine {
 public:
  engine(const graph& g, const std::vector<worker_def>& workers, cost_model& model, const options& o)
      : g_(g), defs_(workers), model_(model), o_(o), sched_(o.scheduler, model) {
    n_ = g.tasks.size();
    deps_ = g.dependents();
    tasks_.resize(n_);
    true_seconds_.resize(n_);
    for (std::size_t i = 0; i < n_; ++i) true_seconds_[i] = g.true_seconds(i);
    input_bytes_.resize(n_);
    for (std::size_t i = 0; i < n_; ++i) {
      std::uint64_t b = g.tasks[i].input_bytes;
      for (task_id j : g.tasks[i].inputs) b += g.tasks[j].output_bytes;
      input_bytes_[i] = b;
    }
    // Resource names as dense indexes: a start checks a few doubles, not a map of strings.
    for (const worker_def& w : workers)
      for (const auto& [name, amount] : w.capacity) resource_index(name);
    needs_.resize(n_);
    for (std::size_t i = 0; i < n_; ++i)
      for (const auto& [name, amount] : g.tasks[i].needs) needs_[i].emplace_back(resource_index(name), amount);
    capacity_.assign(workers.size(), std::vector<double>(resource_names_.size(), 0));
    for (std::size_t w = 0; w < workers.size(); ++w)
      for (const auto& [name, amount] : workers[w].capacity) capacity_[w][resource_index(name)] = amount;
    ws_.resize(workers.size());
    for (worker_state& s : ws_) s.in_use.assign(resource_names_.size(), 0);
    links_.resize(workers.size());
    for (std::size_t w = 0; w < workers.size(); ++w) {
      head_link& l = links_[w];
      l.down.latency = l.up.latency = std::max(0.0, workers[w].head_latency.value_or(o.head_latency));
      l.down.jitter = l.up.jitter = std::max(0.0, workers[w].head_jitter);
      l.down.rng = o.link_seed * 0x9e3779b97f4a7c15ull + 2 * w;
      l.up.rng = o.link_seed * 0x9e3779b97f4a7c15ull + 2 * w + 1;
    }
    if (o.record_starts) r_.starts.resize(workers.size());
    r_.policy = o.scheduler.kind;
    r_.tasks = n_;
    for (const kind_spec& k : g.kinds) r_.kind_names.push_back(k.name);
    oracle_ = o.scheduler.kind == sched::policy::oracle;
  }

  result run() {
    timed(call::set_round_trip, [&] { sched_.set_round_trip(2 * o_.head_latency); });
    for (std::uint32_t w = 0; w < defs_.size(); ++w) {
      push(std::max(0.0, defs_[w].join_time), ev::join, w);
      if (std::isfinite(defs_[w].leave_time)) {
        const ev what = defs_[w].leave == leave_kind::graceful ? ev::leave
                        : defs_[w].leave == leave_kind::crash  ? ev::crash
                                                               : ev::zombie;
        push(std::max(defs_[w].leave_time, defs_[w].join_time), what, w);
      }
    }
    const std::size_t wave = o_.wave_size ? o_.wave_size : std::max<std::size_t>(1, n_);
    for (std::size_t first = 0, k = 0; first < n_; first += wave, ++k)
      push(static_cast<double>(k) * o_.wave_interval * (o_.wave_size ? 1 : 0), ev::submit_wave, 0, 0, first);
    push(o_.tick, ev::tick);
    push(o_.heartbeat, ev::heartbeat);
    if (n_ == 0) r_.completed = true;

    while (!heap_.empty() && finished_ < n_ && !stalled_) {
      const double t = heap_.front().time;
      if (t > o_.time_limit) break;
      now_ = t;
      while (!heap_.empty() && heap_.front().time == t) {
        std::pop_heap(heap_.begin(), heap_.end(), later{});
        const event e = heap_.back();
        heap_.pop_back();
        ++r_.events;
        if (!periodic(e.type)) {
          --pending_;
          last_progress_ = t;
        }
        handle(e);
      }
      decide_all();
    }
    finish();
    return std::move(r_);
  }

 private:
  // ---- plumbing ---------------------------------------------------------------------------------

  template <class F>
  void timed(call c, F&& f) {
    const auto t0 = steady::now();
    f();
    const double dt = std::chrono::duration<double>(steady::now() - t0).count();
    r_.scheduler_seconds += dt;
    ++r_.scheduler_calls;
    r_.scheduler_profile[static_cast<std::size_t>(c)].seconds += dt;
    ++r_.scheduler_profile[static_cast<std::size_t>(c)].calls;
  }

  void push(double time, ev type, std::uint32_t worker = 0, std::uint32_t attempt = 0, std::uint64_t arg = 0,
            bool flag = false) {
    heap_.push_back(event{time, seq_++, type, flag, worker, attempt, arg});
    std::push_heap(heap_.begin(), heap_.end(), later{});
    if (!periodic(type)) ++pending_;
  }

  // A message on w's link to the head, sent now.
  void to_worker(std::uint32_t w, ev type, std::uint32_t attempt = 0, std::uint64_t arg = 0) {
    push(links_[w].down.arrival(now_), type, w, attempt, arg);
  }
  void to_head(std::uint32_t w, ev type, std::uint32_t attempt = 0, std::uint64_t arg = 0, bool flag = false) {
    push(links_[w].up.arrival(now_), type, w, attempt, arg, flag);
  }

  void ping(std::uint32_t w) {
    head_link& l = links_[w];
    l.meter.pinged(l.next_ping, at(now_));
    to_worker(w, ev::ping_msg, l.next_ping++);
  }

  void report_round_trip(std::uint32_t w) {
    const auto& m = links_[w].meter;
    timed(call::worker_round_trip, [&] { sched_.worker_round_trip(w, m.seconds(), m.jitter()); });
    dirty_ = true;
  }

  std::uint32_t resource_index(const std::string& name) {
    auto [it, fresh] = resource_ids_.emplace(name, static_cast<std::uint32_t>(resource_names_.size()));
    if (fresh) resource_names_.push_back(name);
    return it->second;
  }

  bool reachable(std::uint32_t w) const {
    return (ws_[w].ph == phase::active || ws_[w].ph == phase::draining) && !ws_[w].declared_lost;
  }

  // ---- the head ---------------------------------------------------------------------------------

  void decide_all() {
    // A decision can make a task ready again (recompute) within the same instant: decide until
    // the scheduler has nothing new to say. The bound only guards against a livelock.
    for (int round = 0; dirty_ && round < 64; ++round) {
      dirty_ = false;
      decisions_.clear();
      timed(call::decide, [&] { sched_.decide(now_, decisions_); });
      r_.decisions += decisions_.size();
      for (const sched::decision& d : decisions_) apply(d);
    }
  }

  void hash(std::uint64_t v) {
    // FNV-1a over 64-bit words: cheap, and any change in order or content shows.
    r_.decision_hash = (r_.decision_hash ^ v) * 0x100000001b3ull;
  }

  void apply(const sched::decision& d) {
    hash(static_cast<std::uint64_t>(d.kind));
    hash(d.task);
    hash(d.to);
    hash(d.from);
    hash(std::bit_cast<std::uint64_t>(now_));
    if (d.task >= n_) {
      invalid(d, "unknown task");
      return;
    }
    task_state& ts = tasks_[d.task];
    switch (d.kind) {
      case sched::decision_kind::run: {
        if (d.to >= ws_.size()) {
          invalid(d, "run on an unknown worker");
          return;
        }
        // Readiness as the scheduler could know it: an input lost since it was signalled ready
        // (a crash not yet detected) does not make the run a mistake.
        if (!ts.signalled_this_round || (ts.done && !ts.recompute_pending))
          invalid(d, ts.done && !ts.recompute_pending ? "run of a finished task" : "run of a task never ready");
        ++ts.attempt;
        ++r_.attempts;
        ts.sent_to = d.to;
        to_worker(d.to, ev::run_msg, ts.attempt, d.task);
        break;
      }
      case sched::decision_kind::move:
        if (d.from >= ws_.size()) {
          invalid(d, "move from an unknown worker");
          return;
        }
        ++r_.moves_requested;
        to_worker(d.from, ev::move_msg, 0, d.task);
        break;
      case sched::decision_kind::recompute:
        if (!ts.done || ts.recompute_pending) {
          invalid(d, ts.done ? "recompute already pending" : "recompute of a task never finished");
          return;
        }
        ts.recompute_pending = true;
        ts.ready_signalled = false;
        ts.signalled_this_round = false;
        ++ts.recomputes;
        ++r_.recomputes;
        if (ts.available_inputs == g_.tasks[d.task].inputs.size()) signal_ready(d.task);
        break;
      case sched::decision_kind::cancel:
        invalid(d, "cancel, though the simulator never gives a task up");
        break;
    }
  }

  void invalid(const sched::decision& d, const char* why) {
    ++r_.invalid_decisions;
    if (r_.invalid.size() >= 20) return;
    static constexpr const char* kinds[] = {"run", "move", "recompute"};
    r_.invalid.push_back(std::string(why) + ": " + kinds[static_cast<int>(d.kind) % 3] + " task " +
                         std::to_string(d.task) + " at " + std::to_string(now_) +
                         (d.task < n_ ? "; " + describe(d.task) : std::string()));
  }

  void signal_ready(task_id t) {
    task_state& ts = tasks_[t];
    ts.ready_signalled = true;
    ts.signalled_this_round = true;
    ts.ready_time = now_;
    timed(call::task_ready, [&] { sched_.task_ready(t, now_); });
    dirty_ = true;
  }

  bool wants_ready(task_id t) const {
    const task_state& ts = tasks_[t];
    return ts.submitted && !ts.ready_signalled && (!ts.done || ts.recompute_pending) &&
           ts.available_inputs == g_.tasks[t].inputs.size();
  }

  // Moves a result's source and keeps every dependent's count of available inputs in step.
  void set_source(task_id t, std::uint32_t where) {
    task_state& ts = tasks_[t];
    if (ts.source < at_head) ts.last_holder = ts.source;
    const bool was = ts.source != nowhere, is = where != nowhere;
    ts.source = where;
    if (was == is) return;
    for (task_id d : deps_[t]) {
      if (is) {
        ++tasks_[d].available_inputs;
        if (wants_ready(d)) signal_ready(d);
      } else {
        // The scheduler puts a pending dependent of a lost result back to waiting, so it must
        // hear task_ready again once the input is recomputed.
        task_state& ds = tasks_[d];
        --ds.available_inputs;
        if (!ds.done || ds.recompute_pending) ds.ready_signalled = false;
      }
    }
    if (is && !blocked_.empty()) {
      // Tasks waiting in a FIFO for a lost input may run now.
      const std::vector<std::uint32_t> blocked(blocked_.begin(), blocked_.end());
      for (std::uint32_t w : blocked) try_start(w);
    }
  }

  void lose_results(std::uint32_t w) {
    for (task_id t : ws_[w].held)
      if (tasks_[t].source == w) set_source(t, nowhere);
    ws_[w].held.clear();
  }

  sched::worker_spec spec_of(std::uint32_t w) const {
    sched::worker_spec s;
    s.id = w;
    s.name = defs_[w].name;
    s.worker_class = defs_[w].worker_class;
    s.threads = defs_[w].threads;
    s.capacity = defs_[w].capacity;
    s.true_factor = oracle_ ? defs_[w].speed : 1.0;
    return s;
  }

  void submit(std::size_t first) {
    const std::size_t last = std::min(n_, first + (o_.wave_size ? o_.wave_size : n_));
    // The whole wave is submitted before any task of it is ready, so the scheduler knows every
    // successor (and so the ranks) before it places the first one.
    for (std::size_t i = first; i < last; ++i) {
      const task_def& d = g_.tasks[i];
      sched::task_spec s;
      s.id = i;
      s.kind = g_.kinds[d.kind].name;
      s.inputs = d.inputs;
      s.input_bytes = d.input_bytes;
      s.size_hint = d.size;
      s.priority = d.priority;
      s.needs = d.needs;
      s.true_seconds = oracle_ ? true_seconds_[i] : 0;
      timed(call::task_submitted, [&] { sched_.task_submitted(s, now_); });
      tasks_[i].submitted = true;
    }
    for (std::size_t i = first; i < last; ++i)
      if (wants_ready(i)) signal_ready(i);
    dirty_ = true;
  }

  void on_finished(const event& e) {
    slot& s = slots_[e.arg];
    const task_id t = s.task;
    const std::uint32_t w = s.worker;
    task_state& ts = tasks_[t];
    const bool from_lost = ws_[w].declared_lost;
    if (!from_lost) {
      for (const fetch_record& f : s.fetched) {
        timed(call::transfer_measured, [&] { sched_.transfer_measured(f.from, w, f.bytes, f.seconds); });
      }
    }
    const bool stale = s.attempt != ts.attempt, duplicate = ts.done && !ts.recompute_pending;
    if (from_lost || stale || duplicate) {
      ++r_.discarded_completions;
      free_slot(e.arg);
      return;
    }
    const bool first = !ts.done;
    ++ts.commits;
    ts.done = true;
    ts.recompute_pending = false;
    const std::uint64_t bytes = g_.tasks[t].output_bytes;
    const bool held = bytes > o_.inline_limit;

    const task_def& d = g_.tasks[t];
    const prediction p =
        model_.predict(g_.kinds[d.kind].name, defs_[w].name, {input_bytes_[t], 0, d.size}, defs_[w].worker_class);
    r_.predictions.push_back(
        {d.kind, static_cast<float>(std::abs(p.mean - s.run_seconds) / s.run_seconds), p.calibrated});

    const double run_seconds = s.run_seconds;
    free_slot(e.arg);
    timed(call::task_finished, [&] { sched_.task_finished(t, w, now_, run_seconds, bytes, held); });
    dirty_ = true;
    if (held) {
      // The worker may have crashed after sending this: then the result is already gone.
      if (ws_[w].ph == phase::active || ws_[w].ph == phase::draining) {
        ws_[w].held.push_back(t);
        set_source(t, w);
      } else {
        set_source(t, nowhere);
      }
    } else {
      set_source(t, at_head);
    }
    if (first) {
      ++finished_;
      r_.makespan = now_;
      if (!r_.forecast.taken && n_ > 0 && static_cast<double>(finished_) >= o_.forecast_at * static_cast<double>(n_)) {
        sched::forecast_result f;
        timed(call::forecast, [&] { f = sched_.forecast(now_); });
        r_.forecast.taken = true;
        r_.forecast.at = now_;
        r_.forecast.tasks_left = f.tasks_left;
        r_.forecast.predicted_remaining = f.remaining_seconds;
        r_.forecast.predicted_sd = f.remaining_sd;
        r_.forecast.lower_bound = f.lower_bound;
        r_.forecast.round_trips.assign(defs_.size(), 0);
        for (const sched::worker_forecast& wf : f.workers)
          if (wf.id < defs_.size()) r_.forecast.round_trips[wf.id] = wf.round_trip_seconds;
      }
    }
  }

  void handle(const event& e) {
    const std::uint32_t w = e.worker;
    switch (e.type) {
      case ev::join: {
        ws_[w].ph = phase::active;
        timed(call::worker_joined, [&] { sched_.worker_joined(spec_of(w), now_); });
        // The handshake was one exchange over the link: its first sample, so that the window fits
        // the link from the first dispatch. A ping follows at once for a second.
        head_link& l = links_[w];
        l.meter.add(l.down.arrival(now_) + l.up.arrival(now_) - 2 * now_);
        report_round_trip(w);
        ping(w);
        break;
      }
      case ev::leave:
        begin_leave(w);
        break;
      case ev::crash:
        crash(w);
        break;
      case ev::zombie:
        become_zombie(w);
        break;
      case ev::declare_lost:
        if (!ws_[w].declared_lost) {
          ws_[w].declared_lost = true;
          timed(call::worker_left, [&] { sched_.worker_left(w, true, now_); });
          dirty_ = true;
        }
        break;
      case ev::submit_wave:
        submit(e.arg);
        break;
      case ev::run_msg:
        receive_run(w, e.arg, e.attempt);
        break;
      case ev::move_msg:
        receive_move(w, e.arg);
        break;
      case ev::run_done:
        run_done(e.arg);
        break;
      case ev::started_msg:
        if (!ws_[w].declared_lost && e.attempt == tasks_[e.arg].attempt) {
          timed(call::task_started, [&] { sched_.task_started(e.arg, w, now_); });
          dirty_ = true;
        }
        break;
      case ev::finished_msg:
        on_finished(e);
        break;
      case ev::returned_msg:
        if (!ws_[w].declared_lost && e.attempt == tasks_[e.arg].attempt) {
          ++r_.returned;
          timed(call::task_returned, [&] { sched_.task_returned(e.arg, w, now_); });
          dirty_ = true;
        }
        break;
      case ev::answer_msg:
        if (!ws_[w].declared_lost) {
          if (e.flag) ++r_.moves_confirmed;
          timed(call::move_answered, [&] { sched_.move_answered(e.arg, w, e.flag, now_); });
          dirty_ = true;
        }
        break;
      case ev::draining_msg:
        if (!ws_[w].declared_lost) {
          timed(call::worker_draining, [&] { sched_.worker_draining(w, now_); });
          dirty_ = true;
        }
        break;
      case ev::left_msg:
        if (!ws_[w].declared_lost) {
          ws_[w].declared_lost = true;
          timed(call::worker_left, [&] { sched_.worker_left(w, false, now_); });
          dirty_ = true;
        }
        break;
      case ev::tick:
        dirty_ = true;
        take_alerts();
        if (pending_ == 0 && now_ - last_progress_ > o_.stall_timeout) stalled_ = true;
        push(now_ + o_.tick, ev::tick);
        break;
      case ev::heartbeat:
        for (std::uint32_t i = 0; i < ws_.size(); ++i)
          if (reachable(i)) ping(i);
        push(now_ + o_.heartbeat, ev::heartbeat);
        break;
      case ev::ping_msg:
        // Answered at once with the worker's load, zombies included (the head ignores them).
        if (ws_[w].ph == phase::active || ws_[w].ph == phase::draining)
          to_head(w, ev::echo_msg, e.attempt,
                  (std::uint64_t{ws_[w].running} << 32) | static_cast<std::uint32_t>(ws_[w].fifo.size()));
        break;
      case ev::echo_msg: {
        if (ws_[w].declared_lost) break;
        const auto no_deadline = std::chrono::nanoseconds::max();
        if (links_[w].meter.echoed(e.attempt, at(now_), no_deadline)) report_round_trip(w);
        const auto running = static_cast<std::uint32_t>(e.arg >> 32), queued = static_cast<std::uint32_t>(e.arg);
        timed(call::load_report, [&] { sched_.load_report(w, running, queued, now_); });
        dirty_ = true;
        break;
      }
    }
  }

  void take_alerts() {
    alerts_.clear();
    timed(call::take_alerts, [&] { sched_.take_alerts(alerts_); });
    for (sched::alert_event& a : alerts_) {
      if (r_.alerts.size() < max_alerts)
        r_.alerts.push_back(std::move(a));
      else
        ++r_.alerts_dropped;
    }
  }

  // ---- the workers ------------------------------------------------------------------------------

  void receive_run(std::uint32_t w, task_id t, std::uint32_t attempt) {
    worker_state& s = ws_[w];
    if (s.ph == phase::active) {
      s.fifo.emplace_back(t, attempt);
      try_start(w);
    } else if (s.ph == phase::draining) {
      to_head(w, ev::returned_msg, attempt, t);
    } else {
      ++r_.lost_messages;
    }
  }

  void receive_move(std::uint32_t w, task_id t) {
    worker_state& s = ws_[w];
    if (s.ph != phase::active && s.ph != phase::draining) {
      ++r_.lost_messages;
      return;
    }
    bool given_up = false;
    for (auto it = s.fifo.begin(); it != s.fifo.end(); ++it)
      if (it->first == t) {
        s.fifo.erase(it);
        given_up = true;
        break;
      }
    to_head(w, ev::answer_msg, 0, t, given_up);
    if (given_up) update_blocked(w);
  }

  bool runnable(const worker_state& s, task_id t) const {
    for (task_id i : g_.tasks[t].inputs)
      if (tasks_[i].source == nowhere && !s.local.contains(i)) return false;
    return true;
  }

  void update_blocked(std::uint32_t w) {
    const worker_state& s = ws_[w];
    const bool blocked =
        (s.ph == phase::active || s.ph == phase::draining) && s.running < defs_[w].threads && !s.fifo.empty();
    if (blocked)
      blocked_.insert(w);
    else
      blocked_.erase(w);
  }

  void try_start(std::uint32_t w) {
    worker_state& s = ws_[w];
    if (s.ph != phase::active && s.ph != phase::draining) return;
    for (auto it = s.fifo.begin(); s.running < defs_[w].threads && it != s.fifo.end();) {
      if (!runnable(s, it->first)) {
        ++it;
        continue;
      }
      const auto [t, attempt] = *it;
      it = s.fifo.erase(it);
      start(w, t, attempt);
    }
    update_blocked(w);
  }

  std::uint32_t alloc_slot() {
    if (!free_slots_.empty()) {
      const std::uint32_t i = free_slots_.back();
      free_slots_.pop_back();
      return i;
    }
    slots_.emplace_back();
    return static_cast<std::uint32_t>(slots_.size() - 1);
  }

  void free_slot(std::uint64_t i) {
    slots_[i].fetched.clear();
    free_slots_.push_back(static_cast<std::uint32_t>(i));
  }

  void start(std::uint32_t w, task_id t, std::uint32_t attempt) {
    worker_state& s = ws_[w];
    const worker_def& def = defs_[w];
    ++s.running;
    ++r_.runs_started;
    for (const auto& [res, amount] : needs_[t]) {
      s.in_use[res] += amount;
      const double cap = capacity_[w][res];
      const double ratio = cap > 0 ? s.in_use[res] / cap : (s.in_use[res] > 0 ? INFINITY : 0);
      r_.max_resource_ratio = std::max(r_.max_resource_ratio, ratio);
    }
    const std::uint32_t si = alloc_slot();
    slot& sl = slots_[si];
    sl.task = t;
    sl.worker = w;
    sl.attempt = attempt;
    sl.run_seconds = true_seconds_[t] * def.speed;

    double fetch = 0, max_latency = 0;
    std::uint64_t total_bytes = 0;
    for (task_id i : g_.tasks[t].inputs) {
      const std::uint32_t src = tasks_[i].source;
      if (auto it = s.local.find(i); it != s.local.end()) {
        fetch = std::max(fetch, it->second - now_);  // a copy still on its way
        continue;
      }
      if (src == at_head || src == w) continue;
      const worker_def& from = defs_[src];
      const std::uint64_t bytes = g_.tasks[i].output_bytes;
      const double latency = std::max(def.latency, from.latency);
      const double seconds = latency + static_cast<double>(bytes) / std::min(def.bandwidth, from.bandwidth);
      fetch = std::max(fetch, seconds);
      max_latency = std::max(max_latency, latency);
      total_bytes += bytes;
      sl.fetched.push_back({src, bytes, seconds});
      s.local.emplace(i, now_ + seconds);
      ++r_.transfers.count;
      r_.transfers.bytes += bytes;
      r_.transfers.seconds += seconds;
    }
    // Concurrent fetches share the receiving link.
    if (total_bytes) fetch = std::max(fetch, max_latency + static_cast<double>(total_bytes) / def.bandwidth);

    if (o_.record_starts) r_.starts[w].push_back({t, now_, tasks_[t].ready_time, g_.tasks[t].priority});
    to_head(w, ev::started_msg, attempt, t);
    push(now_ + fetch + sl.run_seconds, ev::run_done, w, 0, si);
  }

  void run_done(std::uint64_t si) {
    slot& sl = slots_[si];
    const std::uint32_t w = sl.worker;
    worker_state& s = ws_[w];
    if (s.ph == phase::dead) {
      free_slot(si);
      return;
    }
    --s.running;
    for (const auto& [res, amount] : needs_[sl.task]) s.in_use[res] -= amount;
    s.busy += sl.run_seconds;
    ++s.tasks_run;
    ++r_.runs_completed;
    r_.work_seconds += sl.run_seconds;
    s.local.insert_or_assign(sl.task, now_);
    to_head(w, ev::finished_msg, 0, si);
    if (s.ph == phase::draining && s.running == 0)
      go_away(w);
    else
      try_start(w);
  }

  void begin_leave(std::uint32_t w) {
    worker_state& s = ws_[w];
    if (s.ph != phase::active) return;
    s.ph = phase::draining;
    to_head(w, ev::draining_msg);
    for (const auto& [t, attempt] : s.fifo) to_head(w, ev::returned_msg, attempt, t);
    s.fifo.clear();
    update_blocked(w);
    if (s.running == 0) go_away(w);
  }

  void go_away(std::uint32_t w) {
    worker_state& s = ws_[w];
    s.ph = phase::gone;
    s.local.clear();
    lose_results(w);
    update_blocked(w);
    to_head(w, ev::left_msg);
  }

  void crash(std::uint32_t w) {
    worker_state& s = ws_[w];
    if (s.ph != phase::active && s.ph != phase::draining) return;
    s.ph = phase::dead;
    s.fifo.clear();
    s.running = 0;
    std::fill(s.in_use.begin(), s.in_use.end(), 0.0);
    s.local.clear();
    lose_results(w);
    update_blocked(w);
    push(now_ + o_.loss_detection, ev::declare_lost, w);
  }

  void become_zombie(std::uint32_t w) {
    worker_state& s = ws_[w];
    if (s.ph != phase::active && s.ph != phase::draining) return;
    s.zombie = true;
    s.declared_lost = true;
    // The head no longer reads from it, so for everyone else its results are gone.
    lose_results(w);
    timed(call::worker_left, [&] { sched_.worker_left(w, true, now_); });
    dirty_ = true;
  }

  std::string describe(task_id t) const {
    const task_state& ts = tasks_[t];
    std::size_t available = 0;
    for (task_id i : g_.tasks[t].inputs) available += tasks_[i].source != nowhere;
    static constexpr const char* phases[] = {"absent", "active", "draining", "gone", "dead"};
    std::string s = "task " + std::to_string(t) + ": ";
    s += ts.submitted ? "" : "not submitted, ";
    s += ts.recompute_pending ? "to recompute, " : "";
    s += ts.ready_signalled ? "ready since " + std::to_string(ts.ready_time) : "not ready";
    s += ", inputs " + std::to_string(available) + "/" + std::to_string(g_.tasks[t].inputs.size()) + " available";
    s += ", attempt " + std::to_string(ts.attempt);
    if (ts.sent_to != nowhere) {
      const worker_state& w = ws_[ts.sent_to];
      s += " sent to " + defs_[ts.sent_to].name + " (" + phases[static_cast<int>(w.ph)] +
           (w.zombie          ? ", zombie"
            : w.declared_lost ? ", declared lost"
                              : "") +
           ")";
      for (const auto& [q, a] : w.fifo)
        if (q == t) s += ", in its queue (attempt " + std::to_string(a) + ")";
    }
    for (task_id i : g_.tasks[t].inputs) {
      const task_state& is = tasks_[i];
      if (is.source != nowhere) continue;
      s += "; input " + std::to_string(i) + (is.done ? " done" : " not done") +
           (is.recompute_pending ? ", recompute pending" : "") + ", commits " + std::to_string(is.commits);
      if (is.last_holder != nowhere)
        s += ", was held on " + defs_[is.last_holder].name + " (" + phases[static_cast<int>(ws_[is.last_holder].ph)] +
             (ws_[is.last_holder].declared_lost ? ", declared lost" : "") + ")";
    }
    const worker_id on = sched_.placed_on(t);
    s += on == sched::no_worker
             ? "; scheduler: not placed"
             : "; scheduler: placed on " + defs_[on].name + (sched_.is_sent(t) ? " (sent)" : " (held)");
    return s;
  }

  // ---- the end ----------------------------------------------------------------------------------

  void finish() {
    take_alerts();
    r_.completed = finished_ == n_;
    r_.finished = finished_;
    for (const task_state& ts : tasks_)
      if (ts.commits > 1 + ts.recomputes) r_.duplicate_commits += ts.commits - 1u - ts.recomputes;
    r_.workers.reserve(defs_.size());
    for (std::size_t w = 0; w < defs_.size(); ++w)
      r_.workers.push_back({defs_[w].name, defs_[w].speed, defs_[w].threads, ws_[w].busy, ws_[w].tasks_run,
                            links_[w].meter.seconds(), links_[w].meter.jitter(),
                            static_cast<std::size_t>(links_[w].meter.samples())});
    r_.accuracy = model_.accuracy();
    for (task_id t = 0; t < n_ && r_.unfinished.size() < 20; ++t)
      if (!tasks_[t].done || tasks_[t].recompute_pending) r_.unfinished.push_back(describe(t));
    if (r_.forecast.taken) {
      r_.forecast.actual_remaining = r_.makespan - r_.forecast.at;
      if (r_.forecast.actual_remaining > 0)
        r_.forecast.relative_error =
            (r_.forecast.predicted_remaining - r_.forecast.actual_remaining) / r_.forecast.actual_remaining;
    }
    if (o_.record_starts) {
      for (const auto& starts : r_.starts) {
        // Lowest priority started so far among the tasks ready at each instant.
        std::map<double, int> lowest;
        for (const start_record& s : starts) {
          auto [it, fresh] = lowest.emplace(s.ready_time, s.priority);
          if (!fresh) {
            if (s.priority > it->second) ++r_.priority_inversions;
            it->second = std::min(it->second, s.priority);
          }
        }
      }
    }
  }

  const graph& g_;
  const std::vector<worker_def>& defs_;
  cost_model& model_;
  options o_;
  sched::scheduler sched_;
  bool oracle_ = false;

  std::size_t n_ = 0;
  std::vector<std::vector<task_id>> deps_;
  std::vector<double> true_seconds_;
  std::vector<std::uint64_t> input_bytes_;
  std::vector<std::vector<std::pair<std::uint32_t, double>>> needs_;
  std::map<std::string, std::uint32_t> resource_ids_;
  std::vector<std::string> resource_names_;
  std::vector<std::vector<double>> capacity_;

  std::vector<task_state> tasks_;
  std::vector<worker_state> ws_;
  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  std::set<std::uint32_t> blocked_;  // ordered: kicks happen in worker order
  std::vector<head_link> links_;

  std::vector<event> heap_;
  std::uint64_t seq_ = 0;
  std::size_t pending_ = 0;  // non-periodic events in the heap
  double now_ = 0;
  double last_progress_ = 0;
  bool dirty_ = false;
  bool stalled_ = false;
  std::size_t finished_ = 0;

  std::vector<sched::decision> decisions_;
  std::vector<sched::alert_event> alerts_;
  result r_;
};

}  // namespace

result simulate(const graph& g, const std::vector<worker_def>& workers, cost_model& model, const options& o) {
  if (workers.empty()) dx::detail::throw_error(dx::detail::error_kind::generic, "dx::sim::simulate: no worker");
  if (!g.valid())
    dx::detail::throw_error(dx::detail::error_kind::generic, "dx::sim::simulate: the graph has a bad input or a cycle");
  for (const worker_def& w : workers)
    if (!(w.speed > 0) || !(w.bandwidth > 0) || w.threads == 0)
      dx::detail::throw_error(dx::detail::error_kind::generic,
                              "dx::sim::simulate: worker " + w.name + " needs speed, bandwidth and threads > 0");
  engine e(g, workers, model, o);
  return e.run();
}

}  // namespace dx::sim
