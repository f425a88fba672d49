// Replication at the head: a task submitted with replicate{} or deadline{} never runs itself; its
// copies do, on distinct workers (the scheduler's spread groups), and send their results here.
// The first `quorum` results that agree become the task's result, committed once; the others
// count against their workers' reliability. Copies that are late get a twin (soft deadline) or
// are reissued (hard deadline). Adaptive replication trusts a worker's lone result with
// probability 1 - 1/n after n consecutive valid ones (BOINC's rule); a worker found wrong too
// often is quarantined.
#include "cluster/head_state.hpp"
#include "common/atomic_file.hpp"
#include "common/log.hpp"

#include <dx/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace dx::detail {

namespace {

/// Consecutive valid results before a worker's lone result may be trusted (BOINC's threshold),
/// and the largest share of invalid results among its checked ones that still allows it: a
/// worker wrong one time in ten earns streaks of ten often enough, and would then be believed.
/// The share is judged on a record long enough to show it (1 / the share: 100 checked results):
/// a worker wrong one time in ten starts with ten valid results a third of the time, and trusted
/// then it would be believed many times over while the copies that could catch it are still out;
/// with 100 it does so once in 40,000. Answers in a disagreement not settled yet count as invalid
/// for this, in the share of its settled disagreements the worker lost (one half before any, by
/// Laplace's rule): an invalid result is known one copy later than a valid one (the copy that
/// breaks the tie), and while the work queued waits, a worker wrong one time in ten could show 200
/// valid results and no invalid one; a good worker loses few of the disagreements it is part of.
constexpr std::uint64_t trust_after = 10;
constexpr double trust_max_invalid_share = 0.01;
constexpr std::uint64_t trust_min_checked = 100;
/// A worker is quarantined once it has this many invalid results and they are this share of its
/// checked ones. Between trust (at most 1% invalid) and this, a worker is always replicated; a
/// worker wrong one time in ten is let go after about 50 checked results rather than costing a
/// second copy of everything it runs for as long as it stays.
constexpr std::uint64_t quarantine_min_invalid = 5;
constexpr double quarantine_share = 0.05;
/// Copies in all for a task with deadlines only: the first and up to three reissues or twins.
constexpr std::uint32_t deadline_only_copies = 4;

}  // namespace

std::shared_ptr<replica_set> head_impl::replica_set_for(const task_options& opts, const remote_function& fn,
                                                        const std::string& kind) const {
  auto set = std::make_shared<replica_set>();
  if (opts.replication) {
    set->rules = *opts.replication;
  } else {
    set->rules.copies = 1;
    set->rules.quorum = 1;
  }
  if (opts.deadlines) set->deadline = *opts.deadlines;
  const replicate& r = set->rules;
  const auto bad = [&](const std::string& why) {
    throw_error(error_kind::generic, fmt::format("dx: task {} cannot be replicated as asked: {}", fn.name, why));
  };
  if (r.copies < 1 || r.copies > 1000) bad(fmt::format("copies must be from 1 to 1000, got {}", r.copies));
  if (r.quorum < 1 || r.quorum > r.copies)
    bad(fmt::format("quorum must be from 1 to copies ({}), got {}", r.copies, r.quorum));
  set->max_copies = r.max_copies != 0                       ? r.max_copies
                    : (!opts.replication && opts.deadlines) ? deadline_only_copies
                                                            : std::max(2 * r.copies, r.copies + 1);
  if (set->max_copies < r.copies)
    bad(fmt::format("max_copies ({}) must be at least copies ({})", set->max_copies, r.copies));
  if (!(set->deadline.soft_factor >= 0) || !std::isfinite(set->deadline.soft_factor))
    bad("the soft deadline's factor must be a number of at least 0");
  if (set->deadline.hard.count() < 0) bad("the hard deadline must not be negative");
  switch (r.compare.kind) {
    case comparison::kind_t::exact:
      break;
    case comparison::kind_t::tolerance:
      if (!(r.compare.relative >= 0) || !(r.compare.absolute >= 0))
        bad("a tolerance must be made of numbers of at least 0");
      set->tolerance = fn.tolerance;  // null: its result holds no numbers, compared exactly
      break;
    case comparison::kind_t::named:
      set->comparator = find_comparator(r.compare.name);
      if (!set->comparator)
        bad(fmt::format("no comparator is registered under '{}' (DX_COMPARATOR) in this process", r.compare.name));
      break;
  }
  set->kind = kind;
  set->priority = opts.priority;
  set->size_hint = opts.hint.size;
  for (const auto& [name, amount] : opts.resources.amounts) set->needs.emplace_back(name, amount);
  return set;
}

void head_impl::issue_copies_locked(task_entry& t, std::uint32_t n) {
  replica_set& set = *t.replicas;
  const double now = now_seconds();
  for (std::uint32_t i = 0; i < n && set.issued < set.max_copies; ++i) {
    const std::uint64_t id = next_task_++;
    task_entry& c = tasks_[id];
    c.id = id;
    c.function = t.function;
    c.kind = t.kind;
    c.args = t.args;
    c.replicas = t.replicas;
    c.copy_of = t.id;
    sched::task_spec spec;
    spec.id = id;
    spec.kind = set.kind;
    // Copies issued once answers are in (to check them, or for a late copy) go before the first
    // copies of other tasks: a task waiting on a check holds its dependents, and workers earn
    // trust only as their results are checked.
    spec.priority =
        set.issued >= set.rules.copies || (set.rules.adaptive && set.issued >= 1) ? set.priority + 1 : set.priority;
    spec.size_hint = set.size_hint;
    for (const auto& [name, amount] : set.needs) spec.needs[name] = amount;
    for (const arg_slot& a : c.args) {
      if (!a.ref) {
        spec.input_bytes += a.bytes.size();
        continue;
      }
      // The task holds its inputs until it settles; a copy only keeps their lineage.
      ++tasks_.at(a.ref).lineage_refs;
      spec.inputs.push_back(a.ref);
    }
    spec.spread_group = t.id;
    spec.spread_hosts = set.rules.distinct_hosts;
    spec.avoid = set.answered;
    sched_->task_submitted(spec, now);
    sched_->task_ready(id, now);
    ++set.issued;
    ++copies_issued_;
    set.live.push_back(id);
  }
}

bool head_impl::agree(const replica_set& set, const replica_set::answer& a, const replica_set::answer& b) const {
  if (!a.bytes || !b.bytes) return !a.bytes && !b.bytes && a.error == b.error;
  if (*a.bytes == *b.bytes) return true;
  try {
    if (set.comparator) return set.comparator(*a.bytes, *b.bytes);
    if (set.tolerance) return set.tolerance(*a.bytes, *b.bytes, set.rules.compare.relative, set.rules.compare.absolute);
  } catch (const std::exception& e) {
    // A result that does not decode agrees with nothing.
    log(log_level::info, "a copy's result of task {} does not decode for comparison: {}", set.task, e.what());
  }
  return false;
}

void head_impl::copy_answered_locked(task_entry& copy, worker_rec& w, std::shared_ptr<const std::string> bytes,
                                     std::exception_ptr error, std::string error_text, deferred& d) {
  const std::shared_ptr<replica_set> keep = copy.replicas;
  replica_set& set = *keep;
  std::erase(set.live, copy.id);
  if (std::find(set.answered.begin(), set.answered.end(), w.sid) == set.answered.end()) set.answered.push_back(w.sid);
  if (copy.overdue) ++reliability_locked(w.id).late;
  replica_set::answer a{w.id, std::move(bytes), std::move(error_text), std::move(error)};
  erase_locked(copy.id);
  if (set.settled) {
    // A late answer (its task settled meanwhile): still checked, and counted for its worker.
    if (set.canonical)
      record_checked_locked(a.worker, agree(set, a, replica_set::answer{{}, set.canonical, {}, {}}), d);
    return;
  }
  set.answers.push_back(std::move(a));
  const std::size_t index = set.answers.size() - 1;
  bool placed = false;
  for (auto& g : set.groups) {
    if (agree(set, set.answers[g.front()], set.answers[index])) {
      g.push_back(index);
      placed = true;
      break;
    }
  }
  if (!placed) set.groups.push_back({index});
  if (set.groups.size() > 1) {
    // A disagreement: every answer so far (this one alone when it was already there) counts as
    // disputed for its worker until the task settles.
    const std::size_t from = set.disputants.empty() ? 0 : index;
    for (std::size_t i = from; i <= index; ++i) {
      set.disputants.push_back(set.answers[i].worker);
      ++reliability_locked(set.answers[i].worker).disputed;
    }
  }
  evaluate_quorum_locked(set, w.sid, d);
}

void head_impl::evaluate_quorum_locked(replica_set& set, sched::worker_id last, deferred& d) {
  auto it = tasks_.find(set.task);
  if (it == tasks_.end() || set.settled) return;
  task_entry& t = it->second;
  const replicate& r = set.rules;
  const std::vector<std::size_t>* winner = nullptr;
  std::size_t largest = 0;
  for (const auto& g : set.groups) {
    largest = std::max(largest, g.size());
    if (!winner && g.size() >= r.quorum) winner = &g;
  }
  // Adaptive replication: the one copy issued so far answered; a worker with a long clean record
  // (at least 100 checked results, at most 1% invalid) is believed alone, with probability
  // 1 - 1/n (n: its consecutive valid results).
  if (!winner && r.adaptive && set.answers.size() == 1 && set.answers[0].bytes && set.live.empty() && r.quorum > 1) {
    const reliability_rec& rec = reliability_locked(set.answers[0].worker);
    const std::uint64_t n = rec.consecutive_valid;
    const std::uint64_t checked = rec.valid + rec.invalid + rec.disputed;
    const double likely_lost = static_cast<double>(rec.disputed) * static_cast<double>(rec.disputes_lost + 1) /
                               static_cast<double>(rec.disputes_won + rec.disputes_lost + 2);
    const bool clean = checked >= trust_min_checked && static_cast<double>(rec.invalid) + likely_lost <=
                                                           trust_max_invalid_share * static_cast<double>(checked);
    replica_draws_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = replica_draws_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    const double draw = static_cast<double>((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
    if (clean && n >= trust_after && draw < 1.0 - 1.0 / static_cast<double>(n)) {
      ++trusted_alone_;
      winner = &set.groups.front();
    }
  }
  if (winner) {
    set.settled = true;
    if (!set.disputants.empty()) {
      for (std::size_t i = 0; i < set.answers.size(); ++i) {
        reliability_rec& rec = reliability_locked(set.answers[i].worker);
        ++(std::find(winner->begin(), winner->end(), i) != winner->end() ? rec.disputes_won : rec.disputes_lost);
      }
    }
    end_disputes_locked(set);
    const replica_set::answer& rep = set.answers[winner->front()];
    const bool checked = winner->size() > 1 || set.answers.size() > 1;
    if (checked)
      for (std::size_t i = 0; i < set.answers.size(); ++i)
        record_checked_locked(set.answers[i].worker, std::find(winner->begin(), winner->end(), i) != winner->end(), d);
    cancel_copies_locked(set, true);
    if (rep.bytes) {
      set.canonical = rep.bytes;
      commit_result_locked(t, rep.bytes, d);
    } else {
      fail_locked(t.id, rep.exception, d, by_sid_locked(last));
    }
    return;
  }
  // More copies when those still out cannot make a quorum even if they all agree.
  const std::size_t still_out = set.live.size();
  const std::size_t needed = r.quorum - std::min<std::size_t>(largest, r.quorum);
  std::size_t want = needed > still_out ? needed - still_out : 0;
  if (r.adaptive && set.answers.size() == 1 && set.issued == 1 && r.copies > 1)
    want = std::max<std::size_t>(want, r.copies - 1);  // not trusted: replicated as asked
  if (want > 0 && set.issued < set.max_copies && !shutting_down_) {
    issue_copies_locked(t, static_cast<std::uint32_t>(want));
    return;
  }
  if (still_out > 0) return;
  // No quorum can form any more: the task fails naming the disagreement.
  set.settled = true;
  end_disputes_locked(set);
  ++quorums_failed_;
  std::string groups;
  for (const auto& g : set.groups) {
    std::vector<std::string> names;
    for (std::size_t i : g) names.push_back(set.answers[i].worker);
    const auto& rep = set.answers[g.front()];
    groups += fmt::format("{}[{}]{}", groups.empty() ? "" : ", ", fmt::join(names, " "),
                          rep.bytes ? fmt::format(" {} bytes", rep.bytes->size()) : " threw " + rep.error);
  }
  const std::string what = fmt::format(
      "task {} ({}) found no quorum: {} of {} copies had to agree, and their {} answers fell in {} "
      "groups that disagree: {}",
      t.id, t.function, r.quorum, set.issued, set.answers.size(), set.groups.size(), groups);
  log(log_level::warn, "{}", what);
  fail_locked(t.id, make_error(error_kind::generic, what), d, by_sid_locked(last));
}

void head_impl::end_disputes_locked(replica_set& set) {
  for (const std::string& worker : set.disputants) {
    reliability_rec& r = reliability_locked(worker);
    if (r.disputed > 0) --r.disputed;
  }
  set.disputants.clear();
}

void head_impl::commit_result_locked(task_entry& t, std::shared_ptr<const std::string> bytes, deferred& d) {
  t.result_size = bytes->size();
  sched_->task_finished(t.id, sched::no_worker, now_seconds(), 0, t.result_size, false);
  t.inline_result = std::move(bytes);
  count_finished_locked(t);
  if (t.future && !t.delivered) deliver_locked(t, d);
  wake_dependents_locked(t, d);
  maybe_release_data_locked(t);
  if (t.lineage_refs == 0) erase_locked(t.id);
}

void head_impl::cancel_copies_locked(replica_set& set, bool keep_overdue) {
  std::vector<std::uint64_t> drop;
  for (std::uint64_t id : set.live) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) continue;
    if (keep_overdue && it->second.overdue) continue;  // its late answer is still checked
    drop.push_back(id);
  }
  for (std::uint64_t id : drop) {
    std::erase(set.live, id);
    sched_->task_cancelled(id, now_seconds(), false);  // tells its worker when it was sent one
    erase_locked(id);
  }
}

void head_impl::drop_copy_locked(task_entry& c, deferred& d) {
  const std::shared_ptr<replica_set> keep = c.replicas;
  std::erase(keep->live, c.id);
  if (!is_finished_locked(c.id)) sched_->task_cancelled(c.id, now_seconds(), false);
  erase_locked(c.id);
  evaluate_quorum_locked(*keep, sched::no_worker, d);
}

void head_impl::copy_started_locked(task_entry& c) {
  const replica_set& set = *c.replicas;
  if (set.deadline.soft_factor <= 0 || c.speculated) return;
  const double predicted = sched_->predicted_seconds(c.id);
  if (predicted <= 0) return;
  const double elapsed = c.running_since >= 0 ? now_seconds() - c.running_since : 0;
  const double wait = std::max(0.0, set.deadline.soft_factor * predicted - elapsed);
  add_timer_locked(task_timer{
      head_clock::now() + std::chrono::duration_cast<head_clock::duration>(std::chrono::duration<double>(wait)), c.id,
      0, c.attempt, timer_kind::soft_deadline});
}

void head_impl::copy_deadline_locked(task_entry& c, bool hard, deferred&) {
  replica_set& set = *c.replicas;
  auto it = tasks_.find(set.task);
  if (set.settled || it == tasks_.end()) return;
  if (set.issued >= set.max_copies) return;
  if (hard) {
    if (c.overdue) return;
    c.overdue = true;
    ++copies_reissued_;
    log(log_level::info, "copy {} of task {} ({}) is past its hard deadline of {}: issued again elsewhere", c.id,
        set.task, c.function, describe_limit(set.deadline.hard.count()));
  } else {
    if (c.speculated || c.overdue) return;
    c.speculated = true;
    ++copies_speculative_;
    log(log_level::info, "copy {} of task {} ({}) runs past {}x its prediction: a speculative twin is issued", c.id,
        set.task, c.function, set.deadline.soft_factor);
  }
  issue_copies_locked(it->second, 1);
}

void head_impl::record_checked_locked(const std::string& worker, bool valid, deferred& d) {
  reliability_rec& r = reliability_locked(worker);
  if (valid) {
    ++r.valid;
    ++r.consecutive_valid;
    return;
  }
  ++r.invalid;
  r.consecutive_valid = 0;
  const double share = static_cast<double>(r.invalid) / static_cast<double>(r.valid + r.invalid);
  if (r.quarantined || r.invalid < quarantine_min_invalid || share < quarantine_share) return;
  auto w = workers_.find(worker);
  const std::string why = fmt::format(
      "worker {} is quarantined: {} of its {} checked results were invalid ({:.0f}%, the limit is {:.0f}% from {} "
      "invalid); it receives no more work",
      worker, r.invalid, r.valid + r.invalid, 100 * share, 100 * quarantine_share, quarantine_min_invalid);
  r.quarantined = true;
  if (w != workers_.end()) quarantine_locked(*w->second, why, d);
  save_reliability_locked();
}

void head_impl::quarantine_locked(worker_rec& w, const std::string& why, deferred& d) {
  log(log_level::warn, "{}", why);
  if (!w.local && (w.state == worker_state::active || w.state == worker_state::leaving)) {
    // It is told why and let go; its tasks go elsewhere (handed back as from a leaving worker),
    // results held only there are recomputed where still needed, and its name may not join again.
    if (w.conn) w.conn->send(wire::encode(wire::shutdown_msg{why}));
    w.state = worker_state::leaving;
    remove_worker_locked(w, d);
    w.state = worker_state::quarantined;
  }
  alert a;
  a.kind = alert_kind::worker_quarantined;
  a.subject = w.id;
  a.message = why;
  a.value = static_cast<double>(reliability_locked(w.id).invalid);
  a.threshold = quarantine_share;
  a.time = std::chrono::system_clock::now();
  alerts_.raise(std::move(a));
  tick_cv_.notify_all();
}

// ---- the record kept beside the cost model ----------------------------------------------------------
// One line per worker: "name valid invalid lost late consecutive_valid quarantined", after a
// first line "dx-reliability 1". Names hold no spaces (worker_name_problem).

void head_impl::load_reliability() {
  std::ifstream in(reliability_path_);
  if (!in) return;
  std::string line;
  if (!std::getline(in, line) || line != "dx-reliability 1") {
    log(log_level::warn,
        "{} is not a record of workers' reliability (its first line is not 'dx-reliability 1'); "
        "starting without one",
        reliability_path_.string());
    return;
  }
  std::size_t n = 1;
  while (std::getline(in, line)) {
    ++n;
    std::istringstream fields(line);
    std::string name;
    reliability_rec r;
    int quarantined = 0;
    if (!(fields >> name >> r.valid >> r.invalid >> r.lost >> r.late >> r.consecutive_valid >> quarantined) ||
        (quarantined != 0 && quarantined != 1)) {
      log(log_level::warn, "{} line {} is not a worker's record; it is skipped", reliability_path_.string(), n);
      continue;
    }
    r.quarantined = quarantined == 1;
    reliability_[name] = r;
  }
}

void head_impl::save_reliability_locked() const {
  if (reliability_path_.empty() || reliability_.empty()) return;
  std::string text = "dx-reliability 1\n";
  for (const auto& [name, r] : reliability_)
    text += fmt::format("{} {} {} {} {} {} {}\n", name, r.valid, r.invalid, r.lost, r.late, r.consecutive_valid,
                        r.quarantined ? 1 : 0);
  try {
    std::filesystem::create_directories(reliability_path_.parent_path());
    write_file_atomically(reliability_path_, text);
  } catch (const std::exception& e) {
    log(log_level::warn, "workers' reliability was not saved: {}", e.what());
  }
}

}  // namespace dx::detail
