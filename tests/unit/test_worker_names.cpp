// What a head accepts as a worker's name (src/cluster/worker.hpp): the check a handshake's name
// goes through, and the host part of the names a head gives unnamed workers.
#include "cluster/worker.hpp"

#include <catch2/catch.hpp>

#include <string>

using dx::detail::host_part;
using dx::detail::worker_name_problem;

TEST_CASE("worker names: letters, digits and .-_:@+ up to 64 characters are accepted", "[names]") {
  for (const char* ok : {"alpha", "gpu-box-1", "node_17.lab", "10.0.0.5:7800", "w@host", "a+b", "A", "heads", "nonee"})
    CHECK(worker_name_problem(ok).empty());
  CHECK(worker_name_problem(std::string(64, 'x')).empty());
}

TEST_CASE("worker names: a bad name is refused with a reason that names the problem", "[names]") {
  CHECK(worker_name_problem("") == "it is empty");
  CHECK(worker_name_problem(std::string(65, 'x')) == "it has 65 characters, at most 64 are allowed");
  CHECK(worker_name_problem("a b") == "it holds ' '; only letters, digits and .-_:@+ are allowed");
  CHECK(worker_name_problem("a/b") == "it holds '/'; only letters, digits and .-_:@+ are allowed");
  CHECK(worker_name_problem("line\nbreak") == "it holds byte 0x0a; only letters, digits and .-_:@+ are allowed");
  CHECK(worker_name_problem(std::string("nul\0x", 5)) ==
        "it holds byte 0x00; only letters, digits and .-_:@+ are allowed");
  CHECK(worker_name_problem("caf\xc3\xa9") == "it holds byte 0xc3; only letters, digits and .-_:@+ are allowed");
  CHECK(worker_name_problem("<script>").find("it holds '<'") == 0);
  CHECK(worker_name_problem("head") == "'head' is the name of the head's own threads");
  CHECK(worker_name_problem("none") == "'none' means no worker in dx's metrics");
}

TEST_CASE("worker names: a host name is made fit to start a worker name", "[names]") {
  CHECK(host_part("node17") == "node17");
  CHECK(host_part("node17.cluster.example.org") == "node17");
  CHECK(host_part("my host!") == "myhost");
  CHECK(host_part("") == "worker");
  CHECK(host_part("\n\t") == "worker");
  CHECK(host_part(std::string(300, 'h')) == std::string(56, 'h'));
  // Whatever the host is called, "<host>-<n>" is a name the head accepts.
  for (const char* host : {"", "x", "a.b", "weird host\n", "\xff\xfe"})
    CHECK(worker_name_problem(host_part(host) + "-12345").empty());
  CHECK(worker_name_problem(dx::detail::host_name() + "-1").empty());
}
