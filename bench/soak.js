#!/usr/bin/env node
'use strict';
// Soak test (not part of `npm test`): mixed load against a danga-socket echo server for a
// configurable time, with faults injected all along. Run `npm run build` first, then
//
//   node bench/soak.js [--duration SECONDS] [--conns N] [--churn-slots N] [--slow N]
//                      [--json FILE]
//
// This process is the server (the library, measured); it forks itself as the client (the
// load). Every echoed byte is verified. Exits 1 if any byte was lost or mixed up, any
// connection closed unexpectedly, an error reached the handler that was not injected, the
// descriptor map or the descriptors did not return to their baseline, or memory kept growing.
// Loopback only; every loop is bounded by the deadline.
const childProcess = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const MiB = 1024 * 1024;

function parseArgs(argv) {
  const o = {
    role: 'server',
    duration: 60,
    conns: 200,
    churnSlots: 16,
    slow: 4,
    port: 0,
    json: '',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '').replace(/-([a-z])/g, (_m, c) => c.toUpperCase());
    const v = argv[i + 1];
    if (!(k in o) || v === undefined) {
      process.stderr.write(
        'usage: soak.js [--duration SECONDS] [--conns N] [--churn-slots N] [--slow N] [--json FILE]\n',
      );
      process.exit(2);
    }
    o[k] = typeof o[k] === 'number' ? Number(v) : v;
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// Connection modes: the first byte a client sends.
//   E echo (long-lived, verified)   C churn (connect, echo, half-close)
//   S slow reader (flow control)    T the server's eventRead throws (fault)
//   R the client resets mid-stream (fault)
const EXPECTED_CLOSE = {
  E: ['eof'],
  C: ['eof'],
  S: ['eof'],
  T: ['handler_error'],
  R: ['eof', 'err', 'hup', 'ECONNRESET', 'EPIPE', 'write_error'],
};

// ---------------------------------------------------------------------------------------
// Server role
// ---------------------------------------------------------------------------------------

async function server() {
  const { DangaSocket, Listener } = require(path.join(__dirname, '..', 'dist', 'lib', 'index.js'));
  const stats = {
    accepted: 0,
    bytesEchoed: 0,
    peakOpen: 0,
    closes: {}, // mode:reason → count
    unexpectedCloses: 0,
    errors: {}, // handler error kinds
    unexpectedErrors: 0,
    injected: { eventReadThrow: 0, timerThrow: 0, plcThrow: 0, connectRefused: 0 },
    refusedOk: 0,
    samples: [], // [seconds, rssMiB, heapMiB, arrayBuffersMiB, watched, fds]
  };
  const pendingInjected = { eventRead: 0, timer: 0, postLoopCallback: 0 };

  class SoakConn extends DangaSocket {
    constructor(sock) {
      super(sock);
      this.mode = '?';
      this.paused = false;
      stats.accepted++;
      this.watchRead(true);
    }
    eventRead() {
      const buf = this.read(256 * 1024);
      if (buf === null) {
        this.watchRead(false);
        this.write(() => this.close('eof'));
        return;
      }
      if (buf.length === 0) return;
      let data = buf;
      if (this.mode === '?') {
        this.mode = String.fromCharCode(buf[0]);
        data = buf.subarray(1);
      }
      if (this.mode === 'T') {
        stats.injected.eventReadThrow++;
        pendingInjected.eventRead++;
        throw new Error('injected fault: eventRead throws');
      }
      if (data.length > 0) {
        if (this.mode !== 'R') stats.bytesEchoed += data.length;
        this.write(data);
      }
      if (this.writeBufSize > MiB) {
        this.paused = true;
        this.watchRead(false);
      }
    }
    eventWrite() {
      this.write(undefined);
      if (this.paused && this.writeBufSize < 256 * 1024 && !this.closed) {
        this.paused = false;
        this.watchRead(true);
      }
    }
    eventErr() {
      this.close('err');
    }
    eventHup() {
      this.close('hup');
    }
    close(reason) {
      if (!this.closed) {
        const key = `${this.mode}:${reason}`;
        stats.closes[key] = (stats.closes[key] || 0) + 1;
        const ok = EXPECTED_CLOSE[this.mode];
        if (ok === undefined ? reason !== 'eof' : !ok.includes(reason)) stats.unexpectedCloses++;
      }
      super.close(reason);
    }
  }

  // An outgoing connection to a closed port with data queued: must close with write_error.
  class Refused extends DangaSocket {
    eventRead() {}
    eventErr() {}
    eventHup() {}
    close(reason) {
      if (!this.closed && reason === 'write_error') stats.refusedOk++;
      else if (!this.closed) stats.unexpectedCloses++;
      super.close(reason);
    }
  }

  DangaSocket.setErrorHandler((err, ctx) => {
    stats.errors[ctx.kind] = (stats.errors[ctx.kind] || 0) + 1;
    if (pendingInjected[ctx.kind] > 0) pendingInjected[ctx.kind]--;
    else {
      stats.unexpectedErrors++;
      process.stderr.write(`unexpected error (${ctx.kind}): ${err && err.stack}\n`);
    }
  });

  const listener = await Listener.listen({ port: opts.port, backlog: 1024 }, (s) => {
    s.setNoDelay(true);
    new SoakConn(s);
  });
  const port = listener.address().port;
  const closedPort = await new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });

  const fdCount = () => fs.readdirSync('/proc/self/fd').length;
  const baseline = { watched: DangaSocket.WatchedSockets(), fds: fdCount() };
  const t0 = Date.now();
  const deadline = t0 + opts.duration * 1000;
  let phase = 'load';

  // Faults on a timer: a throwing timer every second, a refused connect every 2 s.
  const timerFault = () => {
    if (phase !== 'load') return;
    stats.injected.timerThrow++;
    pendingInjected.timer++;
    DangaSocket.AddTimer(1, timerFault);
    throw new Error('injected fault: timer throws');
  };
  DangaSocket.AddTimer(1, timerFault);
  const refusedFault = () => {
    if (phase !== 'load') return;
    stats.injected.connectRefused++;
    const r = new Refused(
      net.connect({ host: '127.0.0.1', port: closedPort, allowHalfOpen: true }),
    );
    r.write('never delivered');
    DangaSocket.AddTimer(2, refusedFault);
  };
  DangaSocket.AddTimer(2, refusedFault);

  const sample = () => {
    const m = process.memoryUsage();
    const row = [
      Math.round((Date.now() - t0) / 1000),
      +(m.rss / MiB).toFixed(1),
      +(m.heapUsed / MiB).toFixed(1),
      +(m.arrayBuffers / MiB).toFixed(1),
      DangaSocket.WatchedSockets(),
      fdCount(),
    ];
    stats.samples.push(row);
    stats.peakOpen = Math.max(stats.peakOpen, row[4]);
    return row;
  };
  const sampler = () => {
    const row = sample();
    if (row[0] % 10 === 0) {
      process.stdout.write(
        `t=${row[0]}s rss=${row[1]}MiB heap=${row[2]}MiB buffers=${row[3]}MiB ` +
          `open=${row[4]} fds=${row[5]} accepted=${stats.accepted} errors=${JSON.stringify(stats.errors)}\n`,
      );
    }
    if (phase !== 'done') DangaSocket.AddTimer(1, sampler);
  };
  DangaSocket.AddTimer(1, sampler);

  const child = childProcess.fork(
    path.join(__dirname, 'soak.js'),
    [
      '--role', 'client',
      '--port', String(port),
      '--duration', String(opts.duration),
      '--conns', String(opts.conns),
      '--churn-slots', String(opts.churnSlots),
      '--slow', String(opts.slow),
    ], // prettier-ignore
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  let clientReport = null;
  let clientExit = null;
  child.on('message', (msg) => {
    if (msg && msg.type === 'final') clientReport = msg.stats;
  });
  child.on('exit', (code) => {
    clientExit = code;
  });

  let plcCalls = 0;
  let drainedAt = 0;
  DangaSocket.SetLoopTimeout(100);
  DangaSocket.SetPostLoopCallback(() => {
    // A throwing post-loop callback every ~5 s (counted by iterations is too load-dependent).
    plcCalls++;
    if (
      phase === 'load' &&
      plcCalls % 50 === 0 &&
      Date.now() - t0 > stats.injected.plcThrow * 5000
    ) {
      stats.injected.plcThrow++;
      pendingInjected.postLoopCallback++;
      throw new Error('injected fault: post-loop callback throws');
    }
    const now = Date.now();
    if (phase === 'load' && now >= deadline) phase = 'drain';
    if (phase === 'drain' && clientExit !== null) {
      // The client is gone: everything must be back to the baseline.
      if (DangaSocket.WatchedSockets() === baseline.watched) {
        if (drainedAt === 0) drainedAt = now;
        if (now - drainedAt > 500) phase = 'done';
      }
    }
    return phase !== 'done' && now < deadline + 30000;
  });
  await DangaSocket.EventLoop();
  const last = sample();
  listener.close('shutdown');
  DangaSocket.Reset();

  // Memory: compare the first and last fifth of the run after a warm-up of 10% (min 5 s).
  const warm = Math.max(5, Math.round(opts.duration * 0.1));
  const during = stats.samples.filter((r) => r[0] >= warm && r[0] <= opts.duration);
  const fifth = Math.max(1, Math.floor(during.length / 5));
  const avg = (rows, i) => rows.reduce((a, r) => a + r[i], 0) / Math.max(1, rows.length);
  const early = during.slice(0, fifth);
  const late = during.slice(-fifth);
  const memory = {
    rssEarlyMiB: +avg(early, 1).toFixed(1),
    rssLateMiB: +avg(late, 1).toFixed(1),
    rssMaxMiB: Math.max(...stats.samples.map((r) => r[1])),
    heapEarlyMiB: +avg(early, 2).toFixed(1),
    heapLateMiB: +avg(late, 2).toFixed(1),
    buffersLateMiB: +avg(late, 3).toFixed(1),
  };
  const c = clientReport || {};
  const summary = {
    durationS: opts.duration,
    connectionsAccepted: stats.accepted,
    peakOpen: stats.peakOpen,
    serverCloses: stats.closes,
    faultsInjected: {
      ...stats.injected,
      clientResets: c.resets || 0,
    },
    errorsReported: stats.errors,
    unexpectedErrors: stats.unexpectedErrors,
    unexpectedClosesServer: stats.unexpectedCloses,
    unexpectedClosesClient: c.unexpectedCloses,
    refusedClosedWithWriteError: stats.refusedOk,
    bytesEchoedByServer: stats.bytesEchoed,
    bytesVerified: c.bytesVerified,
    mismatchedBytes: c.mismatches,
    bytesLost: stats.bytesEchoed - c.bytesVerified,
    churned: c.churned,
    slowReaderBytes: c.slowBytes,
    throwConnsClosed: c.throwClosed,
    clientErrors: c.errors,
    baseline,
    end: { watched: last[4], fds: last[5] },
    memory,
  };
  process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
  if (opts.json) fs.writeFileSync(opts.json, JSON.stringify(summary, null, 2) + '\n');
  const problems = [];
  if (clientReport === null || clientExit !== 0) problems.push('client did not finish cleanly');
  if (c.mismatches !== 0) problems.push('mismatched bytes');
  if (stats.bytesEchoed !== c.bytesVerified) problems.push('bytes lost');
  if (stats.unexpectedCloses !== 0 || c.unexpectedCloses !== 0) problems.push('unexpected closes');
  if (stats.unexpectedErrors !== 0) problems.push('unexpected errors');
  if (stats.refusedOk !== stats.injected.connectRefused) problems.push('refused connects');
  if (last[4] !== baseline.watched) problems.push('descriptor map not back to baseline');
  if (last[5] > baseline.fds + 5) problems.push('descriptors not back to baseline');
  if (memory.rssLateMiB > memory.rssEarlyMiB * 1.25 + 32) problems.push('memory kept growing');
  process.stdout.write(problems.length ? `FAIL: ${problems.join(', ')}\n` : 'OK\n');
  process.exit(problems.length ? 1 : 0);
}

// ---------------------------------------------------------------------------------------
// Client role (plain Node sockets)
// ---------------------------------------------------------------------------------------

async function client() {
  const pool = crypto.randomBytes(4 * MiB);
  const deadline = Date.now() + opts.duration * 1000;
  const stats = {
    bytesVerified: 0,
    mismatches: 0,
    unexpectedCloses: 0,
    churned: 0,
    slowBytes: 0,
    throwClosed: 0,
    resets: 0,
    errors: {},
  };
  const running = () => Date.now() < deadline;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const slice = (len) => {
    const off = Math.floor(Math.random() * (pool.length - len));
    return pool.subarray(off, off + len);
  };
  const noteError = (e) => {
    const k = (e && e.code) || 'other';
    stats.errors[k] = (stats.errors[k] || 0) + 1;
  };

  /** A connection whose echo is checked byte for byte against what was sent. */
  function open(mode) {
    return new Promise((resolve) => {
      const c = net.connect({ host: '127.0.0.1', port: opts.port, allowHalfOpen: true });
      c.setNoDelay(true);
      const st = { c, mode, expect: [], ended: false, closed: false, error: null, waiters: [] };
      c.on('error', (e) => {
        st.error = e;
      });
      c.on('data', (d) => {
        if (mode === 'R') return; // an abandoned stream: its echo is not checked
        let off = 0;
        while (off < d.length) {
          const head = st.expect[0];
          if (head === undefined) {
            stats.mismatches += d.length - off; // bytes nobody sent on this connection
            break;
          }
          const n = Math.min(head.length, d.length - off);
          if (!d.subarray(off, off + n).equals(head.subarray(0, n))) stats.mismatches += n;
          stats.bytesVerified += n;
          if (mode === 'S') stats.slowBytes += n;
          off += n;
          if (n === head.length) st.expect.shift();
          else st.expect[0] = head.subarray(n);
        }
        for (const w of st.waiters.splice(0)) w();
      });
      c.on('end', () => {
        st.ended = true;
        for (const w of st.waiters.splice(0)) w();
      });
      c.on('close', () => {
        st.closed = true;
        for (const w of st.waiters.splice(0)) w();
      });
      c.once('connect', () => {
        c.write(Buffer.from(mode));
        resolve(st);
      });
      c.once('error', (e) => {
        if (!c.connecting) return;
        noteError(e);
        resolve(null);
      });
    });
  }
  const send = (st, buf) => {
    st.expect.push(buf);
    st.c.write(buf);
  };
  /** Resolve on the next data, end or close event of `st`, or after `ms`. */
  const nextEvent = (st, ms) =>
    new Promise((resolve) => {
      if (st.closed) return resolve();
      const t = setTimeout(resolve, ms);
      st.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  /** Wait until everything sent came back (or the connection ended), at most `ms`. */
  async function drained(st, ms) {
    const stop = Date.now() + ms;
    while (st.expect.length > 0 && !st.ended && !st.closed && Date.now() < stop) {
      await nextEvent(st, stop - Date.now());
    }
  }
  /** Half-close, then expect every echo and the server's FIN. */
  async function finish(st) {
    st.c.end();
    const stop = Date.now() + 10000;
    while (!(st.ended && st.expect.length === 0) && !st.closed && Date.now() < stop) {
      await nextEvent(st, 200);
    }
    const ok = st.ended && st.expect.length === 0 && st.error === null;
    if (!ok) {
      stats.unexpectedCloses++;
      if (st.error) noteError(st.error);
    }
    st.c.destroy();
  }

  async function echoLoop() {
    const st = await open('E');
    if (st === null) return void stats.unexpectedCloses++;
    while (running() && !st.ended && !st.closed) {
      for (let i = 0; i < 4; i++) send(st, slice(1 + Math.floor(Math.random() * 16384)));
      await drained(st, 5000);
    }
    if (st.ended || st.closed) stats.unexpectedCloses++;
    else await finish(st);
  }

  async function churnLoop() {
    while (running()) {
      const st = await open('C');
      if (st === null) {
        stats.unexpectedCloses++;
        await sleep(50);
        continue;
      }
      send(st, slice(1 + Math.floor(Math.random() * 4096)));
      await finish(st);
      stats.churned++;
    }
  }

  /** Sends 4 MiB at a time but reads at ~2 MiB/s: the server must pause and resume. */
  async function slowLoop() {
    while (running()) {
      const st = await open('S');
      if (st === null) {
        stats.unexpectedCloses++;
        continue;
      }
      for (let i = 0; i < 64; i++) send(st, slice(64 * 1024));
      while (st.expect.length > 0 && !st.closed && Date.now() < deadline + 5000) {
        st.c.pause();
        await sleep(40);
        st.c.resume();
        await sleep(10);
      }
      await finish(st);
    }
  }

  /** Faults: a connection the server's hook throws on, and one we reset mid-stream. */
  async function faultLoop() {
    while (running()) {
      const t = await open('T');
      if (t !== null) {
        t.c.write(slice(100));
        const stop = Date.now() + 5000;
        while (!t.ended && !t.closed && Date.now() < stop) await nextEvent(t, 100);
        if (t.ended || t.closed) stats.throwClosed++;
        else stats.unexpectedCloses++;
        t.c.destroy();
      }
      const r = await open('R');
      if (r !== null) {
        r.c.write(slice(512 * 1024));
        await sleep(5);
        r.c.resetAndDestroy();
        stats.resets++;
      }
      await sleep(200);
    }
  }

  const tasks = [];
  for (let i = 0; i < opts.conns; i++) tasks.push(echoLoop());
  for (let i = 0; i < opts.churnSlots; i++) tasks.push(churnLoop());
  for (let i = 0; i < opts.slow; i++) tasks.push(slowLoop());
  tasks.push(faultLoop());
  let finished = false;
  // If the server goes away, so does the load (never outlive the parent).
  process.on('disconnect', () => process.exit(finished ? 0 : 1));
  await Promise.all(tasks);
  finished = true;
  process.send({ type: 'final', stats });
  process.disconnect();
}

if (opts.role === 'client') {
  client().catch((err) => {
    process.stderr.write(`soak client: ${err && err.stack}\n`);
    process.exit(1);
  });
} else {
  server().catch((err) => {
    process.stderr.write(`soak server: ${err && err.stack}\n`);
    process.exit(1);
  });
}
