// The task pool behind allocate_small / deallocate_small.
//
// Each thread owns a cache: per size class a local free list (owner only) and a remote free list
// (a lock-free stack other threads push to). Memory is carved from 64 KiB slabs whose header names
// the owning cache, so a free finds the owner from the address alone. A thread freeing blocks it
// does not own gathers them in a batch per (owner, class) and hands the batch over with one
// compare-and-swap, which keeps the cost of the common producer/consumer pattern low. Caches of
// threads that exit are adopted by new threads, so memory is never stranded.
#include <dx/detail/runtime.hpp>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace dx::detail {

namespace {

constexpr std::size_t granule = 32;
constexpr std::size_t max_small = 512;
constexpr std::size_t num_classes = max_small / granule;
constexpr std::size_t slab_size = 64 * 1024;  // also the slabs' alignment
constexpr std::size_t slab_header = 64;
constexpr int batch_limit = 32;

constexpr std::size_t class_of(std::size_t size) noexcept { return (size + granule - 1) / granule - 1; }
constexpr std::size_t class_size(std::size_t cls) noexcept { return (cls + 1) * granule; }

struct block {
  block* next;
};

struct cache;

struct slab {
  cache* owner;
};

struct alignas(64) cache {
  block* local[num_classes] = {};
  char* bump = nullptr;
  char* bump_end = nullptr;
  std::vector<void*> slabs;  // owned; kept for the life of the process
  cache* next_orphan = nullptr;
  // Written by other threads: a separate cache line per class would be overkill; one line for all.
  alignas(64) std::atomic<block*> remote[num_classes] = {};
};

std::mutex registry_mutex;
cache* orphans = nullptr;                   // caches whose thread exited
std::vector<cache*>* all_caches = nullptr;  // keeps every cache reachable

cache* adopt_cache() {
  std::lock_guard lock(registry_mutex);
  if (orphans) return std::exchange(orphans, orphans->next_orphan);
  if (!all_caches) all_caches = new std::vector<cache*>();
  auto* c = new cache();
  all_caches->push_back(c);
  return c;
}

void push_remote(cache* owner, std::size_t cls, block* head, block* tail) noexcept {
  block* old = owner->remote[cls].load(std::memory_order_relaxed);
  do {
    tail->next = old;
    // release: the owner that takes the list also sees the blocks' links.
  } while (!owner->remote[cls].compare_exchange_weak(old, head, std::memory_order_release, std::memory_order_relaxed));
}

/// The calling thread's cache and its pending batch of blocks owned by another cache.
struct thread_state {
  cache* own = nullptr;
  cache* batch_owner = nullptr;
  std::size_t batch_class = 0;
  block* batch_head = nullptr;
  block* batch_tail = nullptr;
  int batch_count = 0;

  void flush() noexcept {
    if (batch_head) push_remote(batch_owner, batch_class, batch_head, batch_tail);
    batch_owner = nullptr;
    batch_head = batch_tail = nullptr;
    batch_count = 0;
  }

  ~thread_state();
};

thread_local thread_state tls;
// Set once tls is destroyed. Thread-locals destroyed after it may still free or allocate: frees
// then go straight to their owner's remote list, and an allocation adopts a cache that this thread
// keeps until the process ends. A separate, trivially destructible variable: stores to a member
// at the end of a destructor may be dropped by the compiler, as the object's lifetime ends there.
thread_local bool tls_dead = false;

thread_state::~thread_state() {
  flush();
  if (own) {
    std::lock_guard lock(registry_mutex);
    own->next_orphan = orphans;
    orphans = own;
  }
  tls_dead = true;
}

void* carve(cache* c, std::size_t cls) {
  std::size_t size = class_size(cls);
  if (c->bump + size > c->bump_end) {
    void* mem = std::aligned_alloc(slab_size, slab_size);
    if (!mem) throw std::bad_alloc();
    c->slabs.push_back(mem);
    static_cast<slab*>(mem)->owner = c;
    c->bump = static_cast<char*>(mem) + slab_header;
    c->bump_end = static_cast<char*>(mem) + slab_size;
  }
  void* p = c->bump;
  c->bump += size;
  return p;
}

}  // namespace

void* allocate_small(std::size_t size) {
  if (size > max_small) return ::operator new(size);
  cache* c = nullptr;
  if (tls_dead) {
    static thread_local cache* late = nullptr;  // see tls_dead
    if (!late) late = adopt_cache();
    c = late;
  } else {
    thread_state& ts = tls;
    if (!ts.own) ts.own = adopt_cache();
    c = ts.own;
  }
  std::size_t cls = class_of(size);
  if (block* b = c->local[cls]) {
    c->local[cls] = b->next;
    return b;
  }
  if (c->remote[cls].load(std::memory_order_relaxed)) {
    // acquire: pairs with push_remote's release.
    if (block* b = c->remote[cls].exchange(nullptr, std::memory_order_acquire)) {
      c->local[cls] = b->next;
      return b;
    }
  }
  return carve(c, cls);
}

void deallocate_small(void* p, std::size_t size) noexcept {
  if (!p) return;
  if (size > max_small) {
    ::operator delete(p, size);
    return;
  }
  auto* b = static_cast<block*>(p);
  std::size_t cls = class_of(size);
  cache* owner = reinterpret_cast<slab*>(reinterpret_cast<std::uintptr_t>(p) & ~(slab_size - 1))->owner;
  if (tls_dead) {
    push_remote(owner, cls, b, b);
    return;
  }
  thread_state& ts = tls;
  if (owner == ts.own) {
    b->next = owner->local[cls];
    owner->local[cls] = b;
    return;
  }
  if (ts.batch_owner != owner || ts.batch_class != cls || ts.batch_count == batch_limit) {
    ts.flush();
    ts.batch_owner = owner;
    ts.batch_class = cls;
    ts.batch_tail = b;
  }
  b->next = ts.batch_head;
  ts.batch_head = b;
  ++ts.batch_count;
}

void flush_remote_frees() noexcept { tls.flush(); }

}  // namespace dx::detail
