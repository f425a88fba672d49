// Chase-Lev work-stealing deque (Lê, Pop, Cohen, Zappa Nardelli, "Correct and Efficient
// Work-Stealing for Weak Memory Models", PPoPP 2013). The owner pushes and pops at the bottom
// (LIFO, cache-warm); thieves steal from the top (FIFO, the oldest and usually largest work).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

namespace dx::detail {

template <class T>
class work_stealing_deque {
  static_assert(std::is_pointer_v<T>, "holds pointers: a failed pop or steal returns nullptr");

  struct ring {
    explicit ring(std::int64_t capacity) : mask(capacity - 1), slots(new std::atomic<T>[capacity]) {}
    std::int64_t capacity() const noexcept { return mask + 1; }
    // Slots are atomics accessed relaxed: the top/bottom protocol orders them.
    void put(std::int64_t i, T v) noexcept { slots[i & mask].store(v, std::memory_order_relaxed); }
    T get(std::int64_t i) const noexcept { return slots[i & mask].load(std::memory_order_relaxed); }
    std::int64_t mask;
    std::unique_ptr<std::atomic<T>[]> slots;
  };

 public:
  explicit work_stealing_deque(std::int64_t capacity = 1024) {
    rings_.push_back(std::make_unique<ring>(capacity));
    ring_.store(rings_.back().get(), std::memory_order_relaxed);
  }

  /// Owner only.
  void push(T v) {
    std::int64_t b = bottom_.load(std::memory_order_relaxed);
    std::int64_t t = top_.load(std::memory_order_acquire);
    ring* r = ring_.load(std::memory_order_relaxed);
    if (b - t > r->capacity() - 1) r = grow(r, t, b);
    r->put(b, v);
    // release: a thief that reads the new bottom also reads the slot and the task it points to.
    // (A release store rather than the paper's release fence: the same instruction on x86, and
    // ThreadSanitizer understands it.)
    bottom_.store(b + 1, std::memory_order_release);
  }

  /// Owner only. nullptr when empty.
  T pop() noexcept {
    std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    ring* r = ring_.load(std::memory_order_relaxed);
    bottom_.store(b, std::memory_order_relaxed);
    // seq_cst: the bottom store must be visible before top is read, or a thief and the owner could
    // both take the last element.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_relaxed);
    if (t > b) {  // empty
      bottom_.store(b + 1, std::memory_order_relaxed);
      return nullptr;
    }
    T v = r->get(b);
    if (t == b) {  // last element: race the thieves for it
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) v = nullptr;
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return v;
  }

  /// Any thread. nullptr when empty or when another thread won the race.
  T steal() noexcept {
    std::int64_t t = top_.load(std::memory_order_acquire);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::int64_t b = bottom_.load(std::memory_order_acquire);
    if (t >= b) return nullptr;
    // acquire (for consume): the ring the owner published when it grew.
    ring* r = ring_.load(std::memory_order_acquire);
    T v = r->get(t);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst, std::memory_order_relaxed)) return nullptr;
    return v;
  }

  /// Any thread; a hint only.
  bool empty() const noexcept {
    return bottom_.load(std::memory_order_relaxed) <= top_.load(std::memory_order_relaxed);
  }

 private:
  ring* grow(ring* old, std::int64_t t, std::int64_t b) {
    auto bigger = std::make_unique<ring>(old->capacity() * 2);
    for (std::int64_t i = t; i < b; ++i) bigger->put(i, old->get(i));
    ring* r = bigger.get();
    // Old rings stay allocated until the deque dies: a thief may still be reading one.
    rings_.push_back(std::move(bigger));
    ring_.store(r, std::memory_order_release);
    return r;
  }

  // top_ is written by thieves, bottom_ by the owner: separate cache lines avoid false sharing.
  alignas(64) std::atomic<std::int64_t> top_{0};
  alignas(64) std::atomic<std::int64_t> bottom_{0};
  alignas(64) std::atomic<ring*> ring_{nullptr};
  std::vector<std::unique_ptr<ring>> rings_;  // owner only
};

}  // namespace dx::detail
