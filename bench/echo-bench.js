#!/usr/bin/env node
'use strict';
// Side-by-side echo benchmark, the same load against every server in one run, interleaved and
// repeated: bin/echo-server (ours; ours-native once it has `--backend native`), a raw Node `net`
// echo server, the Perl Danga::Socket original (when installed) and a C epoll server (the
// ceiling, when `cc` exists).
//   npm run bench -- [--quick] [--duration S] [--warmup S] [--reps N]
//                    [--scenarios a,b,c,d,e,p] [--idle-conns N] [--servers NAME,...]
//                    [--node PATH | --nodes PATH,PATH] [--echoload PATH | --echoload build]
//                    [--json FILE]
// Every Node server runs on the Node given by --node (default: the Node running this script);
// --nodes runs each Node server once per Node, interleaved with the rest, named `ours@v26.12.1`.
// Prints medians, ratios to raw Node (the same Node) and to Perl, and the server's CPU per
// message split into user and system time (sampled from /proc over the measured window, so a
// client-bound run still tells which server works less). The C programs (bench/echoload,
// bench/c-echo) are compiled with `cc -O2` into a temporary directory removed at exit.
// Loopback only. Every process started is killed at exit, also on failure; a server that dies
// during a run is reported, restarted, and the run repeated; failed runs are left out.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');

const ROOT = path.join(__dirname, '..');
const ECHO_SERVER = path.join(ROOT, 'bin', 'echo-server');
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
const SERVER_NAMES = ['ours', 'ours-native', 'raw', 'perl', 'c-epoll'];
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

function parseArgs(argv) {
  const o = {
    duration: 5,
    warmup: 1,
    reps: 3,
    scenarios: 'a,b,c,d,e,p',
    idleConns: 10000,
    servers: SERVER_NAMES.join(','),
    nodes: [],
    echoload: null,
    json: null,
  };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) usage(`${name} needs a positive number`);
    return n;
  };
  const str = (name, v) => (v === undefined || v === '' ? usage(`${name} needs a value`) : v);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') {
      Object.assign(o, { duration: 1.5, warmup: 0.5, reps: 1, idleConns: 2000 });
    } else if (a === '--duration') o.duration = num(a, argv[++i]);
    else if (a === '--warmup') o.warmup = num(a, argv[++i]);
    else if (a === '--reps') o.reps = Math.round(num(a, argv[++i]));
    else if (a === '--scenarios') o.scenarios = str(a, argv[++i]);
    else if (a === '--idle-conns') o.idleConns = Math.round(num(a, argv[++i]));
    else if (a === '--servers') o.servers = str(a, argv[++i]);
    else if (a === '--node') o.nodes.push(str(a, argv[++i]));
    else if (a === '--nodes') o.nodes.push(...str(a, argv[++i]).split(',').filter(Boolean));
    else if (a === '--echoload') o.echoload = str(a, argv[++i]);
    else if (a === '--json') o.json = str(a, argv[++i]);
    else if (a === '--help') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else usage(`unknown argument ${a}`);
  }
  for (const s of o.scenarios.split(',')) {
    if (!(s in SCENARIOS) && s !== 'e' && s !== 'p') usage(`unknown scenario ${s}`);
  }
  for (const s of o.servers.split(',')) {
    if (!SERVER_NAMES.includes(s)) usage(`unknown server ${s} (known: ${SERVER_NAMES.join(', ')})`);
  }
  if (o.idleConns > 18000) usage('--idle-conns: at most 18000 (20,000 descriptors per process)');
  if (o.nodes.length === 0) o.nodes.push(process.execPath);
  return o;
}
const USAGE =
  'usage: echo-bench [--quick] [--duration S] [--warmup S] [--reps N] [--scenarios a,b,c,d,e,p]' +
  ` [--idle-conns N] [--servers ${SERVER_NAMES.join(',')}] [--node PATH | --nodes PATH,PATH]` +
  ' [--echoload PATH|build] [--json FILE]';
/** A problem with the setup or the arguments: reported as one line, without a stack. */
class SetupError extends Error {}
function usage(msg) {
  process.stderr.write(`echo-bench: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

// ---- processes: every child is tracked and killed at exit ----------------------------------
const children = new Set();
let tempDir = null;
function track(child) {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}
function cleanup() {
  for (const c of children) c.kill('SIGKILL');
  if (tempDir) fs.rmSync(tempDir, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}

// ---- the C programs: compiled from bench/ with `cc -O2` into one temporary directory --------
/** `cc --version`'s first line, or null when there is no `cc` on PATH. */
function ccVersion() {
  const r = spawnSync('cc', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0] : null;
}

/** Compiles bench/<rel> with `cc -O2`; returns the binary's path or throws with cc's output. */
function buildC(rel) {
  const src = path.join(__dirname, rel);
  tempDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'danga-bench-'));
  const bin = path.join(tempDir, path.basename(rel, '.c'));
  const r = spawnSync('cc', ['-O2', '-o', bin, src], { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`cc -O2 -o ${bin} ${src} failed: ${r.stderr || r.error || r.signal}`);
  }
  return bin;
}

// ---- the servers -------------------------------------------------------------------------
/** Each Node to run the Node servers on: path, version, and a name suffix when several. */
function resolveNodes(paths) {
  const nodes = paths.map((p) => {
    const r = spawnSync(p, ['-p', 'process.version'], { encoding: 'utf8', timeout: 20000 });
    const version = r.status === 0 ? r.stdout.trim() : '';
    if (!/^v\d+\./.test(version)) {
      throw new SetupError(
        `--node ${p}: not a working Node binary (${r.error ?? r.stderr.trim()})`,
      );
    }
    return { path: p, version, tag: '' };
  });
  if (nodes.length > 1) {
    for (const n of nodes) {
      if (nodes.filter((m) => m.version === n.version).length > 1) {
        throw new SetupError(`--nodes: two binaries are ${n.version}; give each version once`);
      }
      n.tag = `@${n.version}`;
    }
  }
  return nodes;
}

/** Does bin/echo-server take `--backend`? (Its --help lists it once the native backend lands.) */
function echoServerHasBackendFlag(node) {
  const r = spawnSync(node.path, [ECHO_SERVER, '--help'], { encoding: 'utf8', timeout: 20000 });
  return /--backend\b/.test(`${r.stdout}${r.stderr}`);
}

/**
 * The servers to run, and the ones left out with the reason. A server spec is
 * { name, kind, node, cmd, args, about, optional }; `node` is null for perl and c-epoll.
 */
function planServers(o, nodes, wanted) {
  const want = new Set(o.servers.split(','));
  const specs = [];
  const skipped = [];
  const rel = (p) => path.relative(ROOT, p);
  const backendFlag = echoServerHasBackendFlag(nodes[0]);
  const ours = (kind, extra, optional) => {
    for (const node of nodes) {
      const args = [ECHO_SERVER, '--port', '0', ...extra];
      specs.push({
        name: `${kind}${node.tag}`,
        kind,
        node,
        cmd: node.path,
        args,
        about: `node ${node.version} (${node.path}): ${rel(ECHO_SERVER)} ${args.slice(1).join(' ')}`,
        optional,
      });
    }
  };
  if (want.has('ours')) ours('ours', backendFlag ? ['--backend', 'node'] : [], false);
  if (want.has('ours-native')) {
    if (backendFlag) ours('ours-native', ['--backend', 'native'], true);
    else {
      skipped.push({
        name: 'ours-native',
        why: 'bin/echo-server --help lists no --backend option (no native backend in this checkout)',
      });
    }
  }
  if (want.has('ours') && wanted.includes('p')) {
    ours('ours+profile', [...(backendFlag ? ['--backend', 'node'] : []), '--profile'], false);
  }
  if (want.has('raw')) {
    for (const node of nodes) {
      const script = path.join(__dirname, 'raw-echo-server.js');
      specs.push({
        name: `raw${node.tag}`,
        kind: 'raw',
        node,
        cmd: node.path,
        args: [script, '0'],
        about: `node ${node.version} (${node.path}): ${rel(script)}`,
        optional: false,
      });
    }
  }
  if (want.has('perl')) {
    const r = spawnSync(
      'perl',
      [
        '-MDanga::Socket',
        '-e',
        'printf "perl %vd, Danga::Socket %s", $^V, $Danga::Socket::VERSION',
      ],
      { encoding: 'utf8' },
    );
    if (r.status === 0) {
      const script = path.join(__dirname, 'perl-echo-server.pl');
      specs.push({
        name: 'perl',
        kind: 'perl',
        node: null,
        cmd: 'perl',
        args: [script, '0'],
        about: `${r.stdout}: ${rel(script)}`,
        optional: false,
      });
    } else {
      skipped.push({
        name: 'perl',
        why: 'Perl Danga::Socket not installed (Debian: apt-get install -y libdanga-socket-perl)',
      });
    }
  }
  if (want.has('c-epoll')) {
    const cc = ccVersion();
    if (cc === null) {
      skipped.push({ name: 'c-epoll', why: 'no C compiler: `cc` is not on PATH' });
    } else {
      specs.push({
        name: 'c-epoll',
        kind: 'c-epoll',
        node: null,
        cmd: buildC(path.join('c-echo', 'epoll-echo.c')),
        args: ['--port', '0'],
        about: `C, cc -O2 (${cc}): bench/c-echo/epoll-echo.c`,
        optional: false,
      });
    }
  }
  return { specs, skipped };
}

/** Starts a server and waits for its `listening on HOST:PORT` line (15 s at most). */
function startServer(spec) {
  return new Promise((resolve, reject) => {
    const child = track(spawn(spec.cmd, spec.args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = ''; // held back until the server listens, so a failed start can quote it
    const onOut = (d) => {
      out += d;
      const m = /listening on [^\s]*:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.removeListener('data', onOut);
        child.stdout.resume();
        child.stderr.removeListener('data', onErr);
        if (err) process.stderr.write(err);
        child.stderr.pipe(process.stderr);
        child.removeListener('exit', onEarlyExit);
        resolve({ spec, name: spec.name, child, port: Number(m[1]), pid: child.pid });
      }
    };
    const onErr = (d) => (err += d);
    const fail = (why) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      const tail = err.trim().split('\n').slice(-3).join(' | ');
      reject(new Error(`${spec.name} ${why}${tail ? `: ${tail}` : ''}`));
    };
    const onEarlyExit = (code, signal) => fail(`exited (${signal ?? code}) before listening`);
    const timer = setTimeout(() => fail('printed no "listening on" line in 15 s'), 15000);
    child.stdout.on('data', onOut);
    child.stderr.on('data', onErr);
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

/** User and system CPU seconds of a process so far (NaN once it is gone). */
function cpuTimes(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / CLK_TCK, sys: Number(f[12]) / CLK_TCK };
  } catch {
    return { user: NaN, sys: NaN };
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
  const c0 = cpuTimes(server.pid);
  const t0 = performance.now();
  await sleep((o.duration - 2 * margin) * 1000);
  const c1 = cpuTimes(server.pid);
  const t1 = performance.now();
  const timeout = setTimeout(() => child.kill('SIGKILL'), (o.duration + 30) * 1000);
  await exited;
  clearTimeout(timeout);
  const r = parseResult(out, Boolean(o.echoload), args.mode);
  if (r === null) return { failed: `load generator failed: ${err.trim().slice(0, 300)}` };
  const seconds = (t1 - t0) / 1000;
  const perMsg = (cpuS) => (r.msgs_per_s > 0 ? (cpuS / seconds / r.msgs_per_s) * 1e6 : NaN);
  r.server_cpu_share = (c1.user - c0.user + c1.sys - c0.sys) / seconds;
  r.user_us_per_msg = perMsg(c1.user - c0.user);
  r.sys_us_per_msg = perMsg(c1.sys - c0.sys);
  r.cpu_us_per_msg = r.user_us_per_msg + r.sys_us_per_msg;
  if (isDead(server)) r.failed = `${server.name} died during the run`;
  else if (!(r.msgs_per_s > 0)) r.failed = 'no message completed';
  return r;
}

/** Open `conns` idle connections to `s` in a load process; resolves once they are up. */
async function openIdle(s, conns, o) {
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
    const fail = (msg) => {
      clearTimeout(timer);
      load.kill('SIGKILL');
      reject(new Error(msg));
    };
    const timer = setTimeout(() => fail('idle connections not established in 60 s'), 60000);
    load.stdout.on('data', (d) => {
      out += d;
      const m = /ESTABLISHED(?:.*established=(\d+))?/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] === undefined ? conns : Number(m[1]));
      }
    });
    load.on('exit', () => fail('idle load exited early'));
  });
  if (established < conns) process.stdout.write(`  ! only ${established} of ${conns} connected\n`);
  return { load, established };
}

/**
 * Server RSS growth per connection while `conns` idle connections are open. `warm`: first 1 s
 * of connect churn (50 concurrent), then 1 s of rest, so the one-time costs of a fresh process
 * serving its first connections (JIT compilers paged in and their threads' arenas: about 8 MB
 * with Maglev on Node 22+) fall before the "before" sample instead of being spread over the
 * idle connections. Cold: a fresh server, sampled 0.5 s after it listens; its connections open
 * in two steps, a fifth and then the rest, and `marginal` is the growth per connection of the
 * second step alone: what one more idle connection costs once the process's first connections
 * have paid its one-time costs.
 * @returns { perConn, marginal } (marginal NaN when warm)
 */
async function idleRss(spec, conns, o, warm) {
  const s = await startServer(spec);
  const loads = [];
  try {
    await sleep(500);
    if (warm) {
      const r = await runLoad(s, SCENARIOS.d.args, { ...o, duration: 1, warmup: 0 });
      if (r.failed) throw new Error(`idle warm-up: ${r.failed}`);
      await sleep(1000);
    }
    const before = rssKb(s.pid);
    const first = warm ? conns : Math.max(1, Math.round(conns / 5));
    const a = await openIdle(s, first, o);
    loads.push(a.load);
    await sleep(1000);
    const mid = rssKb(s.pid);
    let after = mid;
    let second = 0;
    if (first < conns) {
      const b = await openIdle(s, conns - first, o);
      loads.push(b.load);
      second = b.established;
      await sleep(1000);
      after = rssKb(s.pid);
    }
    const total = a.established + second;
    if (isDead(s) || total === 0) return { perConn: NaN, marginal: NaN };
    return {
      perConn: ((after - before) * 1024) / total,
      marginal: second > 0 ? ((after - mid) * 1024) / second : NaN,
    };
  } finally {
    for (const l of loads) l.kill('SIGKILL');
    await stopServer(s);
  }
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((x, y) => x - y);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};
const fmt = (n, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : '-');

/**
 * Median of per-repetition ratios a/b of `key`: the two runs of a pair ran close together, so
 * drifting background load on a shared machine cancels out better than in a ratio of medians.
 */
function paired(runs, a, b, key) {
  const rb = new Map((runs[b] ?? []).map((x) => [x.rep, x[key]]));
  const out = [];
  for (const x of runs[a] ?? []) if (rb.has(x.rep)) out.push(x[key] / rb.get(x.rep));
  return median(out);
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const say = (s) => process.stdout.write(s);
  let generator = `bench/load.js on node ${process.version} (${process.execPath})`;
  if (o.echoload === 'build') {
    const cc = ccVersion();
    if (cc === null) {
      throw new SetupError(
        '--echoload build needs a C compiler, and `cc` is not on PATH ' +
          '(Debian: apt-get install -y gcc); or pass --echoload PATH to a built echoload',
      );
    }
    o.echoload = buildC(path.join('echoload', 'echoload.c'));
    generator = `echoload (bench/echoload/echoload.c, cc -O2, ${cc})`;
  } else if (o.echoload) generator = `echoload (${o.echoload})`;
  const wanted = o.scenarios.split(',');
  const nodes = resolveNodes(o.nodes);
  const { specs, skipped } = planServers(o, nodes, wanted);

  // Start each server once before measuring anything: ours-native may not work in this
  // checkout (flag missing, addon not built) and is then skipped; any other failure is fatal.
  const ready = [];
  for (const spec of specs) {
    try {
      await stopServer(await startServer(spec));
      ready.push(spec);
    } catch (err) {
      if (!spec.optional) throw err;
      skipped.push({ name: spec.name, why: `failed to start: ${err.message}` });
    }
  }
  const profiled = ready.filter((s) => s.kind === 'ours+profile');
  const servers = ready.filter((s) => s.kind !== 'ours+profile');
  const nameWidth = Math.max(...ready.map((s) => s.name.length), 8) + 1;
  say(
    `echo-bench ${new Date().toISOString()}: ${o.reps} rep(s) x ${o.duration}s ` +
      `(+${o.warmup}s warm-up), scenarios ${o.scenarios}\n  generator  ${generator}\n`,
  );
  for (const s of ready) say(`  ${s.name.padEnd(nameWidth)} ${s.about}\n`);
  for (const s of skipped) say(`  ${s.name.padEnd(nameWidth)} SKIPPED: ${s.why}\n`);
  if (servers.length === 0) throw new SetupError('no server to run');

  const results = {}; // scenario -> server name -> [run]
  const record = (sc, name, r) => ((results[sc] ??= {})[name] ??= []).push(r);
  const loadScenarios = wanted.filter((w) => w in SCENARIOS || w === 'p');
  if (loadScenarios.length > 0) {
    const running = [];
    for (const spec of [...servers, ...(wanted.includes('p') ? profiled : [])]) {
      running.push(await startServer(spec));
    }
    for (let rep = 0; rep < o.reps; rep++) {
      for (const sc of loadScenarios) {
        const key = sc === 'p' ? 'a' : sc;
        const pool = running
          .map((_, i) => i)
          .filter((i) => {
            const kind = running[i].spec.kind;
            return sc === 'p'
              ? kind === 'ours' || kind === 'ours+profile'
              : kind !== 'ours+profile';
          });
        // Rotate the order each repetition so no server always runs first.
        const order = pool.map((_, i) => pool[(i + rep) % pool.length]);
        for (const idx of order) {
          let r;
          for (let attempt = 0; attempt < 3; attempt++) {
            if (isDead(running[idx])) {
              const s = running[idx];
              say(
                `  ! ${s.name} is gone (${s.child.signalCode ?? s.child.exitCode}); restarting\n`,
              );
              running[idx] = await startServer(s.spec);
            }
            r = await runLoad(running[idx], SCENARIOS[key].args, o);
            if (!r.failed || !isDead(running[idx])) break;
            say(`  ! ${running[idx].name} ${sc}: ${r.failed}; repeating the run\n`);
          }
          const s = running[idx];
          if (r.failed) say(`  ! ${s.name} ${sc}: ${r.failed} (left out of the medians)\n`);
          else if (r.errors || r.mismatches) {
            say(`  ! ${s.name} ${sc}: errors=${r.errors} mismatches=${r.mismatches}\n`);
          }
          r.rep = rep;
          if (!r.failed) record(sc, s.name, r);
          say(
            `  rep ${rep + 1} ${sc} ${s.name.padEnd(nameWidth)} ${fmt(r.msgs_per_s).padStart(8)} msg/s  ` +
              `server CPU ${fmt(r.cpu_us_per_msg, 2)} us/msg (user ${fmt(r.user_us_per_msg, 2)}, ` +
              `sys ${fmt(r.sys_us_per_msg, 2)}; ${fmt(r.server_cpu_share * 100)} % of a core)  ` +
              `p50 ${r.p50_us} us  p99 ${r.p99_us} us\n`,
          );
        }
      }
    }
    for (const s of running) await stopServer(s);
  }

  if (wanted.includes('e')) {
    for (let rep = 0; rep < o.reps; rep++) {
      for (let i = 0; i < servers.length; i++) {
        const spec = servers[(i + rep) % servers.length];
        const perConn = (await idleRss(spec, o.idleConns, o, true)).perConn;
        const { perConn: cold, marginal } = await idleRss(spec, o.idleConns, o, false);
        record('e', spec.name, {
          rep,
          bytes_per_conn: perConn,
          cold_bytes_per_conn: cold,
          marginal_bytes_per_conn: marginal,
        });
        say(
          `  rep ${rep + 1} e ${spec.name.padEnd(nameWidth)} ${fmt(perConn)} B/conn ` +
            `(cold ${fmt(cold)}, marginal ${fmt(marginal)})\n`,
        );
      }
    }
  }

  // Each server is compared with raw Node on the same Node; perl and c-epoll with raw Node on
  // the first Node given.
  const rawOf = (spec) => `raw${(spec.node ?? nodes[0]).tag}`;
  const lines = [
    '',
    'Medians over the repetitions. x raw and x perl: medians of per-repetition throughput',
    'ratios (> 1 = faster). CPU: server CPU microseconds per message (per connection in d),',
    'user + system; raw/x CPU > 1 = spends less CPU than raw Node.',
  ];
  const summary = {};
  for (const sc of ['a', 'b', 'c', 'd']) {
    const r = results[sc];
    if (!r) continue;
    lines.push(
      '',
      `${SCENARIOS[sc].title}`,
      '',
      `| server | ${sc === 'd' ? 'conns/s' : 'msg/s'} | x raw | x perl | CPU us | user | sys | raw/x CPU | p50/p99 us | runs |`,
      '|---|--:|--:|--:|--:|--:|--:|--:|---|--:|',
    );
    summary[sc] = {};
    for (const spec of servers) {
      const runs = r[spec.name] ?? [];
      const m = (k) => median(runs.map((x) => x[k]));
      const s = (summary[sc][spec.name] = {
        msgs_per_s: m('msgs_per_s'),
        vs_raw: paired(r, spec.name, rawOf(spec), 'msgs_per_s'),
        vs_perl: paired(r, spec.name, 'perl', 'msgs_per_s'),
        cpu_us_per_msg: m('cpu_us_per_msg'),
        user_us_per_msg: m('user_us_per_msg'),
        sys_us_per_msg: m('sys_us_per_msg'),
        cpu_raw_vs: paired(r, rawOf(spec), spec.name, 'cpu_us_per_msg'),
        p50_us: m('p50_us'),
        p99_us: m('p99_us'),
        runs: runs.length,
      });
      lines.push(
        `| ${spec.name} | ${fmt(s.msgs_per_s)} | ${fmt(s.vs_raw, 2)} | ${fmt(s.vs_perl, 2)} ` +
          `| ${fmt(s.cpu_us_per_msg, 2)} | ${fmt(s.user_us_per_msg, 2)} | ${fmt(s.sys_us_per_msg, 2)} ` +
          `| ${fmt(s.cpu_raw_vs, 2)} | ${fmt(s.p50_us)}/${fmt(s.p99_us)} | ${s.runs} |`,
      );
    }
  }
  if (results.e) {
    // Memory: lower is better; x raw is bytes over raw Node's bytes (≤ 1.10 is the bar).
    lines.push(
      '',
      `(e) ${o.idleConns} idle connections: server RSS growth per connection (B), lower is better;`,
      'warmed: after 1 s of connect churn; cold: a fresh process (includes its one-time JIT costs);',
      'marginal: on the cold process, each connection after its first fifth',
      '',
      '| server | B/conn warmed | x raw | x perl | B/conn cold | x raw | x perl | B/conn marginal | x raw |',
      '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
    );
    summary.e = {};
    for (const spec of servers) {
      const m = (n, k) => median((results.e[n] ?? []).map((x) => x[k]));
      const w = 'bytes_per_conn';
      const c = 'cold_bytes_per_conn';
      const s = (summary.e[spec.name] = {
        bytes_per_conn: m(spec.name, w),
        vs_raw: m(spec.name, w) / m(rawOf(spec), w),
        vs_perl: m(spec.name, w) / m('perl', w),
        cold_bytes_per_conn: m(spec.name, c),
        cold_vs_raw: m(spec.name, c) / m(rawOf(spec), c),
        cold_vs_perl: m(spec.name, c) / m('perl', c),
        marginal_bytes_per_conn: m(spec.name, 'marginal_bytes_per_conn'),
        marginal_vs_raw:
          m(spec.name, 'marginal_bytes_per_conn') / m(rawOf(spec), 'marginal_bytes_per_conn'),
      });
      lines.push(
        `| ${spec.name} | ${fmt(s.bytes_per_conn)} | ${fmt(s.vs_raw, 2)} | ${fmt(s.vs_perl, 2)} ` +
          `| ${fmt(s.cold_bytes_per_conn)} | ${fmt(s.cold_vs_raw, 2)} | ${fmt(s.cold_vs_perl, 2)} ` +
          `| ${fmt(s.marginal_bytes_per_conn)} | ${fmt(s.marginal_vs_raw, 2)} |`,
      );
    }
  }
  if (results.p) {
    summary.p = {};
    lines.push('');
    for (const node of nodes) {
      const on = `ours+profile${node.tag}`;
      const off = `ours${node.tag}`;
      const s = (summary.p[off] = {
        throughput_on_off: paired(results.p, on, off, 'msgs_per_s'),
        cpu_per_msg_on_off: paired(results.p, on, off, 'cpu_us_per_msg'),
      });
      lines.push(
        `profiling, (a), ${off}: --profile on/off throughput ${fmt(s.throughput_on_off, 3)}, ` +
          `server CPU per message ${fmt(s.cpu_per_msg_on_off, 3)}`,
      );
    }
  }
  say(lines.join('\n') + '\n');
  if (o.json) {
    const about = Object.fromEntries(ready.map((s) => [s.name, s.about]));
    const json = { options: o, generator, servers: about, skipped, summary, results };
    fs.writeFileSync(o.json, JSON.stringify(json, null, 2));
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`echo-bench: ${err instanceof SetupError ? err.message : err.stack}\n`);
    process.exit(1);
  },
);
