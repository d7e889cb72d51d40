#!/usr/bin/env node
'use strict';
/* global __filename */
// Timer and loop-iteration benchmarks.
//   npm run bench:timers -- [--timers N] [--idle N] [--reps R]
// 1. N AddTimer calls with random delays (0–2 s), half cancelled, run until all fire, against the
//    same work with raw setTimeout/clearTimeout: CPU seconds (user+system) of each, in fresh
//    child processes, interleaved; the ratio is raw/ours (> 1: ours is cheaper).
// 2. The cost of one loop iteration (LoopTimeout 0) with N idle wrapped sockets, vs none.
// 3. The timer queue alone: N timers with random fire times spread over 1 s and over 1000 s,
//    half cancelled, added and then popped in order (no loop, no waiting): ns per timer.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const LIB = path.join(__dirname, '..', 'dist', 'lib', 'index.js');

function child(kind, n) {
  const { DangaSocket } = require(LIB);
  const net = require('node:net');
  const report = (o) => process.stdout.write(`RESULT ${JSON.stringify(o)}\n`);
  if (kind === 'ours' || kind === 'raw') {
    const start = process.cpuUsage();
    const t0 = Date.now();
    let pending = 0;
    const fired = () => {
      pending--;
    };
    if (kind === 'ours') {
      for (let i = 0; i < n; i++) {
        const t = DangaSocket.AddTimer(Math.random() * 2, fired);
        if (i % 2) t.cancel();
        else pending++;
      }
      // Timers that fire do not reach the PLC until the loop's wait returns (Danga order), so
      // bound the wait: the PLC then sees the last timer within 50 ms.
      DangaSocket.SetLoopTimeout(50);
      DangaSocket.SetPostLoopCallback(() => pending > 0);
      void DangaSocket.EventLoop().then(() => {
        const u = process.cpuUsage(start);
        report({ cpu_s: (u.user + u.system) / 1e6, wall_s: (Date.now() - t0) / 1000 });
        process.exit(0);
      });
    } else {
      for (let i = 0; i < n; i++) {
        const t = setTimeout(() => {
          fired();
          if (pending === 0) {
            const u = process.cpuUsage(start);
            report({ cpu_s: (u.user + u.system) / 1e6, wall_s: (Date.now() - t0) / 1000 });
            process.exit(0);
          }
        }, Math.random() * 2000);
        if (i % 2) clearTimeout(t);
        else pending++;
      }
    }
    return;
  }
  if (kind.startsWith('queue')) {
    const { TimerQueue } = require(path.join(__dirname, '..', 'dist', 'lib', 'timer.js'));
    const spread = Number(kind.slice('queue'.length));
    const now = Date.now() / 1000;
    const times = new Float64Array(n);
    for (let i = 0; i < n; i++) times[i] = now + Math.random() * spread;
    const noop = () => {};
    let best = null;
    // Two passes in one process; the second (warm) one is reported.
    for (let pass = 0; pass < 2; pass++) {
      const q = new TimerQueue();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const t = q.add(times[i], noop);
        if (i % 2) t.cancel();
      }
      const t1 = process.hrtime.bigint();
      let popped = 0;
      while (q.pop() !== undefined) popped++;
      const t2 = process.hrtime.bigint();
      if (popped !== Math.ceil(n / 2)) throw new Error(`popped ${popped} of ${Math.ceil(n / 2)}`);
      best = { add_ns: Number(t1 - t0) / n, pop_ns: Number(t2 - t1) / n };
    }
    report(best);
    process.exit(0);
  }
  // kind === 'iter': iteration cost with n idle sockets (n/2 loopback pairs, both ends wrapped).
  class Idle extends DangaSocket {
    eventRead() {}
    eventErr() {}
    eventHup() {}
  }
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) =>
    new Idle(s).watchRead(true),
  );
  server.listen(0, '127.0.0.1', 4096, async () => {
    const port = server.address().port;
    const pairs = n / 2;
    for (let i = 0; i < pairs; i += 200) {
      const batch = [];
      for (let j = i; j < Math.min(pairs, i + 200); j++) {
        const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
        batch.push(new Promise((r) => c.once('connect', r)));
        new Idle(c).watchRead(true);
      }
      await Promise.all(batch);
    }
    while (DangaSocket.WatchedSockets() < n) await new Promise((r) => setTimeout(r, 10));
    DangaSocket.SetLoopTimeout(0);
    let iterations = 0;
    const t0 = process.hrtime.bigint();
    DangaSocket.SetPostLoopCallback(
      () => ++iterations < 20000 && process.hrtime.bigint() - t0 < 2e9,
    );
    await DangaSocket.EventLoop();
    const us = Number(process.hrtime.bigint() - t0) / 1000 / iterations;
    report({ sockets: DangaSocket.WatchedSockets(), us_per_iteration: us });
    DangaSocket.Reset();
    server.close();
    process.exit(0);
  });
}

function run(kind, n) {
  const r = spawnSync(
    process.execPath,
    ['--max-old-space-size=4096', __filename, '--child', kind, String(n)],
    {
      encoding: 'utf8',
    },
  );
  const line = (r.stdout || '').split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`${kind} failed: ${r.stderr}`);
  return JSON.parse(line.slice(7));
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') return child(argv[1], Number(argv[2]));
  const opt = (name, def) => {
    const i = argv.indexOf(name);
    return i >= 0 ? Number(argv[i + 1]) : def;
  };
  const n = opt('--timers', 1e6);
  const idle = opt('--idle', 10000);
  const reps = opt('--reps', 3);
  const ours = [];
  const raw = [];
  for (let r = 0; r < reps; r++) {
    for (const kind of r % 2 ? ['raw', 'ours'] : ['ours', 'raw']) {
      const res = run(kind, n);
      (kind === 'ours' ? ours : raw).push(res.cpu_s);
      process.stdout.write(
        `  rep ${r + 1} ${kind.padEnd(4)} ${n} timers: ${res.cpu_s.toFixed(2)} s CPU, ${res.wall_s.toFixed(2)} s wall\n`,
      );
    }
  }
  const iterIdle = [];
  const iterEmpty = [];
  for (let r = 0; r < reps; r++) {
    iterIdle.push(run('iter', idle).us_per_iteration);
    iterEmpty.push(run('iter', 0).us_per_iteration);
  }
  const queue = {};
  for (const spread of [1, 1000]) {
    const rs = [];
    for (let r = 0; r < reps; r++) rs.push(run(`queue${spread}`, n));
    queue[spread] = {
      add: median(rs.map((x) => x.add_ns)),
      pop: median(rs.map((x) => x.pop_ns)),
    };
  }
  process.stdout.write(
    [
      '',
      '| measurement | ours | raw setTimeout | raw/ours |',
      '|---|---|---|---|',
      `| ${n} timers, half cancelled (CPU s) | ${median(ours).toFixed(2)} | ${median(raw).toFixed(2)} | ${(median(raw) / median(ours)).toFixed(2)} |`,
      '',
      '| loop iteration (LoopTimeout 0) | µs per iteration |',
      '|---|---|',
      `| no sockets | ${median(iterEmpty).toFixed(2)} |`,
      `| ${idle} idle sockets (read watched) | ${median(iterIdle).toFixed(2)} |`,
      '',
      `| timer queue alone, ${n} timers, half cancelled | add, ns per timer | pop all, ns per timer |`,
      '|---|---|---|',
      ...[1, 1000].map(
        (sp) =>
          `| spread over ${sp} s | ${queue[sp].add.toFixed(0)} | ${queue[sp].pop.toFixed(0)} |`,
      ),
      '',
    ].join('\n'),
  );
}

main();
