// The encoders of dx::table and dx::column (see builtin_codec in dx/serialize.hpp), compiled once
// here so that a remote function taking or returning a table instantiates no Boost code.
#include <dx/archive.hpp>
#include <dx/table.hpp>

#include <span>
#include <string>

namespace dx::detail {

void builtin_codec<table>::write(std::string& out, const table& v) { archive_codec<table>::write(out, v); }
table builtin_codec<table>::read(std::span<const char> in) { return archive_codec<table>::read(in); }
void builtin_codec<column>::write(std::string& out, const column& v) { archive_codec<column>::write(out, v); }
column builtin_codec<column>::read(std::span<const char> in) { return archive_codec<column>::read(in); }

}  // namespace dx::detail
