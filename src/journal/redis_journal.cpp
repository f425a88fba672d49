// The Redis journal (redis_journal.hpp): a group of changes as the arguments of one Lua script,
// groups held in this process while Redis is away, and the queries of resume and views.
#include "journal/redis_journal.hpp"

#include "common/log.hpp"
#include "common/sha256.hpp"
#include "common/unix_time.hpp"
#include "journal/redis_client.hpp"
#include "journal/redis_lease.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <deque>
#include <random>
#include <unordered_set>

namespace dx::detail {

namespace {

// One group of changes, whole or not at all. ARGV[1]: the writer's epoch; then the ops, each a tag
// and a fixed number of fields (checked in a first pass, before any write, so that the script
// never stops half-way). Fields are length-prefixed ("<n>:<bytes>") where several share a value.
constexpr const char* commit_script = R"lua(
local P = 'dx:'
local epoch = redis.call('GET', P .. 'epoch')
if epoch ~= ARGV[1] then return redis.error_reply('DXFENCED ' .. tostring(epoch)) end
local width = {R = 7, S = 6, T = 8, B = 6, A = 4}
local n = #ARGV
local i = 2
while i <= n do
  local w = width[ARGV[i]]
  if not w or i + w - 1 > n then return redis.error_reply('DXBADGROUP at ' .. i) end
  i = i + w
end
local function lp(s) return #s .. ':' .. s end
local function log(run, key, status, time, detail)
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('ZADD', P .. 'transitions:' .. run, seq, seq .. ' ' .. lp(key) .. lp(status) .. lp(time) .. lp(detail))
end
i = 2
while i <= n do
  local op = ARGV[i]
  if op == 'R' then
    local id = ARGV[i + 1]
    redis.call('HSET', P .. 'run:' .. id, 'name', ARGV[i + 2], 'definition', ARGV[i + 3], 'status', ARGV[i + 4],
               'created_ms', ARGV[i + 5], 'updated_ms', ARGV[i + 5], 'head_pid', ARGV[i + 6])
    redis.call('RPUSH', P .. 'runs', id)
    log(id, '', ARGV[i + 4], ARGV[i + 5], '')
  elseif op == 'S' then
    local run = ARGV[i + 1]
    redis.call('HSET', P .. 'run:' .. run, 'status', ARGV[i + 2], 'updated_ms', ARGV[i + 3], 'head_pid', ARGV[i + 5])
    log(run, '', ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
  elseif op == 'T' then
    local run, key, status, time, detail, record, ck =
      ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
    local before = redis.call('HGET', P .. 'task_status:' .. run, key)
    if not before then redis.call('RPUSH', P .. 'task_order:' .. run, key) end
    if detail ~= '' or before ~= status then log(run, key, status, time, detail) end
    redis.call('HSET', P .. 'task_status:' .. run, key, status)
    redis.call('HSET', P .. 'tasks:' .. run, key, record)
    if ck ~= '' then
      redis.call('SADD', P .. 'cache_keys', ck)
      if status == 'SUCCEEDED' or status == 'CACHED' then redis.call('SET', P .. 'cache:' .. ck, lp(run) .. lp(key)) end
    end
  elseif op == 'B' then
    redis.call('HSET', P .. 'results:' .. ARGV[i + 1], ARGV[i + 2], ARGV[i + 5])
    redis.call('HSET', P .. 'result_meta:' .. ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] .. ' ' .. ARGV[i + 4])
  elseif op == 'A' then
    local k = P .. 'request:' .. ARGV[i + 1]
    if redis.call('HGET', k, 'answered_ms') == '0' then
      redis.call('HSET', k, 'answered_ms', ARGV[i + 3], 'answer', ARGV[i + 2])
      redis.call('ZREM', P .. 'requests_open', ARGV[i + 1])
    end
  end
  i = i + width[op]
end
return n
)lua";

// ARGV: run, what, requested_ms, requested_by. Returns the request's id, or 0 for an unknown run.
constexpr const char* ask_script = R"lua(
if redis.call('EXISTS', 'dx:run:' .. ARGV[1]) == 0 then return 0 end
local id = redis.call('INCR', 'dx:request_seq')
redis.call('HSET', 'dx:request:' .. id, 'run', ARGV[1], 'what', ARGV[2], 'requested_ms', ARGV[3],
           'requested_by', ARGV[4], 'answered_ms', '0', 'answer', '')
redis.call('ZADD', 'dx:requests_open', id, id)
return id
)lua";

// ARGV: id, answered_ms, answer. Returns 1 when withdrawn, 0 when answered first (or unknown).
constexpr const char* withdraw_script = R"lua(
local k = 'dx:request:' .. ARGV[1]
if redis.call('HGET', k, 'answered_ms') ~= '0' then return 0 end
redis.call('HSET', k, 'answered_ms', ARGV[2], 'answer', ARGV[3])
redis.call('ZREM', 'dx:requests_open', ARGV[1])
return 1
)lua";

/// How long a writer whose Redis is away waits between tries.
constexpr std::chrono::milliseconds retry_every{500};

void put_field(std::string& out, std::string_view field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

/// Reads the fields put_field wrote; false when `text` is not such a list.
bool read_fields(std::string_view text, std::vector<std::string_view>& fields) {
  fields.clear();
  while (!text.empty()) {
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) return false;
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + colon, n);
    if (ec != std::errc() || end != text.data() + colon || n > text.size() - colon - 1) return false;
    fields.push_back(text.substr(colon + 1, n));
    text = text.substr(colon + 1 + n);
  }
  return true;
}

std::int64_t to_int(std::string_view text) {
  std::int64_t v = 0;
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

std::string encode_task(const task_record& t) {
  std::string out;
  put_field(out, t.key);
  put_field(out, t.status);
  put_field(out, std::to_string(t.attempts));
  put_field(out, t.assigned_to);
  put_field(out, t.parent);
  put_field(out, t.is_subtask ? "1" : "0");
  put_field(out, fmt::format("{}", t.progress));
  put_field(out, t.error);
  put_field(out, t.cache_key);
  put_field(out, std::to_string(t.updated_ms));
  put_field(out, t.parameters);
  return out;
}

/// Fields of a hash reply (HGETALL) by name.
std::string field_of(const redis_value& hash, std::string_view name) {
  for (std::size_t i = 0; i + 1 < hash.elements.size(); i += 2)
    if (hash.elements[i].text == name) return hash.elements[i + 1].text;
  return {};
}

class redis_journal final : public journal {
 public:
  redis_journal(redis_location where, open_mode mode, std::chrono::milliseconds timeout,
                std::shared_ptr<redis_lease> lease)
      : where_(std::move(where)), path_(where_.text), mode_(mode), client_(where_, timeout), lease_(std::move(lease)) {}

  std::string create_run(std::string_view name, std::string_view definition_json) override {
    require_mode(open_mode::write, "create a run");
    std::string id;
    do id = new_run_id();
    while (known_runs_.count(id) != 0);
    const std::string now = std::to_string(unix_ms_now());
    buffer_.insert(buffer_.end(), {"R", id, std::string(name), std::string(definition_json), "CREATED", now,
                                   std::to_string(::getpid())});
    known_runs_.insert(id);
    return id;
  }

  void set_run_status(std::string_view run, std::string_view status, std::string_view detail) override {
    require_mode(open_mode::write, "set a run's status");
    if (!is_run_status(status)) {
      throw_error(error_kind::generic, fmt::format("cannot set run {} to status \"{}\": not a run status "
                                                   "(CREATED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)",
                                                   run, status));
    }
    require_run(run);
    buffer_.insert(buffer_.end(), {"S", std::string(run), std::string(status), std::to_string(unix_ms_now()),
                                   std::string(detail), std::to_string(::getpid())});
  }

  void store_result(std::string_view run, std::string_view key, std::string_view bytes) override {
    require_mode(open_mode::write, "store a result");
    if (key.empty()) throw_error(error_kind::generic, fmt::format("cannot store a result of run {}: empty key", run));
    require_run(run);
    buffer_.insert(buffer_.end(), {"B", std::string(run), std::string(key), std::to_string(bytes.size()),
                                   sha256_hex(bytes), std::string(bytes)});
  }

  void commit() override {
    require_mode(open_mode::write, "commit");
    if (!buffer_.empty()) {
      held_.push_back(std::move(buffer_));
      buffer_.clear();
    }
    if (held_.empty()) return;
    if (lease_->lost()) {
      held_.clear();
      throw_error(error_kind::generic, fmt::format("journal {}: {}", where_.text, lease_->lost_reason()));
    }
    using clock = std::chrono::steady_clock;
    // While Redis is away, a try every retry_every: a commit is not slowed down by each one.
    if (degraded_ && clock::now() < next_try_) return;
    const std::string epoch = std::to_string(lease_->epoch());
    while (!held_.empty()) {
      const std::vector<std::string>& group = held_.front();
      std::vector<std::string_view> args{"EVAL", commit_script, "0", epoch};
      args.insert(args.end(), group.begin(), group.end());
      redis_value v;
      try {
        v = client_.call(args);
      } catch (const redis_unreachable& e) {
        if (!degraded_) {
          degraded_ = true;
          degraded_since_ = unix_ms_now();
          log(log_level::warn, "journal {}: {}; commits are held here until it is back", where_.text, e.what());
        }
        last_unreachable_ = e.what();
        next_try_ = clock::now() + retry_every;
        return;
      }
      if (v.is_error()) {
        std::string why = v.text;
        if (why.rfind("DXFENCED", 0) == 0) {
          const std::size_t dropped = held_.size();
          held_.clear();
          const std::string now = why.substr(9);
          lease_->mark_lost(
              now == "false"
                  ? fmt::format("this head lost the lease (its epoch {}): Redis no longer holds the journal's epoch, "
                                "so it lost its data (a restart without persistence, or a flush); this head can no "
                                "longer write it ({} group(s) not written)",
                                epoch, dropped)
                  : fmt::format("this head lost the lease (its epoch {}, now {}): another head took the journal "
                                "over; this head can no longer write it ({} group(s) not written)",
                                epoch, now, dropped));
          throw_error(error_kind::generic, fmt::format("journal {}: {}", where_.text, lease_->lost_reason()));
        }
        held_.pop_front();  // the group is dropped whole: Redis refused it before writing any of it
        throw_error(error_kind::generic,
                    fmt::format("cannot commit to journal {}: Redis refused the group: {}", where_.text, why));
      }
      held_.pop_front();
      ++groups_sent_;
      if (where_.wait_replicas > 0) wait_for_replicas();
    }
    if (degraded_) {
      degraded_ = false;
      log(log_level::info, "journal {}: Redis is back; the commits held since {} are written", where_.text,
          degraded_since_);
    }
  }

  bool has_uncommitted() const noexcept override { return !buffer_.empty() || !held_.empty(); }

  journal_health health() const override {
    journal_health h;
    if (!lease_) return h;
    h.held_groups = held_.size();
    h.degraded = degraded_ && !held_.empty();
    h.fenced = lease_->lost();
    if (h.fenced) {
      h.reason = lease_->lost_reason();
    } else if (h.degraded) {
      h.reason = fmt::format(
          "Redis journal {} cannot be reached ({}); {} group(s) of changes are held by this head "
          "until it is back",
          where_.text, last_unreachable_, h.held_groups);
    }
    return h;
  }

  std::vector<run_record> runs(bool unfinished_only) override {
    const redis_value ids = call({"LRANGE", "dx:runs", "0", "-1"}, "cannot list the runs");
    std::vector<run_record> out;
    for (const auto& id : ids.elements) {
      auto r = find_run(id.text);
      if (!r || (unfinished_only && is_finished_run_status(r->status))) continue;
      out.push_back(std::move(*r));
    }
    return out;
  }

  std::optional<run_record> find_run(std::string_view run) override {
    const std::string key = fmt::format("dx:run:{}", run);
    const redis_value h = call({"HGETALL", key}, "cannot read a run");
    if (h.elements.empty()) return std::nullopt;
    return to_run(run, h);
  }

  run_state load(std::string_view run) override {
    // One MULTI/EXEC: the run, its tasks and their results are of the same commit.
    const std::string run_key = fmt::format("dx:run:{}", run), order = fmt::format("dx:task_order:{}", run),
                      tasks = fmt::format("dx:tasks:{}", run), meta = fmt::format("dx:result_meta:{}", run);
    const redis_value all =
        transaction({{"HGETALL", run_key}, {"LRANGE", order, "0", "-1"}, {"HGETALL", tasks}, {"HGETALL", meta}},
                    "cannot load a run");
    if (all.elements.size() != 4 || all.elements[0].elements.empty())
      throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, where_.text));
    run_state state;
    state.run = to_run(run, all.elements[0]);
    std::unordered_map<std::string_view, std::string_view> records, metas;
    const auto& t = all.elements[2].elements;
    for (std::size_t i = 0; i + 1 < t.size(); i += 2) records[t[i].text] = t[i + 1].text;
    const auto& m = all.elements[3].elements;
    for (std::size_t i = 0; i + 1 < m.size(); i += 2) metas[m[i].text] = m[i + 1].text;
    std::vector<std::string_view> f;
    for (const auto& k : all.elements[1].elements) {
      const auto rec = records.find(k.text);
      if (rec == records.end() || !read_fields(rec->second, f) || f.size() != 11) {
        throw_error(error_kind::generic,
                    fmt::format("journal {} is damaged: the record of task {} of run {} cannot be read", where_.text,
                                k.text, run));
      }
      task_record task;
      task.key = f[0];
      task.status = f[1];
      task.attempts = to_int(f[2]);
      task.assigned_to = f[3];
      task.parent = f[4];
      task.is_subtask = f[5] == "1";
      task.progress = std::strtod(std::string(f[6]).c_str(), nullptr);
      task.error = f[7];
      task.cache_key = f[8];
      task.updated_ms = to_int(f[9]);
      task.parameters = f[10];
      if (const auto r = metas.find(k.text); r != metas.end()) task.result = to_ref(run, k.text, r->second);
      state.tasks.push_back(std::move(task));
    }
    return state;
  }

  std::optional<std::string> result(std::string_view run, std::string_view key) override {
    const std::string results = fmt::format("dx:results:{}", run), meta = fmt::format("dx:result_meta:{}", run);
    const redis_value both =
        transaction({{"HGET", results, std::string(key)}, {"HGET", meta, std::string(key)}}, "cannot read a result");
    if (both.elements.size() != 2 || both.elements[1].is_nil()) return std::nullopt;
    const result_ref ref = to_ref(run, key, both.elements[1].text);
    const std::string& bytes = both.elements[0].text;
    if (both.elements[0].is_nil() || bytes.size() != ref.size || sha256_hex(bytes) != ref.sha256) {
      throw_error(error_kind::generic,
                  fmt::format("the result of task {} of run {} in journal {} does not match its SHA-256; the result "
                              "is lost",
                              key, run, where_.text));
    }
    return bytes;
  }

  std::optional<result_ref> cached(std::string_view cache_key) override {
    if (cache_key.empty()) return std::nullopt;
    const redis_value v = call({"GET", fmt::format("dx:cache:{}", cache_key)}, "cannot look up a cache key");
    std::vector<std::string_view> f;
    if (v.is_nil() || !read_fields(v.text, f) || f.size() != 2) return std::nullopt;
    const redis_value meta = call({"HGET", fmt::format("dx:result_meta:{}", f[0]), f[1]}, "cannot look up a result");
    if (meta.is_nil()) return std::nullopt;
    return to_ref(f[0], f[1], meta.text);
  }

  void each_cache_key(const std::function<void(std::string_view)>& fn) override {
    const redis_value keys = call({"SMEMBERS", "dx:cache_keys"}, "cannot list the cache keys");
    for (const auto& k : keys.elements) fn(k.text);
  }

  std::vector<transition> transitions(std::string_view run, std::int64_t after_seq, std::size_t limit) override {
    const std::string key = fmt::format("dx:transitions:{}", run), low = fmt::format("({}", after_seq),
                      count = std::to_string(std::min<std::size_t>(limit, 1'000'000'000));
    const redis_value rows =
        call({"ZRANGEBYSCORE", key, low, "+inf", "LIMIT", "0", count}, "cannot read the transition log");
    std::vector<transition> out;
    std::vector<std::string_view> f;
    for (const auto& row : rows.elements) {
      const std::string_view text = row.text;
      const auto space = text.find(' ');
      if (space == std::string_view::npos || !read_fields(text.substr(space + 1), f) || f.size() != 4) continue;
      out.push_back(transition{to_int(text.substr(0, space)), std::string(run), std::string(f[0]), std::string(f[1]),
                               to_int(f[2]), std::string(f[3])});
    }
    return out;
  }

  std::int64_t ask(std::string_view run, std::string_view what) override {
    require_mode(open_mode::request, "make a request");
    const std::string now = std::to_string(unix_ms_now()), pid = std::to_string(::getpid());
    const redis_value v = call({"EVAL", ask_script, "0", run, what, now, pid}, "cannot record a request");
    if (v.integer == 0) throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, where_.text));
    return v.integer;
  }

  bool withdraw(std::int64_t id, std::string_view why) override {
    require_mode(open_mode::request, "withdraw a request");
    const std::string ids = std::to_string(id), now = std::to_string(unix_ms_now()),
                      answer = fmt::format("withdrawn: {}", why);
    return call({"EVAL", withdraw_script, "0", ids, now, answer}, "cannot withdraw a request").integer == 1;
  }

  std::optional<run_request> request(std::int64_t id) override {
    const redis_value h = call({"HGETALL", fmt::format("dx:request:{}", id)}, "cannot read a request");
    if (h.elements.empty()) return std::nullopt;
    return run_request{id,
                       field_of(h, "run"),
                       field_of(h, "what"),
                       to_int(field_of(h, "requested_ms")),
                       to_int(field_of(h, "requested_by")),
                       to_int(field_of(h, "answered_ms")),
                       field_of(h, "answer")};
  }

  std::vector<run_request> open_requests() override {
    const redis_value ids = call({"ZRANGE", "dx:requests_open", "0", "-1"}, "cannot list the requests");
    std::vector<run_request> out;
    for (const auto& id : ids.elements)
      if (auto r = request(to_int(id.text)); r && r->answered_ms == 0) out.push_back(std::move(*r));
    return out;
  }

  std::int64_t last_request_id() override {
    const redis_value v = call({"GET", "dx:request_seq"}, "cannot read the requests");
    return v.is_nil() ? 0 : to_int(v.text);
  }

  void answer(std::int64_t id, std::string_view answer) override {
    require_mode(open_mode::write, "answer a request");
    buffer_.insert(buffer_.end(), {"A", std::to_string(id), std::string(answer), std::to_string(unix_ms_now())});
  }

  const std::filesystem::path& path() const noexcept override { return path_; }
  open_mode mode() const noexcept override { return mode_; }

  /// Says in the log what Redis's persistence settings promise of a commit.
  void report_durability() {
    try {
      const redis_value aof = client_.call({"CONFIG", "GET", "appendonly"});
      const redis_value sync = client_.call({"CONFIG", "GET", "appendfsync"});
      const std::string appendonly = aof.elements.size() == 2 ? aof.elements[1].text : "?";
      const std::string appendfsync = sync.elements.size() == 2 ? sync.elements[1].text : "?";
      if (appendonly == "yes" && appendfsync == "always") {
        log(log_level::info, "journal {}: Redis has appendonly yes, appendfsync always: each commit is on its disk",
            where_.text);
      } else {
        log(log_level::warn,
            "journal {}: Redis has appendonly {}, appendfsync {}: a commit is in Redis's memory when it returns and "
            "{}; set appendonly yes and appendfsync always for commits that survive a crash of Redis's machine",
            where_.text, appendonly, appendfsync,
            appendonly == "yes" ? "on its disk within about a second" : "lost if Redis restarts");
      }
    } catch (const std::exception& e) {  // CONFIG may be renamed or disabled: only the log is poorer
      log(log_level::info, "journal {}: cannot read Redis's persistence settings: {}", where_.text, e.what());
    }
  }

 private:
  void record_task(std::string_view run, const task_record& task, std::string_view detail, bool) override {
    require_mode(open_mode::write, "record a task");
    if (task.key.empty())
      throw_error(error_kind::generic, fmt::format("cannot record a task of run {}: empty key", run));
    if (!is_task_status(task.status)) {
      throw_error(error_kind::generic,
                  fmt::format("cannot record task {} of run {} with status \"{}\": not a task status (PENDING, READY, "
                              "RUNNING, RETRYING, SUCCEEDED, FAILED, CANCELLED, SKIPPED, CACHED)",
                              task.key, run, task.status));
    }
    require_run(run);
    task_record t = task;
    t.updated_ms = unix_ms_now();
    buffer_.insert(buffer_.end(), {"T", std::string(run), t.key, t.status, std::to_string(t.updated_ms),
                                   std::string(detail), encode_task(t), t.cache_key});
  }

  void require_mode(open_mode m, std::string_view what) const {
    if (mode_ != m) {
      throw_error(error_kind::generic, fmt::format("cannot {}: journal {} is open {}", what, where_.text,
                                                   mode_ == open_mode::read_only ? "read-only"
                                                   : mode_ == open_mode::write   ? "to write"
                                                                                 : "to make requests"));
    }
  }

  void require_run(std::string_view run) {
    if (known_runs_.count(std::string(run)) != 0) return;
    try {
      if (client_.call({"EXISTS", fmt::format("dx:run:{}", run)}).integer == 0)
        throw_error(error_kind::generic, fmt::format("no run {} in journal {}", run, where_.text));
    } catch (const redis_unreachable&) {
      return;  // Redis away: the run was read from it before; the record is held with its group
    }
    known_runs_.emplace(run);
  }

  redis_value call(const std::vector<std::string_view>& args, std::string_view what) {
    try {
      return client_.call_checked(args, what);
    } catch (const redis_unreachable& e) {
      throw_error(error_kind::generic, fmt::format("{} in journal {}: {}", what, where_.text, e.what()));
    }
  }

  /// Runs `commands` in one MULTI/EXEC and returns EXEC's reply (one element per command).
  redis_value transaction(const std::vector<std::vector<std::string>>& commands, std::string_view what) {
    try {
      client_.call_checked({"MULTI"}, what);
      for (const auto& c : commands) {
        std::vector<std::string_view> args(c.begin(), c.end());
        client_.call_checked(args, what);
      }
      redis_value v = client_.call_checked({"EXEC"}, what);
      for (const auto& e : v.elements)
        if (e.is_error())
          throw_error(error_kind::generic, fmt::format("{} in journal {}: {}", what, where_.text, e.text));
      return v;
    } catch (const redis_unreachable& e) {
      throw_error(error_kind::generic, fmt::format("{} in journal {}: {}", what, where_.text, e.what()));
    } catch (...) {
      client_.disconnect();  // a half-sent MULTI must not carry over to the next call
      throw;
    }
  }

  void wait_for_replicas() {
    try {
      const std::string n = std::to_string(where_.wait_replicas);
      const redis_value v = client_.call({"WAIT", n, "1000"});
      if (!v.is_error() && v.integer < where_.wait_replicas)
        log(log_level::warn, "journal {}: a commit reached {} of the {} replicas asked for within a second",
            where_.text, v.integer, where_.wait_replicas);
    } catch (const redis_unreachable& e) {
      log(log_level::warn, "journal {}: cannot wait for replicas: {}", where_.text, e.what());
    }
  }

  run_record to_run(std::string_view id, const redis_value& h) const {
    return run_record{std::string(id),
                      field_of(h, "name"),
                      field_of(h, "definition"),
                      field_of(h, "status"),
                      to_int(field_of(h, "created_ms")),
                      to_int(field_of(h, "updated_ms")),
                      to_int(field_of(h, "head_pid"))};
  }

  static result_ref to_ref(std::string_view run, std::string_view key, std::string_view meta) {
    result_ref ref;
    ref.run = run;
    ref.key = key;
    const auto space = meta.find(' ');
    ref.size = static_cast<std::uint64_t>(to_int(meta.substr(0, space)));
    if (space != std::string_view::npos) ref.sha256 = meta.substr(space + 1);
    return ref;
  }

  const redis_location where_;
  const std::filesystem::path path_;
  const open_mode mode_;
  redis_client client_;
  std::shared_ptr<redis_lease> lease_;         // write mode only
  std::vector<std::string> buffer_;            // the group being made: ops, each a tag and its fields
  std::deque<std::vector<std::string>> held_;  // committed here, not yet in Redis, oldest first
  std::unordered_set<std::string> known_runs_;
  bool degraded_ = false;
  std::int64_t degraded_since_ = 0;
  std::string last_unreachable_;
  std::chrono::steady_clock::time_point next_try_{};
  std::uint64_t groups_sent_ = 0;
};

}  // namespace

std::unique_ptr<journal> open_redis_journal(std::string_view location, journal::open_mode mode,
                                            std::chrono::milliseconds call_timeout) {
  redis_location where = parse_redis_location(location);
  const auto timeout = std::clamp(call_timeout, std::chrono::milliseconds(100), std::chrono::milliseconds(30'000));
  std::shared_ptr<redis_lease> lease;
  if (mode == journal::open_mode::write) {
    lease = redis_lease::held(where.text);
    if (!lease) lease = redis_lease::take(where.text, lease_timing{});
    if (lease->lost())
      throw_error(error_kind::generic, fmt::format("cannot write journal {}: {}", where.text, lease->lost_reason()));
  }
  auto j = std::make_unique<redis_journal>(where, mode, timeout, std::move(lease));
  if (mode == journal::open_mode::write) {
    j->report_durability();
  } else {
    j->last_request_id();  // reaches Redis now: a reader of an unreachable journal is told at open
  }
  return j;
}

}  // namespace dx::detail
