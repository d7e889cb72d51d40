#!/usr/bin/env node
'use strict';
// Side-by-side echo benchmark: bin/echo-server vs a raw Node `net` echo server (and the Perl
// Danga::Socket original when installed), the same load in one run, interleaved and repeated.
//   npm run bench -- [--quick] [--duration S] [--reps N] [--scenarios a,b,c,d,e,p]
//                    [--idle-conns N] [--echoload /path/to/echoload]
// Prints medians and the ratios ours/raw and ours/perl. Loopback only.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

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

function parseArgs(argv) {
  const o = {
    duration: 5,
    warmup: 1,
    reps: 3,
    scenarios: 'a,b,c,d,e,p',
    idleConns: 10000,
    echoload: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') {
      Object.assign(o, { duration: 1.5, warmup: 0.5, reps: 1, idleConns: 2000 });
    } else if (a === '--duration') o.duration = Number(argv[++i]);
    else if (a === '--reps') o.reps = Number(argv[++i]);
    else if (a === '--scenarios') o.scenarios = argv[++i];
    else if (a === '--idle-conns') o.idleConns = Number(argv[++i]);
    else if (a === '--echoload') o.echoload = argv[++i];
    else if (a === '--help') {
      process.stdout.write(
        'usage: echo-bench [--quick] [--duration S] [--reps N] [--scenarios a,b,c,d,e,p] [--idle-conns N] [--echoload PATH]\n',
      );
      process.exit(0);
    } else {
      process.stderr.write(`echo-bench: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return o;
}

const children = new Set();
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function killAll() {
  for (const c of children) c.kill('SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
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
if (hasPerl)
  SERVERS.push({
    name: 'perl',
    cmd: 'perl',
    args: [path.join(__dirname, 'perl-echo-server.pl'), '0'],
  });
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
        resolve({ ...spec, child, port: Number(m[1]), pid: child.pid });
      }
    };
    child.stdout.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${spec.name} exited (${code}) before listening`)));
  });
}

function stopServer(s) {
  return new Promise((resolve) => {
    if (s.child.exitCode !== null) return resolve();
    s.child.once('exit', () => resolve());
    s.child.kill('SIGKILL');
  });
}

function runLoad(port, args, o) {
  if (o.echoload) {
    const e = ['-p', String(port), '-d', String(o.duration), '-w', String(o.warmup)];
    if (args.mode === 'churn')
      e.push('-M', 'churn', '-c', String(args.conns), '-m', String(args.bytes));
    else e.push('-c', String(args.conns), '-P', String(args.inflight), '-m', String(args.bytes));
    const r = spawnSync(o.echoload, e, { encoding: 'utf8' });
    const line = (r.stdout || '').trim().split('\n').pop() || '';
    const kv = Object.fromEntries(line.split(/\s+/).map((p) => p.split('=')));
    return {
      msgs_per_s: Number(args.mode === 'churn' ? kv.conns_per_s : kv.msgs_per_s),
      p50_us: Number(kv.p50_us),
      p99_us: Number(kv.p99_us),
      errors: Number(kv.errors),
      mismatches: Number(kv.mismatches),
    };
  }
  const a = [
    path.join(__dirname, 'load.js'),
    '--port',
    String(port),
    '--duration',
    String(o.duration),
    '--warmup',
    String(o.warmup),
  ];
  for (const [k, v] of Object.entries(args)) a.push(`--${k}`, String(v));
  const r = spawnSync(process.execPath, a, { encoding: 'utf8' });
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`load generator failed: ${r.stderr}`);
  return JSON.parse(line.slice(7));
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function idleRss(spec, conns) {
  const s = await startServer(spec);
  await sleep(500);
  const before = rssKb(s.pid);
  const load = track(
    spawn(
      process.execPath,
      [
        path.join(__dirname, 'load.js'),
        '--mode',
        'idle',
        '--port',
        String(s.port),
        '--conns',
        String(conns),
      ],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    ),
  );
  await new Promise((resolve, reject) => {
    let out = '';
    load.stdout.on('data', (d) => {
      out += d;
      if (out.includes('ESTABLISHED')) resolve();
    });
    load.on('exit', () => reject(new Error('idle load exited early')));
    setTimeout(() => reject(new Error('idle connections not established in 60 s')), 60000);
  });
  await sleep(1000);
  const after = rssKb(s.pid);
  load.stdin.end();
  await new Promise((r) => load.once('exit', r));
  await stopServer(s);
  return ((after - before) * 1024) / conns;
}

const median = (xs) => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const wanted = o.scenarios.split(',');
  const results = {}; // scenario -> server -> [{...}]
  const record = (sc, name, r) => ((results[sc] ??= {})[name] ??= []).push(r);
  process.stdout.write(
    `echo-bench: ${o.reps} rep(s) x ${o.duration}s, servers: ${SERVERS.map((s) => s.name).join(', ')}` +
      `${hasPerl ? '' : ' (Perl Danga::Socket not installed)'}; generator: ${o.echoload ? 'echoload' : 'bench/load.js'}\n`,
  );

  const loadScenarios = wanted.filter((w) => w in SCENARIOS || w === 'p');
  if (loadScenarios.length > 0) {
    const specs = [...SERVERS, ...(wanted.includes('p') ? [PROFILED] : [])];
    const servers = [];
    for (const spec of specs) servers.push(await startServer(spec));
    for (let rep = 0; rep < o.reps; rep++) {
      for (const sc of loadScenarios) {
        const key = sc === 'p' ? 'a' : sc;
        const pool =
          sc === 'p'
            ? servers.filter((s) => s.name.startsWith('ours'))
            : servers.filter((s) => s.name !== PROFILED.name);
        // Rotate the order each repetition so no server always runs first.
        const order = pool.map((_, i) => pool[(i + rep) % pool.length]);
        for (const s of order) {
          const r = runLoad(s.port, SCENARIOS[key].args, o);
          if (r.errors || r.mismatches)
            process.stdout.write(
              `  ! ${s.name} ${sc}: errors=${r.errors} mismatches=${r.mismatches}\n`,
            );
          record(sc, s.name, r);
          process.stdout.write(
            `  rep ${rep + 1} ${sc} ${s.name.padEnd(13)} ${fmt(r.msgs_per_s)} msg/s  p50 ${r.p50_us} us  p99 ${r.p99_us} us\n`,
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
        const perConn = await idleRss(spec, o.idleConns);
        record('e', spec.name, { bytes_per_conn: perConn });
        process.stdout.write(`  rep ${rep + 1} e ${spec.name.padEnd(13)} ${fmt(perConn)} B/conn\n`);
      }
    }
  }

  const lines = [
    '',
    '| scenario | ours | raw | perl | ours/raw | ours/perl | p50/p99 us ours | p50/p99 us raw |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const sc of ['a', 'b', 'c', 'd']) {
    const r = results[sc];
    if (!r) continue;
    const m = (n) => median((r[n] ?? []).map((x) => x.msgs_per_s));
    const lat = (n, k) => median((r[n] ?? []).map((x) => x[k]));
    lines.push(
      `| ${SCENARIOS[sc].title} (msg/s) | ${fmt(m('ours'))} | ${fmt(m('raw'))} | ${fmt(m('perl'))} | ${fmt(m('ours') / m('raw'), 2)} | ${fmt(m('ours') / m('perl'), 2)} | ${fmt(lat('ours', 'p50_us'))}/${fmt(lat('ours', 'p99_us'))} | ${fmt(lat('raw', 'p50_us'))}/${fmt(lat('raw', 'p99_us'))} |`,
    );
  }
  if (results.e) {
    const m = (n) => median((results.e[n] ?? []).map((x) => x.bytes_per_conn));
    // Memory: lower is better, so the ratio is ours/raw of bytes (≤ 1.10 is the bar).
    lines.push(
      `| (e) ${o.idleConns} idle conns (bytes/conn) | ${fmt(m('ours'))} | ${fmt(m('raw'))} | ${fmt(m('perl'))} | ${fmt(m('ours') / m('raw'), 2)} | ${fmt(m('ours') / m('perl'), 2)} | | |`,
    );
  }
  if (results.p) {
    const m = (n) => median(results.p[n].map((x) => x.msgs_per_s));
    lines.push(
      '',
      `profiling overhead, (a): --profile on/off = ${fmt(m('ours+profile') / m('ours'), 3)}`,
    );
  }
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err) => {
  process.stderr.write(`echo-bench: ${err.stack}\n`);
  killAll();
  process.exit(1);
});
