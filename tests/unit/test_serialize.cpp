// Tests of dx/serialize.hpp and dx/eigen.hpp: which types are dx::serializable, round trips through
// write_value/read_value, and decoding of damaged archives (it must throw, never crash).
#include <dx/serialize.hpp>

#include <dx/eigen.hpp>

#include <boost/serialization/complex.hpp>
#include <boost/serialization/split_member.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace {

struct point {
  double x = 0;
  double y = 0;
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    // clang-format off
    ar & x & y;
    // clang-format on
  }
  bool operator==(const point&) const = default;
};

/// A user type with separate save/load members.
class counter {
 public:
  counter() = default;
  explicit counter(std::string name, int n) : name_(std::move(name)), n_(n) {}
  bool operator==(const counter&) const = default;

  template <class Archive>
  void save(Archive& ar, unsigned) const {
    ar << name_ << n_;
  }
  template <class Archive>
  void load(Archive& ar, unsigned) {
    ar >> name_ >> n_;
  }
  BOOST_SERIALIZATION_SPLIT_MEMBER()

 private:
  std::string name_;
  int n_ = 0;
};

struct particle {
  std::string name;
  point pos;
  std::vector<point> trail;
  std::optional<int> tag;
  Eigen::Vector3d velocity = Eigen::Vector3d::Zero();
  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    // clang-format off
    ar & name & pos & trail & tag & velocity;
    // clang-format on
  }
};

struct no_serialize {
  int v = 0;
};

enum class colour : std::uint8_t { red = 1, green = 2, blue = 255 };
enum plain_enum { plain_a = -7, plain_b = 0, plain_c = 1 << 20 };
enum class wide : std::uint32_t { top = 0xFFFF'FFFFu };
enum class too_wide : std::int64_t { big = std::int64_t{1} << 40 };

/// A type serialized by free functions, opted in through dx::is_serializable.
struct legacy {
  int a = 0;
  std::string b;
  bool operator==(const legacy&) const = default;
};
template <class Archive>
void serialize(Archive& ar, legacy& l, unsigned) {
  // clang-format off
  ar & l.a & l.b;
  // clang-format on
}

}  // namespace

template <>
struct dx::is_serializable<legacy> : std::true_type {};
// std::complex has free serialize functions in <boost/serialization/complex.hpp>.
template <>
struct dx::is_serializable<std::complex<double>> : std::true_type {};

namespace {

template <class T>
std::string encode(const T& v) {
  std::string bytes;
  dx::detail::write_value(bytes, v);
  return bytes;
}

template <class T>
T round_trip(const T& v) {
  const std::string bytes = encode(v);
  return dx::detail::read_value<T>(bytes);
}

template <class T>
void require_round_trip(const T& v) {
  REQUIRE(round_trip(v) == v);
}

template <class T>
void require_round_trip_limits() {
  require_round_trip(std::numeric_limits<T>::min());
  require_round_trip(std::numeric_limits<T>::max());
  require_round_trip(std::numeric_limits<T>::lowest());
  require_round_trip(T{});
}

template <class Dense>
bool same_dense(const Dense& a, const Dense& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() && (a.size() == 0 || (a.array() == b.array()).all());
}

template <class Dense>
void require_dense_round_trip(const Dense& m) {
  const Dense back = round_trip(m);
  REQUIRE(back.rows() == m.rows());
  REQUIRE(back.cols() == m.cols());
  REQUIRE(same_dense(back, m));
}

/// Every proper prefix of `bytes` must fail to decode as T with an exception.
template <class T>
void require_prefixes_throw(const std::string& bytes) {
  REQUIRE(!bytes.empty());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    INFO("prefix length " << n << " of " << bytes.size());
    REQUIRE_THROWS_AS(dx::detail::read_value<T>(std::span<const char>(bytes.data(), n)), std::exception);
  }
}

using nested_t = std::map<std::string, std::vector<std::optional<std::tuple<int, std::string>>>>;

// ---- which types are serializable --------------------------------------------------------------

static_assert(dx::serializable<bool>);
static_assert(dx::serializable<char>);
static_assert(dx::serializable<signed char>);
static_assert(dx::serializable<unsigned char>);
static_assert(dx::serializable<std::int16_t>);
static_assert(dx::serializable<std::uint16_t>);
static_assert(dx::serializable<int>);
static_assert(dx::serializable<unsigned>);
static_assert(dx::serializable<std::int64_t>);
static_assert(dx::serializable<std::uint64_t>);
static_assert(dx::serializable<float>);
static_assert(dx::serializable<double>);
static_assert(dx::serializable<long double>);
static_assert(dx::serializable<colour>);
static_assert(dx::serializable<plain_enum>);
static_assert(dx::serializable<wide>);
static_assert(dx::serializable<std::string>);
static_assert(dx::serializable<std::vector<int>>);
static_assert(dx::serializable<std::vector<bool>>);
static_assert(dx::serializable<std::vector<std::vector<std::string>>>);
static_assert(dx::serializable<std::map<std::string, double>>);
static_assert(dx::serializable<std::unordered_map<int, std::string>>);
static_assert(dx::serializable<std::optional<std::string>>);
static_assert(dx::serializable<std::pair<int, std::string>>);
static_assert(dx::serializable<std::tuple<>>);
static_assert(dx::serializable<std::tuple<int, std::string, double>>);
static_assert(dx::serializable<std::variant<std::monostate, int, std::string>>);
static_assert(dx::serializable<std::monostate>);
static_assert(dx::serializable<std::array<int, 3>>);
static_assert(dx::serializable<std::array<std::string, 0>>);
static_assert(dx::serializable<point>);
static_assert(dx::serializable<counter>);
static_assert(dx::serializable<particle>);
static_assert(dx::serializable<legacy>);
static_assert(dx::serializable<nested_t>);
static_assert(dx::serializable<std::vector<legacy>>);
static_assert(dx::serializable<Eigen::MatrixXd>);
static_assert(dx::serializable<Eigen::Vector3f>);
static_assert(dx::serializable<Eigen::Matrix4d>);
static_assert(dx::serializable<Eigen::ArrayXXi>);
static_assert(dx::serializable<Eigen::RowVectorXd>);
static_assert(dx::serializable<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>);
static_assert(dx::serializable<Eigen::MatrixXcd>);  // std::complex<double> is opted in above
static_assert(dx::serializable<std::vector<Eigen::MatrixXd>>);
// Qualifiers and references do not matter.
static_assert(dx::serializable<const std::string&>);
static_assert(dx::serializable<point&&>);
static_assert(dx::serializable<const Eigen::MatrixXd&>);
static_assert(dx::is_serializable<const int>::value);
static_assert(dx::is_serializable<const Eigen::VectorXd>::value);

static_assert(!dx::serializable<no_serialize>);
static_assert(!dx::serializable<std::vector<no_serialize>>);
static_assert(!dx::serializable<std::map<int, no_serialize>>);
static_assert(!dx::serializable<std::map<no_serialize, int>>);
static_assert(!dx::serializable<std::unordered_map<std::string, no_serialize>>);
static_assert(!dx::serializable<std::optional<no_serialize>>);
static_assert(!dx::serializable<std::pair<int, no_serialize>>);
static_assert(!dx::serializable<std::tuple<int, no_serialize>>);
static_assert(!dx::serializable<std::variant<int, no_serialize>>);
static_assert(!dx::serializable<std::array<no_serialize, 2>>);
static_assert(!dx::serializable<std::vector<std::optional<no_serialize>>>);
static_assert(!dx::serializable<int*>);
static_assert(!dx::serializable<const char*>);
static_assert(!dx::serializable<void*>);
static_assert(!dx::serializable<point*>);
static_assert(!dx::serializable<std::function<int(int)>>);
static_assert(!dx::serializable<std::unique_ptr<int>>);
static_assert(!dx::serializable<std::shared_ptr<point>>);
// Boost.Serialization stores enums as int: a wider enum would be silently truncated.
static_assert(!dx::serializable<too_wide>);
static_assert(!dx::serializable<Eigen::Matrix2cf>);             // std::complex<float> is not opted in
static_assert(!dx::serializable<Eigen::Map<Eigen::VectorXd>>);  // views and expressions are not values

// ---- round trips --------------------------------------------------------------------------------

TEST_CASE("serialize: arithmetic types keep their edge values", "[serialize]") {
  require_round_trip(true);
  require_round_trip(false);
  require_round_trip_limits<char>();
  require_round_trip_limits<signed char>();
  require_round_trip_limits<unsigned char>();
  require_round_trip_limits<std::int16_t>();
  require_round_trip_limits<std::uint16_t>();
  require_round_trip_limits<std::int32_t>();
  require_round_trip_limits<std::uint32_t>();
  require_round_trip_limits<std::int64_t>();
  require_round_trip_limits<std::uint64_t>();
  require_round_trip_limits<float>();
  require_round_trip_limits<double>();
  require_round_trip_limits<long double>();
  require_round_trip(std::numeric_limits<double>::denorm_min());
  require_round_trip(std::numeric_limits<double>::epsilon());
  require_round_trip(std::numeric_limits<double>::infinity());
  require_round_trip(-std::numeric_limits<float>::infinity());
  require_round_trip(3.141592653589793);
  require_round_trip(-1.5f);

  const double neg_zero = round_trip(-0.0);
  REQUIRE(neg_zero == 0.0);
  REQUIRE(std::signbit(neg_zero));
  REQUIRE(std::isnan(round_trip(std::numeric_limits<double>::quiet_NaN())));
  REQUIRE(std::isnan(round_trip(std::numeric_limits<float>::quiet_NaN())));
}

namespace {

/// The builtin codec of T writes what a Boost binary archive of `v` holds, and reads it back.
template <class T>
void require_archive_bytes(const T& v) {
  std::string fast, boost_bytes;
  dx::detail::builtin_codec<T>::write(fast, v);
  dx::detail::archive_codec<T>::write(boost_bytes, v);
  REQUIRE(fast == boost_bytes);
  const T back = dx::detail::builtin_codec<T>::read(boost_bytes);
  REQUIRE(std::memcmp(&back, &v, sizeof(T) < 10 ? sizeof(T) : 10) == 0);  // long double: 10 bytes matter
  REQUIRE(dx::detail::archive_codec<T>::read(fast) == back);
}

template <class T>
void require_archive_bytes_limits() {
  require_archive_bytes<T>(std::numeric_limits<T>::lowest());
  require_archive_bytes<T>(std::numeric_limits<T>::max());
  require_archive_bytes<T>(T{});
  require_archive_bytes<T>(static_cast<T>(1));
  require_archive_bytes<T>(static_cast<T>(42));
}

}  // namespace

TEST_CASE("serialize: the common scalars and strings are encoded as Boost binary archives of them", "[serialize]") {
  require_archive_bytes(true);
  require_archive_bytes(false);
  require_archive_bytes_limits<char>();
  require_archive_bytes_limits<signed char>();
  require_archive_bytes_limits<unsigned char>();
  require_archive_bytes_limits<short>();
  require_archive_bytes_limits<unsigned short>();
  require_archive_bytes_limits<int>();
  require_archive_bytes_limits<unsigned>();
  require_archive_bytes_limits<long>();
  require_archive_bytes_limits<unsigned long>();
  require_archive_bytes_limits<long long>();
  require_archive_bytes_limits<unsigned long long>();
  require_archive_bytes_limits<float>();
  require_archive_bytes_limits<double>();
  require_archive_bytes_limits<long double>();
  for (const std::string& v : {std::string(), std::string("x"), std::string("a\0b", 3), std::string(1000, 'q')}) {
    std::string fast, boost_bytes;
    dx::detail::builtin_codec<std::string>::write(fast, v);
    dx::detail::archive_codec<std::string>::write(boost_bytes, v);
    REQUIRE(fast == boost_bytes);
    REQUIRE(dx::detail::builtin_codec<std::string>::read(boost_bytes) == v);
  }
}

TEST_CASE("serialize: a string whose length is longer than its bytes, or a bool other than 0 or 1, throws",
          "[serialize]") {
  std::string bytes = encode(std::string("hello"));
  bytes.pop_back();
  REQUIRE_THROWS_AS(dx::detail::read_value<std::string>(bytes), std::exception);
  std::string huge(sizeof(std::size_t), '\x7f');
  REQUIRE_THROWS_AS(dx::detail::read_value<std::string>(huge), std::exception);
  REQUIRE_THROWS_AS(dx::detail::read_value<bool>(std::string(1, '\x02')), std::exception);
  REQUIRE(dx::detail::read_value<bool>(std::string(1, '\x01')));
  REQUIRE_THROWS_AS(dx::detail::read_value<double>(std::string(7, '\0')), std::exception);
}

TEST_CASE("serialize: enums", "[serialize]") {
  require_round_trip(colour::red);
  require_round_trip(colour::blue);
  require_round_trip(plain_a);
  require_round_trip(plain_c);
  require_round_trip(wide::top);
  require_round_trip(std::vector<colour>{colour::green, colour::blue, colour::red});
}

TEST_CASE("serialize: strings", "[serialize]") {
  require_round_trip(std::string{});
  require_round_trip(std::string("x"));
  const std::string with_nuls("a\0b\0\0c", 6);
  REQUIRE(round_trip(with_nuls).size() == 6);
  require_round_trip(with_nuls);
  require_round_trip(std::string("h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89"));
  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  require_round_trip(all_bytes);

  std::string big(std::size_t{1} << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  require_round_trip(big);
}

TEST_CASE("serialize: write_value appends to what is already there", "[serialize]") {
  std::string out = "header";
  dx::detail::write_value(out, std::string("payload"));
  REQUIRE(out.substr(0, 6) == "header");
  REQUIRE(dx::detail::read_value<std::string>(std::span<const char>(out).subspan(6)) == "payload");
}

TEST_CASE("serialize: vectors", "[serialize]") {
  require_round_trip(std::vector<int>{});
  require_round_trip(std::vector<int>{1, -2, 3});
  require_round_trip(std::vector<std::string>{});
  require_round_trip(std::vector<std::string>{"", "a", std::string(1000, 'z'), ""});
  require_round_trip(std::vector<std::vector<int>>{{}, {1}, {}, {2, 3, 4}});
  require_round_trip(std::vector<std::vector<std::vector<double>>>{{{1.0}, {}}, {}});

  std::vector<double> many(100'000);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<double>(i) * 0.5 - 17.0;
  require_round_trip(many);

  // Boost.Serialization 1.74 has its own overloads for std::vector<bool> (one bool per element).
  for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 1000u}) {
    std::vector<bool> bits(n);
    for (std::size_t i = 0; i < n; ++i) bits[i] = (i * 7 + n) % 3 == 0;
    require_round_trip(bits);
  }
}

TEST_CASE("serialize: maps", "[serialize]") {
  require_round_trip(std::map<int, std::string>{});
  require_round_trip(std::map<int, std::string>{{-1, "minus"}, {0, ""}, {42, "answer"}});
  require_round_trip(std::map<std::string, std::vector<int>>{{"a", {}}, {"b", {1, 2}}});

  require_round_trip(std::unordered_map<std::string, double>{});
  std::unordered_map<std::string, double> big;
  for (int i = 0; i < 1000; ++i) big.emplace("key" + std::to_string(i), i * 1.25);
  require_round_trip(big);
  require_round_trip(std::unordered_map<int, std::map<int, int>>{{1, {{2, 3}}}, {4, {}}});
}

TEST_CASE("serialize: optional", "[serialize]") {
  require_round_trip(std::optional<int>{});
  require_round_trip(std::optional<int>{0});
  require_round_trip(std::optional<int>{-5});
  require_round_trip(std::optional<std::string>{});
  require_round_trip(std::optional<std::string>{""});
  require_round_trip(std::optional<std::string>{"text"});
  require_round_trip(std::optional<std::optional<int>>{std::optional<int>{}});
  require_round_trip(std::optional<std::optional<int>>{});
  require_round_trip(std::vector<std::optional<int>>{1, std::nullopt, 3, std::nullopt});

  // An engaged target is reset by an empty archive.
  std::string bytes = encode(std::optional<int>{});
  REQUIRE_FALSE(dx::detail::read_value<std::optional<int>>(bytes).has_value());
}

TEST_CASE("serialize: pair and tuple", "[serialize]") {
  require_round_trip(std::pair<int, std::string>{7, "seven"});
  require_round_trip(std::pair<std::string, std::vector<double>>{"", {}});
  require_round_trip(std::tuple<>{});
  require_round_trip(std::tuple<int>{3});
  require_round_trip(std::tuple<int, std::string, double, bool>{-1, "x", 2.5, true});
  require_round_trip(std::tuple<std::optional<int>, std::vector<std::string>, std::tuple<>>{{}, {"a", "b"}, {}});
  require_round_trip(std::vector<std::tuple<>>(3));
}

TEST_CASE("serialize: variant keeps the alternative", "[serialize]") {
  using var = std::variant<std::monostate, int, std::string, std::vector<double>, point>;
  const std::vector<var> values{var{}, var{42}, var{std::string("s")}, var{std::vector<double>{1.0, 2.0}},
                                var{point{1.5, -2.5}}};
  for (const var& v : values) {
    const var back = round_trip(v);
    REQUIRE(back.index() == v.index());
    REQUIRE(back == v);
  }
  require_round_trip(values);

  // Two alternatives of the same type: the index, not the type, identifies the alternative.
  const std::variant<int, int> second{std::in_place_index<1>, 5};
  const auto back = round_trip(second);
  REQUIRE(back.index() == 1);
  REQUIRE(std::get<1>(back) == 5);

  require_round_trip(std::variant<std::monostate>{});
}

TEST_CASE("serialize: std::array", "[serialize]") {
  require_round_trip(std::array<int, 4>{1, 2, 3, 4});
  require_round_trip(std::array<std::string, 3>{"", "b", "ccc"});
  require_round_trip(std::array<int, 0>{});
  require_round_trip(std::array<std::array<double, 2>, 2>{{{1.0, 2.0}, {3.0, 4.0}}});
}

TEST_CASE("serialize: user types", "[serialize]") {
  require_round_trip(point{1.0, 2.0});
  require_round_trip(std::vector<point>{{0, 0}, {-1, 1e300}});
  require_round_trip(counter{"hits", 12});
  require_round_trip(legacy{3, "three"});
  require_round_trip(std::map<std::string, legacy>{{"k", {1, "one"}}});

  particle p;
  p.name = "proton";
  p.pos = {1, 2};
  p.trail = {{0, 0}, {0.5, 1}};
  p.tag = 9;
  p.velocity = {0.1, -0.2, 0.3};
  const particle back = round_trip(p);
  REQUIRE(back.name == p.name);
  REQUIRE(back.pos == p.pos);
  REQUIRE(back.trail == p.trail);
  REQUIRE(back.tag == p.tag);
  REQUIRE(back.velocity == p.velocity);
}

TEST_CASE("serialize: nested containers", "[serialize]") {
  nested_t v;
  v["empty"] = {};
  v["mixed"] = {std::nullopt, std::tuple<int, std::string>{1, "one"}, std::tuple<int, std::string>{-2, ""},
                std::nullopt};
  v[""] = {std::tuple<int, std::string>{0, std::string("\0", 1)}};
  require_round_trip(v);
  require_round_trip(nested_t{});
  require_round_trip(std::vector<nested_t>{v, {}, v});
}

// ---- Eigen --------------------------------------------------------------------------------------

TEST_CASE("serialize: Eigen matrices and arrays", "[serialize][eigen]") {
  require_dense_round_trip(Eigen::MatrixXd(0, 0));
  require_dense_round_trip(Eigen::MatrixXd(0, 3));
  require_dense_round_trip(Eigen::MatrixXd(4, 0));

  Eigen::MatrixXd m(3, 5);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 5; ++c) m(r, c) = r * 10 + c + 0.25;
  require_dense_round_trip(m);
  REQUIRE(round_trip(m)(2, 4) == 24.25);

  require_dense_round_trip(Eigen::Vector3f(1.0f, -2.0f, 3.5f));
  const Eigen::Matrix4d m4 = Eigen::Matrix4d::Random();
  require_dense_round_trip(m4);

  Eigen::ArrayXXi ai(2, 3);
  ai << 1, 2, 3, -4, -5, std::numeric_limits<int>::max();
  require_dense_round_trip(ai);
  require_dense_round_trip(Eigen::ArrayXXi(0, 0));

  require_dense_round_trip(Eigen::RowVectorXd::LinSpaced(7, -1.0, 1.0).eval());
  require_dense_round_trip(Eigen::RowVectorXd{});
  require_dense_round_trip(Eigen::VectorXd::Constant(1000, 2.5).eval());

  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm(2, 3);
  rm << 1, 2, 3, 4, 5, 6;
  REQUIRE(round_trip(rm)(1, 0) == 4);

  Eigen::Matrix<double, 3, Eigen::Dynamic> three_rows(3, 2);
  three_rows << 1, 2, 3, 4, 5, 6;
  require_dense_round_trip(three_rows);

  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 4> bounded(2, 3);
  bounded.setConstant(7.0f);
  require_dense_round_trip(bounded);

  Eigen::Array<std::int64_t, 2, 2> fixed_array;
  fixed_array << 1, -2, std::numeric_limits<std::int64_t>::min(), 4;
  require_dense_round_trip(fixed_array);

  // Non-arithmetic scalars go coefficient by coefficient.
  Eigen::MatrixXcd mc(2, 2);
  mc << std::complex<double>(1, 2), std::complex<double>(3, -4), std::complex<double>(0, 0),
      std::complex<double>(-1, 0.5);
  require_dense_round_trip(mc);
}

TEST_CASE("serialize: Eigen inside containers and user types", "[serialize][eigen]") {
  std::vector<Eigen::MatrixXd> ms{Eigen::MatrixXd::Identity(2, 2), Eigen::MatrixXd(0, 0), Eigen::MatrixXd::Ones(3, 1)};
  const auto back = round_trip(ms);
  REQUIRE(back.size() == ms.size());
  for (std::size_t i = 0; i < ms.size(); ++i) REQUIRE(same_dense(back[i], ms[i]));

  const std::optional<Eigen::Vector3f> ov = Eigen::Vector3f(1, 2, 3);
  const auto oback = round_trip(ov);
  REQUIRE(oback.has_value());
  REQUIRE(*oback == *ov);

  using var = std::variant<int, Eigen::Matrix2d>;
  const var vm = Eigen::Matrix2d::Identity();
  const auto vback = round_trip(vm);
  REQUIRE(vback.index() == 1);
  REQUIRE(std::get<1>(vback) == Eigen::Matrix2d::Identity());
}

TEST_CASE("serialize: an Eigen size the target type cannot hold is rejected", "[serialize][eigen]") {
  using dx::detail::read_value;
  const std::string m33 = encode(Eigen::MatrixXd::Zero(3, 3).eval());
  REQUIRE_THROWS_AS(read_value<Eigen::Matrix4d>(m33), std::exception);
  REQUIRE_THROWS_AS(read_value<Eigen::Vector3d>(m33), std::exception);
  REQUIRE(read_value<Eigen::Matrix3d>(m33) == Eigen::Matrix3d::Zero());

  const std::string v4 = encode(Eigen::VectorXf::Zero(4).eval());
  REQUIRE_THROWS_AS(read_value<Eigen::Vector3f>(v4), std::exception);
  REQUIRE_THROWS_AS(read_value<Eigen::RowVector4f>(v4), std::exception);  // 4x1 is not 1x4
  REQUIRE(read_value<Eigen::Vector4f>(v4) == Eigen::Vector4f::Zero());

  const std::string m25 = encode(Eigen::MatrixXf::Zero(2, 5).eval());
  REQUIRE_THROWS_AS((read_value<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, 0, 4, 4>>(m25)), std::exception);
  REQUIRE_THROWS_AS((read_value<Eigen::Matrix<float, 3, Eigen::Dynamic>>(m25)), std::exception);
  REQUIRE((read_value<Eigen::Matrix<float, 2, Eigen::Dynamic>>(m25)).cols() == 5);

  // A negative dimension (a damaged archive) is rejected before anything is allocated.
  std::string negative = m33;
  const std::int64_t minus_one = -1;
  REQUIRE(negative.size() >= 16 + 9 * sizeof(double));
  std::memcpy(negative.data() + negative.size() - 9 * sizeof(double) - 16, &minus_one, sizeof minus_one);
  REQUIRE_THROWS_AS(read_value<Eigen::MatrixXd>(negative), std::exception);
}

// ---- damaged archives ---------------------------------------------------------------------------

TEST_CASE("serialize: truncated archives throw", "[serialize]") {
  require_prefixes_throw<std::vector<std::string>>(
      encode(std::vector<std::string>{"alpha", "", "gamma delta", std::string(100, 'x')}));
  require_prefixes_throw<std::vector<std::string>>(encode(std::vector<std::string>{}));
  require_prefixes_throw<std::variant<int, std::string>>(encode(std::variant<int, std::string>{"text"}));
  require_prefixes_throw<std::optional<std::string>>(encode(std::optional<std::string>{"x"}));
  require_prefixes_throw<nested_t>(encode(nested_t{{"k", {std::tuple<int, std::string>{1, "v"}, std::nullopt}}}));
  require_prefixes_throw<Eigen::MatrixXd>(encode(Eigen::MatrixXd::Ones(2, 3).eval()));
  require_prefixes_throw<Eigen::Matrix4d>(encode(Eigen::Matrix4d::Ones().eval()));
  require_prefixes_throw<std::uint64_t>(encode(std::uint64_t{1}));
}

TEST_CASE("serialize: a variant index out of range throws", "[serialize]") {
  using small = std::variant<int, std::string>;
  using large = std::variant<int, std::string, double>;
  const std::string bytes = encode(large{2.5});
  REQUIRE_THROWS_AS(dx::detail::read_value<small>(bytes), std::exception);
  REQUIRE(std::get<2>(dx::detail::read_value<large>(bytes)) == 2.5);

  // The index is the 4 bytes in front of the double: make it the largest possible.
  std::string patched = bytes;
  REQUIRE(patched.size() >= 12);
  std::memset(patched.data() + patched.size() - 12, 0xff, 4);
  REQUIRE_THROWS_AS(dx::detail::read_value<large>(patched), std::exception);
}

TEST_CASE("serialize: an optional's flag other than 0 or 1 throws", "[serialize]") {
  std::string bytes = encode(std::optional<int>{5});
  // The flag is the byte in front of the int.
  REQUIRE(bytes.size() >= 5);
  REQUIRE(bytes[bytes.size() - 5] == 1);
  bytes[bytes.size() - 5] = 2;
  REQUIRE_THROWS_AS(dx::detail::read_value<std::optional<int>>(bytes), std::exception);
}

TEST_CASE("serialize: garbage bytes throw", "[serialize]") {
  using dx::detail::read_value;
  const std::string none;
  REQUIRE_THROWS_AS(read_value<int>(none), std::exception);
  REQUIRE_THROWS_AS(read_value<std::string>(none), std::exception);
  REQUIRE_THROWS_AS(read_value<std::vector<int>>(none), std::exception);
  REQUIRE_THROWS_AS(read_value<std::tuple<>>(none), std::exception);
  REQUIRE_THROWS_AS(read_value<Eigen::MatrixXd>(none), std::exception);

  // All-ones sizes: more elements than any container can hold.
  const std::string ones(64, '\xff');
  REQUIRE_THROWS_AS(read_value<std::string>(ones), std::exception);
  REQUIRE_THROWS_AS(read_value<std::vector<int>>(ones), std::exception);
  REQUIRE_THROWS_AS(read_value<std::vector<std::string>>(ones), std::exception);
  REQUIRE_THROWS_AS((read_value<std::map<int, int>>(ones)), std::exception);
  REQUIRE_THROWS_AS((read_value<std::variant<int, std::string>>(ones)), std::exception);
  REQUIRE_THROWS_AS(read_value<Eigen::MatrixXd>(ones), std::exception);
  REQUIRE_THROWS_AS(read_value<nested_t>(ones), std::exception);
}

}  // namespace
