// The scheduler's state, private to src/sched: the task table (records paged by id), the worker
// table with its speed-bucket load index, the queues, and the operations the core's files share.
// Each member function is defined in the file that owns its concern:
//   task_table.cpp   task records and the task events (submit, ready, finish, fail, forget)
//   workers.cpp      worker records, the load index, resources, the worker events
//   ranks.cpp        upward ranks (critical path) and queue order
//   placement.cpp    placing ready tasks through the policy, stealing and moves; the policies
//                    themselves are placement_*.cpp behind placement.hpp
//   window.cpp       holding, sending and the sending window
//   alerts.cpp       alert rules
//   forecast.cpp     the list-scheduled forecast
//   scheduler.cpp    construction, decide() and the small views
#pragma once

#include "model/cost_model_impl.hpp"
#include "sched/scheduler.hpp"

#include <dx/error.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace dx::sched {

class placement_policy;

using model_index = cost_model::impl::index;
inline constexpr double infinity = std::numeric_limits<double>::infinity();

enum class task_state : std::uint8_t { waiting, ready, held, sent, running, done, failed, cancelled };

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
  std::uint64_t caller_bytes = 0;  // of its arguments, sent by the caller with it
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
  bool constrained = false;    // has a spread group or workers to avoid (state::constraints)
};

/// Where a constrained task may not go (task_spec::spread_group, spread_hosts, avoid).
struct placement_constraint {
  task_id group = 0;
  bool spread_hosts = false;
  std::vector<worker_id> avoid;
};

/// Tasks by id. Ids are counters (the head's and the simulator's are), so a table of pages
/// indexed by id finds a task in two loads where a hash map would miss the cache; a page is freed
/// when its last task is erased (one empty page is kept for reuse), so memory follows the live tasks.
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
        if (p->has(id_ & (page_size - 1))) return;
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
  /// The record of a known task; throws dx::error for an unknown one.
  task_rec& at(task_id id) const {
    entry* e = slot(id);
    if (!e) dx::detail::throw_error(dx::detail::error_kind::generic, "dx scheduler: unknown task");
    return e->second;
  }
  /// Throws dx::error for an id of 2^36 or more.
  std::pair<iterator, bool> try_emplace(task_id id);
  void erase(task_id id);
  void erase(const iterator& it) { erase(it->first); }

 private:
  // Slots are raw storage with a bitmap of those in use: a new page costs no pass over its
  // 256 KiB, and only the slots of tasks ever made are touched.
  struct page {
    alignas(entry) std::byte storage[page_size * sizeof(entry)];
    std::uint64_t used[page_size / 64] = {};
    std::size_t count = 0;
    page() = default;
    page(const page&) = delete;
    page& operator=(const page&) = delete;
    ~page() {
      for (std::size_t i = 0; i < page_size; ++i)
        if (has(i)) at(i)->~entry();
    }
    bool has(std::size_t i) const { return (used[i / 64] >> (i % 64)) & 1; }
    entry* at(std::size_t i) { return std::launder(reinterpret_cast<entry*>(storage) + i); }
  };
  task_id end_id() const { return static_cast<task_id>(pages_.size()) << page_bits; }
  entry* slot(task_id id) const {
    const std::size_t page_index = id >> page_bits;
    if (page_index >= pages_.size() || !pages_[page_index]) return nullptr;
    page& p = *pages_[page_index];
    const std::size_t i = id & (page_size - 1);
    return p.has(i) ? p.at(i) : nullptr;
  }
  std::vector<std::unique_ptr<page>> pages_;
  // The last page emptied, kept for the next page needed: a page is 256 KiB, which the allocator
  // maps and unmaps on every allocation and free, so a stream of tasks would fault a fresh page
  // in every 1,024 ids.
  std::unique_ptr<page> spare_;
};

struct worker_rec;

/// One bucket of the load index: its workers ordered by load (backlog per thread, then id), as a
/// min-heap and a max-heap whose positions live in the workers' records. The least and the most
/// loaded are read in O(1), a change of load costs O(log n), and nothing is allocated per change
/// (an ordered set cost a node per change and a pointer chase per level). Each entry carries its
/// key, so a sift compares entries in the heap's own array without reading workers' records.
class load_heap {
 public:
  /// A worker's key, and (in the min-heap, whose top placement reads in every bucket) what its
  /// finish time needs, so that a pass over the buckets reads no worker's record.
  struct entry {
    double load;
    worker_id id;
    model_index cls;
    double factor;
    double round_trip;
    worker_rec* w;
  };
  bool empty() const { return least_.empty(); }
  worker_rec& least() const { return *least_.front().w; }
  const entry& least_entry() const { return least_.front(); }
  worker_rec& most() const { return *most_.front().w; }
  void insert(worker_rec& w);
  void erase(worker_rec& w);
  /// Restores the order after w's load changed, and copies its speed and round trip again.
  void update(worker_rec& w);

 private:
  std::vector<entry> least_;  // least_[0] has the smallest (load, id)
  std::vector<entry> most_;   // most_[0] has the largest (load, id)
};

/// Nodes of the workers' queues (std::pmr::set<queue_key>), recycled through a free list: an
/// insert and an erase would otherwise be a malloc and a free each. Requests of another size go
/// to the default resource. Memory is kept until the scheduler is destroyed (at most the peak of
/// queued tasks, a node each). Not thread-safe, as the scheduler.
class node_recycler final : public std::pmr::memory_resource {
 public:
  node_recycler() = default;
  node_recycler(const node_recycler&) = delete;
  node_recycler& operator=(const node_recycler&) = delete;
  ~node_recycler() override;

 private:
  static constexpr std::size_t slot_size = 64;
  static constexpr std::size_t slots_per_block = 1024;
  struct free_slot {
    free_slot* next;
  };
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
  free_slot* free_ = nullptr;
  std::vector<std::byte*> blocks_;
};

/// Workers that may have room to send (decide() fills their windows in id order): a list and a
/// mark per id, so an insert is a load and a store instead of a hash.
class worker_id_set {
 public:
  bool empty() const { return members_.empty(); }
  void insert(worker_id id) {
    if (id >= marked_.size()) marked_.resize(id + 1, 0);
    if (marked_[id]) return;
    marked_[id] = 1;
    members_.push_back(id);
  }
  void erase(worker_id id) {
    if (id >= marked_.size() || !marked_[id]) return;
    marked_[id] = 0;
    std::erase(members_, id);
  }
  /// Moves the members, in increasing id order, into `out`, leaving the set empty.
  void take_sorted(std::vector<worker_id>& out) {
    out.swap(members_);
    members_.clear();
    for (worker_id id : out) marked_[id] = 0;
    std::sort(out.begin(), out.end());
  }

 private:
  std::vector<worker_id> members_;
  std::vector<std::uint8_t> marked_;
};

struct alignas(64) worker_rec {
  worker_rec() = default;
  explicit worker_rec(std::pmr::memory_resource* queue_nodes) : held(queue_nodes) {}
  // What placement reads of every bucket's leader comes first, in one cache line.
  worker_id id = 0;
  model_index model = 0;
  model_index cls = 0;
  std::uint32_t threads = 1;
  bool active = true;
  bool draining = false;
  double factor = 1;
  double placed_factor = 1;  // the factor its queued tasks were placed with
  int bucket = 0;
  double backlog = 0;  // predicted seconds of placed, unfinished tasks
  // Its link: the round trip (measured, else the configured one) and jitter the window covers,
  // and the bucket of distance it is indexed in.
  double round_trip = 0;
  double jitter = 0;
  bool round_trip_measured = false;
  int distance = 0;
  double sent_seconds = 0;
  std::uint64_t sent_bytes = 0;  // inputs of the tasks sent there, not finished
  std::uint32_t sent = 0;
  std::string name;
  std::vector<double> capacity;
  std::vector<double> used;
  std::uint32_t running = 0;
  std::vector<task_id> running_ids;  // known to run (task_started), at most its threads
  std::pmr::set<queue_key> held;     // its queue: placed here, not sent yet
  // Sent and not known to run, by send order. Entries go stale when their task starts, finishes
  // or comes back; they are skipped when read and swept when they outnumber the live ones.
  std::vector<std::pair<std::uint64_t, task_id>> unstarted;
  load_heap* bucket_heap = nullptr;                         // its bucket of the load index, while indexed
  std::uint32_t least_pos = 0, most_pos = 0;                // its places in that bucket's two heaps
  bool stealing = false;                                    // a move towards it is pending
  std::uint32_t reported_running = 0, reported_queued = 0;  // its last load report
  bool reported = false;
  std::uint32_t host = 0;  // index of its host (state::hosts)

  double load() const { return backlog / threads; }
};

/// Workers of one class, of similar speed and at a similar distance: the least loaded of them is
/// the one a task placed there finishes first on.
struct bucket_key {
  model_index cls;
  int speed;
  int distance;
  bool operator<(const bucket_key& o) const {
    return std::tie(cls, speed, distance) < std::tie(o.cls, o.speed, o.distance);
  }
};

struct scheduler::state {
  config cfg;
  cost_model& model;
  cost_model::impl& m;
  std::unique_ptr<placement_policy> policy;  // where ready tasks go, and how they are sent

  node_recycler queue_nodes;  // before the workers, whose queues use it
  task_table tasks;
  std::vector<task_id> order;  // submission order (topological), compacted now and then
  // order drops the ids of released tasks when it has doubled since it was last compacted: a
  // stream of tasks without edges never runs compute_ranks, which also compacts it.
  std::size_t order_compact_at = 4096;
  std::map<worker_id, worker_rec> workers;  // ordered: iteration is deterministic
  std::vector<worker_rec*> by_id;           // the same, indexed by id for O(1) lookups
  // Active, non-draining workers by speed bucket, each ordered by load (backlog per thread); the
  // buckets also in a list, in the map's order, for the passes over every bucket.
  std::map<bucket_key, load_heap> buckets;
  std::vector<load_heap*> bucket_list;
  std::vector<worker_id> join_order;  // every worker ever joined, in order (the baselines' turns)
  std::map<std::string, std::uint32_t> resource_names;
  // Constrained tasks (copies of a replicated task), their groups' members, and hosts by name.
  std::unordered_map<task_id, placement_constraint> constraints;
  struct spread_group {
    std::vector<task_id> members;
    std::vector<worker_id> ran_on;  // workers where a member finished
  };
  std::unordered_map<task_id, spread_group> spread_groups;
  std::map<std::string, std::uint32_t> hosts;

  std::vector<task_id> to_place;     // ready, not placed yet
  std::vector<task_id> unplaceable;  // needs no worker can meet
  worker_id_set hungry;              // may have room to send
  std::vector<worker_id> hungry_scratch;
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
  std::size_t uncalibrated_placed = 0;  // placed tasks charged with a fallback duration
  mutable std::unordered_map<model_index, std::uint32_t> probes_in_flight;  // sent, charged a fallback
  bool priorities_used = false;
  std::map<int, std::map<worker_id, std::uint32_t>> held_levels;  // priority -> worker -> held count
  std::size_t live_tasks = 0;
  bool recost = false;
  std::set<std::pair<model_index, model_index>> calibrated_once;  // (kind, class) pairs calibrated so far
  double last_alert_check = -infinity;
  double transfer_window = 0, compute_window = 0;
  double total_backlog = 0;           // over every worker: the ready work placed and not finished
  std::uint32_t indexed_threads = 0;  // threads of the workers in the load index
  model_index reference_class;        // ranks are in run times on an average worker of this class
  // The caller's end of the links its arguments travel (the cost model's "head"), once measured.
  model_index head_link = cost_model::impl::no_index;

  state(config c, cost_model& cm);
  ~state();

  worker_rec& worker(worker_id id) { return *by_id[id]; }
  const worker_rec& worker(worker_id id) const { return *by_id[id]; }

  // ---- predictions (placement.cpp) ---------------------------------------------------------------
  /// Run time of `t` on a worker of factor 1 of class `cls`.
  prediction predict_class(const task_rec& t, model_index cls) const;
  /// While place() runs for a task, its last prediction (the policy's choice and the charge ask
  /// the model the same question); nothing changes the model in between.
  struct prediction_memo {
    task_id task = 0;
    bool active = false;
    bool valid = false;
    model_index cls = 0;
    prediction answer;
  };
  mutable prediction_memo placing;
  /// The speed factor placement assumes for `w` (1 under a policy that ignores speeds).
  double worker_factor(const worker_rec& w) const;
  double predict_on(const task_rec& t, const worker_rec& w) const {
    return predict_class(t, w.cls).mean * worker_factor(w);
  }
  /// The inputs of a task that live on workers, with what fetching each costs. Gathered once per
  /// placement: a candidate worker then pays for the inputs it does not hold.
  struct remote_input {
    const std::vector<worker_id>* holders;
    double cost;
  };
  void gather_inputs(const task_rec& t, std::vector<remote_input>& out) const;
  static double transfer_cost(const std::vector<remote_input>& inputs, worker_id w);
  /// What sending t's arguments from the caller to w costs, on that link as measured (arguments
  /// under 64 KiB travel with the dispatch and are not counted).
  double arguments_cost(const task_rec& t, const worker_rec& w) const {
    return t.caller_bytes < cost_model::impl::small_transfer_bytes ? 0 : link_cost(t.caller_bytes, w);
  }
  double link_cost(std::uint64_t caller_bytes, const worker_rec& w) const;
  double transfer_to(const task_rec& t, const worker_rec& w) const;
  mutable std::vector<remote_input> inputs_scratch;

  // ---- workers and resources (workers.cpp) -------------------------------------------------------
  int speed_bucket(double factor) const;
  /// Round trips under a millisecond share bucket 0; beyond, a bucket per factor of about 1.4.
  static int distance_bucket(double round_trip);
  /// A worker whose link (round trip and jitter margin) is longer than the send-ahead: the window,
  /// not the send-ahead, is what keeps its threads busy.
  bool far(const worker_rec& w) const { return w.round_trip + cfg.jitter_margin * w.jitter > cfg.send_ahead_seconds; }
  /// Sets w's round trip, moving it to the bucket of its new distance.
  void set_round_trip(worker_rec& w, double round_trip);
  /// The time from placing t on w until the head learns it finished: the round trip, the
  /// transfers of inputs it lacks, and its run time after the work placed there before it.
  double finish_on(const worker_rec& w, double transfer, double duration) const {
    return finish_at(w.load(), w.round_trip, transfer, duration);
  }
  static double finish_at(double load, double round_trip, double transfer, double duration) {
    return std::max(load, transfer + round_trip / 2) + duration + round_trip / 2;
  }
  bool in_buckets(const worker_rec& w) const { return w.active && !w.draining; }
  void unindex(worker_rec& w);
  void index(worker_rec& w);
  /// Changes a worker's backlog keeping the bucket index in order (the set's node is reused).
  void add_backlog(worker_rec& w, double delta);
  void refresh_factor(worker_rec& w);
  std::uint32_t resource_index(const std::string& name);
  bool can_host(const worker_rec& w, const task_rec& t) const;
  /// Whether a constrained task's spread and avoid lists allow w.
  bool spread_allows(const worker_rec& w, const task_rec& t) const;
  /// Forgets t's constraint when it has one (t leaves the table).
  void drop_constraint(const task_rec& t);
  bool fits_now(const worker_rec& w, const task_rec& t) const;
  static constexpr std::uint32_t probe_limit = 4;
  bool any_active_worker() const;
  bool any_can_host(const task_rec& t) const;
  /// The first worker in join order that is active and can host `t`, or no_worker.
  worker_id first_host(const task_rec& t) const;

  // ---- ranks (ranks.cpp) --------------------------------------------------------------------------
  /// While a kind is uncalibrated its ranks are equal; the smaller task goes first.
  static double cold_tie_break(const task_rec& t, const prediction& p);
  void compute_ranks();
  void set_rank(task_rec& t, double rank);
  queue_key key(const task_rec& t) const;

  // ---- placement and stealing (placement.cpp) ----------------------------------------------------
  void place(task_rec& t, double now);
  void place_pending(double now);
  void retry_unplaceable(double now);
  /// Re-places every held task with fresh predictions (a kind just became calibrated).
  void replace_held(double now);
  static constexpr double overrun_ratio = 8;
  double wait_on(const worker_rec& w, double now) const;
  void steal_for(worker_rec& thief, double now);
  worker_rec* busiest_but(const worker_rec& thief);
  bool take_held(worker_rec& thief, worker_rec& victim, double now);
  /// The move asked for `t` is over (answered, or the task left its worker): the thief may ask again.
  void release_move(task_rec& t);

  // ---- holding and sending (window.cpp) ----------------------------------------------------------
  void hold_insert(worker_rec& w, const task_rec& t);
  void hold_erase(worker_rec& w, const task_rec& t);
  void start_priority_index();
  task_rec* higher_priority_elsewhere(worker_rec& w, int below);
  /// Puts a ready task in w's queue (charged to w's backlog).
  void hold_on(task_rec& t, worker_rec& w);
  void unhold(task_rec& t);
  void charge(task_rec& t, worker_rec& w);
  void discharge(task_rec& t, worker_rec& w);
  void unsend(task_rec& t);
  void send(task_rec& t, worker_rec& w);
  bool window_open(const worker_rec& w) const;
  void fill(worker_rec& w, double now);
  bool unstarted_on(const worker_rec& w, const std::pair<std::uint64_t, task_id>& e) const;

  // ---- alerts (alerts.cpp) -----------------------------------------------------------------------
  void raise(alert_kind kind, const std::string& subject, std::string message, double value, double threshold,
             double now);
  void clear(alert_kind kind, const std::string& subject);
  void raise_unplaceable(const task_rec& t, double now);
  void check_alerts(double now);

  /// Whether a decision made earlier still holds (scheduler.cpp): decide() returns only these.
  bool current(const decision& d) const;

  // ---- recovery (task_table.cpp) -----------------------------------------------------------------
  /// Back to waiting: out of the queues and off the worker, until task_ready.
  void make_waiting(task_rec& t);
};

}  // namespace dx::sched
