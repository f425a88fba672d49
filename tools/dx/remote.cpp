// `dx run --connect` and `dx cancel --connect`: a workflow submitted to a long-lived head
// (`dx serve`) through its HTTP API and followed there; the head, not this process, runs it, so
// the run goes on when this process ends and survives a restart of the head.
#include "commands.hpp"
#include "http_client.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

namespace dx_cli {

namespace {

using json = nlohmann::json;

/// How long a follower keeps asking a head that went away (it may be restarting).
constexpr auto head_gone_limit = std::chrono::minutes(5);

/// The string `key` of `object`, or "" when it is missing, null or not a string.
std::string text(const json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string api_error(const http_reply& r) {
  const json body = json::parse(r.body, nullptr, false);
  if (body.is_object()) {
    std::string out = text(body, "error");
    if (body.contains("problems") && body["problems"].is_array())
      for (const auto& p : body["problems"])
        if (p.is_string()) out += "\n  " + p.get<std::string>();
    if (!out.empty()) return out;
  }
  return "HTTP " + std::to_string(r.status) + (r.body.empty() ? "" : ": " + r.body.substr(0, 500));
}

int exit_code_of(const std::string& status) {
  if (status == "SUCCEEDED") return 0;
  if (status == "INTERRUPTED") return 3;
  return 1;
}

bool ended(const std::string& status) { return status == "SUCCEEDED" || status == "FAILED" || status == "CANCELLED"; }

/// Prints the run's progress every second until it ends; returns its exit code.
int follow(const std::string& address, const std::string& token, const dx::tls_options& tls, const std::string& id) {
  auto last_answer = std::chrono::steady_clock::now();
  for (;;) {
    http_reply r;
    try {
      r = http_call(address, "GET", "/api/runs/" + id, "", token, tls);
      last_answer = std::chrono::steady_clock::now();
    } catch (const std::exception& e) {
      if (std::chrono::steady_clock::now() - last_answer > head_gone_limit) {
        std::fprintf(stderr, "dx: %s; gave up following run %s (it goes on when the head is back)\n", e.what(),
                     id.c_str());
        return 3;
      }
      std::fprintf(stderr, "dx: %s; trying again\n", e.what());
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (r.status == 404 || r.status == 503) {  // a restarted head that has not resumed it yet
      std::this_thread::sleep_for(std::chrono::seconds(1));
      continue;
    }
    if (r.status != 200) {
      std::fprintf(stderr, "dx: run %s: %s\n", id.c_str(), api_error(r).c_str());
      return 1;
    }
    const json run = json::parse(r.body, nullptr, false);
    if (!run.is_object()) {
      std::fprintf(stderr, "dx: run %s: the head's answer is not JSON\n", id.c_str());
      return 1;
    }
    const std::string status = text(run, "status");
    std::size_t done = 0, all = 0;
    const json& steps = run.contains("steps") ? run["steps"] : json::array();
    for (const auto& s : steps) {
      if (!s.is_object() || (s.contains("is_subtask") && s["is_subtask"] == true)) continue;
      ++all;
      const std::string st = text(s, "status");
      done += (st == "SUCCEEDED" || st == "CACHED") ? 1 : 0;
    }
    if (ended(status)) {
      for (const auto& s : steps) {
        if (!s.is_object()) continue;
        const std::string st = text(s, "status");
        if (st == "FAILED" || st == "SKIPPED")
          std::printf("  %s %s: %s\n", text(s, "name").c_str(), st.c_str(), text(s, "error").c_str());
      }
      std::printf("%s %s\n", id.c_str(), status.c_str());
      std::fflush(stdout);
      return exit_code_of(status);
    }
    std::printf("%s: %zu of %zu steps done\n", status.c_str(), done, all);
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace

std::string read_token(const std::string& path) {
  if (path.empty()) return {};
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) {
    std::fprintf(stderr, "dx: --token-file: cannot read the token file '%s'\n", path.c_str());
    std::exit(2);
  }
  const auto first = line.find_first_not_of(" \t\r");
  const auto last = line.find_last_not_of(" \t\r");
  return first == std::string::npos ? std::string() : line.substr(first, last - first + 1);
}

int run_connected(const std::string& address, const std::string& token_file, const dx::tls_options& tls,
                  const std::string& workflow_json, const std::string& source) {
  const std::string token = read_token(token_file);
  const http_reply r = http_call(address, "POST", "/api/runs", workflow_json, token, tls);
  if (r.status == 400) {
    std::fprintf(stderr, "dx: %s: %s\n", source.c_str(), api_error(r).c_str());
    return 2;
  }
  if (r.status != 200 && r.status != 201) {
    std::fprintf(stderr, "dx: the head at %s refused the run: %s\n", address.c_str(), api_error(r).c_str());
    return 1;
  }
  const json reply = json::parse(r.body, nullptr, false);
  if (!reply.is_object() || !reply.contains("id") || !reply["id"].is_string()) {
    std::fprintf(stderr, "dx: the head at %s did not say the run's id\n", address.c_str());
    return 1;
  }
  const std::string id = reply["id"].get<std::string>();
  std::printf("run %s\ndashboard: %s://%s/\n", id.c_str(), tls.enabled() ? "https" : "http", address.c_str());
  std::fflush(stdout);
  return follow(address, token, tls, id);
}

int cancel_connected(const std::string& address, const std::string& token_file, const dx::tls_options& tls,
                     const std::string& id) {
  const std::string token = read_token(token_file);
  const http_reply r = http_call(address, "POST", "/api/runs/" + id + "/cancel", "", token, tls);
  if (r.status == 200) {
    std::printf("%s CANCELLED\n", id.c_str());
    return 0;
  }
  std::fprintf(stderr, "dx: cancel %s: %s\n", id.c_str(), api_error(r).c_str());
  return r.status == 404 ? 2 : 1;
}

}  // namespace dx_cli
