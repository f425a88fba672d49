// DuckDB, through its Node.js API (@duckdb/node-api, pinned in package.json), as a peer of
// dx_bench_dataframe on the same data: run.py starts `node duckdb_peer.mjs DATA_DIR THREADS`, which
// loads key.i64 and value.f64 into an in-memory table t (untimed), builds the dimension
// dim(key 0..999, weight = 1 + key / 1000), checks and warms every query up once, prints READY and
// then answers `run OP duckdb REPS` lines as peer.py does (RESULT lines, then DONE), until `quit`.
//
// Queries (results that are tables are materialized as temporary tables, as dx and pandas
// materialize theirs; small results are read into JavaScript):
//   groupby      SELECT key, sum(value) FROM t GROUP BY key
//   filter_mean  SELECT avg(value) FROM t WHERE value > 0.5
//   sort         CREATE TEMP TABLE r AS SELECT * FROM t ORDER BY value
//   read_csv     CREATE TEMP TABLE r AS SELECT * FROM read_csv('DATA_DIR/first_1M.csv')
//   topk         SELECT * FROM t ORDER BY value DESC LIMIT 5
//   join         CREATE TEMP TABLE r AS SELECT * FROM t JOIN dim USING (key)
//   join_agg     SELECT key, sum(value * weight) FROM t JOIN dim USING (key) GROUP BY key
import { DuckDBInstance, DuckDBDataChunk, BIGINT, DOUBLE } from '@duckdb/node-api';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const [dataDir, threadsArg] = process.argv.slice(2);
if (!dataDir) {
  console.error('usage: node duckdb_peer.mjs DATA_DIR [THREADS=2]');
  process.exit(2);
}
const threads = threadsArg || '2';
const csvPath = path.join(dataDir, 'first_1M.csv');

function readArray(file, Type) {
  const buf = fs.readFileSync(path.join(dataDir, file));
  return new Type(buf.buffer, buf.byteOffset, buf.byteLength / Type.BYTES_PER_ELEMENT);
}

const t0 = performance.now();
const instance = await DuckDBInstance.create(':memory:', { threads });
const con = await instance.connect();
await con.run('CREATE TABLE t (key BIGINT, value DOUBLE)');
const keys = readArray('key.i64', BigInt64Array);
const values = readArray('value.f64', Float64Array);
const rows = keys.length;
{
  const appender = await con.createAppender('t');
  const step = 2048;
  for (let at = 0; at < rows; at += step) {
    const n = Math.min(step, rows - at);
    const chunk = DuckDBDataChunk.create([BIGINT, DOUBLE], n);
    chunk.setColumns([Array.from(keys.subarray(at, at + n)), Array.from(values.subarray(at, at + n))]);
    appender.appendDataChunk(chunk);
  }
  appender.closeSync();
}
await con.run('CREATE TABLE dim AS SELECT range AS key, 1 + range / 1000 AS weight FROM range(1000)');
const loadSeconds = (performance.now() - t0) / 1000;

const table = async (sql) => {
  await con.run(`CREATE OR REPLACE TEMP TABLE r AS ${sql}`);
};
const ops = {
  groupby: async () => (await con.runAndReadAll('SELECT key, sum(value) AS s FROM t GROUP BY key')).getRows(),
  filter_mean: async () => (await con.runAndReadAll('SELECT avg(value) FROM t WHERE value > 0.5')).getRows(),
  sort: async () => table('SELECT * FROM t ORDER BY value'),
  read_csv: async () => table(`SELECT * FROM read_csv('${csvPath.replaceAll("'", "''")}')`),
  topk: async () => (await con.runAndReadAll('SELECT * FROM t ORDER BY value DESC LIMIT 5')).getRows(),
  join: async () => table('SELECT * FROM t JOIN dim USING (key)'),
  join_agg: async () =>
    (await con.runAndReadAll('SELECT key, sum(value * weight) AS s FROM t JOIN dim USING (key) GROUP BY key')).getRows(),
};
const rowsOf = { read_csv: 1000000 };

// Checks (untimed), which also warm every query up.
const count = async (sql) => Number((await con.runAndReadAll(sql)).getRows()[0][0]);
const t1 = performance.now();
if ((await ops.groupby()).length !== 1000) throw new Error('duckdb groupby: not 1000 groups');
await ops.filter_mean();
await ops.sort();
if ((await count('SELECT count(*) FROM r')) !== rows) throw new Error('duckdb sort: row count');
await ops.read_csv();
if ((await count('SELECT count(*) FROM r')) !== 1000000) throw new Error('duckdb read_csv: row count');
const top = await ops.topk();
if (top.length !== 5 || !(top[0][1] >= top[4][1])) throw new Error('duckdb topk');
await ops.join();
if ((await count('SELECT count(*) FROM r')) !== rows) throw new Error('duckdb join: row count');
if ((await ops.join_agg()).length !== 1000) throw new Error('duckdb join_agg: not 1000 groups');
await con.run('DROP TABLE IF EXISTS r');
const version = (await con.runAndReadAll('SELECT version()')).getRows()[0][0];
console.log(`RESULT system=peer op=setup rows=${rows} duckdb=${version} threads=${threads} ` +
            `load_s=${loadSeconds.toFixed(3)} check_and_warmup_s=${((performance.now() - t1) / 1000).toFixed(3)}`);
console.log('READY');

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const words = line.trim().split(/\s+/);
  if (words[0] === '') continue;
  if (words[0] === 'quit') break;
  if (words[0] !== 'run' || words.length !== 4 || !(words[1] in ops) || words[2] !== 'duckdb') {
    console.log(`ERROR bad command: ${line.trim()}`);
    continue;
  }
  const [, op, system, repsText] = words;
  const reps = Number(repsText);
  for (let rep = 1; rep <= reps; ++rep) {
    const start = performance.now();
    await ops[op]();
    const seconds = (performance.now() - start) / 1000;
    await con.run('DROP TABLE IF EXISTS r');
    console.log(`RESULT system=${system} op=${op} phase=timed rep=${rep} rows=${rowsOf[op] || rows} ` +
                `seconds=${seconds.toFixed(6)}`);
  }
  console.log('DONE');
}
con.closeSync();
process.exit(0);
