// dx/eigen.hpp — Eigen dense matrices and arrays as arguments and results of remote functions.
//
//   #include <dx/eigen.hpp>
//   Eigen::VectorXd solve(Eigen::MatrixXd a, Eigen::VectorXd b);
//   DX_REMOTE(solve);   // Eigen::Matrix and Eigen::Array of serializable scalars are serializable
//
// An archive holds the rows and the columns (as int64), then the coefficients in the type's
// storage order (arithmetic scalars as one block of raw bytes). Loading resizes a dynamic-size
// object and rejects dimensions that a fixed-size (or fixed maximum size) type cannot take.
#pragma once

#include <dx/archive.hpp>
#include <dx/error.hpp>

#include <Eigen/Core>

#include <boost/serialization/array_wrapper.hpp>
#include <boost/serialization/split_free.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace dx::detail {

template <class S, int R, int C, int O, int MR, int MC>
struct serializable_impl<Eigen::Matrix<S, R, C, O, MR, MC>> : is_serializable<S> {};
template <class S, int R, int C, int O, int MR, int MC>
struct serializable_impl<Eigen::Array<S, R, C, O, MR, MC>> : is_serializable<S> {};

/// Writes rows, cols and the coefficients of a dense Eigen object.
template <class Archive, class Dense>
void save_eigen(Archive& ar, const Dense& m) {
  const std::int64_t rows = m.rows();
  const std::int64_t cols = m.cols();
  ar << rows << cols;
  using scalar = typename Dense::Scalar;
  const auto n = static_cast<std::size_t>(m.size());
  if constexpr (std::is_arithmetic_v<scalar>) {
    if (n != 0) ar << boost::serialization::make_array(m.data(), n);
  } else {
    for (std::size_t i = 0; i < n; ++i) ar << m.data()[i];
  }
}

/// Checks one dimension read from an archive against the type's compile-time size and maximum.
inline void check_eigen_dim(std::int64_t got, int fixed, int max, const char* what) {
  const bool ok = got >= 0 && got <= std::numeric_limits<int>::max() && (fixed == Eigen::Dynamic || got == fixed) &&
                  (max == Eigen::Dynamic || got <= max);
  if (!ok) {
    detail::throw_error(detail::error_kind::protocol, "dx: Eigen object in archive has " + std::to_string(got) + " " +
                                                          what + ", which the target type cannot hold");
  }
}

/// Reads what save_eigen wrote into `m`, resizing it if its size is dynamic.
template <class Archive, class Dense>
void load_eigen(Archive& ar, Dense& m) {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  ar >> rows >> cols;
  check_eigen_dim(rows, Dense::RowsAtCompileTime, Dense::MaxRowsAtCompileTime, "rows");
  check_eigen_dim(cols, Dense::ColsAtCompileTime, Dense::MaxColsAtCompileTime, "columns");
  m.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  using scalar = typename Dense::Scalar;
  const auto n = static_cast<std::size_t>(m.size());
  if constexpr (std::is_arithmetic_v<scalar>) {
    if (n != 0) ar >> boost::serialization::make_array(m.data(), n);
  } else {
    for (std::size_t i = 0; i < n; ++i) ar >> m.data()[i];
  }
}

}  // namespace dx::detail

// Boost.Serialization's free functions for Eigen::Matrix and Eigen::Array, found by argument-
// dependent lookup when an archive meets one. Loading throws dx::protocol_error for a size the type
// cannot hold. Thread-safe for distinct archives and objects; they do not block.
namespace boost::serialization {

template <class Archive, class S, int R, int C, int O, int MR, int MC>
void save(Archive& ar, const Eigen::Matrix<S, R, C, O, MR, MC>& m, unsigned) {
  dx::detail::save_eigen(ar, m);
}
template <class Archive, class S, int R, int C, int O, int MR, int MC>
void load(Archive& ar, Eigen::Matrix<S, R, C, O, MR, MC>& m, unsigned) {
  dx::detail::load_eigen(ar, m);
}
template <class Archive, class S, int R, int C, int O, int MR, int MC>
void serialize(Archive& ar, Eigen::Matrix<S, R, C, O, MR, MC>& m, unsigned version) {
  split_free(ar, m, version);
}

template <class Archive, class S, int R, int C, int O, int MR, int MC>
void save(Archive& ar, const Eigen::Array<S, R, C, O, MR, MC>& m, unsigned) {
  dx::detail::save_eigen(ar, m);
}
template <class Archive, class S, int R, int C, int O, int MR, int MC>
void load(Archive& ar, Eigen::Array<S, R, C, O, MR, MC>& m, unsigned) {
  dx::detail::load_eigen(ar, m);
}
template <class Archive, class S, int R, int C, int O, int MR, int MC>
void serialize(Archive& ar, Eigen::Array<S, R, C, O, MR, MC>& m, unsigned version) {
  split_free(ar, m, version);
}

}  // namespace boost::serialization
