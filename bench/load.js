#!/usr/bin/env node
'use strict';
// Load generator for echo servers (loopback only). Verifies every echoed byte.
//   node bench/load.js --mode echo  --port P [--conns 50] [--inflight 1] [--bytes 64] [--duration 5] [--warmup 1]
//   node bench/load.js --mode churn --port P [--conns 50] [--bytes 64] [--duration 5] [--warmup 1]
//   node bench/load.js --mode idle  --port P [--conns 10000]   (prints ESTABLISHED, holds until stdin ends)
// Last line: RESULT {json} with msgs_per_s, MB_per_s, p50_us, p99_us, errors, mismatches.
const net = require('node:net');
const { performance } = require('node:perf_hooks');

function parse(argv) {
  const o = { mode: 'echo', port: 0, conns: 50, inflight: 1, bytes: 64, duration: 5, warmup: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    if (!(key in o)) throw new Error(`unknown option ${argv[i]}`);
    o[key] = key === 'mode' ? argv[i + 1] : Number(argv[i + 1]);
  }
  if (!o.port) throw new Error('--port is required');
  return o;
}

const opts = parse(process.argv.slice(2));
const HOST = '127.0.0.1';
// Each connection's stream is a distinct window into one pseudo-random pattern.
const PATTERN = Buffer.alloc(1 << 20);
for (let i = 0, x = 2463534242; i < PATTERN.length; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  PATTERN[i] = x & 0xff;
}
const WRAP = PATTERN.length - 65536;

const latencies = [];
let errors = 0;
let mismatches = 0;
let completed = 0;
let measuring = false;
let bytesEchoed = 0;

function result(extra) {
  latencies.sort((a, b) => a - b);
  const pick = (q) =>
    latencies.length
      ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]
      : 0;
  const r = {
    mode: opts.mode,
    msgs_per_s: completed / opts.duration,
    MB_per_s: bytesEchoed / opts.duration / 1e6,
    p50_us: Math.round(pick(0.5)),
    p99_us: Math.round(pick(0.99)),
    errors,
    mismatches,
    ...extra,
  };
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}

function nowUs() {
  return performance.now() * 1000;
}

function startEcho() {
  const socks = [];
  const span = Math.floor((WRAP - opts.bytes) / opts.bytes) * opts.bytes;
  for (let c = 0; c < opts.conns; c++) {
    const sock = net.connect({ port: opts.port, host: HOST, noDelay: true });
    sock.setNoDelay(true);
    const base = (c * 7919) % (PATTERN.length - span - opts.bytes);
    let sentMsgs = 0;
    let recvPos = 0;
    const sent = [];
    // Send `k` messages; the stream wraps only at message boundaries, so a batch is one slice.
    const send = (k) => {
      const t = nowUs();
      while (k > 0) {
        const off = base + ((sentMsgs * opts.bytes) % span);
        const room = Math.max(1, Math.min(k, (base + span - off) / opts.bytes));
        sock.write(PATTERN.subarray(off, off + room * opts.bytes));
        for (let i = 0; i < room; i++) sent.push(t);
        sentMsgs += room;
        k -= room;
      }
    };
    sock.on('connect', () => send(opts.inflight));
    sock.on('data', (chunk) => {
      let i = 0;
      let done = 0;
      while (i < chunk.length) {
        const msgOff = recvPos % opts.bytes;
        const take = Math.min(opts.bytes - msgOff, chunk.length - i);
        const off = base + ((recvPos - msgOff) % span) + msgOff;
        if (chunk.compare(PATTERN, off, off + take, i, i + take) !== 0) mismatches++;
        i += take;
        recvPos += take;
        if (measuring) bytesEchoed += take;
        if (msgOff + take === opts.bytes) {
          const t0 = sent.shift();
          if (measuring) {
            completed++;
            if (latencies.length < 2e6) latencies.push(nowUs() - t0);
          }
          done++;
        }
      }
      if (done > 0) send(done);
    });
    sock.on('error', () => errors++);
    socks.push(sock);
  }
  return socks;
}

function startChurn() {
  let stop = false;
  const msg = PATTERN.subarray(0, opts.bytes);
  const slot = () => {
    if (stop) return;
    const t0 = nowUs();
    const sock = net.connect({ port: opts.port, host: HOST, noDelay: true });
    let got = 0;
    let ok = true;
    sock.on('connect', () => sock.write(msg));
    sock.on('data', (chunk) => {
      if (chunk.compare(msg, got, got + chunk.length) !== 0) ok = false;
      got += chunk.length;
      if (got >= opts.bytes) {
        if (!ok) mismatches++;
        if (measuring) {
          completed++;
          bytesEchoed += opts.bytes;
          latencies.push(nowUs() - t0);
        }
        sock.destroy();
        setImmediate(slot);
      }
    });
    sock.on('error', () => {
      errors++;
      sock.destroy();
      setTimeout(slot, 10);
    });
  };
  for (let c = 0; c < opts.conns; c++) slot();
  return () => {
    stop = true;
  };
}

function startIdle() {
  let open = 0;
  let started = 0;
  let pending = 0;
  const socks = [];
  const next = () => {
    while (pending < 200 && started < opts.conns) {
      started++;
      pending++;
      const sock = net.connect({ port: opts.port, host: HOST });
      socks.push(sock);
      sock.on('connect', () => sock.write('x'));
      sock.once('data', (d) => {
        if (d.length !== 1 || d[0] !== 0x78) mismatches++;
        pending--;
        open++;
        if (open === opts.conns) process.stdout.write(`ESTABLISHED ${open}\n`);
        next();
      });
      sock.on('error', () => {
        errors++;
        pending--;
        next();
      });
    }
  };
  next();
  const done = () => {
    for (const s of socks) s.destroy();
    result({ conns: open });
    process.exit(0);
  };
  process.stdin.on('end', done);
  process.stdin.resume();
  process.on('SIGTERM', done);
}

if (opts.mode === 'idle') {
  startIdle();
} else {
  const socks = opts.mode === 'echo' ? startEcho() : [];
  const stopChurn = opts.mode === 'churn' ? startChurn() : null;
  setTimeout(() => {
    measuring = true;
    setTimeout(() => {
      measuring = false;
      if (stopChurn) stopChurn();
      for (const s of socks) s.destroy();
      result({ conns: opts.conns, inflight: opts.inflight, bytes: opts.bytes });
      process.exit(0);
    }, opts.duration * 1000);
  }, opts.warmup * 1000);
}
