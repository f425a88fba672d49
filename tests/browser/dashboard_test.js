#!/usr/bin/env node
// The dashboard's workflow pages in a real browser: Debian's Chromium driven through the DevTools
// protocol by puppeteer-core (installed by cmake/install-deps.sh into tests/browser/node_modules,
// never with a browser of its own).
//
//   node dashboard_test.js --dx PATH/dx --out DIR [--bench N]
//
// It starts `dx serve` with two local workers, its HTTP endpoint on 127.0.0.1:0 and a token, opens
// the dashboard and: checks the worker table; types a workflow with a mistake into the editor and
// sees the problem next to its step, then a good one, submits it and watches every step turn
// SUCCEEDED over the WebSocket /api/events; opens a step's panel with its result's preview; submits
// a long run, cancels it with the Cancel button and runs it again with Resume; checks that a POST without the
// token is refused (401) from the page and from outside; opens a run of 10,000 steps and times its
// first render. Screenshots land in DIR. With --bench N it only times the 10,000-step render N times
// and prints the median. Exit 0: passed, 1: failed, 77: Chromium, node or puppeteer-core is absent
// (ctest shows a skip) unless CI is set.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawn } = require('child_process');

const SKIP = 77;
const args = process.argv.slice(2);
function arg(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const DX = arg('--dx') && path.resolve(arg('--dx'));
const OUT = path.resolve(arg('--out', 'browser-artefacts'));
const BENCH = Number(arg('--bench', '0'));
const CHROMIUM = process.env.DX_CHROMIUM || '/usr/bin/chromium';
const MODULES = process.env.DX_NODE_MODULES || path.join(__dirname, 'node_modules');
const BIG = 10000;

function skip(why) {
  if (process.env.CI) { console.error('FAILED: ' + why + ' (CI is set: cmake/install-deps.sh should have installed it)'); process.exit(1); }
  console.log('SKIPPED: ' + why + '; cmake/install-deps.sh installs it');
  process.exit(SKIP);
}
if (!DX || !fs.existsSync(DX)) { console.error('usage: dashboard_test.js --dx PATH/dx --out DIR [--bench N]'); process.exit(2); }
if (!fs.existsSync(CHROMIUM)) skip('no Chromium at ' + CHROMIUM);
let puppeteer;
try { puppeteer = require(path.join(MODULES, 'puppeteer-core')); } catch (e) { skip('no puppeteer-core in ' + MODULES); }

function log(msg) { console.log(msg); }
function check(cond, what) {
  if (!cond) throw new Error('this does not hold: ' + what);
  log('ok: ' + what);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the head ----------------------------------------------------------------------------------
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'dx-browser-'));
const TOKEN = 'browser-test-' + process.pid + '-' + Date.now();
fs.writeFileSync(path.join(work, 'dx.token'), TOKEN + '\n', { mode: 0o600 });
let serve = null, browser = null;

function startServe() {
  return new Promise((resolve, reject) => {
    const p = spawn(DX, ['serve', '--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--token-file',
      path.join(work, 'dx.token'), '--workers', '2', '--journal', path.join(work, 'journal.sqlite')],
      { cwd: work, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    serve = p;
    let out = '';
    const timer = setTimeout(() => reject(new Error('dx serve did not print its HTTP address within 30 s:\n' + out)), 30000);
    const onData = (d) => {
      out += d;
      fs.appendFileSync(path.join(OUT, 'dx-serve.log'), d);
      const m = /dashboard at (http:\/\/[^\s]+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    p.stdout.on('data', onData);
    p.stderr.on('data', onData);
    p.on('exit', (code) => { clearTimeout(timer); reject(new Error('dx serve exited (' + code + '):\n' + out)); });
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

function request(base, method, route, body, token) {
  return new Promise((resolve, reject) => {
    const u = new URL(route, base);
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body || '') };
    if (token) headers.Authorization = 'Bearer ' + token;
    const req = http.request(u, { method, headers, timeout: 30000 }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s: ' + method + ' ' + route)));
    req.end(body || '');
  });
}

// ---- the workflows -----------------------------------------------------------------------------
const BAD = JSON.stringify({ name: 'browser', steps: [
  { name: 'fetch', command: ['sh', '-c', 'echo fetched'] },
  { name: 'count', command: ['sh', '-c', 'echo 42'], after: ['fecth'] }] }, null, 2);
const GOOD = JSON.stringify({ name: 'browser', steps: [
  { name: 'fetch', command: ['sh', '-c', 'echo fetched'] },
  { name: 'count', command: ['sh', '-c', 'echo 42'], after: ['fetch'] },
  { name: 'sum', command: ['sh', '-c', 'echo 43'], after: ['fetch'] },
  { name: 'report', command: ['sh', '-c', 'echo report'], after: ['count', 'sum'] }] }, null, 2);
const LONG = JSON.stringify({ name: 'long', steps: [
  { name: 'wait', command: ['sleep', '300'] },
  { name: 'after-wait', command: ['true'], after: ['wait'] }] });
// 10,000 steps: a gate that sleeps, then 100 chains of 100 quick steps (a layered graph of 101
// layers); nothing but the gate runs while the page is timed.
function bigWorkflow() {
  const steps = [{ name: 'gate', command: ['sleep', '600'] }];
  for (let k = 0; k < BIG - 1; k++) {
    const layer = Math.floor(k / 100), chain = k % 100;
    steps.push({ name: 's' + k, command: ['true'], after: [layer ? 's' + (k - 100) : 'gate'], cache: false, priority: chain % 3 });
  }
  return JSON.stringify({ name: 'big', steps });
}

// ---- the browser -------------------------------------------------------------------------------
async function launch() {
  return puppeteer.launch({
    executablePath: CHROMIUM, headless: true, userDataDir: path.join(work, 'profile'),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--window-size=1400,1000'],
    defaultViewport: { width: 1400, height: 1000 }, protocolTimeout: 60000 });
}
async function shot(page, name) {
  const file = path.join(OUT, name);
  await page.screenshot({ path: file, fullPage: true });
  log('screenshot: ' + file);
}
async function setEditor(page, text) {
  await page.$eval('#wf-text', (ta) => { ta.value = ''; });
  await page.click('#wf-text');
  await page.keyboard.sendCharacter(text);  // one input event, as a paste
}
async function openedRun(page) {
  await page.waitForFunction(() => /run=/.test(location.hash), { timeout: 15000 });
  return page.evaluate(() => decodeURIComponent(/run=([^&]*)/.exec(location.hash)[1]));
}

// Opens the dashboard on the big run in a fresh page; ms from navigation to the DAG drawn.
async function timeBigRender(id) {
  const page = await browser.newPage();
  try {
    await page.goto(base + '#run=' + encodeURIComponent(id), { waitUntil: 'domcontentloaded' });
    await page.waitForFunction((rid) => window.dxFirstDag && window.dxFirstDag.run === rid, { timeout: 60000, polling: 20 }, id);
    const r = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const c = document.getElementById('dag-canvas');
      const f = window.dxFirstDag;
      return { total: f.at, fetchAndDraw: f.fetchAndDrawMs, fetch: f.fetchMs, layout: f.layoutMs, render: f.renderMs, mode: document.body.dataset.dagMode,
               counts: JSON.parse(c.dataset.counts || '{}'), visible: Number(c.dataset.visible), html: nav ? nav.responseEnd : 0 };
    });
    return { page, r };
  } catch (e) { await page.close(); throw e; }
}

let base = '';
async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'dx-serve.log'), '');
  base = await startServe();
  log('dx serve at ' + base + ' (work dir ' + work + ')');
  browser = await launch();
  log('browser: ' + await browser.version());

  if (BENCH > 0) {
    const big = await request(base, 'POST', 'api/runs', bigWorkflow(), TOKEN);
    check(big.status === 201, 'the 10,000-step run starts (' + big.status + ')');
    const id = JSON.parse(big.text).id;
    const totals = [], draws = [], fetches = [], layouts = [], renders = [];
    for (let i = 0; i < BENCH; i++) {
      const { page, r } = await timeBigRender(id);
      totals.push(r.total); draws.push(r.fetchAndDraw); fetches.push(r.fetch); layouts.push(r.layout); renders.push(r.render);
      log(`run ${i + 1}: first render ${r.total.toFixed(0)} ms after navigation (the run's fetch ${r.fetch.toFixed(0)} ms, then layout ${r.layout.toFixed(0)} ms of the page's ${r.render.toFixed(0)} ms), ${r.mode}, ${r.visible} boxes in view`);
      if (i === 0) await shot(page, 'dashboard-10000.png');
      await page.close();
    }
    const med = (a) => { const s = a.slice().sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
    const mm = (a) => `${med(a).toFixed(0)} ms [${Math.min(...a).toFixed(0)}-${Math.max(...a).toFixed(0)}]`;
    log(`median [min-max] of ${BENCH}: first render after navigation ${mm(totals)}; the run's fetch (2 MB of JSON) ${mm(fetches)}; layout ${mm(layouts)}; page's work after the fetch ${mm(renders)}`);
    await request(base, 'POST', 'api/runs/' + id + '/cancel', '', TOKEN);
    return;
  }

  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(base, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => Number(document.body.dataset.updates) > 0 && document.querySelectorAll('#workers tr[data-worker]').length >= 2, { timeout: 30000 });
  check(true, 'the dashboard shows /api/state with both workers in its table');

  // The token, kept in sessionStorage for the page's POSTs.
  await page.type('#token', TOKEN);
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => sessionStorage.getItem('dx.token')) === TOKEN, 'the token is kept in sessionStorage');

  // A mistake is named next to its step; the preview marks the step.
  await setEditor(page, BAD);
  await page.waitForSelector('#wf-problems li[data-step="count"]', { timeout: 5000 });
  const badText = await page.$eval('#wf-problems li[data-step="count"]', (li) => li.textContent);
  check(/fecth/.test(badText), 'the unknown dependency is named next to its step: ' + badText);
  check(await page.$eval('#wf-dag g.step[data-step="count"]', (g) => g.classList.contains('problem')), 'the preview marks the step');
  await setEditor(page, '{"name": "x", "steps": [');
  await page.waitForFunction(() => /not JSON \(line/.test(document.getElementById('wf-problems').textContent), { timeout: 5000 });
  check(true, 'broken JSON is named with its line and column');
  await setEditor(page, GOOD);
  await page.waitForFunction(() => document.getElementById('wf-problems').dataset.count === '0' && document.querySelectorAll('#wf-dag g.step').length === 4, { timeout: 5000 });
  check(true, 'the good workflow has no problems and a preview of 4 steps');
  await shot(page, 'dashboard-editor.png');

  // Submit, then every step turns SUCCEEDED.
  await page.click('#wf-submit');
  const first = await openedRun(page);
  log('submitted: ' + first);
  await page.waitForFunction(() => {
    const g = document.querySelectorAll('#dag g.step');
    return g.length === 4 && Array.from(g).every((x) => x.dataset.status === 'SUCCEEDED');
  }, { timeout: 60000 });
  check(true, 'every step of the submitted run turns SUCCEEDED in the DAG');
  await page.waitForFunction((id) => { const tr = document.querySelector('#runs tr[data-run="' + id + '"]'); return tr && tr.dataset.status === 'SUCCEEDED'; }, { timeout: 15000 }, first);
  check(true, 'the runs table shows the run SUCCEEDED');
  const live = await page.evaluate(() => ({ mode: document.body.dataset.live, events: Number(document.body.dataset.events || 0) }));
  check(live.mode === 'ws' && live.events > 0, 'the page heard the run over the WebSocket /api/events (' + live.events + ' events), not by polling');

  // A step's panel: its worker and attempts.
  await page.click('#dag g.step[data-step="report"]');
  await page.waitForSelector('#step-panel[data-step="report"]:not([hidden])', { timeout: 5000 });
  const panel = await page.$eval('#step-panel', (p) => p.textContent);
  check(/attempts/.test(panel) && /worker/.test(panel), 'a click opens the step\'s panel with its attempts and worker');
  await page.waitForFunction(() => { const pre = document.querySelector('#step-panel pre.result'); return pre && /report/.test(pre.textContent); }, { timeout: 5000 });
  check(true, 'the panel previews the step\'s result (the end of its output)');
  await shot(page, 'dashboard-run.png');

  // A long run, cancelled with the button.
  await setEditor(page, LONG);
  await page.waitForFunction(() => document.getElementById('wf-problems').dataset.count === '0', { timeout: 5000 });
  await page.click('#wf-submit');
  await page.waitForFunction((prev) => /run=/.test(location.hash) && decodeURIComponent(/run=([^&]*)/.exec(location.hash)[1]) !== prev, { timeout: 15000 }, first);
  const second = await openedRun(page);
  await page.waitForFunction(() => { const g = document.querySelector('#dag g.step[data-step="wait"]'); return g && g.dataset.status === 'RUNNING'; }, { timeout: 30000 });
  check(true, 'the long run\'s first step runs');
  await page.waitForFunction(() => !document.getElementById('run-cancel').disabled, { timeout: 5000 });
  await page.click('#run-cancel');
  await page.waitForFunction((id) => {
    const tr = document.querySelector('#runs tr[data-run="' + id + '"]');
    return document.getElementById('run-status').textContent === 'CANCELLED' && tr && tr.dataset.status === 'CANCELLED';
  }, { timeout: 30000 }, second);
  check(true, 'the Cancel button cancels the long run (' + second + ')');
  await shot(page, 'dashboard-cancelled.png');
  // Resumed with the button, it runs again; cancelled again from outside, the page hears it.
  await page.waitForFunction(() => !document.getElementById('run-resume').disabled, { timeout: 5000 });
  await page.click('#run-resume');
  await page.waitForFunction(() => { const g = document.querySelector('#dag g.step[data-step="wait"]'); return document.getElementById('run-status').textContent === 'RUNNING' && g && g.dataset.status === 'RUNNING'; }, { timeout: 30000 });
  check(true, 'the Resume button runs the cancelled run again');
  const again = await request(base, 'POST', 'api/runs/' + second + '/cancel', '', TOKEN);
  check(again.status === 200, 'cancelled again over the API (' + again.status + ')');
  await page.waitForFunction(() => document.getElementById('run-status').textContent === 'CANCELLED', { timeout: 30000 });
  check(true, 'and the page shows it cancelled');

  // Without the token: refused.
  const fromPage = await page.evaluate(() => fetch('api/runs', { method: 'POST', body: '{}' }).then((r) => r.status));
  check(fromPage === 401, 'a POST from the page without the token is refused (' + fromPage + ')');
  const outside = await request(base, 'POST', 'api/runs', GOOD, null);
  check(outside.status === 401, 'a POST from outside without the token is refused (' + outside.status + ')');
  const wrong = await request(base, 'POST', 'api/runs/' + second + '/cancel', '', 'not-the-token');
  check(wrong.status === 401, 'a POST with another token is refused (' + wrong.status + ')');

  // A run of 10,000 steps: drawn on the canvas, its first render timed.
  const big = await request(base, 'POST', 'api/runs', bigWorkflow(), TOKEN);
  check(big.status === 201, 'a run of 10,000 steps starts (' + big.status + ')');
  const bigId = JSON.parse(big.text).id;
  const { page: bp, r } = await timeBigRender(bigId);
  const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
  check(r.mode === 'canvas' && total === BIG && r.visible > 0, `the 10,000 steps are laid out and drawn on the canvas (${r.visible} boxes in view)`);
  log(`first render of the 10,000-step run: ${r.total.toFixed(0)} ms after navigation (fetch+layout+draw ${r.fetchAndDraw.toFixed(0)} ms); timing is not asserted`);
  // Events as /api/events sends them recolour the DAG without a refetch; an unknown shape refetches.
  const before = await bp.evaluate(() => performance.getEntriesByType('resource').filter((e) => /api\/runs\/r-/.test(e.name)).length);
  const counts = await bp.evaluate((id) => {
    window.dxDashboard.applyEvents({ events: [{ type: 'task', run: id, key: 's5', status: 'SUCCEEDED', attempts: 1, worker: 'vm-1' },
                                              { type: 'task', run: id, key: 's6', status: 'FAILED', attempts: 3, worker: 'vm-2' }] });
    return new Promise((r) => requestAnimationFrame(() => r(JSON.parse(document.getElementById('dag-canvas').dataset.counts))));
  }, bigId);
  const after = await bp.evaluate(() => performance.getEntriesByType('resource').filter((e) => /api\/runs\/r-/.test(e.name)).length);
  // In the next frame, before any refetch could answer (the live socket's own events may ask for
  // one meanwhile, so the number of fetches is not compared).
  check(counts.SUCCEEDED === 1 && counts.FAILED === 1, 'task events recolour steps in place: ' + JSON.stringify(counts) + ' (fetches of the run: ' + before + ' then ' + after + ')');
  await bp.evaluate(() => window.dxDashboard.applyEvents({ something: 'else' }));
  await bp.waitForFunction((n) => performance.getEntriesByType('resource').filter((e) => /api\/runs\/r-/.test(e.name)).length > n, { timeout: 5000 }, after);
  check(true, 'a message of an unknown shape makes the page refetch the run');
  await bp.click('#dag-canvas', { offset: { x: 20, y: 20 } });
  await bp.waitForSelector('#step-panel[data-step="gate"]:not([hidden])', { timeout: 5000 });
  check(true, 'a click on the canvas opens the step under it (gate)');
  await shot(bp, 'dashboard-10000.png');
  await bp.close();
  await request(base, 'POST', 'api/runs/' + bigId + '/cancel', '', TOKEN);

  check(errors.length === 0, 'no script errors on the page' + (errors.length ? ': ' + errors.join('; ') : ''));
}

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (serve && serve.exitCode === null) {
    serve.removeAllListeners('exit');
    const done = new Promise((r) => serve.once('exit', r));
    serve.kill('SIGTERM');
    const t = setTimeout(() => { try { process.kill(-serve.pid, 'SIGKILL'); } catch (e) { /* gone */ } }, 15000);
    await done;
    clearTimeout(t);
  }
  fs.rmSync(work, { recursive: true, force: true });
}

const deadline = setTimeout(() => { console.error('FAILED: the test did not end within 200 s'); cleanup().finally(() => process.exit(1)); }, 200000);
main().then(async () => {
  clearTimeout(deadline);
  await cleanup();
  log('passed; artefacts in ' + OUT);
  process.exit(0);
}, async (e) => {
  clearTimeout(deadline);
  console.error('FAILED: ' + (e && e.stack ? e.stack : e));
  await cleanup();
  log('artefacts in ' + OUT);
  process.exit(1);
});
