#!/usr/bin/env node
'use strict';
// TLS echo benchmark: ours (`Listener.listen({ tls })` + a DangaSocket echo, from dist/) against
// a raw Node `tls.createServer` echo, the same load on both, interleaved and repeated.
//   npm run bench:tls -- [--duration S] [--reps N] [--conns N] [--bytes N] [--inflight N]
// Each server runs in its own process, the load generator (Node tls clients) in another; the
// certificate is a throwaway ECDSA one made with `openssl req` in a temporary directory.
// Prints messages/s per run, the medians and ours/raw (>= 1.0 means ours is at least as fast).
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const SELF = path.join(__dirname, 'tls-bench.js');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : dflt;
}

// ---- child roles ------------------------------------------------------------------------------

function serveOurs(key, cert) {
  const { DangaSocket, Listener } = require(path.join(ROOT, 'dist', 'lib'));
  class Echo extends DangaSocket {
    constructor(sock) {
      super(sock);
      this.watchRead(true);
    }
    eventRead() {
      const b = this.read(1 << 20);
      if (b === null) this.close('eof');
      else if (b.length > 0) this.write(b);
    }
    eventErr() {
      this.close('err');
    }
    eventHup() {
      this.close('hup');
    }
  }
  DangaSocket.setErrorHandler(() => {});
  Listener.listen({ tls: { key, cert } }, (s) => new Echo(s)).then((l) => {
    process.stdout.write(`port ${l.address().port}\n`);
  });
  void DangaSocket.EventLoop();
}

function serveRaw(key, cert) {
  const tls = require('node:tls');
  const srv = tls.createServer({ key, cert }, (s) => {
    s.on('data', (d) => s.write(d));
    s.on('error', () => s.destroy());
  });
  srv.listen(0, '127.0.0.1', () => process.stdout.write(`port ${srv.address().port}\n`));
}

function load(port, conns, bytes, inflight, durationS) {
  const tls = require('node:tls');
  const msg = Buffer.alloc(bytes, 0x61);
  let count = 0;
  let counting = false;
  const socks = [];
  let ready = 0;
  for (let i = 0; i < conns; i++) {
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    socks.push(c);
    let pending = 0;
    c.on('secureConnect', () => {
      for (let k = 0; k < inflight; k++) c.write(msg);
      if (++ready === conns) start();
    });
    c.on('data', (d) => {
      pending += d.length;
      while (pending >= bytes) {
        pending -= bytes;
        if (counting) count++;
        c.write(msg);
      }
    });
    c.on('error', (e) => {
      process.stderr.write(`load: ${e.message}\n`);
      process.exit(1);
    });
  }
  function start() {
    // A short warm-up, then the measured window.
    setTimeout(() => {
      counting = true;
      const t0 = process.hrtime.bigint();
      setTimeout(() => {
        const s = Number(process.hrtime.bigint() - t0) / 1e9;
        process.stdout.write(`rate ${count / s}\n`);
        for (const c of socks) c.destroy();
        process.exit(0);
      }, durationS * 1000);
    }, 500);
  }
}

const role = process.argv[2];
if (role === 'ours' || role === 'raw') {
  const dir = process.argv[3];
  const key = fs.readFileSync(path.join(dir, 'k.pem'));
  const cert = fs.readFileSync(path.join(dir, 'c.pem'));
  (role === 'ours' ? serveOurs : serveRaw)(key, cert);
  return;
}
if (role === 'load') {
  const [port, conns, bytes, inflight, duration] = process.argv.slice(3).map(Number);
  load(port, conns, bytes, inflight, duration);
  return;
}

// ---- driver -----------------------------------------------------------------------------------

function firstLine(child, prefix) {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = buf.match(new RegExp(`${prefix} (\\S+)\\n`));
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`${prefix}: process exited ${code}`)));
  });
}

async function main() {
  const duration = arg('duration', 3);
  const reps = arg('reps', 3);
  const conns = arg('conns', 20);
  const bytes = arg('bytes', 4096);
  const inflight = arg('inflight', 4);
  if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'index.js'))) {
    throw new Error('dist/ is missing: run npm run build (npm run bench:tls does)');
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-tls-bench-'));
  const children = new Set();
  const cleanup = () => {
    for (const c of children) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-keyout',
      path.join(dir, 'k.pem'),
      '-out',
      path.join(dir, 'c.pem'),
    ],
    { stdio: 'ignore' },
  );
  console.log(
    `TLS echo (${process.version}): ${conns} conns x ${inflight} in flight, ${bytes} B messages, ` +
      `${duration} s x ${reps} reps`,
  );
  const rates = { ours: [], raw: [] };
  for (let r = 0; r < reps; r++) {
    for (const name of r % 2 === 0 ? ['ours', 'raw'] : ['raw', 'ours']) {
      const srv = spawn(process.execPath, [SELF, name, dir], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.add(srv);
      const port = await firstLine(srv, 'port');
      const gen = spawn(
        process.execPath,
        [SELF, 'load', port, conns, bytes, inflight, duration].map(String),
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      children.add(gen);
      const rate = await firstLine(gen, 'rate');
      srv.kill('SIGKILL');
      children.delete(srv);
      children.delete(gen);
      rates[name].push(rate);
      console.log(`  rep ${r + 1} ${name.padEnd(4)} ${Math.round(rate)} msg/s`);
    }
  }
  const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
  const ours = median(rates.ours);
  const raw = median(rates.raw);
  console.log(`median ours ${Math.round(ours)} msg/s, raw Node tls ${Math.round(raw)} msg/s`);
  console.log(`ours/raw ${(ours / raw).toFixed(2)}x`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
