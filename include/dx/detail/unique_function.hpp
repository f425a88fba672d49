// dx/detail/unique_function.hpp — a move-only std::function<void()> with inline storage for small
// callables. Not for users.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace dx::detail {

/// Holds any move-constructible callable taking no arguments. Callables of up to 48 bytes live
/// inline (no allocation), which covers the lambdas task graphs are built from.
class unique_function {
  static constexpr std::size_t inline_size = 48;

  struct ops {
    void (*invoke)(void*);
    void (*relocate)(void* from, void* to) noexcept;  // move-construct at `to`, destroy `from`
    void (*destroy)(void*) noexcept;
  };

  template <class F>
  static constexpr bool fits_inline =
      sizeof(F) <= inline_size && alignof(F) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<F>;

  template <class F>
  static constexpr ops inline_ops{[](void* p) { (*static_cast<F*>(p))(); },
                                  [](void* from, void* to) noexcept {
                                    ::new (to) F(std::move(*static_cast<F*>(from)));
                                    static_cast<F*>(from)->~F();
                                  },
                                  [](void* p) noexcept { static_cast<F*>(p)->~F(); }};

  template <class F>
  static constexpr ops heap_ops{[](void* p) { (**static_cast<F**>(p))(); },
                                [](void* from, void* to) noexcept { *static_cast<F**>(to) = *static_cast<F**>(from); },
                                [](void* p) noexcept { delete *static_cast<F**>(p); }};

 public:
  unique_function() noexcept = default;

  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, unique_function> && std::is_invocable_v<D&>>>
  unique_function(F&& f) {  // NOLINT: implicit like std::function
    if constexpr (fits_inline<D>) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      ops_ = &inline_ops<D>;
    } else {
      *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
      ops_ = &heap_ops<D>;
    }
  }

  unique_function(unique_function&& o) noexcept : ops_(std::exchange(o.ops_, nullptr)) {
    if (ops_) ops_->relocate(o.buf_, buf_);
  }
  unique_function& operator=(unique_function&& o) noexcept {
    if (this != &o) {
      reset();
      ops_ = std::exchange(o.ops_, nullptr);
      if (ops_) ops_->relocate(o.buf_, buf_);
    }
    return *this;
  }
  ~unique_function() { reset(); }

  void reset() noexcept {
    if (ops_) std::exchange(ops_, nullptr)->destroy(buf_);
  }
  explicit operator bool() const noexcept { return ops_ != nullptr; }
  void operator()() { ops_->invoke(buf_); }

 private:
  const ops* ops_ = nullptr;
  alignas(std::max_align_t) unsigned char buf_[inline_size];
};

}  // namespace dx::detail
