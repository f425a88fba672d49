// dx::expr: building, type checking and vectorised evaluation.
#include "dataframe/expr.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace dx {

using detail::expr_node;
using detail::expr_op;

namespace {

std::shared_ptr<expr_node> literal_node(column_type t) {
  auto n = std::make_shared<expr_node>();
  n->k = expr_node::kind::literal;
  n->type = t;
  return n;
}

expr make_unary(expr_op op, const expr& a) {
  auto n = std::make_shared<expr_node>();
  n->k = expr_node::kind::unary;
  n->op = op;
  n->args.push_back(a.node());
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}

expr make_binary(expr_op op, const expr& a, const expr& b) {
  auto n = std::make_shared<expr_node>();
  n->k = expr_node::kind::binary;
  n->op = op;
  n->args.push_back(a.node());
  n->args.push_back(b.node());
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}

}  // namespace

expr expr::int64_literal(std::int64_t v) {
  auto n = literal_node(column_type::int64);
  n->int_value = v;
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}
expr expr::float64_literal(double v) {
  auto n = literal_node(column_type::float64);
  n->double_value = v;
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}
expr::expr(bool v) {
  auto n = literal_node(column_type::boolean);
  n->bool_value = v;
  node_ = std::move(n);
}
expr::expr(const char* v) : expr(std::string(v)) {}
expr::expr(std::string v) {
  auto n = literal_node(column_type::string);
  n->text = std::move(v);
  node_ = std::move(n);
}
expr::expr(timestamp v) {
  auto n = literal_node(column_type::timestamp);
  n->int_value = v.nanoseconds;
  node_ = std::move(n);
}

expr expr::is_null() const { return make_unary(expr_op::is_null, *this); }
expr expr::is_not_null() const { return make_unary(expr_op::is_not_null, *this); }
expr expr::starts_with(std::string prefix) const {
  auto n = std::make_shared<expr_node>();
  n->k = expr_node::kind::starts_with;
  n->text = std::move(prefix);
  n->args.push_back(node_);
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}
expr expr::cast(column_type to) const {
  auto n = std::make_shared<expr_node>();
  n->k = expr_node::kind::cast;
  n->type = to;
  n->args.push_back(node_);
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}
std::string expr::to_string() const { return detail::expr_text(*node_); }

expr col(std::string name) {
  auto n = std::make_shared<expr_node>();
  n->k = expr_node::kind::column;
  n->text = std::move(name);
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}
expr null_of(column_type type) {
  auto n = literal_node(type);
  n->null_literal = true;
  return expr(std::shared_ptr<const expr_node>(std::move(n)));
}

expr operator+(const expr& a, const expr& b) { return make_binary(expr_op::add, a, b); }
expr operator-(const expr& a, const expr& b) { return make_binary(expr_op::sub, a, b); }
expr operator*(const expr& a, const expr& b) { return make_binary(expr_op::mul, a, b); }
expr operator/(const expr& a, const expr& b) { return make_binary(expr_op::div, a, b); }
expr operator%(const expr& a, const expr& b) { return make_binary(expr_op::mod, a, b); }
expr operator-(const expr& a) { return make_unary(expr_op::neg, a); }
expr operator==(const expr& a, const expr& b) { return make_binary(expr_op::eq, a, b); }
expr operator!=(const expr& a, const expr& b) { return make_binary(expr_op::ne, a, b); }
expr operator<(const expr& a, const expr& b) { return make_binary(expr_op::lt, a, b); }
expr operator<=(const expr& a, const expr& b) { return make_binary(expr_op::le, a, b); }
expr operator>(const expr& a, const expr& b) { return make_binary(expr_op::gt, a, b); }
expr operator>=(const expr& a, const expr& b) { return make_binary(expr_op::ge, a, b); }
expr operator&&(const expr& a, const expr& b) { return make_binary(expr_op::logical_and, a, b); }
expr operator||(const expr& a, const expr& b) { return make_binary(expr_op::logical_or, a, b); }
expr operator!(const expr& a) { return make_unary(expr_op::logical_not, a); }

}  // namespace dx

namespace dx::detail {

namespace {

std::string_view op_symbol(expr_op op) {
  switch (op) {
    case expr_op::add:
      return "+";
    case expr_op::sub:
      return "-";
    case expr_op::mul:
      return "*";
    case expr_op::div:
      return "/";
    case expr_op::mod:
      return "%";
    case expr_op::neg:
      return "-";
    case expr_op::eq:
      return "==";
    case expr_op::ne:
      return "!=";
    case expr_op::lt:
      return "<";
    case expr_op::le:
      return "<=";
    case expr_op::gt:
      return ">";
    case expr_op::ge:
      return ">=";
    case expr_op::logical_and:
      return "&&";
    case expr_op::logical_or:
      return "||";
    case expr_op::logical_not:
      return "!";
    case expr_op::is_null:
      return "is_null";
    case expr_op::is_not_null:
      return "is_not_null";
  }
  return "?";
}

std::string_view op_verb(expr_op op) {
  switch (op) {
    case expr_op::add:
      return "add";
    case expr_op::sub:
      return "subtract";
    case expr_op::mul:
      return "multiply";
    case expr_op::div:
      return "divide";
    case expr_op::mod:
      return "take the remainder of";
    case expr_op::neg:
      return "negate";
    case expr_op::logical_and:
    case expr_op::logical_or:
      return "combine with a logical operator";
    case expr_op::logical_not:
      return "negate logically";
    default:
      return "compare";
  }
}

bool is_numeric(column_type t) { return t == column_type::int64 || t == column_type::float64; }
bool is_comparison(expr_op op) { return op >= expr_op::eq && op <= expr_op::ge; }

bool is_string_literal(const expr_node& e) {
  return e.k == expr_node::kind::literal && !e.null_literal && e.type == column_type::string;
}

[[noreturn]] void mismatch(const expr_node& e, std::string_view what) {
  dx::detail::throw_error(dx::detail::error_kind::dataframe,
                          fmt::format("type mismatch in {}: {}", expr_text(e), what));
}

}  // namespace

std::string expr_text(const expr_node& e) {
  switch (e.k) {
    case expr_node::kind::column:
      return e.text;
    case expr_node::kind::literal:
      if (e.null_literal) return fmt::format("null<{}>", type_name(e.type));
      switch (e.type) {
        case column_type::int64:
          return fmt::format("{}", e.int_value);
        case column_type::float64:
          return fmt::format("{}", e.double_value);
        case column_type::boolean:
          return e.bool_value ? "true" : "false";
        case column_type::string:
          return fmt::format("\"{}\"", e.text);
        case column_type::timestamp:
          return format_timestamp(timestamp{e.int_value});
      }
      return "?";
    case expr_node::kind::unary:
      if (e.op == expr_op::is_null || e.op == expr_op::is_not_null) {
        return fmt::format("{}.{}()", expr_text(*e.args[0]), op_symbol(e.op));
      }
      return fmt::format("{}{}", op_symbol(e.op), expr_text(*e.args[0]));
    case expr_node::kind::binary:
      return fmt::format("({} {} {})", expr_text(*e.args[0]), op_symbol(e.op), expr_text(*e.args[1]));
    case expr_node::kind::starts_with:
      return fmt::format("{}.starts_with(\"{}\")", expr_text(*e.args[0]), e.text);
    case expr_node::kind::cast:
      return fmt::format("{}.cast({})", expr_text(*e.args[0]), type_name(e.type));
  }
  return "?";
}

void expr_columns(const expr_node& e, std::set<std::string>& out) {
  if (e.k == expr_node::kind::column) out.insert(e.text);
  for (const auto& a : e.args) expr_columns(*a, out);
}

expr_ptr rename_columns(const expr_ptr& e, const std::map<std::string, std::string>& old_to_new) {
  auto copy = std::make_shared<expr_node>(*e);
  if (copy->k == expr_node::kind::column) {
    if (auto it = old_to_new.find(copy->text); it != old_to_new.end()) copy->text = it->second;
  }
  for (auto& a : copy->args) a = rename_columns(a, old_to_new);
  return copy;
}

column_type check_expr(const expr_node& e, const df::schema_t& schema) {
  switch (e.k) {
    case expr_node::kind::column: {
      for (const auto& [n, t] : schema) {
        if (n == e.text) return t;
      }
      std::vector<std::string> names;
      for (const auto& [n, t] : schema) names.push_back(n);
      dx::detail::throw_error(dx::detail::error_kind::dataframe, unknown_column_message(e.text, names));
    }
    case expr_node::kind::literal:
      return e.type;
    case expr_node::kind::starts_with: {
      const column_type t = check_expr(*e.args[0], schema);
      if (t != column_type::string) mismatch(e, fmt::format("starts_with needs a string, not {}", type_name(t)));
      return column_type::boolean;
    }
    case expr_node::kind::cast:
      check_expr(*e.args[0], schema);
      return e.type;
    case expr_node::kind::unary: {
      const column_type t = check_expr(*e.args[0], schema);
      switch (e.op) {
        case expr_op::is_null:
        case expr_op::is_not_null:
          return column_type::boolean;
        case expr_op::neg:
          if (!is_numeric(t)) mismatch(e, fmt::format("cannot negate {}", type_name(t)));
          return t;
        case expr_op::logical_not:
          if (t != column_type::boolean) mismatch(e, fmt::format("! needs a bool, not {}", type_name(t)));
          return t;
        default:
          mismatch(e, "unknown unary operation");
      }
    }
    case expr_node::kind::binary: {
      const column_type a = check_expr(*e.args[0], schema);
      const column_type b = check_expr(*e.args[1], schema);
      const expr_op op = e.op;
      if (op == expr_op::logical_and || op == expr_op::logical_or) {
        if (a != column_type::boolean || b != column_type::boolean) {
          mismatch(e, fmt::format("{} needs bools, not {} and {}", op_symbol(op), type_name(a), type_name(b)));
        }
        return column_type::boolean;
      }
      if (is_comparison(op)) {
        const bool ok =
            (is_numeric(a) && is_numeric(b)) || a == b ||
            (a == column_type::timestamp && is_string_literal(*e.args[1]) && parse_timestamp(e.args[1]->text)) ||
            (b == column_type::timestamp && is_string_literal(*e.args[0]) && parse_timestamp(e.args[0]->text));
        if (!ok) mismatch(e, fmt::format("cannot compare {} with {}", type_name(a), type_name(b)));
        return column_type::boolean;
      }
      // Arithmetic.
      if (a == column_type::timestamp || b == column_type::timestamp) {
        if (op == expr_op::sub && a == column_type::timestamp && b == column_type::timestamp) return column_type::int64;
        if ((op == expr_op::add || op == expr_op::sub) && a == column_type::timestamp && b == column_type::int64) {
          return column_type::timestamp;
        }
        if (op == expr_op::add && a == column_type::int64 && b == column_type::timestamp) return column_type::timestamp;
      }
      if (!is_numeric(a) || !is_numeric(b)) {
        mismatch(e, fmt::format("cannot {} {} and {}", op_verb(op), type_name(a), type_name(b)));
      }
      if (op == expr_op::div) return column_type::float64;
      return a == column_type::int64 && b == column_type::int64 ? column_type::int64 : column_type::float64;
    }
  }
  mismatch(e, "unknown expression");
}

// ---------------------------------------------------------------------------------------------
// Evaluation. Operands are columns or scalars; loops are specialised for (column, column),
// (column, scalar) and (scalar, column) so that the compiler vectorises them.

namespace {

struct operand {
  bool scalar = false;
  bool scalar_null = false;
  column values;  // when !scalar
  column_type type = column_type::int64;
  std::int64_t i = 0;  // int64 / timestamp / bool scalar
  double d = 0;
  std::string s;

  std::size_t size_or(std::size_t rows) const { return scalar ? rows : values.size(); }
  bool null_at(std::size_t r) const { return scalar ? scalar_null : values.is_null(r); }
  bool has_nulls() const { return scalar ? scalar_null : values.has_nulls(); }
};

operand eval_operand(const expr_node& e, const table& t);

// Both operands as float64: a column's values (converted when int64) or a scalar.
// A column's values or one scalar, for the loops below.
template <class T>
struct value_view {
  const T* p = nullptr;
  T scalar{};
  bool is_scalar = false;
};
using int_view = value_view<std::int64_t>;
using bool_view = value_view<std::uint8_t>;

// float64 values, converted from int64 when needed.
struct float_view : value_view<double> {
  std::vector<double> owned;
};

float_view as_float(const operand& o) {
  float_view v;
  if (o.scalar) {
    v.is_scalar = true;
    v.scalar = o.type == column_type::float64 ? o.d : static_cast<double>(o.i);
    return v;
  }
  if (o.values.type() == column_type::float64) {
    v.p = o.values.float64_data();
    return v;
  }
  const std::int64_t* src = o.values.int64_data();
  v.owned.resize(o.values.size());
  for (std::size_t r = 0; r < v.owned.size(); ++r) v.owned[r] = static_cast<double>(src[r]);
  v.p = v.owned.data();
  return v;
}

int_view as_int(const operand& o) {
  int_view v;
  if (o.scalar) {
    v.is_scalar = true;
    v.scalar = o.i;
  } else if (o.values.type() == column_type::boolean) {
    // Not reached: bools are not arithmetic operands.
  } else {
    v.p = o.values.int64_data();
  }
  return v;
}

template <class Out, class A, class B, class F>
void loop(std::size_t n, const A& a, const B& b, Out* out, F f) {
  if (!a.is_scalar && !b.is_scalar) {
    for (std::size_t r = 0; r < n; ++r) out[r] = f(a.p[r], b.p[r]);
  } else if (!a.is_scalar) {
    const auto y = b.scalar;
    for (std::size_t r = 0; r < n; ++r) out[r] = f(a.p[r], y);
  } else if (!b.is_scalar) {
    const auto x = a.scalar;
    for (std::size_t r = 0; r < n; ++r) out[r] = f(x, b.p[r]);
  } else {
    const auto v = f(a.scalar, b.scalar);
    for (std::size_t r = 0; r < n; ++r) out[r] = v;
  }
}

// Validity of a binary result: present where both operands are.
std::vector<std::uint8_t> both_valid(const operand& a, const operand& b, std::size_t n, bool& any_null) {
  std::vector<std::uint8_t> valid;
  any_null = a.has_nulls() || b.has_nulls();
  if (!any_null) return valid;
  valid.resize(n);
  for (std::size_t r = 0; r < n; ++r) valid[r] = !(a.null_at(r) || b.null_at(r));
  return valid;
}

template <class F>
column compare_strings(const operand& a, const operand& b, std::size_t n, F cmp) {
  std::vector<std::uint8_t> out(n);
  for (std::size_t r = 0; r < n; ++r) {
    const std::string_view x = a.scalar ? std::string_view(a.s) : a.values.string_at(r);
    const std::string_view y = b.scalar ? std::string_view(b.s) : b.values.string_at(r);
    out[r] = cmp(x.compare(y));
  }
  bool any_null = false;
  auto valid = both_valid(a, b, n, any_null);
  return df::make_bool(std::move(out), any_null ? &valid : nullptr);
}

int compare_result(expr_op op, int c) {
  switch (op) {
    case expr_op::eq:
      return c == 0;
    case expr_op::ne:
      return c != 0;
    case expr_op::lt:
      return c < 0;
    case expr_op::le:
      return c <= 0;
    case expr_op::gt:
      return c > 0;
    default:
      return c >= 0;
  }
}

template <class A, class B>
void compare_loop(expr_op op, std::size_t n, const A& a, const B& b, std::uint8_t* out) {
  switch (op) {
    case expr_op::eq:
      loop(n, a, b, out, [](auto x, auto y) -> std::uint8_t { return x == y; });
      break;
    case expr_op::ne:
      loop(n, a, b, out, [](auto x, auto y) -> std::uint8_t { return x != y; });
      break;
    case expr_op::lt:
      loop(n, a, b, out, [](auto x, auto y) -> std::uint8_t { return x < y; });
      break;
    case expr_op::le:
      loop(n, a, b, out, [](auto x, auto y) -> std::uint8_t { return x <= y; });
      break;
    case expr_op::gt:
      loop(n, a, b, out, [](auto x, auto y) -> std::uint8_t { return x > y; });
      break;
    default:
      loop(n, a, b, out, [](auto x, auto y) -> std::uint8_t { return x >= y; });
      break;
  }
}

bool_view as_bool(const operand& o) {
  bool_view v;
  if (o.scalar) {
    v.is_scalar = true;
    v.scalar = o.i != 0;
  } else {
    v.p = o.values.bool_data();
  }
  return v;
}

column eval_compare(const expr_node& e, operand a, operand b, std::size_t n) {
  // A string literal compared with a timestamp is read as a time.
  if (a.type == column_type::timestamp && b.type == column_type::string && b.scalar) {
    b.type = column_type::timestamp;
    b.i = parse_timestamp(b.s).value_or(timestamp{}).nanoseconds;
  } else if (b.type == column_type::timestamp && a.type == column_type::string && a.scalar) {
    a.type = column_type::timestamp;
    a.i = parse_timestamp(a.s).value_or(timestamp{}).nanoseconds;
  }
  std::vector<std::uint8_t> out(n);
  if (a.type == column_type::string) {
    return compare_strings(a, b, n, [op = e.op](int c) -> std::uint8_t { return compare_result(op, c); });
  }
  if (a.type == column_type::boolean) {
    compare_loop(e.op, n, as_bool(a), as_bool(b), out.data());
  } else if ((a.type == column_type::int64 || a.type == column_type::timestamp) &&
             (b.type == column_type::int64 || b.type == column_type::timestamp)) {
    compare_loop(e.op, n, as_int(a), as_int(b), out.data());
  } else {
    compare_loop(e.op, n, as_float(a), as_float(b), out.data());
  }
  bool any_null = false;
  auto valid = both_valid(a, b, n, any_null);
  return df::make_bool(std::move(out), any_null ? &valid : nullptr);
}

column eval_arithmetic(const expr_node& e, const operand& a, const operand& b, column_type result, std::size_t n) {
  bool any_null = false;
  auto valid = both_valid(a, b, n, any_null);
  if (result == column_type::float64) {
    std::vector<double> out(n);
    const float_view x = as_float(a), y = as_float(b);
    switch (e.op) {
      case expr_op::add:
        loop(n, x, y, out.data(), [](double p, double q) { return p + q; });
        break;
      case expr_op::sub:
        loop(n, x, y, out.data(), [](double p, double q) { return p - q; });
        break;
      case expr_op::mul:
        loop(n, x, y, out.data(), [](double p, double q) { return p * q; });
        break;
      case expr_op::div:
        loop(n, x, y, out.data(), [](double p, double q) { return p / q; });
        break;
      default:
        // The sign follows the divisor, as in Python and pandas.
        loop(n, x, y, out.data(), [](double p, double q) {
          const double m = std::fmod(p, q);
          return m != 0 && ((m < 0) != (q < 0)) ? m + q : m;
        });
        break;
    }
    return df::make_float64(std::move(out), any_null ? &valid : nullptr);
  }
  std::vector<std::int64_t> out(n);
  const int_view x = as_int(a), y = as_int(b);
  // Wrapping arithmetic through unsigned: overflow is defined, as in numpy.
  using u = std::uint64_t;
  switch (e.op) {
    case expr_op::add:
      loop(n, x, y, out.data(), [](std::int64_t p, std::int64_t q) { return static_cast<std::int64_t>(u(p) + u(q)); });
      break;
    case expr_op::sub:
      loop(n, x, y, out.data(), [](std::int64_t p, std::int64_t q) { return static_cast<std::int64_t>(u(p) - u(q)); });
      break;
    case expr_op::mul:
      loop(n, x, y, out.data(), [](std::int64_t p, std::int64_t q) { return static_cast<std::int64_t>(u(p) * u(q)); });
      break;
    default: {
      // Integer remainder by zero is null (pandas gives NaN); the sign follows the divisor as in Python.
      if (!any_null) valid.assign(n, 1);
      for (std::size_t r = 0; r < n; ++r) {
        const std::int64_t p = x.is_scalar ? x.scalar : x.p[r];
        const std::int64_t q = y.is_scalar ? y.scalar : y.p[r];
        if (q == 0 || (q == -1 && p == std::numeric_limits<std::int64_t>::min())) {
          out[r] = 0;
          if (q == 0) {
            valid[r] = 0;
            any_null = true;
          }
          continue;
        }
        std::int64_t m = p % q;
        if (m != 0 && ((m < 0) != (q < 0))) m += q;
        out[r] = m;
      }
      break;
    }
  }
  const column_type type = (a.type == column_type::timestamp || b.type == column_type::timestamp) &&
                                   !(a.type == column_type::timestamp && b.type == column_type::timestamp)
                               ? column_type::timestamp
                               : column_type::int64;
  return type == column_type::timestamp ? df::make_timestamp(std::move(out), any_null ? &valid : nullptr)
                                        : df::make_int64(std::move(out), any_null ? &valid : nullptr);
}

column eval_logical(expr_op op, const operand& a, const operand& b, std::size_t n) {
  // SQL's three-valued logic: false && null is false, true || null is true.
  std::vector<std::uint8_t> out(n), valid;
  const bool nulls = a.has_nulls() || b.has_nulls();
  const bool_view x = as_bool(a), y = as_bool(b);
  if (op == expr_op::logical_and) {
    loop(n, x, y, out.data(), [](std::uint8_t p, std::uint8_t q) -> std::uint8_t { return p & q; });
  } else {
    loop(n, x, y, out.data(), [](std::uint8_t p, std::uint8_t q) -> std::uint8_t { return p | q; });
  }
  if (!nulls) return df::make_bool(std::move(out));
  valid.resize(n);
  bool any_null = false;
  for (std::size_t r = 0; r < n; ++r) {
    const bool na = a.null_at(r), nb = b.null_at(r);
    const bool va = x.is_scalar ? x.scalar : x.p[r];
    const bool vb = y.is_scalar ? y.scalar : y.p[r];
    if (op == expr_op::logical_and) {
      if ((!na && !va) || (!nb && !vb)) {
        out[r] = 0;
        valid[r] = 1;
      } else {
        valid[r] = !(na || nb);
      }
    } else {
      if ((!na && va) || (!nb && vb)) {
        out[r] = 1;
        valid[r] = 1;
      } else {
        valid[r] = !(na || nb);
      }
    }
    any_null |= !valid[r];
  }
  return df::make_bool(std::move(out), any_null ? &valid : nullptr);
}

column broadcast(const operand& o, std::size_t n) {
  if (!o.scalar) return o.values;
  if (o.scalar_null) return column::nulls(o.type, n);
  switch (o.type) {
    case column_type::int64:
      return df::make_int64(std::vector<std::int64_t>(n, o.i));
    case column_type::timestamp:
      return df::make_timestamp(std::vector<std::int64_t>(n, o.i));
    case column_type::float64:
      return df::make_float64(std::vector<double>(n, o.d));
    case column_type::boolean:
      return df::make_bool(std::vector<std::uint8_t>(n, o.i ? 1 : 0));
    case column_type::string: {
      df::column_builder b(column_type::string, n);
      for (std::size_t r = 0; r < n; ++r) b.append_string(o.s);
      return b.finish();
    }
  }
  return o.values;
}

column eval_cast(const column& c, column_type to) {
  const std::size_t n = c.size();
  if (c.type() == to) return c;
  df::column_builder b(to, n);
  for (std::size_t r = 0; r < n; ++r) {
    if (c.is_null(r)) {
      b.append_null();
      continue;
    }
    switch (to) {
      case column_type::string:
        b.append_string(c.format(r));
        break;
      case column_type::float64:
        if (c.type() == column_type::string) {
          const std::string_view s = c.string_at(r);
          double v = 0;
          auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
          if (ec == std::errc{} && p == s.data() + s.size())
            b.append_float64(v);
          else
            b.append_null();
        } else {
          b.append_float64(c.numeric_at(r));
        }
        break;
      case column_type::int64:
      case column_type::timestamp:
        if (c.type() == column_type::string) {
          const std::string_view s = c.string_at(r);
          if (to == column_type::timestamp) {
            if (auto t = parse_timestamp(s))
              b.append_int64(t->nanoseconds);
            else
              b.append_null();
            break;
          }
          std::int64_t v = 0;
          auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
          if (ec == std::errc{} && p == s.data() + s.size())
            b.append_int64(v);
          else
            b.append_null();
        } else if (c.type() == column_type::float64) {
          const double v = c.float64_at(r);
          if (std::isfinite(v) && std::fabs(v) < 9.2e18)
            b.append_int64(static_cast<std::int64_t>(v));
          else
            b.append_null();
        } else if (c.type() == column_type::boolean) {
          b.append_int64(c.bool_at(r) ? 1 : 0);
        } else {
          b.append_int64(c.int64_data()[r]);
        }
        break;
      case column_type::boolean:
        if (c.type() == column_type::string) {
          const std::string_view s = c.string_at(r);
          if (s == "true" || s == "True" || s == "TRUE" || s == "1")
            b.append_bool(true);
          else if (s == "false" || s == "False" || s == "FALSE" || s == "0")
            b.append_bool(false);
          else
            b.append_null();
        } else {
          b.append_bool(c.numeric_at(r) != 0);
        }
        break;
    }
  }
  return b.finish();
}

operand eval_operand(const expr_node& e, const table& t) {
  operand o;
  if (e.k == expr_node::kind::literal) {
    o.scalar = true;
    o.scalar_null = e.null_literal;
    o.type = e.type;
    o.i = e.type == column_type::boolean ? (e.bool_value ? 1 : 0) : e.int_value;
    o.d = e.double_value;
    o.s = e.text;
    return o;
  }
  o.values = eval_expr(e, t);
  o.type = o.values.type();
  return o;
}

}  // namespace

column eval_expr(const expr_node& e, const table& t) {
  const std::size_t n = t.num_rows();
  switch (e.k) {
    case expr_node::kind::column:
      return t[e.text];
    case expr_node::kind::literal:
      return broadcast(eval_operand(e, t), n);
    case expr_node::kind::cast:
      return eval_cast(eval_expr(*e.args[0], t), e.type);
    case expr_node::kind::starts_with: {
      const column c = eval_expr(*e.args[0], t);
      std::vector<std::uint8_t> out(n);
      for (std::size_t r = 0; r < n; ++r) out[r] = c.string_at(r).starts_with(e.text);
      std::vector<std::uint8_t> valid;
      const bool nulls = c.has_nulls();
      if (nulls) {
        valid.resize(n);
        for (std::size_t r = 0; r < n; ++r) valid[r] = !c.is_null(r);
      }
      return df::make_bool(std::move(out), nulls ? &valid : nullptr);
    }
    case expr_node::kind::unary: {
      const operand a = eval_operand(*e.args[0], t);
      if (e.op == expr_op::is_null || e.op == expr_op::is_not_null) {
        const bool want_null = e.op == expr_op::is_null;
        std::vector<std::uint8_t> out(n);
        for (std::size_t r = 0; r < n; ++r) out[r] = a.null_at(r) == want_null;
        return df::make_bool(std::move(out));
      }
      const column c = broadcast(a, n);
      if (e.op == expr_op::logical_not) {
        std::vector<std::uint8_t> out(n);
        const std::uint8_t* p = c.bool_data();
        for (std::size_t r = 0; r < n; ++r) out[r] = p[r] ^ 1u;
        const bool nulls = c.has_nulls();
        std::vector<std::uint8_t> valid;
        if (nulls) {
          valid.resize(n);
          for (std::size_t r = 0; r < n; ++r) valid[r] = !c.is_null(r);
        }
        return df::make_bool(std::move(out), nulls ? &valid : nullptr);
      }
      operand zero;
      zero.scalar = true;
      zero.type = c.type();
      operand value;
      value.values = c;
      value.type = c.type();
      expr_node sub;
      sub.op = expr_op::sub;
      return eval_arithmetic(sub, zero, value, c.type(), n);
    }
    case expr_node::kind::binary: {
      const operand a = eval_operand(*e.args[0], t);
      const operand b = eval_operand(*e.args[1], t);
      if (is_comparison(e.op)) return eval_compare(e, a, b, n);
      if (e.op == expr_op::logical_and || e.op == expr_op::logical_or) return eval_logical(e.op, a, b, n);
      column_type result;
      if (a.type == column_type::timestamp && b.type == column_type::timestamp) {
        result = column_type::int64;
      } else if (a.type == column_type::timestamp || b.type == column_type::timestamp) {
        result = column_type::int64;
      } else if (e.op == expr_op::div || a.type == column_type::float64 || b.type == column_type::float64) {
        result = column_type::float64;
      } else {
        result = column_type::int64;
      }
      return eval_arithmetic(e, a, b, result, n);
    }
  }
  return column{};
}

}  // namespace dx::detail
