'use strict';
// bin/echo-server with 1 and 2 workers (reusePort), against the plain single process, in
// scenario (b) of docs/benchmarks.md: 50 connections x 16 pipelined 64-byte messages, driven
// by the C load generator. Server CPU is summed over the parent and its workers from /proc.
//
// usage: node bench/workers-bench.js [--duration S] [--warmup S] [--reps N] [--workers 1,2]
//                                    [--echoload PATH]   (default: build bench/echoload with cc)
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const ECHO_SERVER = path.join(ROOT, 'bin', 'echo-server');
const TICK = 100; // USER_HZ: /proc CPU times are in clock ticks

function parseArgs(argv) {
  const o = { duration: 3, warmup: 1, reps: 3, workers: [1, 2], echoload: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (a === '--duration') o.duration = Number(v);
    else if (a === '--warmup') o.warmup = Number(v);
    else if (a === '--reps') o.reps = Number(v);
    else if (a === '--workers') o.workers = v.split(',').map(Number);
    else if (a === '--echoload') o.echoload = v;
    else {
      process.stderr.write(`workers-bench: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return o;
}

function buildEchoload() {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'echoload-')), 'echoload');
  execFileSync('cc', ['-O2', '-o', out, path.join(__dirname, 'echoload', 'echoload.c')]);
  return out;
}

/** utime + stime of `pid` and its direct children, in seconds. */
function treeCpuSeconds(pid) {
  let ticks = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // f[1] ppid, f[11] utime, f[12] stime (fields 4, 14, 15 of proc(5))
      if (Number(name) === pid || Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / TICK;
}

function startServer(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ECHO_SERVER, '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on [^\s:]+:(\d+)/.exec(out);
      if (m) resolve({ child, port: Number(m[1]) });
    });
    child.once('exit', (code) =>
      reject(new Error(`echo-server exited (${code}) before listening`)),
    );
  });
}

function stopServer(child) {
  return new Promise((resolve) => {
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

function runEchoload(bin, port, o) {
  return new Promise((resolve, reject) => {
    const args = ['-M', 'echo', '-p', String(port), '-c', '50', '-P', '16', '-m', '64'];
    args.push('-d', String(o.duration), '-w', String(o.warmup));
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.once('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('RESULT '));
      if (code !== 0 || !line) return reject(new Error(`echoload failed (${code}): ${out}`));
      const r = {};
      for (const kv of line.slice(7).split(' ')) {
        const [k, v] = kv.split('=');
        r[k] = Number.isNaN(Number(v)) ? v : Number(v);
      }
      resolve(r);
    });
  });
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const bin = o.echoload ?? buildEchoload();
  const configs = [{ name: 'single process', args: [] }];
  for (const n of o.workers)
    configs.push({ name: `--workers ${n}`, args: ['--workers', String(n)] });
  process.stdout.write(
    `workers-bench: scenario (b) 50 conns x 16 x 64 B, ${o.reps} x ${o.duration} s ` +
      `(+${o.warmup} s warm-up), node ${process.version}, ${os.cpus().length} CPUs\n`,
  );
  const rows = [];
  for (const c of configs) {
    const runs = [];
    for (let r = 0; r < o.reps; r++) {
      const { child, port } = await startServer(c.args);
      await new Promise((res) => setTimeout(res, 300)); // let every worker settle
      const cpu0 = treeCpuSeconds(child.pid);
      const res = await runEchoload(bin, port, o);
      const cpu = treeCpuSeconds(child.pid) - cpu0;
      await stopServer(child);
      if (res.errors > 0 || res.mismatches > 0)
        throw new Error(`${c.name}: ${JSON.stringify(res)}`);
      // CPU over warm-up + window, per message of the window (the warm-up is short and similar).
      const total = o.duration + o.warmup;
      runs.push({
        mps: res.msgs_per_s,
        p99: res.p99_us,
        cpuPerMsgUs: (cpu / total / res.msgs_per_s) * 1e6,
        cores: cpu / total,
        client: res.client_cpu_s / total,
      });
    }
    rows.push({
      name: c.name,
      mps: median(runs.map((x) => x.mps)),
      p99: median(runs.map((x) => x.p99)),
      cores: median(runs.map((x) => x.cores)),
      cpuPerMsgUs: median(runs.map((x) => x.cpuPerMsgUs)),
      client: median(runs.map((x) => x.client)),
    });
  }
  const base = rows[0].mps;
  process.stdout.write(
    `${'server'.padEnd(16)} ${'msgs/s'.padStart(10)} ${'vs single'.padStart(9)} ${'p99 µs'.padStart(8)} ` +
      `${'server cores'.padStart(12)} ${'µs CPU/msg'.padStart(10)} ${'client cores'.padStart(12)}\n`,
  );
  for (const r of rows) {
    process.stdout.write(
      `${r.name.padEnd(16)} ${r.mps.toFixed(0).padStart(10)} ${(r.mps / base).toFixed(2).padStart(9)} ` +
        `${r.p99.toFixed(0).padStart(8)} ${r.cores.toFixed(2).padStart(12)} ` +
        `${r.cpuPerMsgUs.toFixed(2).padStart(10)} ${r.client.toFixed(2).padStart(12)}\n`,
    );
  }
}

main().catch((err) => {
  process.stderr.write(`workers-bench: ${err.message}\n`);
  process.exit(1);
});
