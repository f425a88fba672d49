// Workers: their records, the load index (active workers in buckets of similar speed, each
// ordered by backlog per thread), declared resources and capacities, learned speed factors, and
// the worker events (join, drain, leave or loss with the recomputes it causes, load reports,
// measured transfers).
#include "sched/placement.hpp"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>

namespace dx::sched {

int scheduler::state::speed_bucket(double factor) const {
  if (!policy->uses_speeds()) return 0;
  return static_cast<int>(std::lround(4.0 * std::log2(std::max(factor, 1e-6))));
}

int scheduler::state::distance_bucket(double round_trip) {
  if (!(round_trip > 0.001)) return 0;
  return 1 + static_cast<int>(std::lround(2.0 * std::log2(round_trip / 0.001)));
}

void scheduler::state::set_round_trip(worker_rec& w, double round_trip) {
  w.round_trip = round_trip;
  const int d = distance_bucket(round_trip);
  if (d == w.distance) {
    if (w.bucket_heap) w.bucket_heap->update(w);
    return;
  }
  const bool indexed = w.bucket_heap != nullptr;
  if (indexed) unindex(w);
  w.distance = d;
  if (indexed) index(w);
}

// ---- the load index -------------------------------------------------------------------------------

namespace {

using heap_entry = load_heap::entry;

bool lighter(const heap_entry& a, const heap_entry& b) { return a.load < b.load || (a.load == b.load && a.id < b.id); }

/// Sifts the entry at `i` of a binary heap (`before(a, b)`: a belongs nearer the top) up or down
/// to its place, keeping each worker's position in the member `pos`.
template <class Before>
void sift(std::vector<heap_entry>& heap, std::size_t i, std::uint32_t worker_rec::*pos, Before before) {
  const heap_entry moving = heap[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!before(moving, heap[parent])) break;
    heap[i] = heap[parent];
    heap[i].w->*pos = static_cast<std::uint32_t>(i);
    i = parent;
  }
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= heap.size()) break;
    if (child + 1 < heap.size() && before(heap[child + 1], heap[child])) ++child;
    if (!before(heap[child], moving)) break;
    heap[i] = heap[child];
    heap[i].w->*pos = static_cast<std::uint32_t>(i);
    i = child;
  }
  heap[i] = moving;
  moving.w->*pos = static_cast<std::uint32_t>(i);
}

template <class Before>
void heap_erase(std::vector<heap_entry>& heap, std::size_t i, std::uint32_t worker_rec::*pos, Before before) {
  const heap_entry last = heap.back();
  heap.pop_back();
  if (i == heap.size()) return;
  heap[i] = last;
  sift(heap, i, pos, before);
}

const auto lightest_first = [](const heap_entry& a, const heap_entry& b) { return lighter(a, b); };
const auto heaviest_first = [](const heap_entry& a, const heap_entry& b) { return lighter(b, a); };

}  // namespace

namespace {
heap_entry entry_of(worker_rec& w) { return {w.load(), w.id, w.cls, w.factor, w.round_trip, &w}; }
}  // namespace

void load_heap::insert(worker_rec& w) {
  least_.push_back(entry_of(w));
  sift(least_, least_.size() - 1, &worker_rec::least_pos, lightest_first);
  most_.push_back(entry_of(w));
  sift(most_, most_.size() - 1, &worker_rec::most_pos, heaviest_first);
}

void load_heap::erase(worker_rec& w) {
  heap_erase(least_, w.least_pos, &worker_rec::least_pos, lightest_first);
  heap_erase(most_, w.most_pos, &worker_rec::most_pos, heaviest_first);
}

void load_heap::update(worker_rec& w) {
  least_[w.least_pos] = entry_of(w);
  sift(least_, w.least_pos, &worker_rec::least_pos, lightest_first);
  most_[w.most_pos] = entry_of(w);
  sift(most_, w.most_pos, &worker_rec::most_pos, heaviest_first);
}

// ---- recycled queue nodes ------------------------------------------------------------------------

node_recycler::~node_recycler() {
  for (std::byte* b : blocks_) ::operator delete (b, std::align_val_t{alignof(std::max_align_t)});
}

void* node_recycler::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (bytes > slot_size || alignment > alignof(std::max_align_t))
    return std::pmr::get_default_resource()->allocate(bytes, alignment);
  if (!free_) {
    auto* block = static_cast<std::byte*>(
        ::operator new (slot_size* slots_per_block, std::align_val_t{alignof(std::max_align_t)}));
    blocks_.push_back(block);
    for (std::size_t i = slots_per_block; i-- > 0;) {
      auto* slot = reinterpret_cast<free_slot*>(block + i * slot_size);
      slot->next = free_;
      free_ = slot;
    }
  }
  free_slot* slot = free_;
  free_ = slot->next;
  return slot;
}

void node_recycler::do_deallocate(void* p, std::size_t bytes, std::size_t alignment) {
  if (bytes > slot_size || alignment > alignof(std::max_align_t)) {
    std::pmr::get_default_resource()->deallocate(p, bytes, alignment);
    return;
  }
  auto* slot = static_cast<free_slot*>(p);
  slot->next = free_;
  free_ = slot;
}

// Buckets are never erased (an empty one is skipped), so a worker keeps a pointer to its own.
void scheduler::state::unindex(worker_rec& w) {
  if (!w.bucket_heap) return;
  w.bucket_heap->erase(w);
  w.bucket_heap = nullptr;
  indexed_threads -= w.threads;
}

void scheduler::state::index(worker_rec& w) {
  if (!in_buckets(w)) return;
  auto [it, fresh] = buckets.try_emplace({w.cls, w.bucket, w.distance});
  if (fresh) {
    bucket_list.clear();
    for (auto& [k, heap] : buckets) bucket_list.push_back(&heap);
  }
  w.bucket_heap = &it->second;
  w.bucket_heap->insert(w);
  indexed_threads += w.threads;
}

void scheduler::state::add_backlog(worker_rec& w, double delta) {
  const double before = w.backlog;
  if (!w.bucket_heap) {
    w.backlog = std::max(0.0, w.backlog + delta);
    if (w.backlog < 1e-12) w.backlog = 0;
  } else {
    w.backlog += delta;
    if (w.backlog < 1e-12) w.backlog = 0;
    w.bucket_heap->update(w);
  }
  total_backlog = std::max(0.0, total_backlog + (w.backlog - before));
}

void scheduler::state::refresh_factor(worker_rec& w) {
  if (!policy->learns()) return;
  const double f = m.worker_factor(w.model);
  const int b = speed_bucket(f);
  if (b != w.bucket) {
    unindex(w);
    w.factor = f;
    w.bucket = b;
    index(w);
  } else {
    w.factor = f;
    if (w.bucket_heap) w.bucket_heap->update(w);
  }
  // What is queued here was placed believing another speed: place it again (a worker's first
  // samples move its factor most; later changes are small and leave the queue alone).
  if (std::abs(std::log(f / w.placed_factor)) > std::log(1.25)) {
    w.placed_factor = f;
    if (policy->replaces_held() && !w.held.empty()) {
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

std::uint32_t scheduler::state::resource_index(const std::string& name) {
  auto [it, fresh] = resource_names.emplace(name, static_cast<std::uint32_t>(resource_names.size()));
  if (fresh)
    for (auto& [id, w] : workers) {
      w.capacity.resize(resource_names.size(), 0);
      w.used.resize(resource_names.size(), 0);
      if (name == "cpu") w.capacity[it->second] = w.threads;
    }
  return it->second;
}

bool scheduler::state::can_host(const worker_rec& w, const task_rec& t) const {
  for (auto [r, amount] : t.needs)
    if (r >= w.capacity.size() || w.capacity[r] + 1e-9 < amount) return false;
  return !t.constrained || spread_allows(w, t);
}

bool scheduler::state::spread_allows(const worker_rec& w, const task_rec& t) const {
  auto c = constraints.find(t.id);
  if (c == constraints.end()) return true;
  const placement_constraint& pc = c->second;
  const auto same_place = [&](worker_id other) {
    if (other == w.id) return true;
    return pc.spread_hosts && other < by_id.size() && by_id[other] && by_id[other]->host == w.host;
  };
  for (worker_id a : pc.avoid)
    if (same_place(a)) return false;
  if (pc.group == 0) return true;
  auto g = spread_groups.find(pc.group);
  if (g == spread_groups.end()) return true;
  for (worker_id r : g->second.ran_on)
    if (same_place(r)) return false;
  for (task_id m : g->second.members) {
    if (m == t.id) continue;
    auto mt = tasks.find(m);
    if (mt == tasks.end()) continue;
    const task_state st = mt->second.state;
    const bool placed = st == task_state::held || st == task_state::sent || st == task_state::running;
    if (placed && mt->second.where != no_worker && same_place(mt->second.where)) return false;
  }
  return true;
}

void scheduler::state::drop_constraint(const task_rec& t) {
  if (!t.constrained) return;
  auto c = constraints.find(t.id);
  if (c == constraints.end()) return;
  if (c->second.group != 0) {
    auto g = spread_groups.find(c->second.group);
    if (g != spread_groups.end()) {
      std::erase(g->second.members, t.id);
      if (g->second.members.empty()) spread_groups.erase(g);
    }
  }
  constraints.erase(c);
}

bool scheduler::state::fits_now(const worker_rec& w, const task_rec& t) const {
  for (auto [r, amount] : t.needs)
    if (r >= w.capacity.size() || w.used[r] + amount > w.capacity[r] + 1e-9) return false;
  // A kind nothing is known about is probed with a few tasks (the smallest first: they are
  // ordered so) before the rest is sent blind to workers of unknown speed.
  if (t.charged_fallback && policy->probes_new_kinds() && probes_in_flight[t.kind] >= probe_limit) return false;
  return true;
}

bool scheduler::state::any_active_worker() const {
  for (auto& [id, w] : workers)
    if (in_buckets(w)) return true;
  return false;
}

bool scheduler::state::any_can_host(const task_rec& t) const {
  for (auto& [id, w] : workers)
    if (in_buckets(w) && can_host(w, t)) return true;
  return false;
}

worker_id scheduler::state::first_host(const task_rec& t) const {
  for (worker_id id : join_order) {
    const worker_rec& w = worker(id);
    if (in_buckets(w) && can_host(w, t)) return id;
  }
  return no_worker;
}

// ---- worker events -------------------------------------------------------------------------------

void scheduler::worker_joined(const worker_spec& spec, double now) {
  state& s = *s_;
  auto [it, fresh] = s.workers.try_emplace(spec.id, &s.queue_nodes);
  worker_rec& w = it->second;
  if (s.by_id.size() <= spec.id) s.by_id.resize(spec.id + 1, nullptr);
  s.by_id[spec.id] = &w;
  if (!fresh) s.unindex(w);
  // A worker that left joins again (under its name): nothing of its last stay carries over but
  // what the cost model learned of it.
  if (!fresh && !w.active) w = worker_rec(&s.queue_nodes);
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
  w.capacity[s.resource_names.find("cpu")->second] = w.threads;
  for (auto& [name, amount] : spec.capacity) w.capacity[s.resource_names.find(name)->second] = amount;
  w.factor = s.policy->learns() ? s.m.worker_factor(w.model) : spec.true_factor;
  w.placed_factor = w.factor;
  w.bucket = s.speed_bucket(w.factor);
  if (!w.round_trip_measured) w.round_trip = s.cfg.round_trip_seconds;
  w.distance = s.distance_bucket(w.round_trip);
  // A worker without a host name is a machine of its own.
  const std::string host = spec.host.empty() ? "\x01" + spec.name : spec.host;
  w.host = s.hosts.try_emplace(host, static_cast<std::uint32_t>(s.hosts.size())).first->second;
  s.index(w);
  if (fresh) s.join_order.push_back(spec.id);
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

void scheduler::worker_back(worker_id id, double now) {
  state& s = *s_;
  auto it = s.workers.find(id);
  if (it == s.workers.end() || !it->second.active || !it->second.draining) return;
  worker_rec& w = it->second;
  w.draining = false;
  s.index(w);
  s.hungry.insert(id);
  s.retry_unplaceable(now);
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
    if (t.state != task_state::done && t.state != task_state::failed && t.state != task_state::cancelled)
      needs_inputs.push_back(tid);
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

void scheduler::worker_round_trip(worker_id id, double round_trip, double jitter) {
  state& s = *s_;
  auto it = s.workers.find(id);
  if (it == s.workers.end() || !std::isfinite(round_trip) || round_trip < 0) return;
  worker_rec& w = it->second;
  const bool grew = round_trip > w.round_trip;
  s.set_round_trip(w, round_trip);
  w.jitter = std::isfinite(jitter) && jitter > 0 ? jitter : 0;
  w.round_trip_measured = true;
  if (grew && s.in_buckets(w)) s.hungry.insert(id);  // its window may have grown
}

void scheduler::head_transfer_measured(worker_id to, std::uint64_t bytes, double seconds) {
  state& s = *s_;
  auto t = s.workers.find(to);
  if (t == s.workers.end()) return;
  if (s.head_link == cost_model::impl::no_index) s.head_link = s.m.worker_index("head", s.reference_class);
  s.m.observe_transfer(s.head_link, t->second.model, bytes, seconds);
}

void scheduler::transfer_measured(worker_id from, worker_id to, std::uint64_t bytes, double seconds) {
  state& s = *s_;
  auto f = s.workers.find(from);
  auto t = s.workers.find(to);
  if (f == s.workers.end() || t == s.workers.end()) return;
  s.m.observe_transfer(f->second.model, t->second.model, bytes, seconds);
}

}  // namespace dx::sched
