#include "wire/messages.hpp"

#include <dx/archive.hpp>

#include <boost/archive/binary_iarchive_impl.hpp>
#include <boost/archive/detail/archive_serializer_map.hpp>
#include <boost/archive/impl/archive_serializer_map.ipp>
#include <boost/archive/impl/basic_binary_iarchive.ipp>
#include <boost/archive/impl/basic_binary_iprimitive.ipp>
#include <boost/serialization/array_wrapper.hpp>
#include <boost/serialization/collection_size_type.hpp>
#include <boost/serialization/detail/stack_constructor.hpp>
#include <boost/serialization/item_version_type.hpp>
#include <boost/serialization/nvp.hpp>
#include <boost/serialization/vector.hpp>

#include <fmt/format.h>

#include <array>
#include <type_traits>
#include <utility>

// ---- the bounded input archive --------------------------------------------------------------------
//
// boost::archive::binary_iarchive trusts the sizes it reads: a forged std::string length or
// collection count makes it resize to that size before it finds out the bytes are not there, so
// eight hostile bytes can ask for exabytes. bounded_iarchive reads the same format (it is a
// binary_iarchive_impl, like binary_iarchive, over the same primitives) but checks each size
// against the bytes left in the archive first:
//   - a string length must not exceed the bytes left;
//   - a collection count must not exceed the bytes left (each element of every wire type takes at
//     least one byte), and a vector of bitwise-serializable elements, loaded as one block, must
//     have count * sizeof(element) bytes left;
//   - other vectors grow element by element as elements actually decode, never by the count;
//   - a bool must be the byte 0 or 1 (binary_iarchive asserts, or makes an invalid bool).
// Checked against Boost 1.74 (basic_binary_iprimitive.ipp, basic_binary_iarchive.hpp,
// serialization/vector.hpp, collections_load_imp.hpp). The archive lives only in this file, so its
// Boost templates are instantiated here (as Boost's own portable archive example does).

namespace dx::wire::decoding {

/// An archive that cannot be a message: a size its remaining bytes cannot back, an invalid bool or
/// enum value, bytes left over. A dx::decode_error; decode() adds which message it was.
[[noreturn]] void reject_archive(const std::string& why) {
  dx::detail::throw_error(dx::detail::error_kind::decode, why);
}

class bounded_iarchive : public boost::archive::binary_iarchive_impl<bounded_iarchive, char, std::char_traits<char>> {
  using impl = boost::archive::binary_iarchive_impl<bounded_iarchive, char, std::char_traits<char>>;
  using primitive = boost::archive::basic_binary_iprimitive<bounded_iarchive, char, std::char_traits<char>>;

  friend class boost::archive::detail::interface_iarchive<bounded_iarchive>;
  friend class boost::archive::basic_binary_iarchive<bounded_iarchive>;
  friend class boost::archive::basic_binary_iprimitive<bounded_iarchive, char, std::char_traits<char>>;
  friend class boost::archive::load_access;

 public:
  /// Reads the archive in `source`, which must stay alive and unread by others meanwhile.
  explicit bounded_iarchive(std::streambuf& source) : impl(source, dx::detail::archive_flags), source_(source) {
    init(dx::detail::archive_flags);
  }

  /// Bytes not read yet.
  std::size_t remaining() const {
    const std::streamsize n = source_.in_avail();
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

  /// Throws dx::decode_error (through reject_archive) unless `count` elements of at least
  /// `element_bytes` bytes each fit in the bytes left.
  void check_size(std::uint64_t count, std::size_t element_bytes, const char* what) const {
    const std::size_t left = remaining();
    if (element_bytes == 0 || count <= left / element_bytes) return;
    reject_archive(element_bytes == 1
                       ? fmt::format("{} of {} bytes, but only {} bytes are left in the archive", what, count, left)
                       : fmt::format("{} of {} elements of {} bytes, but only {} bytes are left in the archive", what,
                                     count, element_bytes, left));
  }

 protected:
  template <class T>
  void load_override(T& t) {
    impl::load_override(t);
  }
  void load_override(boost::serialization::collection_size_type& t) {
    impl::load_override(t);
    check_size(static_cast<std::size_t>(t), 1, "a collection");
  }

  using primitive::load;
  void load(bool& b) {
    unsigned char c = 0;
    load_binary(&c, 1);
    if (c > 1) reject_archive(fmt::format("invalid bool byte {} in archive", static_cast<unsigned>(c)));
    b = c != 0;
  }
  // Same bytes as basic_binary_iprimitive::load(std::string&): a std::size_t length, then the
  // characters; the length is checked before the string grows.
  void load(std::string& s) {
    std::size_t n = 0;
    load_binary(&n, sizeof n);
    check_size(n, 1, "a string");
    s.resize(n);
    if (n > 0) load_binary(s.data(), n);
  }

 private:
  std::streambuf& source_;
};

}  // namespace dx::wire::decoding

// Read bitwise-serializable arrays (std::vector<std::uint64_t>) as one block, as binary_iarchive
// does: the format of a vector depends on it (binary_oarchive writes them that way).
BOOST_SERIALIZATION_USE_ARRAY_OPTIMIZATION(dx::wire::decoding::bounded_iarchive)

namespace boost::archive {
namespace detail {
template class archive_serializer_map<dx::wire::decoding::bounded_iarchive>;
}  // namespace detail
template class basic_binary_iprimitive<dx::wire::decoding::bounded_iarchive, char, std::char_traits<char>>;
template class basic_binary_iarchive<dx::wire::decoding::bounded_iarchive>;
template class binary_iarchive_impl<dx::wire::decoding::bounded_iarchive, char, std::char_traits<char>>;
}  // namespace boost::archive

namespace dx::wire::decoding {

// std::vector loading for bounded_iarchive, found by argument-dependent lookup from Boost's
// free_loader and preferred over boost::serialization's `load(Archive&, std::vector&, unsigned)`
// as more specialised. Same format as that one (Boost 1.74, serialization/vector.hpp), without
// its `resize(count)` / `reserve(count)` on an unchecked count.
template <class U, class Allocator>
void load(bounded_iarchive& ar, std::vector<U, Allocator>& v, const unsigned int /*version*/) {
  using boost::serialization::collection_size_type;
  using boost::serialization::library_version_type;
  const library_version_type library_version(ar.get_library_version());
  collection_size_type count;
  ar >> BOOST_SERIALIZATION_NVP(count);  // checked against the bytes left (>= 1 byte per element)
  using optimized = typename boost::serialization::use_array_optimization<bounded_iarchive>::template apply<
      typename std::remove_const<U>::type>::type;
  if constexpr (optimized::value) {
    ar.check_size(static_cast<std::size_t>(count), sizeof(U), "a vector");
    v.resize(count);
    unsigned int item_version = 0;
    if (BOOST_SERIALIZATION_VECTOR_VERSIONED(library_version)) ar >> BOOST_SERIALIZATION_NVP(item_version);
    if (!v.empty()) ar >> boost::serialization::make_array<U, collection_size_type>(v.data(), count);
  } else {
    boost::serialization::item_version_type item_version(0);
    if (library_version_type(3) < library_version) ar >> BOOST_SERIALIZATION_NVP(item_version);
    v.clear();
    // Grows as elements decode, like Boost's own path for types without a default constructor.
    // A reallocation moves earlier elements without reset_object_address: only objects tracked
    // for pointer serialization would care, and the wire format serializes no pointers.
    for (std::size_t i = 0; i < count; ++i) {
      boost::serialization::detail::stack_construct<bounded_iarchive, U> u(ar, item_version);
      ar >> boost::serialization::make_nvp("item", u.reference());
      v.push_back(std::move(u.reference()));
      ar.reset_object_address(&v.back(), u.address());
    }
  }
}

/// Enums on the wire: an int, as Boost writes them, checked on load to be within [lo, hi].
template <class Archive, class E>
void enum_field(Archive& ar, E& e, E lo, E hi, const char* what) {
  if constexpr (Archive::is_saving::value) {
    const int i = static_cast<int>(e);
    ar << i;
  } else {
    int i = 0;
    ar >> i;
    if (i < static_cast<int>(lo) || i > static_cast<int>(hi))
      reject_archive(fmt::format("invalid {} {} in archive", what, i));
    e = static_cast<E>(i);
  }
}

}  // namespace dx::wire::decoding

namespace boost::serialization {

// clang-format would write `ar & a & b` as `ar& a& b`, as if declaring references.
// clang-format off

template <class A>
void serialize(A& ar, dx::wire::challenge_msg& m, unsigned) {
  ar & m.nonce & m.token_required;
}
template <class A>
void serialize(A& ar, dx::wire::hello_msg& m, unsigned) {
  dx::wire::decoding::enum_field(ar, m.role, dx::wire::peer_role::worker, dx::wire::peer_role::peer, "peer role");
  ar & m.proof & m.name & m.threads & m.resources & m.data_address & m.pid & m.host & m.head_key & m.resuming;
}
template <class A>
void serialize(A& ar, dx::wire::welcome_msg& m, unsigned) {
  ar & m.worker_id & m.heartbeat_ms & m.heartbeat_timeout_ms & m.inline_result_limit & m.resumed;
}
template <class A>
void serialize(A& ar, dx::wire::reject_msg& m, unsigned) {
  ar & m.reason;
}
template <class A>
void serialize(A& ar, dx::wire::arg_ref& m, unsigned) {
  ar & m.is_ref & m.bytes & m.task_id & m.holders;
}
template <class A>
void serialize(A& ar, dx::wire::run_task_msg& m, unsigned) {
  ar & m.task_id & m.attempt & m.function & m.args & m.result_to_head;
}
template <class A>
void serialize(A& ar, dx::wire::task_done_msg& m, unsigned) {
  ar & m.task_id & m.attempt & m.result_size & m.inline_result & m.duration_ns & m.thread;
}
template <class A>
void serialize(A& ar, dx::wire::task_failed_msg& m, unsigned) {
  ar & m.task_id & m.attempt;
  dx::wire::decoding::enum_field(ar, m.kind, dx::wire::failure_kind::exception, dx::wire::failure_kind::too_large,
                                 "failure kind");
  ar & m.type_name & m.message & m.lost_input & m.duration_ns & m.thread & m.type_bases;
}
template <class A>
void serialize(A& ar, dx::wire::fetch_msg& m, unsigned) {
  ar & m.request_id & m.task_id;
}
template <class A>
void serialize(A& ar, dx::wire::fetch_reply_msg& m, unsigned) {
  ar & m.request_id & m.task_id & m.found;
}
template <class A>
void serialize(A& ar, dx::wire::release_msg& m, unsigned) {
  ar & m.task_ids;
}
template <class A>
void serialize(A& ar, dx::wire::heartbeat_msg& m, unsigned) {
  ar & m.running & m.queued & m.stored_bytes & m.memory_bytes & m.running_tasks & m.transfers & m.ping & m.echo &
      m.deadline_ms & m.receiving & m.handled;
}
template <class A>
void serialize(A& ar, dx::wire::transfer_note& m, unsigned) {
  ar & m.from & m.bytes & m.micros & m.task_id & m.age_us;
}
template <class A>
void serialize(A& ar, dx::wire::running_task& m, unsigned) {
  ar & m.task_id & m.attempt & m.elapsed_us & m.thread;
}
template <class A>
void serialize(A& ar, dx::wire::steal_msg& m, unsigned) {
  ar & m.task_id & m.attempt;
}
template <class A>
void serialize(A& ar, dx::wire::steal_reply_msg& m, unsigned) {
  ar & m.task_id & m.attempt & m.given_up;
}
template <class A>
void serialize(A& ar, dx::wire::handed_back& m, unsigned) {
  ar & m.task_id & m.attempt;
}
template <class A>
void serialize(A& ar, dx::wire::leaving_msg& m, unsigned) {
  ar & m.tasks;
}
template <class A>
void serialize(A& ar, dx::wire::shutdown_msg& m, unsigned) {
  ar & m.reason;
}
template <class A>
void serialize(A& ar, dx::wire::run_tasks_msg& m, unsigned) {
  ar & m.tasks;
}
template <class A>
void serialize(A& ar, dx::wire::tasks_done_msg& m, unsigned) {
  ar & m.done & m.results;
}
template <class A>
void serialize(A& ar, dx::wire::cancel_msg& m, unsigned) {
  ar & m.task_ids;
}
template <class A>
void serialize(A& ar, dx::wire::resume_msg& m, unsigned) {
  ar & m.held;
}

// clang-format on

}  // namespace boost::serialization

namespace dx::wire {

const char* msg_name(std::uint16_t type) noexcept {
  static constexpr const char* names[] = {"?",          "challenge", "hello",       "welcome",  "reject",
                                          "run_task",   "task_done", "task_failed", "fetch",    "fetch_reply",
                                          "release",    "heartbeat", "leaving",     "shutdown", "run_tasks",
                                          "tasks_done", "steal",     "steal_reply", "cancel",   "resume"};
  return type <= max_msg_type ? names[type] : "unknown";
}

template <class M>
frame encode(const M& m, std::shared_ptr<const std::string> payload) {
  frame f;
  f.type = static_cast<std::uint16_t>(M::type);
  detail::write_value(f.archive, m);
  f.payload = std::move(payload);
  return f;
}

template <class M>
M decode(const frame& f) {
  try {
    dx::detail::span_source source(std::span<const char>(f.archive.data(), f.archive.size()));
    decoding::bounded_iarchive ar(source);
    M m{};
    ar >> m;
    if (const std::size_t left = ar.remaining())
      decoding::reject_archive(fmt::format("{} bytes left over after the message", left));
    return m;
  } catch (const std::exception& e) {
    dx::detail::throw_error(dx::detail::error_kind::decode, fmt::format("undecodable {} message ({} bytes): {}",
                                                                        msg_name(f.type), f.archive.size(), e.what()));
  }
}

namespace {

std::uint64_t payload_size(const frame& f) noexcept { return f.payload ? f.payload->size() : 0; }

/// Why a decoded message and the frame's payload do not fit together, or nullopt.
template <class M>
std::optional<std::string> check_payload(const M& m, const frame& f) {
  const std::uint64_t size = payload_size(f);
  if constexpr (std::is_same_v<M, task_done_msg>) {
    if (m.inline_result) {
      if (size != m.result_size)
        return fmt::format("task_done message announces an inline result of {} bytes, the payload has {} bytes",
                           m.result_size, size);
      return std::nullopt;
    }
  } else if constexpr (std::is_same_v<M, fetch_reply_msg>) {
    if (m.found) return std::nullopt;
  } else if constexpr (std::is_same_v<M, tasks_done_msg>) {
    if (m.results.size() != m.done.size())
      return fmt::format("tasks_done message has {} completions but {} results", m.done.size(), m.results.size());
    for (std::size_t i = 0; i < m.done.size(); ++i) {
      const std::uint64_t expected = m.done[i].inline_result ? m.done[i].result_size : 0;
      if (m.results[i].size() != expected)
        return fmt::format("tasks_done message: completion {} (task {}) expects {} result bytes, has {}", i,
                           m.done[i].task_id, expected, m.results[i].size());
    }
  }
  if (size > 0) return fmt::format("{} message carries an unexpected payload of {} bytes", msg_name(f.type), size);
  return std::nullopt;
}

template <class M>
std::optional<std::string> check_as(const frame& f) {
  return check_payload(decode<M>(f), f);
}

using checker = std::optional<std::string> (*)(const frame&);

template <std::size_t... I>
constexpr std::array<checker, sizeof...(I)> make_checkers(std::index_sequence<I...>) {
  return {&check_as<std::tuple_element_t<I, message_types>>...};
}

template <std::size_t... I>
constexpr bool types_in_order(std::index_sequence<I...>) {
  return ((static_cast<std::size_t>(std::tuple_element_t<I, message_types>::type) == I + 1) && ...);
}
static_assert(types_in_order(std::make_index_sequence<max_msg_type>{}), "message_types must be in type order");

}  // namespace

std::optional<std::string> check_message(const frame& f) {
  static constexpr auto checkers = make_checkers(std::make_index_sequence<max_msg_type>{});
  if (f.type == 0 || f.type > max_msg_type) return fmt::format("unknown message type {}", f.type);
  try {
    return checkers[f.type - 1](f);
  } catch (const std::exception& e) {
    return std::string(e.what());
  } catch (...) {
    return fmt::format("undecodable {} message ({} bytes): unknown exception", msg_name(f.type), f.archive.size());
  }
}

#define DX_WIRE_MESSAGE(M)                                                \
  template frame encode<M>(const M&, std::shared_ptr<const std::string>); \
  template M decode<M>(const frame&);
DX_WIRE_MESSAGE(challenge_msg)
DX_WIRE_MESSAGE(hello_msg)
DX_WIRE_MESSAGE(welcome_msg)
DX_WIRE_MESSAGE(reject_msg)
DX_WIRE_MESSAGE(run_task_msg)
DX_WIRE_MESSAGE(task_done_msg)
DX_WIRE_MESSAGE(task_failed_msg)
DX_WIRE_MESSAGE(fetch_msg)
DX_WIRE_MESSAGE(fetch_reply_msg)
DX_WIRE_MESSAGE(release_msg)
DX_WIRE_MESSAGE(heartbeat_msg)
DX_WIRE_MESSAGE(leaving_msg)
DX_WIRE_MESSAGE(shutdown_msg)
DX_WIRE_MESSAGE(run_tasks_msg)
DX_WIRE_MESSAGE(tasks_done_msg)
DX_WIRE_MESSAGE(steal_msg)
DX_WIRE_MESSAGE(steal_reply_msg)
DX_WIRE_MESSAGE(cancel_msg)
DX_WIRE_MESSAGE(resume_msg)
#undef DX_WIRE_MESSAGE

}  // namespace dx::wire
