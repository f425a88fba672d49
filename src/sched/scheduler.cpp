#include "sched/scheduler.hpp"

#include "model/cost_model_impl.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <queue>
#include <random>
#include <set>
#include <stdexcept>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace dx::sched {

namespace {

using model_index = cost_model::impl::index;
constexpr double infinity = std::numeric_limits<double>::infinity();

enum class task_state : std::uint8_t { waiting, ready, held, sent, running, done, failed };

/// Order of a worker's queue: higher priority, then longer remaining critical path, then older.
struct queue_key {
  int priority;
  double rank;
  std::uint64_t seq;
  task_id id;
  bool operator<(const queue_key& o) const {
    if (priority != o.priority) return priority > o.priority;
    if (rank != o.rank) return rank > o.rank;
    return seq < o.seq;
  }
};

struct task_rec {
  task_id id = 0;
  model_index kind = 0;
  std::vector<task_id> inputs;
  std::vector<task_id> dependents;
  task_features features;
  int priority = 0;
  std::vector<std::pair<std::uint32_t, double>> needs;
  double true_seconds = 0;
  task_state state = task_state::waiting;
  worker_id where = no_worker;
  double charge = 0;              // predicted seconds added to its worker's backlog
  bool charged_fallback = false;  // ... from a fallback duration (the kind had no samples)
  double predicted = 0;           // on a worker of factor 1
  double rank = 0;
  std::uint64_t seq = 0;
  std::uint64_t sent_seq = 0;
  double started_at = -1;
  std::uint64_t result_bytes = 0;
  std::vector<worker_id> holders;  // workers holding the result (empty: it is at the caller)
  bool move_pending = false;
  bool move_tried = false;
  bool straggler_reported = false;
  bool forgotten = false;
  bool result_remote = false;  // the result stayed on a worker (else the caller has it)
  bool root = false;           // no task inputs (dask_like holds these at the scheduler)
};

/// Tasks by id. Ids are counters (the head's and the simulator's are), so a table of pages
/// indexed by id finds a task in two loads where a hash map would miss the cache; a page is freed
/// when its last task is erased, so memory follows the live tasks.
class task_table {
 public:
  using entry = std::pair<const task_id, task_rec>;
  static constexpr unsigned page_bits = 10;
  static constexpr std::size_t page_size = std::size_t{1} << page_bits;
  static constexpr task_id max_id = (task_id{1} << 36) - 1;

  class iterator {
   public:
    iterator(const task_table* t, task_id id) : t_(t), id_(id) { skip(); }
    entry& operator*() const { return *t_->slot(id_); }
    entry* operator->() const { return t_->slot(id_); }
    iterator& operator++() {
      ++id_;
      skip();
      return *this;
    }
    bool operator==(const iterator& o) const { return id_ == o.id_; }

   private:
    void skip() {
      while (id_ < t_->end_id()) {
        const auto& p = t_->pages_[id_ >> page_bits];
        if (!p) {
          id_ = ((id_ >> page_bits) + 1) << page_bits;
          continue;
        }
        if (p->slots[id_ & (page_size - 1)]) return;
        ++id_;
      }
      id_ = t_->end_id();
    }
    const task_table* t_;
    task_id id_;
  };

  iterator begin() const { return iterator(this, 0); }
  iterator end() const { return iterator(this, end_id()); }
  iterator find(task_id id) const { return slot(id) ? iterator(this, id) : end(); }
  task_rec& at(task_id id) const {
    entry* e = slot(id);
    if (!e) throw std::out_of_range("dx scheduler: unknown task");
    return e->second;
  }
  std::pair<iterator, bool> try_emplace(task_id id) {
    if (id > max_id) throw std::invalid_argument("dx scheduler: task ids must be below 2^36");
    const std::size_t page_index = id >> page_bits;
    if (page_index >= pages_.size()) pages_.resize(page_index + 1);
    auto& p = pages_[page_index];
    if (!p) p = std::make_unique<page>();
    auto& e = p->slots[id & (page_size - 1)];
    if (e) return {iterator(this, id), false};
    e.emplace(std::piecewise_construct, std::forward_as_tuple(id), std::forward_as_tuple());
    ++p->count;
    return {iterator(this, id), true};
  }
  void erase(task_id id) {
    if (!slot(id)) return;
    auto& p = pages_[id >> page_bits];
    p->slots[id & (page_size - 1)].reset();
    if (--p->count == 0) p.reset();
  }
  void erase(const iterator& it) { erase(it->first); }

 private:
  struct page {
    std::array<std::optional<entry>, page_size> slots;
    std::size_t count = 0;
  };
  task_id end_id() const { return static_cast<task_id>(pages_.size()) << page_bits; }
  entry* slot(task_id id) const {
    const std::size_t page_index = id >> page_bits;
    if (page_index >= pages_.size() || !pages_[page_index]) return nullptr;
    auto& e = pages_[page_index]->slots[id & (page_size - 1)];
    return e ? &*e : nullptr;
  }
  std::vector<std::unique_ptr<page>> pages_;
};

struct worker_rec {
  worker_id id = 0;
  std::string name;
  model_index model = 0;
  model_index cls = 0;
  std::uint32_t threads = 1;
  std::vector<double> capacity;
  std::vector<double> used;
  bool active = true;
  bool draining = false;
  double factor = 1;
  double placed_factor = 1;  // the factor its queued tasks were placed with
  int bucket = 0;
  double backlog = 0;  // predicted seconds of placed, unfinished tasks
  double sent_seconds = 0;
  std::uint32_t sent = 0;
  std::uint32_t running = 0;
  std::vector<task_id> running_ids;  // known to run (task_started), at most its threads
  std::set<queue_key> held;
  // Sent and not known to run, by send order. Entries go stale when their task starts, finishes
  // or comes back; they are skipped when read and swept when they outnumber the live ones.
  std::vector<std::pair<std::uint64_t, task_id>> unstarted;
  std::set<std::pair<double, worker_id>>* bucket_set = nullptr;  // its entry in the load index
  bool stealing = false;                                         // a move towards it is pending
  std::uint32_t reported_running = 0, reported_queued = 0;       // its last load report
  bool reported = false;

  double load() const { return backlog / threads; }
};

struct bucket_key {
  model_index cls;
  int speed;
  bool operator<(const bucket_key& o) const { return cls != o.cls ? cls < o.cls : speed < o.speed; }
};

}  // namespace

struct scheduler::state {
  config cfg;
  cost_model& model;
  cost_model::impl& m;
  std::mt19937_64 rng;

  task_table tasks;
  std::vector<task_id> order;               // submission order (topological), compacted now and then
  std::map<worker_id, worker_rec> workers;  // ordered: iteration is deterministic
  std::vector<worker_rec*> by_id;           // the same, indexed by id for O(1) lookups
  // Active, non-draining workers by speed bucket, each ordered by load (backlog per thread).
  std::map<bucket_key, std::set<std::pair<double, worker_id>>> buckets;
  std::vector<worker_id> round_robin_order;
  std::size_t round_robin_next = 0;
  std::map<std::string, std::uint32_t> resource_names;

  std::vector<task_id> to_place;         // ready, not placed yet
  std::set<queue_key> root_queue;        // dask_like: input-free tasks held here
  std::vector<task_id> unplaceable;      // needs no worker can meet
  std::unordered_set<worker_id> hungry;  // may have room to send
  std::unordered_set<task_id> running_tasks;
  std::unordered_map<task_id, worker_id> move_thief;  // pending moves: task -> the idle worker
  std::vector<decision> out;
  std::vector<alert_event> alerts;
  std::map<std::pair<int, std::string>, bool> alert_active;

  std::uint64_t next_seq = 0;
  std::uint64_t next_sent_seq = 0;
  std::size_t decisions = 0;
  std::size_t moves_confirmed = 0;
  std::size_t submitted_since_ranks = 0;
  std::size_t edges_since_ranks = 0;
  std::size_t uncalibrated_placed = 0;
  mutable std::unordered_map<model_index, std::uint32_t> probes_in_flight;  // sent, charged a fallback
  bool priorities_used = false;
  std::map<int, std::map<worker_id, std::uint32_t>>
      held_levels;  // priority -> worker -> held count  // placed tasks charged with a fallback duration
  std::size_t live_tasks = 0;
  std::vector<std::uint64_t> calibrated_seen;  // per kind: whether calibration was seen (bitset by kind)
  bool recost = false;
  double last_alert_check = -infinity;
  double transfer_window = 0, compute_window = 0;

  state(config c, cost_model& cm)
      : cfg(c), model(cm), m(detail::model_internals(cm)), rng(c.seed), reference_class(m.class_index("default")) {}
  model_index reference_class;  // ranks are in run times on an average worker of this class

  worker_rec& worker(worker_id id) { return *by_id[id]; }
  const worker_rec& worker(worker_id id) const { return *by_id[id]; }
  worker_rec* find_worker(worker_id id) { return id < by_id.size() ? by_id[id] : nullptr; }

  bool predictive() const { return cfg.kind == policy::predictive || cfg.kind == policy::oracle; }
  bool eager() const {
    return cfg.kind == policy::round_robin || cfg.kind == policy::random || cfg.kind == policy::least_loaded;
  }

  // ---- predictions ---------------------------------------------------------------------------------

  /// Run time of `t` on a worker of factor 1 of class `cls`.
  prediction predict_class(const task_rec& t, model_index cls) const {
    if (cfg.kind == policy::oracle) return {t.true_seconds, 0, true, 1};
    return m.predict(t.kind, cls, t.features);
  }
  double worker_factor(const worker_rec& w) const { return cfg.kind == policy::dask_like ? 1.0 : w.factor; }
  double predict_on(const task_rec& t, const worker_rec& w) const {
    return predict_class(t, w.cls).mean * worker_factor(w);
  }
  /// The inputs of a task that live on workers, with what fetching each costs. Gathered once per
  /// placement: a candidate worker then pays for the inputs it does not hold.
  struct remote_input {
    const std::vector<worker_id>* holders;
    double cost;
  };
  void gather_inputs(const task_rec& t, std::vector<remote_input>& out) const {
    out.clear();
    for (task_id in : t.inputs) {
      auto it = tasks.find(in);
      if (it == tasks.end()) continue;
      const task_rec& r = it->second;
      if (r.holders.empty() || r.result_bytes == 0) continue;
      // Priced on the holder's link to the network at large: looking up every (holder,
      // candidate) link would cost more than the placement itself.
      const double cost =
          m.predict_transfer(worker(r.holders.front()).model, cost_model::impl::no_index, r.result_bytes).mean;
      out.push_back({&r.holders, cost});
    }
  }
  static double transfer_cost(const std::vector<remote_input>& inputs, worker_id w) {
    double total = 0;
    for (const remote_input& in : inputs)
      if (std::find(in.holders->begin(), in.holders->end(), w) == in.holders->end()) total += in.cost;
    return total;
  }
  double transfer_to(const task_rec& t, const worker_rec& w) const {
    std::vector<remote_input> inputs;
    gather_inputs(t, inputs);
    return transfer_cost(inputs, w.id);
  }
  mutable std::vector<remote_input> inputs_scratch;

  int speed_bucket(double factor) const {
    if (cfg.kind == policy::dask_like) return 0;
    return static_cast<int>(std::lround(4.0 * std::log2(std::max(factor, 1e-6))));
  }

  // ---- worker bookkeeping --------------------------------------------------------------------------

  bool in_buckets(const worker_rec& w) const { return w.active && !w.draining; }

  // Buckets are never erased (an empty one is skipped), so a worker keeps a pointer to its own.
  void unindex(worker_rec& w) {
    if (!w.bucket_set) return;
    w.bucket_set->erase({w.load(), w.id});
    w.bucket_set = nullptr;
  }
  void index(worker_rec& w) {
    if (!in_buckets(w)) return;
    w.bucket_set = &buckets[{w.cls, w.bucket}];
    w.bucket_set->insert({w.load(), w.id});
  }
  /// Changes a worker's backlog keeping the bucket index in order (the set's node is reused).
  void add_backlog(worker_rec& w, double delta) {
    if (!w.bucket_set) {
      w.backlog = std::max(0.0, w.backlog + delta);
      if (w.backlog < 1e-12) w.backlog = 0;
      return;
    }
    auto node = w.bucket_set->extract({w.load(), w.id});
    w.backlog += delta;
    if (w.backlog < 1e-12) w.backlog = 0;
    node.value().first = w.load();
    w.bucket_set->insert(std::move(node));
  }
  bool unstarted_on(const worker_rec& w, const std::pair<std::uint64_t, task_id>& e) const {
    auto it = tasks.find(e.second);
    return it != tasks.end() && it->second.state == task_state::sent && it->second.where == w.id &&
           it->second.sent_seq == e.first;
  }
  void refresh_factor(worker_rec& w) {
    if (cfg.kind == policy::oracle) return;
    const double f = m.worker_factor(w.model);
    const int b = speed_bucket(f);
    if (b != w.bucket) {
      unindex(w);
      w.factor = f;
      w.bucket = b;
      index(w);
    } else {
      w.factor = f;
    }
    // What is queued here was placed believing another speed: place it again (a worker's first
    // samples move its factor most; later changes are small and leave the queue alone).
    if (std::abs(std::log(f / w.placed_factor)) > std::log(1.25)) {
      w.placed_factor = f;
      if (predictive() && !w.held.empty()) {
        std::vector<task_id> ids;
        ids.reserve(w.held.size());
        for (const queue_key& k : w.held) ids.push_back(k.id);
        for (task_id t : ids) {
          unhold(tasks.at(t));
          to_place.push_back(t);
        }
      }
    }
  }

  std::uint32_t resource_index(const std::string& name) {
    auto [it, fresh] = resource_names.emplace(name, static_cast<std::uint32_t>(resource_names.size()));
    if (fresh)
      for (auto& [id, w] : workers) {
        w.capacity.resize(resource_names.size(), 0);
        w.used.resize(resource_names.size(), 0);
        if (name == "cpu") w.capacity[it->second] = w.threads;
      }
    return it->second;
  }
  bool can_host(const worker_rec& w, const task_rec& t) const {
    for (auto [r, amount] : t.needs)
      if (r >= w.capacity.size() || w.capacity[r] + 1e-9 < amount) return false;
    return true;
  }
  bool fits_now(const worker_rec& w, const task_rec& t) const {
    for (auto [r, amount] : t.needs)
      if (r >= w.capacity.size() || w.used[r] + amount > w.capacity[r] + 1e-9) return false;
    // A kind nothing is known about is probed with a few tasks (the smallest first: they are
    // ordered so) before the rest is sent blind to workers of unknown speed.
    if (t.charged_fallback && predictive() && probes_in_flight[t.kind] >= probe_limit) return false;
    return true;
  }
  static constexpr std::uint32_t probe_limit = 4;
  /// While a kind is uncalibrated its ranks are equal; the smaller task goes first.
  static double cold_tie_break(const task_rec& t, const prediction& p) {
    if (p.calibrated) return 0;
    const double size = t.features.size_hint > 0 ? t.features.size_hint : static_cast<double>(t.features.input_bytes);
    return -1e-3 * std::log2(1 + size);
  }

  // ---- ranks ---------------------------------------------------------------------------------------

  /// Upward ranks of every unfinished task, in reverse submission order (a topological order).
  void compute_ranks() {
    std::vector<task_id> kept;
    kept.reserve(order.size());
    for (task_id id : order) {
      auto it = tasks.find(id);
      if (it != tasks.end() && it->second.state != task_state::done && it->second.state != task_state::failed)
        kept.push_back(id);
    }
    order.swap(kept);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      task_rec& t = tasks.at(*it);
      const prediction p = predict_class(t, reference_class);
      t.predicted = p.mean;
      double below = 0;
      for (task_id d : t.dependents) {
        auto dt = tasks.find(d);
        if (dt != tasks.end() && dt->second.state != task_state::done) below = std::max(below, dt->second.rank);
      }
      set_rank(t, t.predicted + below + cold_tie_break(t, p));
    }
    submitted_since_ranks = 0;
    edges_since_ranks = 0;
  }
  void set_rank(task_rec& t, double rank) {
    if (rank == t.rank) return;
    if (t.state == task_state::held) {
      worker_rec& w = worker(t.where);
      w.held.erase(key(t));
      t.rank = rank;
      w.held.insert(key(t));
    } else if (t.state == task_state::ready && t.root && cfg.kind == policy::dask_like && root_queue.count(key(t))) {
      root_queue.erase(key(t));
      t.rank = rank;
      root_queue.insert(key(t));
    } else {
      t.rank = rank;
    }
  }
  queue_key key(const task_rec& t) const {
    // dask_like orders by priority then submission (Dask's FIFO-ish order), not by rank.
    const double r = cfg.kind == policy::dask_like || eager() ? 0.0 : t.rank;
    return {t.priority, r, t.seq, t.id};
  }

  // ---- placement -----------------------------------------------------------------------------------

  /// The worker where `t` is predicted to finish first, among the best of each speed bucket
  /// and the workers holding its inputs. no_worker when no active worker can host it.
  worker_id earliest_finish(const task_rec& t, double* finish_out = nullptr, double* transfer_out = nullptr) {
    worker_id best = no_worker;
    double best_finish = infinity, best_transfer = 0;
    model_index memo_cls = ~model_index{0};
    double memo_duration = 0;
    gather_inputs(t, inputs_scratch);
    auto consider = [&](const worker_rec& w) {
      if (!in_buckets(w) || !can_host(w, t)) return;
      if (w.cls != memo_cls) {
        memo_cls = w.cls;
        memo_duration = predict_class(t, w.cls).mean;
      }
      const double transfer = transfer_cost(inputs_scratch, w.id);
      const double finish = std::max(w.load(), transfer) + memo_duration * worker_factor(w);
      if (finish < best_finish || (finish == best_finish && w.id < best)) {
        best = w.id;
        best_finish = finish;
        best_transfer = transfer;
      }
    };
    if (!t.needs.empty()) {
      // Few tasks declare resources; only some workers can host them: look at all.
      for (auto& [id, w] : workers) consider(w);
    } else {
      for (auto& [k, set] : buckets)
        if (!set.empty()) consider(worker(set.begin()->second));
      for (const remote_input& in : inputs_scratch)
        for (worker_id h : *in.holders) consider(worker(h));
    }
    if (finish_out) *finish_out = best_finish;
    if (transfer_out) *transfer_out = best_transfer;
    return best;
  }

  worker_id dask_choice(const task_rec& t) {
    // Candidates: workers holding an input, else all; least occupancy per thread plus the
    // time to fetch what is missing.
    worker_id best = no_worker;
    double best_cost = infinity;
    auto consider = [&](const worker_rec& w) {
      if (!in_buckets(w) || !can_host(w, t)) return;
      const double cost = w.load() + transfer_to(t, w);
      if (cost < best_cost || (cost == best_cost && w.id < best)) {
        best = w.id;
        best_cost = cost;
      }
    };
    bool any_holder = false;
    if (t.needs.empty()) {
      for (task_id in : t.inputs) {
        auto it = tasks.find(in);
        if (it == tasks.end()) continue;
        for (worker_id h : it->second.holders) {
          auto w = workers.find(h);
          if (w != workers.end() && in_buckets(w->second)) {
            any_holder = true;
            consider(w->second);
          }
        }
      }
    }
    if (!any_holder) {
      if (!t.needs.empty()) {
        for (auto& [id, w] : workers) consider(w);
      } else {
        for (auto& [k, set] : buckets)
          if (!set.empty()) consider(worker(set.begin()->second));
      }
    }
    return best;
  }

  worker_id baseline_choice(const task_rec& t) {
    if (round_robin_order.empty()) return no_worker;
    const std::size_t n = round_robin_order.size();
    if (cfg.kind == policy::least_loaded) {
      worker_id best = no_worker;
      double best_load = infinity;
      for (worker_id id : round_robin_order) {
        const worker_rec& w = worker(id);
        if (!in_buckets(w) || !can_host(w, t)) continue;
        const double load = static_cast<double>(w.sent + w.held.size()) / w.threads;
        if (load < best_load) {
          best = id;
          best_load = load;
        }
      }
      return best;
    }
    for (std::size_t tries = 0; tries < n; ++tries) {
      std::size_t i;
      if (cfg.kind == policy::random) {
        i = std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
      } else {
        i = round_robin_next++ % n;
      }
      const worker_rec& w = worker(round_robin_order[i]);
      if (in_buckets(w) && can_host(w, t)) return w.id;
    }
    for (worker_id id : round_robin_order) {  // random missed the few hosts that fit
      const worker_rec& w = worker(id);
      if (in_buckets(w) && can_host(w, t)) return id;
    }
    return no_worker;
  }

  void place(task_rec& t, double now) {
    if (cfg.kind == policy::dask_like && t.root && t.needs.empty()) {
      t.state = task_state::ready;
      t.where = no_worker;
      root_queue.insert(key(t));
      return;
    }
    worker_id w_id;
    if (predictive()) {
      double finish = 0, transfer = 0;
      w_id = earliest_finish(t, &finish, &transfer);
      if (w_id != no_worker) {
        transfer_window += transfer;
        compute_window += std::max(0.0, finish - std::max(worker(w_id).load(), transfer));
      }
    } else if (cfg.kind == policy::dask_like) {
      w_id = dask_choice(t);
    } else {
      w_id = baseline_choice(t);
    }
    if (w_id == no_worker) {
      t.state = task_state::ready;
      t.where = no_worker;
      unplaceable.push_back(t.id);
      if (!t.needs.empty() && any_active_worker() && !any_can_host(t)) raise_unplaceable(t, now);
      return;
    }
    worker_rec& w = worker(w_id);
    t.state = task_state::held;
    t.where = w_id;
    charge(t, w);
    const bool nothing_more_urgent =
        !priorities_used || held_levels.empty() || held_levels.rbegin()->first <= t.priority;
    if (w.held.empty() && nothing_more_urgent && w.active && !w.draining && window_open(w) && fits_now(w, t)) {
      send(t, w);  // nothing queued before it: skip the queue
      return;
    }
    hold_insert(w, t);
    hungry.insert(w_id);
  }
  bool any_active_worker() const {
    for (auto& [id, w] : workers)
      if (in_buckets(w)) return true;
    return false;
  }
  bool any_can_host(const task_rec& t) const {
    for (auto& [id, w] : workers)
      if (in_buckets(w) && can_host(w, t)) return true;
    return false;
  }

  /// A worker's queue, and (once priorities are in use) which workers hold which priorities, so
  /// a worker about to start work can take a higher priority task queued elsewhere first.
  void hold_insert(worker_rec& w, const task_rec& t) {
    w.held.insert(key(t));
    if (priorities_used) ++held_levels[t.priority][w.id];
  }
  void hold_erase(worker_rec& w, const task_rec& t) {
    w.held.erase(key(t));
    if (!priorities_used) return;
    auto level = held_levels.find(t.priority);
    if (level == held_levels.end()) return;
    auto c = level->second.find(w.id);
    if (c != level->second.end() && --c->second == 0) level->second.erase(c);
    if (level->second.empty()) held_levels.erase(level);
  }
  void start_priority_index() {
    priorities_used = true;
    for (auto& [id, w] : workers)
      for (const queue_key& k : w.held) ++held_levels[k.priority][id];
  }
  /// A held task of a higher priority than `below` that w could send now, taken from another
  /// worker's queue; nullptr when there is none.
  task_rec* higher_priority_elsewhere(worker_rec& w, int below) {
    if (!priorities_used || held_levels.empty()) return nullptr;
    auto top = held_levels.rbegin();
    if (top->first <= below) return nullptr;
    for (auto& [vid, count] : top->second) {
      if (vid == w.id || worker(vid).held.empty()) continue;
      task_rec& t = tasks.at(worker(vid).held.begin()->id);
      if (t.priority != top->first || !can_host(w, t) || !fits_now(w, t)) continue;
      unhold(t);
      t.where = w.id;
      t.state = task_state::held;
      charge(t, w);
      hold_insert(w, t);
      return &t;
    }
    return nullptr;
  }

  /// Takes a held task off its worker (it stays ready).
  void unhold(task_rec& t) {
    worker_rec& w = worker(t.where);
    hold_erase(w, t);
    discharge(t, w);
    t.where = no_worker;
    t.state = task_state::ready;
  }
  /// Adds t's predicted run time on w to w's backlog.
  void charge(task_rec& t, worker_rec& w) {
    t.charge = predict_on(t, w);
    t.charged_fallback = cfg.kind != policy::oracle && !m.calibrated(t.kind, w.cls);
    uncalibrated_placed += t.charged_fallback;
    add_backlog(w, t.charge);
  }
  void discharge(task_rec& t, worker_rec& w) {
    add_backlog(w, -t.charge);
    uncalibrated_placed -= t.charged_fallback;
    t.charged_fallback = false;
    t.charge = 0;
  }
  /// Undoes a send: the worker no longer has it queued or running.
  void unsend(task_rec& t) {
    worker_rec& w = worker(t.where);
    running_tasks.erase(t.id);
    if (t.state == task_state::running && w.running > 0) --w.running;
    if (auto r = std::find(w.running_ids.begin(), w.running_ids.end(), t.id); r != w.running_ids.end()) {
      *r = w.running_ids.back();
      w.running_ids.pop_back();
    }
    --w.sent;
    w.sent_seconds = std::max(0.0, w.sent_seconds - t.charge);
    for (auto [r, amount] : t.needs) w.used[r] -= amount;
    if (t.charged_fallback && probes_in_flight[t.kind] > 0) --probes_in_flight[t.kind];
    discharge(t, w);
    t.where = no_worker;
    t.state = task_state::ready;
    t.started_at = -1;
    if (t.move_pending) release_move(t);
    hungry.insert(w.id);
  }
  /// The move asked for `t` is over (answered, or the task left its worker): the thief may ask again.
  void release_move(task_rec& t) {
    t.move_pending = false;
    auto m = move_thief.find(t.id);
    if (m == move_thief.end()) return;
    if (auto w = workers.find(m->second); w != workers.end()) {
      w->second.stealing = false;
      hungry.insert(w->first);
    }
    move_thief.erase(m);
  }

  void send(task_rec& t, worker_rec& w) {
    if (!w.held.empty()) hold_erase(w, t);
    if (t.charged_fallback) ++probes_in_flight[t.kind];
    t.state = task_state::sent;
    t.sent_seq = next_sent_seq++;
    ++w.sent;
    w.sent_seconds += t.charge;
    if (w.unstarted.size() > 2 * static_cast<std::size_t>(w.sent) + 64)
      std::erase_if(w.unstarted, [&](const auto& e) { return !unstarted_on(w, e); });
    w.unstarted.emplace_back(t.sent_seq, t.id);
    for (auto [r, amount] : t.needs) w.used[r] += amount;
    out.push_back({decision_kind::run, t.id, w.id, no_worker});
    ++decisions;
  }

  /// How much a worker may have sent ahead.
  bool window_open(const worker_rec& w) const {
    if (w.sent >= cfg.max_sent_per_thread * w.threads) return false;
    if (eager()) return true;
    if (cfg.kind == policy::dask_like) return true;  // Dask sends what it places
    if (w.sent < w.threads) return true;
    return w.sent_seconds / w.threads < cfg.round_trip_seconds + cfg.send_ahead_seconds;
  }

  void fill(worker_rec& w, double now) {
    if (!w.active || w.draining) return;
    while (window_open(w)) {
      // Highest priority first, here or queued elsewhere; a task whose resources are busy waits
      // without blocking the rest.
      task_rec* next = nullptr;
      for (auto it = w.held.begin(); it != w.held.end(); ++it) {
        task_rec& t = tasks.at(it->id);
        if (!fits_now(w, t)) continue;
        next = &t;
        break;
      }
      // An idle worker takes work by predicted finish instead (steal_for).
      if (!next) break;
      if (task_rec* better = higher_priority_elsewhere(w, next->priority)) next = better;
      send(*next, w);
    }
    if (cfg.kind == policy::dask_like) {
      const auto limit = static_cast<std::uint32_t>(std::ceil(1.1 * w.threads));
      while (w.sent < limit && !root_queue.empty()) {
        task_rec& t = tasks.at(root_queue.begin()->id);
        root_queue.erase(root_queue.begin());
        t.where = w.id;
        charge(t, w);
        t.state = task_state::held;
        hold_insert(w, t);
        send(t, w);
      }
    }
    if (cfg.rebalance && w.sent < w.threads && w.held.empty()) steal_for(w, now);
  }

  /// How long a task queued on w now would wait for a thread: its sent work per thread, or, when
  /// every thread runs a task far past its prediction (overrun_ratio times), as long again as the
  /// soonest of them has run so far: the prediction was wrong, and the longer a task has run, the
  /// longer it tends to go on. Without this, work queued behind such tasks waits there while
  /// other workers idle. Moderate overruns (noise, a worker's speed still being learned) are left
  /// to the queue estimate: taking work away from them placed it worse in simulated runs.
  static constexpr double overrun_ratio = 8;
  double wait_on(const worker_rec& w, double now) const {
    const double queued = w.sent_seconds / w.threads;
    if (w.running_ids.size() < w.threads) return queued;
    double soonest = std::numeric_limits<double>::infinity();
    for (task_id id : w.running_ids) {
      const task_rec& r = tasks.at(id);
      const double elapsed = std::max(0.0, now - r.started_at);
      if (elapsed <= overrun_ratio * r.charge) return queued;
      soonest = std::min(soonest, elapsed);
    }
    return std::max(queued, soonest);
  }

  /// An idle worker takes work: first a task still held here for another worker (free: that
  /// worker never saw it), else a sent task the victim has not started (confirm protocol).
  void steal_for(worker_rec& thief, double now) {
    if (eager() || thief.stealing) return;
    // The most loaded worker of each bucket is a candidate victim.
    worker_rec* victim = nullptr;
    for (auto& [k, set] : buckets) {
      if (set.empty()) continue;
      worker_rec& w = worker(set.rbegin()->second);
      if (&w == &thief) continue;
      if (!victim || w.load() > victim->load()) victim = &w;
    }
    // Draining workers hold nothing: fill() sends them nothing, leave() returns their held tasks.
    if (!victim || victim->backlog <= 0) return;
    if (!victim->held.empty()) {
      task_rec& t = tasks.at(victim->held.begin()->id);
      if (!can_host(thief, t)) return;
      const double start_there = wait_on(*victim, now);
      const double finish_there = start_there + t.charge;
      const double finish_here = cfg.round_trip_seconds + transfer_to(t, thief) + predict_on(t, thief);
      if (cfg.kind == policy::dask_like || finish_here < finish_there) {
        unhold(t);
        t.where = thief.id;
        charge(t, thief);
        t.state = task_state::held;
        hold_insert(thief, t);
        fill(thief, now);
      }
      return;
    }
    if (victim->sent <= victim->threads) return;  // everything there is probably running
    // The last task sent is the least likely to have started.
    for (auto it = victim->unstarted.rbegin(); it != victim->unstarted.rend(); ++it) {
      if (!unstarted_on(*victim, *it)) continue;
      task_rec& t = tasks.at(it->second);
      if (t.move_pending || t.move_tried || !can_host(thief, t)) continue;
      const double finish_there = wait_on(*victim, now);
      const double finish_here = 2 * cfg.round_trip_seconds + transfer_to(t, thief) + predict_on(t, thief);
      if (finish_here >= finish_there) return;
      if (cfg.kind == policy::dask_like && t.charge < 0.001) return;  // Dask never steals sub-ms tasks
      t.move_pending = true;
      t.move_tried = true;
      thief.stealing = true;
      move_thief[t.id] = thief.id;
      out.push_back({decision_kind::move, t.id, thief.id, victim->id});
      ++decisions;
      return;
    }
  }
  void place_pending(double now) {
    if (to_place.empty()) return;
    std::vector<task_id> batch;
    batch.swap(to_place);
    // Highest priority and rank first: they get the earliest slots.
    std::vector<queue_key> keys;
    keys.reserve(batch.size());
    for (task_id id : batch) {
      auto it = tasks.find(id);
      if (it == tasks.end() || it->second.state != task_state::ready || it->second.where != no_worker) continue;
      const task_rec& t = it->second;
      keys.push_back({t.priority, t.rank, t.seq, t.id});
    }
    std::sort(keys.begin(), keys.end());
    for (const queue_key& k : keys) {
      task_rec& t = tasks.at(k.id);
      // The same task may be listed twice (set aside, made waiting, ready again): place it once.
      if (t.state != task_state::ready || t.where != no_worker) continue;
      place(t, now);
    }
  }

  void retry_unplaceable(double now) {
    if (unplaceable.empty()) return;
    std::vector<task_id> retry;
    retry.swap(unplaceable);
    for (task_id id : retry) {
      auto it = tasks.find(id);
      if (it != tasks.end() && it->second.state == task_state::ready && it->second.where == no_worker)
        to_place.push_back(id);
    }
    place_pending(now);
  }

  /// Re-places every held task with fresh predictions (a kind just became calibrated).
  void replace_held(double now) {
    for (auto& [id, w] : workers) {
      std::vector<task_id> ids;
      for (const queue_key& k : w.held) ids.push_back(k.id);
      for (task_id t : ids) {
        unhold(tasks.at(t));
        to_place.push_back(t);
      }
    }
    compute_ranks();
    place_pending(now);
  }

  // ---- alerts --------------------------------------------------------------------------------------

  void raise(alert_kind kind, const std::string& subject, std::string message, double value, double threshold,
             double now) {
    bool& active = alert_active[{static_cast<int>(kind), subject}];
    if (active) return;
    active = true;
    alerts.push_back({kind, subject, std::move(message), value, threshold, now});
  }
  void clear(alert_kind kind, const std::string& subject) {
    auto it = alert_active.find({static_cast<int>(kind), subject});
    if (it != alert_active.end()) it->second = false;
  }
  void raise_unplaceable(const task_rec& t, double now) {
    std::string need;
    for (auto& [name, idx] : resource_names)
      for (auto [r, amount] : t.needs)
        if (r == idx) need += fmt::format("{}{}={}", need.empty() ? "" : ", ", name, amount);
    raise(alert_kind::unplaceable, fmt::format("task {}", t.id),
          fmt::format("task {} ({}) needs {} and no worker has that much", t.id, m.kind_name(t.kind), need), 0, 0, now);
  }

  void check_alerts(double now) {
    if (now - last_alert_check < 0.25) return;
    last_alert_check = now;
    std::size_t active = 0, idle = 0, backed_up = 0;
    double sum_load = 0, max_load = 0, min_load = infinity;
    const worker_rec* heaviest = nullptr;
    for (auto& [id, w] : workers) {
      if (!in_buckets(w)) continue;
      ++active;
      sum_load += w.load();
      if (w.load() > max_load) {
        max_load = w.load();
        heaviest = &w;
      }
      min_load = std::min(min_load, w.load());
      // Idle: nothing placed there, or its last heartbeat said it runs and queues nothing.
      if ((w.sent == 0 && w.held.empty()) || (w.reported_running == 0 && w.reported_queued == 0 && w.reported)) ++idle;
      if (w.sent + w.held.size() > w.threads) ++backed_up;
    }
    // Loads built on fallback durations (a kind with no samples yet counts 0.5 s) would raise
    // alarms about nothing.
    if (active > 0 && uncalibrated_placed == 0) {
      if (backed_up == active && min_load > cfg.saturation_wait_seconds) {
        raise(alert_kind::saturation, "cluster",
              fmt::format("all {} workers are backed up: a new task waits {:.1f} s at best; more workers would "
                          "finish sooner",
                          active, min_load),
              min_load, cfg.saturation_wait_seconds, now);
      } else {
        clear(alert_kind::saturation, "cluster");
      }
      const double mean = sum_load / active;
      const worker_rec* flagged = nullptr;
      if (heaviest && idle > 0 && max_load > cfg.imbalance_min_seconds && max_load > cfg.imbalance_ratio * mean) {
        flagged = heaviest;
        raise(alert_kind::imbalance, heaviest->name,
              fmt::format("worker {} has {:.1f} s of work per thread, {:.1f}x the mean, while {} worker(s) idle",
                          heaviest->name, max_load, max_load / std::max(mean, 1e-9), idle),
              max_load / std::max(mean, 1e-9), cfg.imbalance_ratio, now);
      }
      for (auto& [id, w] : workers)
        if (&w != flagged) clear(alert_kind::imbalance, w.name);
    }
    if (compute_window > 0) {
      const double ratio = transfer_window / compute_window;
      if (ratio > cfg.network_ratio && transfer_window > 0.1) {
        raise(alert_kind::network_bound, "cluster",
              fmt::format("moving inputs is predicted to take {:.1f}x the compute time of the tasks placed lately",
                          ratio),
              ratio, cfg.network_ratio, now);
      } else {
        clear(alert_kind::network_bound, "cluster");
      }
      transfer_window *= 0.5;
      compute_window *= 0.5;
    }
    for (task_id id : running_tasks) {
      auto it = tasks.find(id);
      if (it == tasks.end() || it->second.state != task_state::running) continue;
      task_rec& t = it->second;
      const double expected = t.charge;
      if (t.straggler_reported || expected <= 0) continue;
      const double elapsed = now - t.started_at;
      if (elapsed > cfg.straggler_ratio * expected && elapsed > 0.05) {
        t.straggler_reported = true;
        const auto& w = worker(t.where);
        alerts.push_back({alert_kind::straggler, fmt::format("task {}", t.id),
                          fmt::format("task {} ({}) on {} has run {:.3f} s, {:.1f}x its prediction of {:.3f} s", t.id,
                                      m.kind_name(t.kind), w.name, elapsed, elapsed / expected, expected),
                          elapsed / expected, cfg.straggler_ratio, now});
      }
    }
    if (cfg.kind != policy::oracle) {
      for (const kind_accuracy& a : model.accuracy()) {
        if (a.calibrated_samples < 20) continue;
        const double usual = std::max(a.median_ape, 1e-3);
        if (a.recent_ape > cfg.drift_ratio * usual && a.recent_ape > cfg.drift_min_error) {
          raise(alert_kind::prediction_drift, a.kind,
                fmt::format("predictions for {} are off by {:.0f}% lately against {:.0f}% usually", a.kind,
                            100 * a.recent_ape, 100 * a.median_ape),
                a.recent_ape, cfg.drift_ratio * usual, now);
        } else {
          clear(alert_kind::prediction_drift, a.kind);
        }
      }
    }
  }
  // ---- recovery ------------------------------------------------------------------------------------

  /// Back to waiting: out of the queues and off the worker, until task_ready.
  void make_waiting(task_rec& t) {
    if (t.state == task_state::held) unhold(t);
    if (t.state == task_state::sent || t.state == task_state::running) {
      unsend(t);
    }
    if (t.state == task_state::ready) {
      if (cfg.kind == policy::dask_like) root_queue.erase(key(t));
    }
    t.state = task_state::waiting;
    t.where = no_worker;
  }
};

// ---- public interface ----------------------------------------------------------------------------------

const char* to_string(policy p) noexcept {
  switch (p) {
    case policy::predictive:
      return "predictive";
    case policy::oracle:
      return "oracle";
    case policy::round_robin:
      return "round_robin";
    case policy::random:
      return "random";
    case policy::least_loaded:
      return "least_loaded";
    case policy::dask_like:
      return "dask_like";
  }
  return "?";
}

std::optional<policy> parse_policy(std::string_view name) noexcept {
  for (policy p : {policy::predictive, policy::oracle, policy::round_robin, policy::random, policy::least_loaded,
                   policy::dask_like})
    if (name == to_string(p)) return p;
  return std::nullopt;
}

}  // namespace dx::sched

namespace dx {
const char* to_string(alert_kind k) noexcept {
  switch (k) {
    case alert_kind::saturation:
      return "saturation";
    case alert_kind::imbalance:
      return "imbalance";
    case alert_kind::network_bound:
      return "network_bound";
    case alert_kind::straggler:
      return "straggler";
    case alert_kind::prediction_drift:
      return "prediction_drift";
    case alert_kind::worker_lost:
      return "worker_lost";
    case alert_kind::unplaceable:
      return "unplaceable";
    case alert_kind::rule:
      return "rule";
  }
  return "?";
}
}  // namespace dx

namespace dx::sched {

scheduler::scheduler(config cfg, cost_model& model) : s_(std::make_unique<state>(cfg, model)) {}
scheduler::~scheduler() = default;

void scheduler::worker_joined(const worker_spec& spec, double now) {
  state& s = *s_;
  auto [it, fresh] = s.workers.try_emplace(spec.id);
  worker_rec& w = it->second;
  if (s.by_id.size() <= spec.id) s.by_id.resize(spec.id + 1, nullptr);
  s.by_id[spec.id] = &w;
  if (!fresh) s.unindex(w);
  w.id = spec.id;
  w.name = spec.name;
  w.cls = s.m.class_index(spec.worker_class);
  w.model = s.m.worker_index(spec.name, w.cls);
  w.threads = std::max<std::uint32_t>(1, spec.threads);
  w.active = true;
  w.draining = false;
  s.resource_index("cpu");
  for (auto& [name, amount] : spec.capacity) s.resource_index(name);
  w.capacity.assign(s.resource_names.size(), 0);
  w.used.assign(s.resource_names.size(), 0);
  w.capacity[s.resource_names.at("cpu")] = w.threads;
  for (auto& [name, amount] : spec.capacity) w.capacity[s.resource_names.at(name)] = amount;
  w.factor = s.cfg.kind == policy::oracle ? spec.true_factor : s.m.worker_factor(w.model);
  w.placed_factor = w.factor;
  w.bucket = s.speed_bucket(w.factor);
  s.index(w);
  if (fresh) s.round_robin_order.push_back(spec.id);
  s.hungry.insert(spec.id);
  s.retry_unplaceable(now);
}

void scheduler::worker_draining(worker_id id, double now) {
  state& s = *s_;
  auto it = s.workers.find(id);
  if (it == s.workers.end()) return;
  worker_rec& w = it->second;
  std::vector<task_id> back;
  for (const queue_key& k : w.held) back.push_back(k.id);
  for (task_id t : back) {
    s.unhold(s.tasks.at(t));
    s.to_place.push_back(t);
  }
  s.unindex(w);
  w.draining = true;
  s.place_pending(now);
}

void scheduler::worker_left(worker_id id, bool lost, double now) {
  state& s = *s_;
  auto it = s.workers.find(id);
  if (it == s.workers.end() || !it->second.active) return;
  worker_rec& w = it->second;
  std::vector<task_id> back;
  for (const queue_key& k : w.held) back.push_back(k.id);
  for (task_id t : back) s.unhold(s.tasks.at(t));
  for (auto& [tid, t] : s.tasks)
    if (t.where == id && (t.state == task_state::sent || t.state == task_state::running)) {
      s.unsend(t);
      back.push_back(tid);
    }
  s.unindex(w);
  w.active = false;
  s.hungry.erase(id);
  for (auto& [tid, mv] : s.move_thief)
    if (mv == id) mv = no_worker;
  // Results that lived only there are gone. Every task that still has to run needs its inputs:
  // lost ones are recomputed, and so, transitively, are their own lost inputs.
  std::vector<task_id> needs_inputs;
  for (auto& [tid, t] : s.tasks) {
    auto h = std::find(t.holders.begin(), t.holders.end(), id);
    if (h != t.holders.end()) t.holders.erase(h);
    if (t.state != task_state::done && t.state != task_state::failed) needs_inputs.push_back(tid);
  }
  std::sort(needs_inputs.begin(), needs_inputs.end());
  while (!needs_inputs.empty()) {
    const task_id cur = needs_inputs.back();
    needs_inputs.pop_back();
    task_rec& t = s.tasks.at(cur);
    bool input_lost = false;
    for (task_id in : t.inputs) {
      auto it2 = s.tasks.find(in);
      if (it2 == s.tasks.end()) continue;
      task_rec& r = it2->second;
      if (r.state == task_state::done && r.result_remote && r.holders.empty()) {
        r.state = task_state::waiting;
        ++s.live_tasks;
        s.out.push_back({decision_kind::recompute, in, no_worker, no_worker});
        ++s.decisions;
        needs_inputs.push_back(in);
      }
      if (r.state != task_state::done) input_lost = true;
    }
    // A task whose input is being recomputed waits for it.
    if (input_lost && t.state != task_state::waiting) {
      s.make_waiting(t);
      std::erase(back, cur);
    }
  }
  for (task_id t : back) s.to_place.push_back(t);
  if (lost)
    s.alerts.push_back({alert_kind::worker_lost, w.name,
                        fmt::format("worker {} was lost; {} of its tasks are placed again", w.name, back.size()), 0, 0,
                        now});
  s.place_pending(now);
}

void scheduler::task_submitted(const task_spec& spec, double) {
  state& s = *s_;
  auto [it, fresh] = s.tasks.try_emplace(spec.id);
  task_rec& t = it->second;
  if (!fresh) return;
  t.id = spec.id;
  t.kind = s.m.kind_index(spec.kind);
  t.inputs = spec.inputs;
  t.priority = spec.priority;
  if (spec.priority != 0 && !s.priorities_used) s.start_priority_index();
  t.true_seconds = spec.true_seconds;
  t.seq = s.next_seq++;
  t.features.size_hint = spec.size_hint;
  t.features.input_bytes = spec.input_bytes;
  t.root = true;
  for (task_id in : spec.inputs) {
    auto p = s.tasks.find(in);
    if (p == s.tasks.end()) continue;
    t.root = false;
    ++s.edges_since_ranks;
    p->second.dependents.push_back(spec.id);
    t.features.input_bytes += p->second.result_bytes;
  }
  for (auto& [name, amount] : spec.needs)
    if (amount > 0) t.needs.emplace_back(s.resource_index(name), amount);
  const prediction p = s.predict_class(t, s.reference_class);
  t.predicted = p.mean;
  t.rank = t.predicted + state::cold_tie_break(t, p);
  // One level of rank propagation now; the full pass runs once enough has been submitted.
  for (task_id in : spec.inputs) {
    auto p2 = s.tasks.find(in);
    if (p2 != s.tasks.end() && p2->second.state != task_state::done)
      s.set_rank(p2->second, std::max(p2->second.rank, p2->second.predicted + t.rank));
  }
  s.order.push_back(spec.id);
  ++s.live_tasks;
  ++s.submitted_since_ranks;
}

void scheduler::task_ready(task_id id, double) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  if (t.state != task_state::waiting && t.state != task_state::done && t.state != task_state::failed) return;
  if (t.state == task_state::done) ++s.live_tasks;  // a recompute
  // Inputs finished since submission: their sizes are known now.
  std::uint64_t bytes = 0;
  bool any_task_input = false;
  for (task_id in : t.inputs) {
    auto p = s.tasks.find(in);
    if (p == s.tasks.end()) continue;
    any_task_input = true;
    bytes += p->second.result_bytes;
  }
  if (any_task_input) t.features.input_bytes = bytes;
  t.state = task_state::ready;
  t.where = no_worker;
  s.to_place.push_back(id);
}

void scheduler::task_started(task_id id, worker_id w, double now) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end() || it->second.where != w || it->second.state != task_state::sent) return;
  task_rec& t = it->second;
  worker_rec& wr = s.worker(w);
  t.state = task_state::running;
  t.started_at = now;
  ++wr.running;
  wr.running_ids.push_back(id);
  s.running_tasks.insert(id);
}

void scheduler::task_finished(task_id id, worker_id w, double now, double seconds, std::uint64_t result_bytes,
                              bool held_on_worker) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  auto wit = s.workers.find(w);
  if (s.cfg.kind != policy::oracle && wit != s.workers.end()) {
    const bool was_calibrated = s.m.calibrated(t.kind, wit->second.cls);
    s.m.observe(t.kind, wit->second.model, t.features, seconds);
    if (!was_calibrated && s.m.calibrated(t.kind, wit->second.cls)) s.recost = true;
    s.refresh_factor(wit->second);
  }
  if (t.where == w && (t.state == task_state::sent || t.state == task_state::running)) {
    s.unsend(t);
  } else if (t.state == task_state::held) {
    s.unhold(t);  // finished from an attempt the caller still accepted
  }
  s.move_thief.erase(id);
  t.state = task_state::done;
  t.result_bytes = result_bytes;
  t.holders.clear();
  t.result_remote = held_on_worker;
  if (held_on_worker) t.holders.push_back(w);
  if (s.live_tasks > 0) --s.live_tasks;
  if (t.forgotten) s.tasks.erase(it);
  (void)now;
}

void scheduler::task_failed(task_id id, worker_id w, double now, bool retry) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  // no_worker: the caller gives the task up wherever it is (a failed input, a shutdown).
  if ((t.where == w || w == no_worker) && (t.state == task_state::sent || t.state == task_state::running)) {
    s.unsend(t);
  } else if (t.state == task_state::held) {
    s.unhold(t);
  }
  if (retry) {
    t.state = task_state::ready;
    s.to_place.push_back(id);
  } else {
    t.state = task_state::failed;
    if (s.live_tasks > 0) --s.live_tasks;
  }
  (void)now;
}

void scheduler::task_returned(task_id id, worker_id w, double now) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  if (t.where != w || (t.state != task_state::sent && t.state != task_state::running)) return;
  s.unsend(t);
  s.to_place.push_back(id);
  (void)now;
}

void scheduler::task_waiting(task_id id, double) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  s.make_waiting(it->second);
}

void scheduler::task_forgotten(task_id id) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  it->second.forgotten = true;
  if (it->second.state == task_state::done || it->second.state == task_state::failed) s.tasks.erase(it);
}

void scheduler::move_answered(task_id id, worker_id from, bool given_up, double now) {
  state& s = *s_;
  auto it = s.tasks.find(id);
  if (it == s.tasks.end()) return;
  task_rec& t = it->second;
  // Only the answer to the move in flight counts.
  if (!t.move_pending || t.where != from || (t.state != task_state::sent && t.state != task_state::running)) return;
  auto m = s.move_thief.find(id);
  const worker_id thief = m == s.move_thief.end() ? no_worker : m->second;
  s.release_move(t);
  if (!given_up) return;
  ++s.moves_confirmed;
  s.unsend(t);
  auto tw = s.workers.find(thief);
  if (tw != s.workers.end() && s.in_buckets(tw->second) && s.can_host(tw->second, t)) {
    worker_rec& w = tw->second;
    t.where = thief;
    s.charge(t, w);
    t.state = task_state::held;
    s.hold_insert(w, t);
    s.hungry.insert(thief);
  } else {
    s.to_place.push_back(id);
  }
  (void)now;
}

void scheduler::load_report(worker_id w, std::uint32_t running, std::uint32_t queued, double) {
  auto it = s_->workers.find(w);
  if (it == s_->workers.end()) return;
  worker_rec& wr = it->second;
  wr.reported_running = running;
  wr.reported_queued = queued;
  wr.reported = true;
  // A worker with a free thread looks for work again at each report: what was placed elsewhere
  // since it went idle may be better run here now (see steal_for).
  if (wr.sent < wr.threads && s_->in_buckets(wr)) s_->hungry.insert(w);
}

void scheduler::transfer_measured(worker_id from, worker_id to, std::uint64_t bytes, double seconds) {
  state& s = *s_;
  auto f = s.workers.find(from);
  auto t = s.workers.find(to);
  if (f == s.workers.end() || t == s.workers.end()) return;
  s.m.observe_transfer(f->second.model, t->second.model, bytes, seconds);
}

void scheduler::set_round_trip(double seconds) { s_->cfg.round_trip_seconds = seconds; }

void scheduler::decide(double now, std::vector<decision>& out) {
  state& s = *s_;
  // Without new edges every rank is the task's own cost, set at submission.
  if (s.edges_since_ranks > 0 && (s.submitted_since_ranks * 4 >= s.live_tasks || s.submitted_since_ranks > 4096))
    s.compute_ranks();
  if (s.recost && s.predictive()) {
    s.recost = false;
    s.replace_held(now);
  }
  s.place_pending(now);
  // Held input-free tasks (dask_like) go to any worker below its saturation limit.
  if (!s.root_queue.empty())
    for (auto& [id, w] : s.workers)
      if (s.in_buckets(w)) s.hungry.insert(id);
  // Fill the windows of workers that may have room; idle ones steal.
  while (!s.hungry.empty()) {
    std::vector<worker_id> ids(s.hungry.begin(), s.hungry.end());
    s.hungry.clear();
    std::sort(ids.begin(), ids.end());
    for (worker_id id : ids) {
      auto it = s.workers.find(id);
      if (it != s.workers.end()) s.fill(it->second, now);
    }
  }
  s.check_alerts(now);
  out.insert(out.end(), s.out.begin(), s.out.end());
  s.out.clear();
}

void scheduler::take_alerts(std::vector<alert_event>& out) {
  out.insert(out.end(), s_->alerts.begin(), s_->alerts.end());
  s_->alerts.clear();
}

forecast_result scheduler::forecast(double now) const {
  const state& s = *s_;
  forecast_result r;
  r.now = now;
  // List-schedule what is left with the model's current predictions. Sent tasks stay on their
  // workers, in send order; everything else (held here, ready, waiting) is placed where it would
  // finish first, as rebalancing would move it (under a baseline that does not rebalance, held
  // tasks stay on their workers too): held and ready tasks in queue order, then the
  // waiting ones in submission (topological) order. Each worker's threads are a heap of free
  // times; workers sit in speed buckets ordered by their earliest free thread, so a placement
  // costs O(buckets + log workers), as in the scheduler itself.
  struct sim_worker {
    const worker_rec* w;
    std::priority_queue<double, std::vector<double>, std::greater<>> free;
    double finish = 0, variance = 0;
    std::size_t queued = 0;
    bucket_key bucket{};
  };
  std::vector<sim_worker> ws;
  std::map<bucket_key, std::set<std::pair<double, std::size_t>>> by_bucket;
  std::unordered_map<worker_id, std::size_t> slot;
  double total_speed = 0;
  for (auto& [id, w] : s.workers) {
    if (!w.active) continue;
    slot[id] = ws.size();
    sim_worker& sw = ws.emplace_back();
    sw.w = &w;
    for (std::uint32_t i = 0; i < w.threads; ++i) sw.free.push(now);
    sw.finish = now;
    sw.bucket = {w.cls, w.bucket};
    if (s.in_buckets(w)) by_bucket[sw.bucket].insert({now, ws.size() - 1});
    total_speed += w.threads / std::max(s.worker_factor(w), 1e-9);
  }
  std::unordered_map<task_id, double> finish_at;
  std::unordered_map<task_id, task_id> critical_input;
  double total_work = 0;
  auto ready_time = [&](const task_rec& t, task_id& crit) {
    double ready = now;
    crit = 0;
    for (task_id in : t.inputs) {
      auto f = finish_at.find(in);
      if (f != finish_at.end() && f->second > ready) {
        ready = f->second;
        crit = in;
      }
    }
    return ready;
  };
  std::vector<state::remote_input> inputs;
  auto run_on = [&](std::size_t idx, const task_rec& t, double ready, task_id crit) {
    sim_worker& sw = ws[idx];
    const bool indexed = s.in_buckets(*sw.w);
    if (indexed) by_bucket[sw.bucket].erase({sw.free.top(), idx});
    const prediction p = s.predict_class(t, sw.w->cls);
    double duration = p.mean * sw.w->factor;  // the learned speed, whatever the policy assumes
    s.gather_inputs(t, inputs);
    double start = std::max(sw.free.top(), ready + state::transfer_cost(inputs, sw.w->id));
    if (t.state == task_state::running && t.started_at >= 0) {
      duration = std::max(duration - (now - t.started_at), 0.1 * duration);
      start = now;
    }
    sw.free.pop();
    const double end = start + duration;
    sw.free.push(end);
    if (indexed) by_bucket[sw.bucket].insert({sw.free.top(), idx});
    sw.finish = std::max(sw.finish, end);
    const double sd = p.mean > 0 ? p.sd / p.mean * duration : 0;
    sw.variance += sd * sd;
    ++sw.queued;
    finish_at[t.id] = end;
    if (crit) critical_input[t.id] = crit;
    total_work += duration / std::max(s.worker_factor(*sw.w), 1e-9);
  };
  std::size_t next_in_turn = 0;
  auto place = [&](const task_rec& t) {
    task_id crit = 0;
    const double ready = ready_time(t, crit);
    std::size_t best = ws.size();
    double best_finish = infinity;
    s.gather_inputs(t, inputs);
    auto consider = [&](std::size_t idx) {
      const sim_worker& sw = ws[idx];
      if (!s.in_buckets(*sw.w) || !s.can_host(*sw.w, t)) return;
      const double f = std::max(sw.free.top(), ready + state::transfer_cost(inputs, sw.w->id)) +
                       s.predict_class(t, sw.w->cls).mean * s.worker_factor(*sw.w);
      if (f < best_finish) {
        best_finish = f;
        best = idx;
      }
    };
    // The baselines place the way they would: in turn, or on the least busy worker whatever its speed.
    if (s.eager()) {
      double best_load = infinity;
      for (std::size_t tries = 0; tries < ws.size(); ++tries) {
        const std::size_t idx = s.cfg.kind == policy::least_loaded ? tries : next_in_turn++ % ws.size();
        const sim_worker& sw = ws[idx];
        if (!s.in_buckets(*sw.w) || !s.can_host(*sw.w, t)) continue;
        if (s.cfg.kind != policy::least_loaded) {
          best = idx;
          break;
        }
        const double load = sw.free.top();  // fewest tasks waiting: the first thread to free up
        if (load < best_load) {
          best_load = load;
          best = idx;
        }
      }
    } else if (!t.needs.empty()) {
      for (std::size_t i = 0; i < ws.size(); ++i) consider(i);
    } else {
      for (auto& [k, set] : by_bucket)
        if (!set.empty()) consider(set.begin()->second);
      for (const state::remote_input& in : inputs)
        for (worker_id h : *in.holders)
          if (auto sl = slot.find(h); sl != slot.end()) consider(sl->second);
    }
    if (best < ws.size()) run_on(best, t, ready, crit);
  };
  // Sent tasks: running first, then by send order.
  std::vector<const task_rec*> sent, pending;
  for (auto& [id, t] : s.tasks) {
    if ((t.state == task_state::sent || t.state == task_state::running) && slot.count(t.where)) {
      sent.push_back(&t);
    } else if (t.state == task_state::held || t.state == task_state::ready) {
      pending.push_back(&t);
    }
  }
  std::sort(sent.begin(), sent.end(), [](auto* a, auto* b) {
    if ((a->state == task_state::running) != (b->state == task_state::running)) return a->state == task_state::running;
    return a->sent_seq < b->sent_seq;
  });
  for (const task_rec* t : sent) run_on(slot.at(t->where), *t, now, 0);
  std::sort(pending.begin(), pending.end(), [&](auto* a, auto* b) {
    return queue_key{a->priority, a->rank, a->seq, a->id} < queue_key{b->priority, b->rank, b->seq, b->id};
  });
  // Held tasks move only under the policies that rebalance; the baselines leave them where they are.
  const bool held_moves = s.cfg.rebalance && !s.eager();
  for (const task_rec* t : pending) {
    if (t->state == task_state::held && !held_moves && slot.count(t->where)) {
      task_id crit = 0;
      run_on(slot.at(t->where), *t, ready_time(*t, crit), crit);
    } else {
      place(*t);
    }
  }
  for (task_id id : s.order) {
    auto it = s.tasks.find(id);
    if (it != s.tasks.end() && it->second.state == task_state::waiting) place(it->second);
  }
  r.tasks_left = finish_at.size();
  const sim_worker* last = nullptr;
  double mean_finish = 0;
  for (auto& sw : ws) {
    worker_forecast& f = r.workers.emplace_back();
    f.id = sw.w->id;
    f.name = sw.w->name;
    f.backlog_seconds = sw.w->load();
    f.queued = sw.w->held.size() + sw.w->sent;
    mean_finish += sw.finish - now;
    if (!last || sw.finish > last->finish) last = &sw;
  }
  if (!last || r.tasks_left == 0) return r;
  mean_finish /= static_cast<double>(ws.size());
  r.remaining_seconds = last->finish - now;
  r.remaining_sd = std::sqrt(last->variance / std::max<double>(1.0, last->w->threads));
  // The longest chain of what is left, following the input that finished last.
  task_id end_task = 0;
  double end_time = -infinity;
  for (auto& [id, f] : finish_at)
    if (f > end_time || (f == end_time && id < end_task)) {
      end_time = f;
      end_task = id;
    }
  double chain = 0;
  for (task_id cur = end_task; cur;) {
    const task_rec& t = s.tasks.at(cur);
    r.critical_tasks.push_back(cur);
    r.critical_path.push_back(s.m.kind_name(t.kind));
    chain += s.predict_class(t, s.reference_class).mean;
    auto c = critical_input.find(cur);
    cur = c == critical_input.end() ? 0 : c->second;
    if (r.critical_tasks.size() > 10000) break;
  }
  std::reverse(r.critical_tasks.begin(), r.critical_tasks.end());
  std::reverse(r.critical_path.begin(), r.critical_path.end());
  r.lower_bound = std::max(chain, total_speed > 0 ? total_work / total_speed : 0.0);
  if (ws.size() > 1 && r.remaining_seconds > 1.25 * mean_finish) {
    r.bottleneck = "worker " + last->w->name;
  } else {
    std::map<std::string, double> by_kind;
    for (auto& [id, f] : finish_at) {
      const task_rec& t = s.tasks.at(id);
      by_kind[s.m.kind_name(t.kind)] += s.predict_class(t, s.reference_class).mean;
    }
    auto top = std::max_element(by_kind.begin(), by_kind.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; });
    if (top != by_kind.end()) r.bottleneck = "kind " + top->first;
  }
  return r;
}

worker_id scheduler::placed_on(task_id t) const {
  auto it = s_->tasks.find(t);
  return it == s_->tasks.end() ? no_worker : it->second.where;
}
bool scheduler::is_sent(task_id t) const {
  auto it = s_->tasks.find(t);
  return it != s_->tasks.end() && (it->second.state == task_state::sent || it->second.state == task_state::running);
}
bool scheduler::hostable(task_id id) const {
  auto it = s_->tasks.find(id);
  if (it == s_->tasks.end() || it->second.needs.empty()) return true;
  return s_->any_can_host(it->second);
}
std::size_t scheduler::decisions_made() const noexcept { return s_->decisions; }
std::size_t scheduler::moves_confirmed() const noexcept { return s_->moves_confirmed; }
const config& scheduler::settings() const noexcept { return s_->cfg; }
cost_model& scheduler::model() noexcept { return s_->model; }

}  // namespace dx::sched
