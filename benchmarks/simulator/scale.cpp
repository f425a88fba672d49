// The scheduler at scale: 10,000 workers and 10,000,000 tasks, on a virtual clock, with the head's
// own cost in the loop. A small event-driven model of a cluster (no transfers, no failures; for
// those see dx-sim) drives dx::sched::scheduler directly:
// - Tasks come from a generator, never all at once: the caller keeps at most --window tasks
//   submitted and unfinished, and releases each task (task_forgotten) as soon as nothing needs
//   its result, as a client streaming work through cl.map does. Shapes: `independent` (short
//   tasks of 5 kinds) and `map-reduce` (jobs of --maps maps, --reduces reduces each reading every
//   map of its job, and one final task reading the reduces; results stay on workers).
// - A head works in cycles: it takes the messages that have reached it (started, finished), calls
//   the scheduler, tops submissions up and calls decide(). With --head-cost measured the cycle
//   takes the CPU time those calls took, so a head that cannot keep up delays everything behind
//   it, as a live head would; with --head-cost none the head is free (the scheduler's rate is still
//   measured). Messages take --latency one way.
// - --heads K > 1: a head of heads. The top head routes each job (each independent task) to the
//   sub-head whose workers are predicted to finish their routed work first (outstanding predicted
//   seconds over the sub-head's capacity, threads / learned speed factor); each sub-head runs the
//   ordinary scheduler on its share of the workers, on a machine of its own.
// - Memory: every allocation is counted, and those made inside scheduler and cost-model calls are
//   the head's. Reported per worker (after the workers joined) and per finished-and-released task
//   (what is still held at the end, after every task was released, over the tasks), plus the peak
//   per live task.
// Prints one RESULT line of key=value pairs. Usage: dx_bench_scale --help
#include "sched/scheduler.hpp"

#include <dx/cost_model.hpp>

#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <new>
#include <queue>
#include <random>
#include <string>
#include <vector>

// ---- allocation accounting -----------------------------------------------------------------------
// Each block carries a 16-byte header: its size and whether the head allocated it (inside a
// scheduler or cost-model call), so a free is charged to whoever allocated.
namespace {
struct alloc_counters {
  std::int64_t head = 0, other = 0, head_peak = 0;
};
alloc_counters counters;
bool in_head = false;

void* counted_alloc(std::size_t n, std::size_t align) {
  const std::size_t header = std::max<std::size_t>(16, align);
  void* raw =
      align > 16 ? std::aligned_alloc(align, (n + header + align - 1) / align * align) : std::malloc(n + header);
  if (!raw) throw std::bad_alloc();
  auto* h = static_cast<std::uint64_t*>(static_cast<void*>(static_cast<char*>(raw) + header - 16));
  h[0] = n;
  h[1] = (in_head ? 1u : 0u) | (header << 1);
  if (in_head) {
    counters.head += static_cast<std::int64_t>(n);
    counters.head_peak = std::max(counters.head_peak, counters.head);
  } else {
    counters.other += static_cast<std::int64_t>(n);
  }
  return static_cast<char*>(raw) + header;
}
void counted_free(void* p) noexcept {
  if (!p) return;
  auto* h = static_cast<std::uint64_t*>(static_cast<void*>(static_cast<char*>(p) - 16));
  const auto n = static_cast<std::int64_t>(h[0]);
  const std::size_t header = h[1] >> 1;
  ((h[1] & 1) ? counters.head : counters.other) -= n;
  std::free(static_cast<char*>(p) - header);
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n, 16); }
void* operator new[](std::size_t n) { return counted_alloc(n, 16); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }

namespace {

using clock_type = std::chrono::steady_clock;
using dx::sched::task_id;
using dx::sched::worker_id;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

long rss_bytes() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * 4096;
}

struct options {
  std::uint32_t workers = 10'000;
  std::uint32_t threads = 1;
  std::uint64_t tasks = 10'000'000;
  std::string shape = "independent";
  double seconds = 0.01;  // mean task duration on a worker of factor 1
  std::uint32_t heads = 1;
  bool head_cost = true;
  std::uint64_t window = 0;  // 0: 20 tasks per worker thread
  std::uint32_t maps = 100, reduces = 4;
  double latency = 100e-6;
  double quantum = 50e-6;  // a head polls its links this often when it is idle
  std::uint64_t seed = 1;
};

constexpr int n_kinds = 5;
const char* const kind_names[n_kinds + 3] = {"k0", "k1", "k2", "k3", "k4", "map", "reduce", "final"};
constexpr double kind_scale[n_kinds + 3] = {0.5, 0.75, 1.0, 1.25, 1.5, 1.0, 2.0, 0.5};

// One task the generator made and the caller has not released.
struct task_info {
  std::uint32_t kind = 0;
  std::uint32_t head = 0;  // the sub-head it was routed to
  double seconds = 0;      // true run time on a worker of factor 1
  double predicted = 0;    // the top head's prediction, charged to its sub-head
  std::uint64_t job = 0;   // map-reduce: its job
  std::uint8_t role = 0;   // 0 independent, 1 map, 2 reduce, 3 final
  task_id local = 0;       // its id at its head: each head numbers its own tasks, densely
};

struct job_info {
  std::uint64_t first = 0;  // id of its first map
  std::uint32_t maps_left = 0, reduces_left = 0;
  bool done = false;
  task_id first_local = 0;  // the same at its head
};

enum class ev : std::uint8_t { arrive, finish_on_worker, to_head, cycle, report_to_top, submit_to_head };

struct event {
  double time;
  std::uint64_t seq;
  ev kind;
  std::uint32_t head;
  worker_id worker;  // global worker index
  task_id task;
  std::uint8_t what;  // to_head: 0 started, 1 finished
  bool operator>(const event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
};

struct worker_sim {
  std::uint32_t head = 0;
  worker_id local = 0;  // its id at its head
  double speed = 1;
  std::uint32_t free_threads = 1;
  std::deque<task_id> fifo;
  std::uint64_t messages = 0;
};

struct head_msg {
  std::uint8_t what;  // 0 started, 1 finished, 2 submitted (ready if no inputs)
  worker_id local;
  task_id task;
};

struct head_sim {
  std::unique_ptr<dx::cost_model> model;
  std::unique_ptr<dx::sched::scheduler> sched;
  std::vector<worker_id> global;  // local id -> global worker index
  std::deque<task_id> global_of;  // its task ids -> the caller's (0: released), from local_base
  task_id local_base = 1, next_local = 1;
  std::vector<head_msg> inbox;
  double free_at = 0;
  double next_cycle = std::numeric_limits<double>::infinity();  // the earliest cycle asked for
  bool running = false;
  double busy = 0;   // real seconds in scheduler calls
  double place = 0;  // of which decide()
  std::size_t placed = 0;
  std::uint64_t live = 0;  // tasks submitted here, not finished
  // What the top head knows of it.
  double outstanding = 0;                                         // predicted seconds routed and not reported finished
  double capacity = 0;                                            // threads / learned factor, summed over its workers
  std::vector<std::pair<double, std::uint64_t>> finished_report;  // (predicted seconds, tasks) since the last report
  double reported_pred = 0;
  std::uint64_t reported_tasks = 0;
};

class bench {
 public:
  explicit bench(const options& o) : o_(o), rng_(o.seed) {
    if (o_.window == 0) o_.window = std::uint64_t{20} * o_.workers * o_.threads;
  }

  void run();

 private:
  // The head's work in CPU seconds of this thread: on a shared machine the wall clock also counts
  // the time the thread waited for a core (several times the work at a load of 4-5 on 2 cores).
  template <class F>
  double timed(F&& f) {
    in_head = true;
    const auto w0 = clock_type::now();
    const double t0 = cpu_seconds();
    f();
    const double s = cpu_seconds() - t0;
    wall_busy_ += std::chrono::duration<double>(clock_type::now() - w0).count();
    in_head = false;
    return s;
  }
  void push(event e) {
    e.seq = seq_++;
    events_.push(e);
  }
  void schedule_cycle(std::uint32_t h, double t) {
    head_sim& hs = heads_[h];
    if (hs.running) return;
    const double at = std::max(hs.free_at, std::ceil(t / o_.quantum) * o_.quantum);
    if (at >= hs.next_cycle) return;
    hs.next_cycle = at;
    push({at, 0, ev::cycle, h, 0, 0, 0});
  }
  void deliver(std::uint32_t h, double t, head_msg m) {
    heads_[h].inbox.push_back(m);
    schedule_cycle(h, t);
  }
  void start_on(worker_sim& w, worker_id gw, double now);
  bool generate(task_id& id);  // the next task or job, routed; false when all are made
  std::uint32_t route(double predicted);
  void submit_more(double now);
  void head_cycle(std::uint32_t h, double now);
  void take(head_sim& hs, const std::vector<head_msg>& inbox, double now);
  void finished_at_head(head_sim& hs, task_id id, double now);

  options o_;
  std::mt19937_64 rng_;
  std::vector<head_sim> heads_;
  std::vector<worker_sim> workers_;
  std::priority_queue<event, std::vector<event>, std::greater<>> events_;
  std::uint64_t seq_ = 0;
  std::deque<std::pair<task_id, task_info>> window_;  // by id, ids consecutive from window_base_
  task_id window_base_ = 1;
  std::deque<job_info> jobs_;  // live map-reduce jobs, by job - jobs_base_
  std::uint64_t jobs_base_ = 0;
  std::uint64_t made_ = 0, finished_ = 0, released_ = 0, live_ = 0, peak_live_ = 0;
  std::uint64_t top_messages_ = 0;
  double top_busy_ = 0, top_free_ = 0, now_ = 0;
  double work_ = 0;       // true run time of every task on its worker
  double wall_busy_ = 0;  // the same calls on the wall clock
  std::vector<dx::sched::alert_event> alerts_;
  std::uint64_t alert_count_ = 0;
  std::unique_ptr<dx::cost_model> top_model_;

  task_info& info(task_id id) { return window_[id - window_base_].second; }
};

void bench::start_on(worker_sim& w, worker_id gw, double now) {
  while (w.free_threads > 0 && !w.fifo.empty()) {
    const task_id id = w.fifo.front();
    w.fifo.pop_front();
    --w.free_threads;
    const double run = info(id).seconds * w.speed;
    work_ += run;
    push({now + o_.latency, 0, ev::to_head, w.head, gw, id, 0});
    push({now + run, 0, ev::finish_on_worker, w.head, gw, id, 0});
    ++w.messages;
  }
}

std::uint32_t bench::route(double predicted) {
  if (heads_.size() == 1) return 0;
  // The sub-head whose routed work is predicted to end first, this task included.
  std::uint32_t best = 0;
  double best_end = std::numeric_limits<double>::infinity();
  for (std::uint32_t h = 0; h < heads_.size(); ++h) {
    const double end = (heads_[h].outstanding + predicted) / heads_[h].capacity;
    if (end < best_end) best_end = end, best = h;
  }
  heads_[best].outstanding += predicted;
  return best;
}

bool bench::generate(task_id& id) {
  if (made_ >= o_.tasks) return false;
  std::lognormal_distribution<double> noise(0, 0.2);
  auto predicted = [&](std::uint32_t kind) {
    return heads_.size() == 1 ? 0.0 : top_model_->predict_kind(kind_names[kind], {}).mean;
  };
  if (o_.shape == "independent") {
    task_info t;
    t.kind = static_cast<std::uint32_t>(rng_() % n_kinds);
    t.seconds = o_.seconds * kind_scale[t.kind] * noise(rng_);
    t.predicted = predicted(t.kind);
    t.head = route(t.predicted);
    id = window_base_ + window_.size();
    t.local = heads_[t.head].next_local++;
    heads_[t.head].global_of.push_back(id);
    window_.emplace_back(id, t);
    ++made_;
    return true;
  }
  // A map-reduce job, routed whole: its reduces read its maps where they ran.
  const std::uint64_t job = jobs_base_ + jobs_.size();
  const std::uint32_t n = o_.maps + o_.reduces + 1;
  double pred = 0;
  for (std::uint32_t k = n_kinds; k < n_kinds + 3; ++k)
    pred += predicted(k) * (k == n_kinds ? o_.maps : k == n_kinds + 1 ? o_.reduces : 1);
  const std::uint32_t h = route(pred);
  id = window_base_ + window_.size();
  head_sim& hs = heads_[h];
  jobs_.push_back({id, o_.maps, o_.reduces, false, hs.next_local});
  for (std::uint32_t i = 0; i < n; ++i) {
    task_info t;
    t.role = i < o_.maps ? 1 : i < o_.maps + o_.reduces ? 2 : 3;
    t.kind = n_kinds + t.role - 1;
    t.seconds = o_.seconds * kind_scale[t.kind] * noise(rng_);
    t.predicted = predicted(t.kind);
    t.head = h;
    t.job = job;
    t.local = hs.next_local++;
    hs.global_of.push_back(window_base_ + window_.size());
    window_.emplace_back(window_base_ + window_.size(), t);
  }
  made_ += n;
  return true;
}

// The caller tops its submissions up to the window. Flat: straight into the head's scheduler (the
// caller's cost of building specs is not the head's). Two levels: the top head routes and sends.
void bench::submit_more(double now) {
  while (live_ < o_.window) {
    task_id first = 0;
    const std::size_t before = window_.size();
    if (!generate(first)) break;
    const std::size_t added = window_.size() - before;
    live_ += added;
    peak_live_ = std::max(peak_live_, live_);
    const std::uint32_t h = info(first).head;
    for (std::size_t i = 0; i < added; ++i) {
      const task_id id = first + i;
      if (heads_.size() == 1) {
        deliver(h, now, {2, 0, id});
      } else {
        ++top_messages_;
        push({now + o_.latency, 0, ev::submit_to_head, h, 0, id, 2});
      }
    }
  }
}

void bench::finished_at_head(head_sim& hs, task_id id, double now) {
  task_info& t = info(id);
  ++finished_;
  --live_;
  --hs.live;
  hs.reported_pred += t.predicted;
  ++hs.reported_tasks;
  auto release = [&](task_id local) {
    hs.sched->task_forgotten(local);
    hs.global_of[local - hs.local_base] = 0;
    ++released_;
  };
  if (t.role == 0) {
    release(t.local);
  } else {
    job_info& j = jobs_[t.job - jobs_base_];
    if (t.role == 1 && --j.maps_left == 0) {
      for (std::uint32_t r = 0; r < o_.reduces; ++r) hs.sched->task_ready(j.first_local + o_.maps + r, now);
    } else if (t.role == 2 && --j.reduces_left == 0) {
      hs.sched->task_ready(j.first_local + o_.maps + o_.reduces, now);
    } else if (t.role == 3) {
      // The job's answer reached the caller: every result of it is released.
      for (std::uint32_t i = 0; i <= o_.maps + o_.reduces; ++i) release(j.first_local + i);
    }
  }
  while (!hs.global_of.empty() && hs.global_of.front() == 0) {
    hs.global_of.pop_front();
    ++hs.local_base;
  }
  if (t.role == 0 || t.role == 3) {
    if (t.role == 3) jobs_[t.job - jobs_base_].done = true;
    const std::uint64_t first = t.role == 0 ? id : jobs_[t.job - jobs_base_].first;
    const std::uint64_t n = t.role == 0 ? 1 : o_.maps + o_.reduces + 1;
    for (std::uint64_t i = 0; i < n; ++i) info(first + i).seconds = -1;  // released
    while (!window_.empty() && window_.front().second.seconds < 0) {
      window_.pop_front();
      ++window_base_;
    }
    while (!jobs_.empty() && jobs_.front().done) {
      jobs_.pop_front();
      ++jobs_base_;
    }
  }
}

void bench::take(head_sim& hs, const std::vector<head_msg>& inbox, double now) {
  for (const head_msg& m : inbox) {
    const worker_id gw = m.what == 2 ? 0 : hs.global[m.local];
    if (m.what == 0) {
      hs.sched->task_started(info(m.task).local, m.local, now);
    } else if (m.what == 1) {
      task_info& t = info(m.task);
      const double ran = t.seconds * workers_[gw].speed;
      const bool keep = t.role == 1 || t.role == 2;  // maps' and reduces' results stay on workers
      hs.sched->task_finished(t.local, m.local, now, ran, keep ? 1 << 20 : 64, keep);
      finished_at_head(hs, m.task, now);
    } else {
      task_info& t = info(m.task);
      ++hs.live;
      dx::sched::task_spec spec;
      spec.id = t.local;
      spec.kind = kind_names[t.kind];
      if (t.role == 2) {
        const job_info& j = jobs_[t.job - jobs_base_];
        for (std::uint32_t i = 0; i < o_.maps; ++i) spec.inputs.push_back(j.first_local + i);
      } else if (t.role == 3) {
        const job_info& j = jobs_[t.job - jobs_base_];
        for (std::uint32_t i = 0; i < o_.reduces; ++i) spec.inputs.push_back(j.first_local + o_.maps + i);
      }
      hs.sched->task_submitted(spec, now);
      if (spec.inputs.empty()) hs.sched->task_ready(t.local, now);
    }
  }
}

void bench::head_cycle(std::uint32_t h, double now) {
  head_sim& hs = heads_[h];
  if (now != hs.next_cycle) return;  // overtaken by an earlier cycle
  hs.next_cycle = std::numeric_limits<double>::infinity();
  hs.running = true;
  double cost = 0;
  if (heads_.size() == 1) submit_more(now);
  std::vector<head_msg> inbox;
  inbox.swap(hs.inbox);
  // The messages as one timed block (a clock read costs about 50 ns here, as much as a small
  // scheduler call): the caller's own bookkeeping in it is a few loads per message.
  cost += timed([&] { take(hs, inbox, now); });
  std::vector<dx::sched::decision> out;
  const double d = timed([&] { hs.sched->decide(now, out); });
  // Alerts are drained every cycle, as a live head hands them to its subscribers.
  cost += timed([&] {
    alerts_.clear();
    hs.sched->take_alerts(alerts_);
  });
  alert_count_ += alerts_.size();
  cost += d;
  hs.place += d;
  hs.busy += cost;
  const double done = now + (o_.head_cost ? cost : 0);
  hs.free_at = done;
  for (const auto& dec : out) {
    if (dec.kind != dx::sched::decision_kind::run) continue;
    ++hs.placed;
    const worker_id gw = hs.global[dec.to];
    ++workers_[gw].messages;
    push({done + o_.latency, 0, ev::arrive, h, gw, hs.global_of[dec.task - hs.local_base], 0});
  }
  // Two levels: one message a cycle tells the top head what finished.
  if (heads_.size() > 1 && hs.reported_tasks > 0) {
    push({done + o_.latency, 0, ev::report_to_top, h, 0, hs.reported_tasks, 0});
    hs.finished_report.emplace_back(hs.reported_pred, hs.reported_tasks);
    hs.reported_pred = 0;
    hs.reported_tasks = 0;
  }
  hs.running = false;
  // Held work with nothing else to wake the head: look again after a tick, as a live head does.
  if (!hs.inbox.empty())
    schedule_cycle(h, done);
  else if (hs.live > 0)
    schedule_cycle(h, done + 0.010);
}

void bench::run() {
  // Workers: speeds log-uniform in [0.5, 2], dealt to the heads in turn.
  std::uniform_real_distribution<double> log_speed(std::log(0.5), std::log(2.0));
  workers_.resize(o_.workers);
  heads_.resize(o_.heads);
  const long rss0 = rss_bytes();
  for (auto& hs : heads_) {
    timed([&] {
      hs.model = std::make_unique<dx::cost_model>();
      hs.sched = std::make_unique<dx::sched::scheduler>(dx::sched::config{}, *hs.model);
    });
  }
  const std::int64_t bytes0 = counters.head;
  for (worker_id w = 0; w < o_.workers; ++w) {
    worker_sim& ws = workers_[w];
    ws.speed = std::exp(log_speed(rng_));
    ws.head = w % o_.heads;
    ws.free_threads = o_.threads;
    head_sim& hs = heads_[ws.head];
    ws.local = static_cast<worker_id>(hs.global.size());
    hs.global.push_back(w);
    const std::string name = "w" + std::to_string(w);
    // A warm model: the worker ran each kind a few times.
    timed([&] {
      for (int k = 0; k < n_kinds + 3; ++k)
        for (int i = 0; i < 4; ++i)
          hs.model->observe({.kind = kind_names[k],
                             .worker = name,
                             .features = {},
                             .seconds = o_.seconds * kind_scale[k] * ws.speed});
      dx::sched::worker_spec spec;
      spec.id = ws.local;
      spec.name = name;
      spec.threads = o_.threads;
      hs.sched->worker_joined(spec, 0);
    });
  }
  const std::int64_t bytes1 = counters.head;
  const long rss1 = rss_bytes();
  if (o_.heads > 1) {
    top_model_ = std::make_unique<dx::cost_model>();
    for (int k = 0; k < n_kinds + 3; ++k)
      for (int i = 0; i < 4; ++i)
        top_model_->observe(
            {.kind = kind_names[k], .worker = "avg", .features = {}, .seconds = o_.seconds * kind_scale[k]});
    for (worker_id w = 0; w < o_.workers; ++w) {
      head_sim& hs = heads_[workers_[w].head];
      hs.capacity += o_.threads / hs.model->worker_factor("w" + std::to_string(w));
    }
  }

  const auto wall0 = clock_type::now();
  if (o_.heads == 1) {
    schedule_cycle(0, 0);  // its first cycle submits
  } else {
    const double t0 = cpu_seconds();
    submit_more(0);
    top_busy_ += cpu_seconds() - t0;
    top_free_ = o_.head_cost ? top_busy_ : 0;
  }
  double makespan = 0;
  std::size_t events = 0;
  while (!events_.empty()) {
    const event e = events_.top();
    events_.pop();
    ++events;
    now_ = e.time;
    switch (e.kind) {
      case ev::arrive: {
        worker_sim& w = workers_[e.worker];
        w.fifo.push_back(e.task);
        start_on(w, e.worker, now_);
        break;
      }
      case ev::finish_on_worker: {
        worker_sim& w = workers_[e.worker];
        ++w.free_threads;
        ++w.messages;
        push({now_ + o_.latency, 0, ev::to_head, w.head, e.worker, e.task, 1});
        start_on(w, e.worker, now_);
        break;
      }
      case ev::to_head:
        if (e.what == 1) makespan = std::max(makespan, now_);
        deliver(e.head, now_, {e.what, workers_[e.worker].local, e.task});
        break;
      case ev::submit_to_head:
        deliver(e.head, now_, {2, 0, e.task});
        break;
      case ev::cycle:
        head_cycle(e.head, now_);
        break;
      case ev::report_to_top: {
        // The top head's cycle: take the report, top submissions up, route.
        head_sim& hs = heads_[e.head];
        const double t0 = cpu_seconds();
        const auto [pred, n] = hs.finished_report.front();
        hs.finished_report.erase(hs.finished_report.begin());
        hs.outstanding -= pred;
        (void)n;
        ++top_messages_;
        const double start = std::max(now_, top_free_);
        submit_more(start);  // sent when the top head gets to it
        const double c = cpu_seconds() - t0;
        top_busy_ += c;
        top_free_ = start + (o_.head_cost ? c : 0);
        break;
      }
    }
  }
  const double wall = std::chrono::duration<double>(clock_type::now() - wall0).count();
  if (finished_ != o_.tasks) {
    std::fprintf(stderr, "stalled: %llu of %llu tasks finished\n", static_cast<unsigned long long>(finished_),
                 static_cast<unsigned long long>(o_.tasks));
    std::exit(1);
  }
  const std::int64_t bytes_end = counters.head;
  malloc_trim(0);  // what the allocator keeps of freed pages is not the head's
  const long rss_end = rss_bytes();

  double busy = 0, place = 0, max_busy = 0;
  std::size_t placed = 0;
  for (const auto& hs : heads_) {
    busy += hs.busy;
    place += hs.place;
    placed += hs.placed;
    max_busy = std::max(max_busy, hs.busy);
  }
  std::uint64_t worker_msgs = 0;
  for (const auto& w : workers_) worker_msgs += w.messages;
  const double capacity_threads = static_cast<double>(o_.workers) * o_.threads;
  // Tasks per second the workers could finish (every thread busy), against what one head decides.
  const double mean_run = work_ / static_cast<double>(o_.tasks);
  const double needed = capacity_threads / mean_run;
  const double ideal = work_ / capacity_threads;
  std::printf(
      "RESULT shape=%s workers=%u threads=%u tasks=%llu heads=%u head_cost=%s seconds=%.4f window=%llu "
      "makespan=%.3f ideal=%.3f efficiency=%.3f "
      "decisions=%zu place_s=%.3f busy_s=%.3f max_head_busy_s=%.3f top_busy_s=%.3f "
      "place_decisions_per_s=%.0f cycle_tasks_per_s=%.0f busiest_head_tasks_per_s=%.0f needed_tasks_per_s=%.0f "
      "head_bytes_per_worker=%.1f head_bytes_per_released_task=%.2f head_peak_bytes_per_live_task=%.1f "
      "peak_live=%llu released=%llu rss_mb_start=%.1f rss_mb_joined=%.1f rss_mb_end=%.1f "
      "rss_bytes_per_released_task=%.2f messages_per_s_per_worker=%.1f top_messages=%llu alerts=%llu events=%zu "
      "wall_s=%.2f "
      "head_wall_s=%.2f\n",
      o_.shape.c_str(), o_.workers, o_.threads, static_cast<unsigned long long>(o_.tasks), o_.heads,
      o_.head_cost ? "measured" : "none", o_.seconds, static_cast<unsigned long long>(o_.window), makespan, ideal,
      ideal / makespan, placed, place, busy, max_busy, top_busy_, placed / place, o_.tasks / busy, o_.tasks / max_busy,
      needed, static_cast<double>(bytes1 - bytes0) / o_.workers,
      static_cast<double>(bytes_end - bytes1) / static_cast<double>(released_),
      static_cast<double>(counters.head_peak - bytes1) / static_cast<double>(peak_live_),
      static_cast<unsigned long long>(peak_live_), static_cast<unsigned long long>(released_), rss0 / 1048576.0,
      rss1 / 1048576.0, rss_end / 1048576.0, static_cast<double>(rss_end - rss1) / static_cast<double>(released_),
      static_cast<double>(worker_msgs) / o_.workers / makespan, static_cast<unsigned long long>(top_messages_),
      static_cast<unsigned long long>(alert_count_), events, wall, wall_busy_);
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--workers")
      o.workers = static_cast<std::uint32_t>(std::atol(next()));
    else if (a == "--threads")
      o.threads = static_cast<std::uint32_t>(std::atol(next()));
    else if (a == "--tasks")
      o.tasks = std::strtoull(next(), nullptr, 10);
    else if (a == "--shape")
      o.shape = next();
    else if (a == "--seconds")
      o.seconds = std::atof(next());
    else if (a == "--heads")
      o.heads = static_cast<std::uint32_t>(std::atol(next()));
    else if (a == "--head-cost")
      o.head_cost = std::strcmp(next(), "none") != 0;
    else if (a == "--window")
      o.window = std::strtoull(next(), nullptr, 10);
    else if (a == "--maps")
      o.maps = static_cast<std::uint32_t>(std::atol(next()));
    else if (a == "--reduces")
      o.reduces = static_cast<std::uint32_t>(std::atol(next()));
    else if (a == "--latency")
      o.latency = std::atof(next());
    else if (a == "--seed")
      o.seed = std::strtoull(next(), nullptr, 10);
    else {
      std::fprintf(stderr,
                   "usage: %s [--workers 10000] [--threads 1] [--tasks 10000000] [--shape independent|map-reduce]\n"
                   "  [--seconds 0.01 (mean task run time)] [--heads 1 (2+: a head of sub-heads)]\n"
                   "  [--head-cost measured|none] [--window 20*threads] [--maps 100] [--reduces 4]\n"
                   "  [--latency 0.0001 (one way)] [--seed 1]\n",
                   argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  if (o.workers == 0 || o.threads == 0 || o.tasks == 0 || o.heads == 0 || o.heads > o.workers ||
      (o.shape != "independent" && o.shape != "map-reduce")) {
    std::fprintf(stderr, "bad options (see --help)\n");
    return 2;
  }
  if (o.shape == "map-reduce") {  // whole jobs
    const std::uint64_t job = std::uint64_t{o.maps} + o.reduces + 1;
    o.tasks = std::max<std::uint64_t>(1, o.tasks / job) * job;
  }
  bench b(o);
  b.run();
  return 0;
}
