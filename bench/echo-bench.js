#!/usr/bin/env node
'use strict';
// Side-by-side echo benchmark: bin/echo-server vs a raw Node `net` echo server (and the Perl
// Danga::Socket original when installed), the same load in one run, interleaved and repeated.
//   npm run bench -- [--quick] [--duration S] [--warmup S] [--reps N]
//                    [--scenarios a,b,c,d,e,p] [--idle-conns N]
//                    [--echoload PATH | --echoload build] [--json FILE]
// Prints medians and the ratios ours/raw and ours/perl: throughput, and the server's CPU per
// message (sampled from /proc over the measured window, so a client-bound run still tells
// which server works less). `--echoload build` compiles bench/echoload/echoload.c with `cc -O2`
// into a temporary directory (removed at exit). Loopback only. Every process started is killed at
// exit, also on failure; a server that dies during a run is reported, restarted, and the run
// repeated; failed runs are left out of the medians.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const ROOT = path.join(__dirname, '..');
const SCENARIOS = {
  a: {
    title: '(a) ping-pong 64 B, 50 conns',
    args: { mode: 'echo', conns: 50, inflight: 1, bytes: 64 },
  },
  b: {
    title: '(b) pipelined 64 B, 50 conns x 16',
    args: { mode: 'echo', conns: 50, inflight: 16, bytes: 64 },
  },
  c: {
    title: '(c) ping-pong 16 KiB, 10 conns',
    args: { mode: 'echo', conns: 10, inflight: 1, bytes: 16384 },
  },
  d: { title: '(d) connect churn, 50 concurrent', args: { mode: 'churn', conns: 50, bytes: 64 } },
};
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

function parseArgs(argv) {
  const o = {
    duration: 5,
    warmup: 1,
    reps: 3,
    scenarios: 'a,b,c,d,e,p',
    idleConns: 10000,
    echoload: null,
    json: null,
  };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) usage(`${name} needs a positive number`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') {
      Object.assign(o, { duration: 1.5, warmup: 0.5, reps: 1, idleConns: 2000 });
    } else if (a === '--duration') o.duration = num(a, argv[++i]);
    else if (a === '--warmup') o.warmup = num(a, argv[++i]);
    else if (a === '--reps') o.reps = Math.round(num(a, argv[++i]));
    else if (a === '--scenarios') o.scenarios = argv[++i] ?? '';
    else if (a === '--idle-conns') o.idleConns = Math.round(num(a, argv[++i]));
    else if (a === '--echoload') o.echoload = argv[++i] ?? usage('--echoload needs a path');
    else if (a === '--json') o.json = argv[++i] ?? usage('--json needs a file');
    else if (a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usage(`unknown argument ${a}`);
  }
  for (const s of o.scenarios.split(',')) {
    if (!(s in SCENARIOS) && s !== 'e' && s !== 'p') usage(`unknown scenario ${s}`);
  }
  if (o.idleConns > 18000) usage('--idle-conns: at most 18000 (20,000 descriptors per process)');
  return o;
}
const USAGE =
  'usage: echo-bench [--quick] [--duration S] [--warmup S] [--reps N] [--scenarios a,b,c,d,e,p]' +
  ' [--idle-conns N] [--echoload PATH|build] [--json FILE]';
function usage(msg) {
  process.stderr.write(`echo-bench: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

// ---- processes: every child is tracked and killed at exit ----------------------------------
const children = new Set();
const tempDirs = [];
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function cleanup() {
  for (const c of children) c.kill('SIGKILL');
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

function buildEcholoader() {
  const src = path.join(__dirname, 'echoload', 'echoload.c');
  if (spawnSync('cc', ['--version']).status !== 0) {
    throw new Error(
      '--echoload build needs a C compiler, and `cc` is not on PATH ' +
        '(Debian: apt-get install -y gcc); or pass --echoload PATH to a built echoload',
    );
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-echoload-'));
  tempDirs.push(dir);
  const bin = path.join(dir, 'echoload');
  const r = spawnSync('cc', ['-O2', '-o', bin, src], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cc -O2 failed: ${r.stderr || r.error}`);
  return bin;
}

const hasPerl = spawnSync('perl', ['-MDanga::Socket', '-e1']).status === 0;
const SERVERS = [
  {
    name: 'ours',
    cmd: process.execPath,
    args: [path.join(ROOT, 'bin', 'echo-server'), '--port', '0'],
  },
  { name: 'raw', cmd: process.execPath, args: [path.join(__dirname, 'raw-echo-server.js'), '0'] },
];
if (hasPerl) {
  SERVERS.push({
    name: 'perl',
    cmd: 'perl',
    args: [path.join(__dirname, 'perl-echo-server.pl'), '0'],
  });
}
const PROFILED = {
  name: 'ours+profile',
  cmd: process.execPath,
  args: [path.join(ROOT, 'bin', 'echo-server'), '--port', '0', '--profile'],
};

function startServer(spec) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(spec.cmd, spec.args, { stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    const onData = (d) => {
      out += d;
      const m = /listening on [^\s]*:(\d+)/.exec(out);
      if (m) {
        child.stdout.removeListener('data', onData);
        child.stdout.resume();
        child.removeListener('exit', onEarlyExit);
        resolve({ spec, name: spec.name, child, port: Number(m[1]), pid: child.pid });
      }
    };
    const onEarlyExit = (code, signal) =>
      reject(new Error(`${spec.name} exited (${signal ?? code}) before listening`));
    child.stdout.on('data', onData);
    child.on('exit', onEarlyExit);
  });
}

const isDead = (s) => s.child.exitCode !== null || s.child.signalCode !== null;

function stopServer(s) {
  return new Promise((resolve) => {
    if (isDead(s)) return resolve();
    s.child.once('exit', () => resolve());
    s.child.kill('SIGKILL');
  });
}

/** user+system CPU seconds of a process so far (NaN once it is gone). */
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function loadCommand(port, args, o) {
  if (o.echoload) {
    const e = ['-p', String(port), '-d', String(o.duration), '-w', String(o.warmup)];
    if (args.mode === 'churn') e.push('-M', 'churn');
    else e.push('-P', String(args.inflight));
    e.push('-c', String(args.conns), '-m', String(args.bytes));
    return [o.echoload, e];
  }
  const a = [path.join(__dirname, 'load.js'), '--port', String(port)];
  a.push('--duration', String(o.duration), '--warmup', String(o.warmup));
  for (const [k, v] of Object.entries(args)) a.push(`--${k}`, String(v));
  return [process.execPath, a];
}

function parseResult(stdout, echoload, mode) {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('RESULT '));
  if (!line) return null;
  if (!echoload) return JSON.parse(line.slice(7));
  const kv = Object.fromEntries(
    line
      .slice(7)
      .split(/\s+/)
      .map((p) => p.split('=')),
  );
  return {
    msgs_per_s: Number(mode === 'churn' ? kv.conns_per_s : kv.msgs_per_s),
    p50_us: Number(kv.p50_us),
    p99_us: Number(kv.p99_us),
    errors: Number(kv.errors),
    mismatches: Number(kv.mismatches),
  };
}

/**
 * One load run against one server. The server's CPU is sampled inside the generator's
 * measured window (after its warm-up, before its end), giving CPU microseconds per message.
 */
async function runLoad(server, args, o) {
  const [cmd, argv] = loadCommand(server.port, args, o);
  const child = track(spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise((r) => child.once('exit', r));
  const margin = Math.min(0.2, o.duration / 10);
  await sleep((o.warmup + margin) * 1000);
  const c0 = cpuSeconds(server.pid);
  const t0 = performance.now();
  await sleep((o.duration - 2 * margin) * 1000);
  const c1 = cpuSeconds(server.pid);
  const t1 = performance.now();
  const timeout = setTimeout(() => child.kill('SIGKILL'), (o.duration + 30) * 1000);
  await exited;
  clearTimeout(timeout);
  const r = parseResult(out, Boolean(o.echoload), args.mode);
  if (r === null) return { failed: `load generator failed: ${err.trim().slice(0, 300)}` };
  const cpuS = c1 - c0;
  r.server_cpu_share = cpuS / ((t1 - t0) / 1000);
  r.cpu_us_per_msg = r.msgs_per_s > 0 ? (r.server_cpu_share / r.msgs_per_s) * 1e6 : NaN;
  if (isDead(server)) r.failed = `${server.name} died during the run`;
  else if (!(r.msgs_per_s > 0)) r.failed = 'no message completed';
  return r;
}

/** Server RSS growth per connection while `conns` idle connections are open. */
async function idleRss(spec, conns, o) {
  const s = await startServer(spec);
  try {
    await sleep(500);
    const before = rssKb(s.pid);
    const argv = o.echoload
      ? [o.echoload, ['-M', 'idle', '-p', String(s.port), '-c', String(conns), '-d', '600']]
      : [
          process.execPath,
          [path.join(__dirname, 'load.js'), '--mode', 'idle', '--port', String(s.port)].concat([
            '--conns',
            String(conns),
          ]),
        ];
    const load = track(spawn(argv[0], argv[1], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const established = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error('idle connections not established in 60 s')),
        60000,
      );
      load.stdout.on('data', (d) => {
        out += d;
        const m = /ESTABLISHED(?:.*established=(\d+))?/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1] === undefined ? conns : Number(m[1]));
        }
      });
      load.on('exit', () => reject(new Error('idle load exited early')));
    });
    await sleep(1000);
    const after = rssKb(s.pid);
    const dead = isDead(s);
    load.kill('SIGKILL');
    if (established < conns)
      process.stdout.write(`  ! only ${established} of ${conns} connected\n`);
    return dead || established === 0 ? NaN : ((after - before) * 1024) / established;
  } finally {
    await stopServer(s);
  }
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((x, y) => x - y);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  if (o.echoload === 'build') o.echoload = buildEcholoader();
  const wanted = o.scenarios.split(',');
  const results = {}; // scenario -> server -> [run]
  const record = (sc, name, r) => ((results[sc] ??= {})[name] ??= []).push(r);
  const say = (s) => process.stdout.write(s);
  say(
    `echo-bench: ${o.reps} rep(s) x ${o.duration}s (+${o.warmup}s warm-up), servers: ` +
      `${SERVERS.map((s) => s.name).join(', ')}${hasPerl ? '' : ' (Perl Danga::Socket not installed)'}; ` +
      `generator: ${o.echoload ? 'echoload' : 'bench/load.js'}\n`,
  );

  const loadScenarios = wanted.filter((w) => w in SCENARIOS || w === 'p');
  if (loadScenarios.length > 0) {
    const specs = [...SERVERS, ...(wanted.includes('p') ? [PROFILED] : [])];
    const servers = [];
    for (const spec of specs) servers.push(await startServer(spec));
    for (let rep = 0; rep < o.reps; rep++) {
      for (const sc of loadScenarios) {
        const key = sc === 'p' ? 'a' : sc;
        const pool = servers
          .map((s, i) => i)
          .filter((i) =>
            sc === 'p' ? servers[i].name.startsWith('ours') : servers[i].name !== PROFILED.name,
          );
        // Rotate the order each repetition so no server always runs first.
        const order = pool.map((_, i) => pool[(i + rep) % pool.length]);
        for (const idx of order) {
          let r;
          for (let attempt = 0; attempt < 3; attempt++) {
            if (isDead(servers[idx])) {
              const s = servers[idx];
              say(
                `  ! ${s.name} is gone (${s.child.signalCode ?? s.child.exitCode}); restarting\n`,
              );
              servers[idx] = await startServer(s.spec);
            }
            r = await runLoad(servers[idx], SCENARIOS[key].args, o);
            if (!r.failed || !isDead(servers[idx])) break;
            say(`  ! ${servers[idx].name} ${sc}: ${r.failed}; repeating the run\n`);
          }
          const s = servers[idx];
          if (r.failed) say(`  ! ${s.name} ${sc}: ${r.failed} (left out of the medians)\n`);
          else if (r.errors || r.mismatches) {
            say(`  ! ${s.name} ${sc}: errors=${r.errors} mismatches=${r.mismatches}\n`);
          }
          r.rep = rep;
          if (!r.failed) record(sc, s.name, r);
          say(
            `  rep ${rep + 1} ${sc} ${s.name.padEnd(13)} ${fmt(r.msgs_per_s).padStart(8)} msg/s  ` +
              `server CPU ${fmt(r.cpu_us_per_msg, 2)} us/msg (${fmt(r.server_cpu_share * 100)} %)  ` +
              `p50 ${r.p50_us} us  p99 ${r.p99_us} us\n`,
          );
        }
      }
    }
    for (const s of servers) await stopServer(s);
  }

  if (wanted.includes('e')) {
    for (let rep = 0; rep < o.reps; rep++) {
      for (let i = 0; i < SERVERS.length; i++) {
        const spec = SERVERS[(i + rep) % SERVERS.length];
        const perConn = await idleRss(spec, o.idleConns, o);
        record('e', spec.name, { bytes_per_conn: perConn });
        say(`  rep ${rep + 1} e ${spec.name.padEnd(13)} ${fmt(perConn)} B/conn\n`);
      }
    }
  }

  // Ratios are medians of per-repetition ratios: the two runs of a pair ran back to back, so
  // drifting background load on this shared machine cancels out better than in a ratio of
  // medians (both are kept in --json).
  const paired = (runs, a, b, key, invert) => {
    const byRep = (n) => new Map((runs[n] ?? []).map((x) => [x.rep, x[key]]));
    const ra = byRep(a);
    const rb = byRep(b);
    const out = [];
    for (const [rep, va] of ra) {
      const vb = rb.get(rep);
      if (vb !== undefined) out.push(invert ? vb / va : va / vb);
    }
    return median(out);
  };
  const lines = [
    '',
    'Throughput (msg/s; connections/s in d), medians; ratios are medians of per-repetition ratios.',
    'Server CPU per message (us), medians; raw/ours > 1 means ours spends less CPU.',
    '',
    '| scenario | ours | raw | perl | ours/raw | ours/perl | CPU ours | CPU raw | CPU perl | CPU raw/ours | CPU perl/ours | p50/p99 us ours | raw | perl |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const summary = {};
  for (const sc of ['a', 'b', 'c', 'd']) {
    const r = results[sc];
    if (!r) continue;
    const m = (n, k = 'msgs_per_s') => median((r[n] ?? []).map((x) => x[k]));
    const lat = (n) => `${fmt(m(n, 'p50_us'))}/${fmt(m(n, 'p99_us'))}`;
    const s = (summary[sc] = {
      ours_raw: paired(r, 'ours', 'raw', 'msgs_per_s', false),
      ours_perl: paired(r, 'ours', 'perl', 'msgs_per_s', false),
      cpu_raw_ours: paired(r, 'ours', 'raw', 'cpu_us_per_msg', true),
      cpu_perl_ours: paired(r, 'ours', 'perl', 'cpu_us_per_msg', true),
    });
    for (const n of ['ours', 'raw', 'perl']) {
      s[n] = {
        msgs_per_s: m(n),
        cpu_us_per_msg: m(n, 'cpu_us_per_msg'),
        p50_us: m(n, 'p50_us'),
        p99_us: m(n, 'p99_us'),
        runs: (r[n] ?? []).length,
      };
    }
    lines.push(
      `| ${SCENARIOS[sc].title} | ${fmt(m('ours'))} | ${fmt(m('raw'))} | ${fmt(m('perl'))} ` +
        `| ${fmt(s.ours_raw, 2)} | ${fmt(s.ours_perl, 2)} ` +
        `| ${fmt(m('ours', 'cpu_us_per_msg'), 2)} | ${fmt(m('raw', 'cpu_us_per_msg'), 2)} ` +
        `| ${fmt(m('perl', 'cpu_us_per_msg'), 2)} | ${fmt(s.cpu_raw_ours, 2)} | ${fmt(s.cpu_perl_ours, 2)} ` +
        `| ${lat('ours')} | ${lat('raw')} | ${lat('perl')} |`,
    );
  }
  if (results.e) {
    const m = (n) => median((results.e[n] ?? []).map((x) => x.bytes_per_conn));
    summary.e = { ours: m('ours'), raw: m('raw'), perl: m('perl') };
    // Memory: lower is better, so the ratio is ours/raw of bytes (≤ 1.10 is the bar).
    lines.push(
      '',
      `| (e) ${o.idleConns} idle conns | ours | raw | perl | ours/raw | ours/perl |`,
      '|---|---|---|---|---|---|',
      `| server RSS per conn (B) | ${fmt(m('ours'))} | ${fmt(m('raw'))} | ${fmt(m('perl'))} | ${fmt(m('ours') / m('raw'), 2)} | ${fmt(m('ours') / m('perl'), 2)} |`,
    );
  }
  if (results.p) {
    const m = (n, k) => median((results.p[n] ?? []).map((x) => x[k]));
    summary.p = {
      throughput_on_off: paired(results.p, 'ours+profile', 'ours', 'msgs_per_s', false),
      cpu_per_msg_on_off: paired(results.p, 'ours+profile', 'ours', 'cpu_us_per_msg', false),
      ours: m('ours', 'msgs_per_s'),
      ours_profile: m('ours+profile', 'msgs_per_s'),
    };
    lines.push(
      '',
      `profiling, (a): --profile on/off throughput ${fmt(summary.p.throughput_on_off, 3)}, ` +
        `server CPU per message ${fmt(summary.p.cpu_per_msg_on_off, 3)}`,
    );
  }
  say(lines.join('\n') + '\n');
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ options: o, summary, results }, null, 2));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`echo-bench: ${err.stack}\n`);
    process.exit(1);
  },
);
