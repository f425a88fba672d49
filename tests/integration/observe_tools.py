#!/usr/bin/env python3
"""Integration tests of a dx head's HTTP endpoint against the real tools that read it.

    observe_tools.py {promtool|prometheus|chromium|chromium-runs} DX_OBSERVE_JOB SOURCE_DIR ARTEFACT_DIR

Each subcommand starts dx_observe_job (a cluster with two worker processes serving /metrics,
/api/state and the dashboard), waits for its phase 1 ("phase1 done N": N tasks completed), checks
what the tool sees while the job holds its threads in phase 2 (so the completed count is stable),
then creates the release file and waits for the job to exit. Every wait is bounded and every
process started here is stopped in a finally block.

  promtool    `promtool check metrics` on the live /metrics (no lint problems); the example
              config, rules and rule unit tests; every dx_* metric the Grafana dashboard and the
              alert rules query exists in the live /metrics; the completed count and the
              application counter.
  prometheus  a real Prometheus scraping the head every second: sum(dx_tasks_completed_total)
              reaches N and up{job="dx"} is 1.
  chromium    headless Chromium renders the dashboard: its completed count and worker rows match
              /api/state; a screenshot lands in ARTEFACT_DIR/dashboard.png.
  chromium-runs  the job also runs workflows (--workflow): the dashboard's Runs card lists both
              runs, and opening each (#run=ID) draws its DAG with every step in the status
              /api/runs/ID gives, a split's chunks counted; ARTEFACT_DIR/dashboard-runs.png.

A missing tool is a skip (exit code 77, which ctest shows as skipped) unless the environment
variable CI is set, where it is a failure: there cmake/install-deps.sh should have installed it.
DX_PROMTOOL, DX_PROMETHEUS and DX_CHROMIUM override where a tool is looked for.
Python 3 standard library only.
"""

import html.parser
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
PHASE1_TIMEOUT = 60       # s: the job's start and phase 1 (a few seconds normally)
JOB_DEADLINE = 200        # s: the job gives up by itself after this (below ctest's 240 s)
EXIT_TIMEOUT = 30         # s: from the release file to the job's exit
HTTP_TIMEOUT = 10         # s: one HTTP request
TOOL_TIMEOUT = 60         # s: one run of promtool or chromium
PROMETHEUS_QUERY_TIMEOUT = 60  # s: until Prometheus has scraped the head

# Which Debian package provides each tool (cmake/install-deps.sh installs them).
TOOLS = {
    "promtool": ("DX_PROMTOOL", "promtool", "prometheus"),
    "prometheus": ("DX_PROMETHEUS", "prometheus", "prometheus"),
    "chromium": ("DX_CHROMIUM", "chromium", "chromium"),
    "chromium-runs": ("DX_CHROMIUM", "chromium", "chromium"),
}


class Failure(Exception):
    """A check that did not hold."""


def log(msg):
    print(msg, flush=True)


def check(cond, msg):
    if not cond:
        raise Failure("this does not hold: " + msg)
    log("ok: " + msg)


# ---------- tools ----------------------------------------------------------------------------------

def find_tool(name):
    """The tool's path, or exits: 77 (skipped) normally, 1 (failed) when CI is set."""
    env_var, program, package = TOOLS[name]
    override = os.environ.get(env_var)
    if override:
        path = override if os.path.isfile(override) and os.access(override, os.X_OK) else None
        where = "{}={}".format(env_var, override)
    else:
        path = shutil.which(program)
        where = "PATH"
    if path:
        return path
    if "CI" in os.environ:
        log("FAILED: {} not found ({}); cmake/install-deps.sh (`make deps`) should have installed "
            "the Debian package '{}' on CI".format(program, where, package))
        sys.exit(1)
    log("SKIPPED: {} not found ({}); `make deps` installs it (Debian package '{}')".format(
        program, where, package))
    sys.exit(SKIP)


def run_tool(args, stdin_text=None, cwd=None, timeout=TOOL_TIMEOUT):
    """Runs a tool in its own session; kills its whole process group when it overruns."""
    proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                            start_new_session=True, text=True)
    try:
        out, err = proc.communicate(stdin_text, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise Failure("{} did not finish within {} s".format(" ".join(args[:3]), timeout))
    finally:
        kill_group(proc, if_exited=True)  # helpers it left behind (Chromium's renderers)
    return proc.returncode, out, err


def kill_group(proc, sig=signal.SIGKILL, if_exited=False):
    """Signals the process group `proc` leads (it was started with start_new_session);
    with if_exited, only once `proc` itself has exited (what is left of its group)."""
    if if_exited and proc.poll() is None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc, name, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds, for a process started in its own session."""
    if proc is None:
        return
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log("{} ignored SIGTERM for {} s: killing it".format(name, grace))
    # Whatever is left of its group (children of a process that exited) goes too.
    kill_group(proc, signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log("{} (pid {}) survived SIGKILL".format(name, proc.pid))


# ---------- HTTP -----------------------------------------------------------------------------------

def http_get(url, timeout=HTTP_TIMEOUT):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode("utf-8", errors="replace")


def get_ok(url):
    status, body = http_get(url)
    if status != 200:
        raise Failure("GET {}: HTTP {}".format(url, status))
    return body


# ---------- the job --------------------------------------------------------------------------------

class Job:
    """dx_observe_job in its own session (its worker processes with it)."""

    def __init__(self, program, workdir, extra=()):
        self.release_file = os.path.join(workdir, "release")
        self.lines = queue.Queue()
        self.stdout = []
        self.stderr = []
        self.proc = subprocess.Popen([program, self.release_file, str(JOB_DEADLINE)] + list(extra),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, False), daemon=True).start()
        self.endpoint = None
        self.completed = None

    def _read(self, stream, keep, to_queue):
        for line in stream:
            keep.append(line.rstrip("\n"))
            if to_queue:
                self.lines.put(line.rstrip("\n"))
        if to_queue:
            self.lines.put(None)

    def wait_line(self, pattern, deadline, what):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("dx_observe_job: no '{}' line within the time allowed".format(what))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise Failure("dx_observe_job exited (code {}) before printing '{}'".format(
                    self.proc.wait(), what))
            m = re.fullmatch(pattern, line)
            if m:
                return m

    def start(self):
        """Waits for the endpoint and phase 1; returns (endpoint, completed)."""
        deadline = time.monotonic() + PHASE1_TIMEOUT
        self.endpoint = self.wait_line(r"(127\.0\.0\.1:\d+)", deadline, "endpoint").group(1)
        log("dx head at http://{}/".format(self.endpoint))
        self.completed = int(self.wait_line(r"phase1 done (\d+)", deadline, "phase1 done N").group(1))
        log("phase 1: {} tasks completed".format(self.completed))
        held = int(self.wait_line(r"phase2 holding (\d+)", deadline, "phase2 holding K").group(1))
        log("phase 2: {} hold tasks submitted".format(held))
        return self.endpoint, self.completed

    def workflows(self):
        """After start() of a job run with --workflow: (the finished run's id, the held run's id)."""
        deadline = time.monotonic() + PHASE1_TIMEOUT
        done = self.wait_line(r"workflow done (\S+)", deadline, "workflow done ID").group(1)
        held = self.wait_line(r"workflow held (\S+)", deadline, "workflow held ID").group(1)
        log("workflow runs: {} (done), {} (held)".format(done, held))
        return done, held

    def finish(self):
        """Releases phase 2 and waits for a clean exit."""
        with open(self.release_file, "w"):
            pass
        try:
            code = self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Failure("dx_observe_job did not exit within {} s of the release".format(EXIT_TIMEOUT))
        if code != 0:
            raise Failure("dx_observe_job exited with code {}".format(code))
        log("dx_observe_job exited cleanly")

    def cleanup(self):
        stop(self.proc, "dx_observe_job", grace=5)

    def dump(self):
        if self.stderr:
            log("--- dx_observe_job stderr (last 30 lines) ---")
            for line in self.stderr[-30:]:
                log(line)


# ---------- Prometheus text format -----------------------------------------------------------------

SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\d+)?$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def parse_exposition(text):
    """Returns ({family: type}, [(name, {label: value}, float)])."""
    types, samples = {}, []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = SAMPLE.match(line)
        if not m:
            raise Failure("cannot parse the /metrics line {!r}".format(line))
        labels = {}
        body = (m.group(2) or "{}")[1:-1]
        pos = 0
        while pos < len(body):
            lm = LABEL.match(body, pos)
            if not lm:
                raise Failure("cannot parse the labels of {!r}".format(line))
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        samples.append((m.group(1), labels, float(m.group(3))))
    return types, samples


def metric_sum(samples, name, **match):
    return sum(v for n, l, v in samples if n == name and all(l.get(k) == x for k, x in match.items()))


# ---------- dx_* names the examples query ----------------------------------------------------------

DX_NAME = re.compile(r"\bdx_[a-zA-Z0-9_]*[a-zA-Z0-9]")


def grafana_expressions(doc):
    """Every PromQL string of a Grafana dashboard: panel targets and template variable queries."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition", "query") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found


def rule_expressions(text):
    """The `expr:` values of a Prometheus rules file, block scalars (| and >) included."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value[:1] in ("|", ">"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            value = " ".join(block)
        found.append(value.strip("'\""))
    return found


def family_of(name, types):
    if name in types:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return None


# ---------- subcommands ----------------------------------------------------------------------------

def test_promtool(job, src, artefacts):
    promtool = find_tool("promtool")
    endpoint, completed = job.start()
    text = get_ok("http://{}/metrics".format(endpoint))
    with open(os.path.join(artefacts, "metrics.txt"), "w") as f:
        f.write(text)

    rc, out, err = run_tool([promtool, "check", "metrics"], stdin_text=text)
    problems = (out + err).strip()
    check(rc == 0 and not problems,
          "promtool check metrics: exit {}, no lint problems{}".format(
              rc, "" if not problems else ":\n" + problems))

    monitoring = os.path.join(src, "examples", "monitoring")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "dx-alerts.yml"],
                 ["test", "rules", "dx-alerts.test.yml"]):
        rc, out, err = run_tool([promtool] + args, cwd=monitoring)
        check(rc == 0, "promtool {} (exit {}){}".format(
            " ".join(args), rc, "" if rc == 0 else ":\n" + (out + err).strip()))

    types, samples = parse_exposition(text)
    with open(os.path.join(monitoring, "grafana-dashboard.json")) as f:
        dashboard = json.load(f)
    with open(os.path.join(monitoring, "dx-alerts.yml")) as f:
        rules = f.read()
    referenced = {}
    for origin, exprs in (("grafana-dashboard.json", grafana_expressions(dashboard)),
                          ("dx-alerts.yml", rule_expressions(rules))):
        check(len(exprs) > 0, "{}: {} expressions found".format(origin, len(exprs)))
        for e in exprs:
            for name in DX_NAME.findall(e):
                referenced.setdefault(name, set()).add(origin)
    check(len(referenced) >= 10, "the examples query {} dx_* names".format(len(referenced)))
    missing = sorted("{} (in {})".format(n, ", ".join(sorted(o)))
                     for n, o in referenced.items() if family_of(n, types) is None)
    check(not missing, "every dx_* name the dashboard and the rules query is a # TYPE family in /metrics"
          + ("" if not missing else "; missing: " + ", ".join(missing)))

    done = metric_sum(samples, "dx_tasks_completed_total")
    check(done == completed, "sum(dx_tasks_completed_total) = {} (phase 1: {})".format(done, completed))
    failed = metric_sum(samples, "dx_tasks_failed_total")
    check(failed > 0, "sum(dx_tasks_failed_total) = {} > 0".format(failed))
    rows = [v for n, l, v in samples if n == "app_rows_total" and l == {"source": "csv"}]
    check(len(rows) == 1 and types.get("app_rows_total") == "counter",
          'app_rows_total{{source="csv"}} is a counter sample ({})'.format(rows))
    check(any(n == "dx_alert_active" and l.get("rule") == "demo" for n, l, v in samples),
          'dx_alert_active{rule="demo"} is present')
    job.finish()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prom_query(base, query):
    url = "{}/api/v1/query?{}".format(base, urllib.parse.urlencode({"query": query}))
    body = json.loads(get_ok(url))
    if body.get("status") != "success":
        raise Failure("query {} failed: {}".format(query, body))
    return body["data"]["result"]


def test_prometheus(job, src, artefacts, workdir):
    prometheus = find_tool("prometheus")
    endpoint, completed = job.start()
    rules = os.path.join(src, "examples", "monitoring", "dx-alerts.yml")
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n"
                "  scrape_interval: 1s\n"
                "  scrape_timeout: 1s\n"
                "  evaluation_interval: 1s\n"
                "rule_files:\n"
                "  - {}\n"
                "scrape_configs:\n"
                "  - job_name: dx\n"
                "    metrics_path: /metrics\n"
                "    static_configs:\n"
                "      - targets: [\"{}\"]\n".format(json.dumps(rules), endpoint))
    log_path = os.path.join(artefacts, "prometheus.log")
    proc = None
    try:
        for attempt in range(3):  # the free port can be taken between the probe and the bind
            port = free_port()
            base = "http://127.0.0.1:{}".format(port)
            with open(log_path, "w") as log_file:
                proc = subprocess.Popen([prometheus, "--config.file=" + config,
                                         "--storage.tsdb.path=" + os.path.join(workdir, "tsdb"),
                                         "--web.listen-address=127.0.0.1:{}".format(port),
                                         "--log.level=warn"],
                                        stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            deadline = time.monotonic() + 30
            ready = False
            while not ready and time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = http_get(base + "/-/ready", timeout=2)[0] == 200
                except (urllib.error.URLError, OSError):
                    time.sleep(0.2)
            if proc.poll() is None:
                break
            log("prometheus exited with code {} (attempt {}); see {}".format(proc.returncode, attempt + 1, log_path))
            proc = None
        if proc is None:
            raise Failure("prometheus did not start; its log: " + log_path)
        check(ready, "prometheus ready at {} (log: {})".format(base, log_path))

        deadline = time.monotonic() + PROMETHEUS_QUERY_TIMEOUT
        value = None
        while time.monotonic() < deadline:
            result = prom_query(base, "sum(dx_tasks_completed_total)")
            value = float(result[0]["value"][1]) if result else None
            if value == completed:
                break
            time.sleep(0.5)
        check(value == completed, "prometheus: sum(dx_tasks_completed_total) = {} (phase 1: {})".format(
            value, completed))
        up = prom_query(base, 'up{job="dx"}')
        check(len(up) == 1 and float(up[0]["value"][1]) == 1, 'prometheus: up{{job="dx"}} = 1 ({})'.format(up))
        groups = json.loads(get_ok(base + "/api/v1/rules"))["data"]["groups"]
        health = {r["name"]: r.get("health") for g in groups for r in g["rules"]}
        check(len(health) > 0 and all(h in ("ok", "unknown") for h in health.values()),
              "prometheus loaded the example rules: {}".format(health))
    finally:
        stop(proc, "prometheus")
    job.finish()


class DashboardParser(html.parser.HTMLParser):
    """The completed count and the worker rows of the dashboard's DOM."""

    def __init__(self):
        super().__init__()
        self.count_depth = 0  # > 0 inside id="completed-count"
        self.count = ""
        self.table_depth = 0  # > 0 inside table id="workers"
        self.workers = []
        self.stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("br", "img", "input", "meta", "link", "hr", "col", "source", "wbr"):
            return
        self.stack.append(tag)
        if self.count_depth:
            self.count_depth += 1
        elif a.get("id") == "completed-count":
            self.count_depth = 1
        if self.table_depth:
            self.table_depth += 1
            if tag == "tr" and "data-worker" in a:
                self.workers.append(a["data-worker"])
        elif tag == "table" and a.get("id") == "workers":
            self.table_depth = 1

    def handle_endtag(self, tag):
        if tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if self.count_depth:
                self.count_depth -= 1
            if self.table_depth:
                self.table_depth -= 1
            if top == tag:
                break

    def handle_data(self, data):
        if self.count_depth:
            self.count += data


def chromium_args(chromium, profile):
    # As root Chromium needs --no-sandbox; without the background-networking flags it tries to
    # reach the internet and stalls (see ../shared/TOOLS.md).
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=" + profile, "--virtual-time-budget=5000"]


def test_chromium(job, src, artefacts, workdir):
    chromium = find_tool("chromium")
    endpoint, completed = job.start()
    url = "http://{}/".format(endpoint)

    rc, dom, err = run_tool(chromium_args(chromium, os.path.join(workdir, "profile-dom")) + ["--dump-dom", url])
    with open(os.path.join(artefacts, "dashboard-dom.html"), "w") as f:
        f.write(dom)
    check(rc == 0 and "<html" in dom, "chromium --dump-dom {} (exit {}, {} bytes){}".format(
        url, rc, len(dom), "" if rc == 0 else ":\n" + err[-2000:]))
    page = DashboardParser()
    page.feed(dom)
    page.close()
    state = json.loads(get_ok(url + "api/state"))
    page_count = page.count.strip()
    check(page_count == str(state["tasks"]["completed"]) == str(completed),
          "the dashboard's completed count {!r} = /api/state tasks.completed {} = phase 1's {}".format(
              page_count, state["tasks"]["completed"], completed))
    state_ids = sorted(w["id"] for w in state["workers"])
    # The job's two worker processes are named after this host, in the order the head started them.
    host = re.sub(r"[^A-Za-z0-9._:@+-]", "", socket.gethostname().split(".")[0])[:56] or "worker"
    check(sorted(page.workers) == state_ids == sorted(["head", host + "-1", host + "-2"]),
          "the dashboard's worker rows {} = /api/state workers {}".format(sorted(page.workers), state_ids))

    shot = os.path.join(artefacts, "dashboard.png")
    if os.path.exists(shot):
        os.remove(shot)
    rc, out, err = run_tool(chromium_args(chromium, os.path.join(workdir, "profile-shot"))
                            + ["--window-size=1400,900", "--screenshot=" + shot, url])
    check(rc == 0 and os.path.isfile(shot), "chromium --screenshot (exit {}){}".format(
        rc, "" if rc == 0 else ":\n" + err[-2000:]))
    with open(shot, "rb") as f:
        head = f.read(8)
    size = os.path.getsize(shot)
    check(head == b"\x89PNG\r\n\x1a\n" and size > 10 * 1024,
          "the screenshot is a PNG of {} bytes (> 10 KiB)".format(size))
    log("screenshot: " + shot)
    job.finish()


class RunsParser(html.parser.HTMLParser):
    """The Runs card of the dashboard's DOM: its run rows, and the steps of the DAG drawn."""

    def __init__(self):
        super().__init__()
        self.rows = {}   # run id -> data-status
        self.steps = {}  # step name -> {"status": ..., "chunks": ...}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-run" in a:
            self.rows[a["data-run"]] = a.get("data-status")
        if tag == "g" and "data-step" in a:
            self.steps[a["data-step"]] = {"status": a.get("data-status"), "chunks": a.get("data-chunks")}
        if a.get("id") == "run-title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "h3":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def test_chromium_runs(job, src, artefacts, workdir):
    chromium = find_tool("chromium")
    endpoint, _ = job.start()
    done, held = job.workflows()
    base = "http://{}/".format(endpoint)
    for run_id, expect_status in ((done, "SUCCEEDED"), (held, "RUNNING")):
        url = base + "#run=" + urllib.parse.quote(run_id)
        rc, dom, err = run_tool(chromium_args(chromium, os.path.join(workdir, "profile-runs-" + expect_status))
                                + ["--dump-dom", url])
        with open(os.path.join(artefacts, "dashboard-runs-{}.html".format(expect_status.lower())), "w") as f:
            f.write(dom)
        check(rc == 0 and "<html" in dom, "chromium --dump-dom {} (exit {}){}".format(
            url, rc, "" if rc == 0 else ":\n" + err[-2000:]))
        page = RunsParser()
        page.feed(dom)
        page.close()
        check(set(page.rows) == {done, held}, "the Runs card lists both runs: {}".format(sorted(page.rows)))
        check(page.rows.get(run_id) == expect_status,
              "run {} is shown {} ({})".format(run_id, expect_status, page.rows.get(run_id)))
        check(run_id in page.title, "the opened run's title names it: {!r}".format(page.title))
        api = json.loads(get_ok(base + "api/runs/" + urllib.parse.quote(run_id)))
        want = {s["name"]: s["status"] for s in api["steps"]}
        drawn = {name: s["status"] for name, s in page.steps.items()}
        check(drawn == want, "the DAG draws every step in its status: {} (the API: {})".format(drawn, want))
        for s in api["steps"]:
            if s.get("split"):
                by = s["subtasks"]["by_status"]
                total = s["subtasks"]["planned"] or s["subtasks"]["count"]
                chunks = "{}/{}".format(by.get("SUCCEEDED", 0) + by.get("CACHED", 0), total)
                check(page.steps[s["name"]]["chunks"] == chunks,
                      "split step {} shows {} chunks done ({})".format(s["name"], chunks, page.steps[s["name"]]))
    # Its first step waits for a thread (every one is held) or runs: READY or RUNNING.
    check(drawn.get("wait") in ("READY", "RUNNING") and drawn.get("after") == "PENDING",
          "the held run's first step is ready or running, the next waits: {}".format(drawn))

    shot = os.path.join(artefacts, "dashboard-runs.png")
    if os.path.exists(shot):
        os.remove(shot)
    rc, out, err = run_tool(chromium_args(chromium, os.path.join(workdir, "profile-runs-shot"))
                            + ["--window-size=1400,1500", "--screenshot=" + shot,
                               base + "#run=" + urllib.parse.quote(done)])
    check(rc == 0 and os.path.isfile(shot), "chromium --screenshot of the run (exit {}){}".format(
        rc, "" if rc == 0 else ":\n" + err[-2000:]))
    log("screenshot: " + shot)
    job.finish()


def main(argv):
    if len(argv) != 5 or argv[1] not in TOOLS:
        print(__doc__, file=sys.stderr)
        return 2
    sub, program, src, artefacts = argv[1], os.path.abspath(argv[2]), os.path.abspath(argv[3]), os.path.abspath(argv[4])
    find_tool(sub)  # skip (or fail on CI) before starting anything
    os.makedirs(artefacts, exist_ok=True)
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="dx-observe-{}-".format(sub))
    job = None
    try:
        job = Job(program, workdir, ["--workflow"] if sub == "chromium-runs" else [])
        if sub == "promtool":
            test_promtool(job, src, artefacts)
        elif sub == "prometheus":
            test_prometheus(job, src, artefacts, workdir)
        elif sub == "chromium-runs":
            test_chromium_runs(job, src, artefacts, workdir)
        else:
            test_chromium(job, src, artefacts, workdir)
        log("PASSED: {} ({:.1f} s)".format(sub, time.monotonic() - started))
        return 0
    except Failure as e:
        log("FAILED: {}".format(e))
        if job:
            job.dump()
        return 1
    except Exception:  # an unexpected error (a tool or the head went away): a failure, with its trace
        import traceback
        traceback.print_exc(file=sys.stdout)
        log("FAILED: {} raised an unexpected error".format(sub))
        if job:
            job.dump()
        return 1
    finally:
        if job:
            job.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
