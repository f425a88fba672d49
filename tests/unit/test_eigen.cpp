// dx/eigen.hpp: Eigen matrices and arrays are serializable; they round-trip, and a size the target
// type cannot hold is a dx::protocol_error.
#include <dx/eigen.hpp>

#include <dx/error.hpp>

#include <catch2/catch.hpp>

#include <string>

static_assert(dx::serializable<Eigen::MatrixXd>);
static_assert(dx::serializable<Eigen::Array3f>);

namespace {
template <class T>
std::string encode(const T& v) {
  std::string out;
  dx::detail::write_value(out, v);
  return out;
}
}  // namespace

TEST_CASE("an Eigen matrix round-trips with its shape and values", "[eigen][serialize]") {
  Eigen::MatrixXd m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  const auto back = dx::detail::read_value<Eigen::MatrixXd>(encode(m));
  CHECK(back.rows() == 2);
  CHECK(back.cols() == 3);
  CHECK(back == m);
  const Eigen::Array3f a(1.5f, -2.f, 0.f);
  CHECK((dx::detail::read_value<Eigen::Array3f>(encode(a)) == a).all());
}

TEST_CASE("an Eigen size the target type cannot hold is a protocol_error naming it", "[eigen][error]") {
  const std::string v4 = encode(Eigen::VectorXd::Zero(4).eval());
  try {
    (void)dx::detail::read_value<Eigen::Vector3d>(v4);
    FAIL("read_value accepted 4 rows into a Vector3d");
  } catch (const dx::protocol_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("4 rows"));
  }
}
