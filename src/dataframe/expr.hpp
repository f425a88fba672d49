// Column expressions: the tree behind dx::expr, its type rules and its vectorised evaluation.
#pragma once

#include <dx/dataframe.hpp>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dataframe/kernels.hpp"

namespace dx::detail {

enum class expr_op : std::uint8_t {
  add,
  sub,
  mul,
  div,
  mod,
  neg,
  eq,
  ne,
  lt,
  le,
  gt,
  ge,
  logical_and,
  logical_or,
  logical_not,
  is_null,
  is_not_null,
};

struct expr_node {
  enum class kind : std::uint8_t { column, literal, unary, binary, starts_with, cast };
  kind k = kind::literal;
  expr_op op = expr_op::add;
  std::string text;                       // column name, string literal, or prefix
  column_type type = column_type::int64;  // literal type, or cast target
  bool null_literal = false;
  std::int64_t int_value = 0;  // int64 and timestamp literals
  double double_value = 0;
  bool bool_value = false;
  std::vector<std::shared_ptr<const expr_node>> args;

  template <class Archive>
  void serialize(Archive& ar, unsigned) {
    ar& k& op& text& type& null_literal& int_value& double_value& bool_value;
    std::uint32_t n = static_cast<std::uint32_t>(args.size());
    ar& n;
    if constexpr (Archive::is_saving::value) {
      for (const auto& a : args) ar&* const_cast<expr_node*>(a.get());
    } else {
      args.clear();
      for (std::uint32_t i = 0; i < n; ++i) {
        auto a = std::make_shared<expr_node>();
        ar&* a;
        args.push_back(std::move(a));
      }
    }
  }
};

using expr_ptr = std::shared_ptr<const expr_node>;

/// The result type of `e` over `schema`; dx::dataframe_error for an unknown column (with the
/// closest names) or operands of types the operation does not take.
column_type check_expr(const expr_node& e, const df::schema_t& schema);
/// Evaluates `e` on every row of `t` (already checked).
column eval_expr(const expr_node& e, const table& t);
/// The columns `e` reads.
void expr_columns(const expr_node& e, std::set<std::string>& out);
std::string expr_text(const expr_node& e);
/// A copy of `e` with columns renamed.
expr_ptr rename_columns(const expr_ptr& e, const std::map<std::string, std::string>& old_to_new);

}  // namespace dx::detail
