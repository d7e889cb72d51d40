import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import { DangaSocket } from '../lib';
import { type ServerSock, dispose, runUntil, tcpPair } from './helpers';
import {
  connectTo,
  echo,
  fdCount,
  killChildren,
  rssBytes,
  sleep,
  startEchoServer,
} from './fixtures/children';

// Issue 4, resource exhaustion: out of descriptors, a peer that floods without reading, and
// a crowd of slowloris clients. The server survives, stays bounded and keeps serving.

const peers = new Set<ServerSock>();
afterEach(async () => {
  for (const p of peers) dispose(p);
  peers.clear();
  await killChildren();
  DangaSocket.Reset();
});

async function client(port: number): Promise<net.Socket> {
  const c = await connectTo(port);
  c.on('error', () => {});
  peers.add(c);
  return c;
}

/**
 * Write `chunk` on `c` for `ms`, honouring backpressure, never reading. Returns how many bytes
 * the kernel took in total and during the last second (0 there = the flood was stopped).
 */
async function flood(
  c: net.Socket,
  ms: number,
  sample?: () => void,
): Promise<{ total: number; lastSecond: number }> {
  c.pause();
  const chunk = randomBytes(64 * 1024);
  let accepted = 0;
  let atLastSecond = -1;
  const end = Date.now() + ms;
  while (Date.now() < end && !c.destroyed) {
    if (atLastSecond < 0 && Date.now() >= end - 1000) atLastSecond = accepted;
    sample?.();
    if (c.writableNeedDrain) {
      await sleep(20); // 'drain' may never come: the point is that the peer stops taking bytes
    } else {
      c.write(chunk, (err) => {
        if (!err) accepted += chunk.length;
      });
      await new Promise((r) => setImmediate(r));
    }
  }
  return { total: accepted, lastSecond: accepted - atLastSecond };
}

const MiB = 1024 * 1024;

describe('bin/echo-server out of descriptors (ulimit -n 64)', () => {
  it('survives EMFILE on accept and serves new connections once descriptors free up', async () => {
    const { child, port } = await startEchoServer([], 64);
    // 100 clients against ~45 free descriptors: the kernel completes every handshake, the
    // server can only accept some of them.
    const crowd = await Promise.all(Array.from({ length: 100 }, () => client(port)));
    const served = await Promise.all(
      crowd.map((c, i) =>
        echo(c, `crowd ${i}`, 1500).then(
          (b) => b.toString() === `crowd ${i}`,
          () => false,
        ),
      ),
    );
    const nServed = served.filter(Boolean).length;
    expect(nServed).toBeGreaterThan(0);
    expect(nServed).toBeLessThan(100);
    expect(fs.readFileSync(`/proc/${child.pid}/limits`, 'utf8')).toMatch(/open files\s+64\s+64/);
    expect(child.proc.exitCode).toBeNull();

    for (const c of crowd) c.destroy();
    await sleep(500);
    for (let i = 0; i < 20; i++) {
      const c = await client(port);
      expect((await echo(c, `after ${i}`, 3000)).toString()).toBe(`after ${i}`);
      c.destroy();
    }
    child.proc.kill('SIGTERM');
    expect((await child.exited).code).toBe(0);
  });
});

describe('memory under a peer that sends without ever reading', () => {
  it('bin/echo-server stays bounded: flow control stops the flood, RSS grows < 32 MiB', async () => {
    const { child, port } = await startEchoServer();
    const c = await client(port);
    await echo(c, 'warm up');
    const base = rssBytes(child.pid);
    let peak = base;
    const { total, lastSecond } = await flood(c, 3000, () => {
      peak = Math.max(peak, rssBytes(child.pid));
    });
    // What the flood got rid of sits in kernel buffers on both sides plus the server's
    // bounded queues (1 MiB echo queue, 1 MiB read, 256 KiB receive buffer).
    expect(total).toBeGreaterThan(2 * MiB);
    expect(lastSecond).toBeLessThan(MiB);
    expect(total).toBeLessThan(48 * MiB); // measured here: ~10 MiB
    expect(peak - base).toBeLessThan(32 * MiB); // measured here: ~8 MiB
    expect(child.proc.exitCode).toBeNull();
    // Still serving others.
    const other = await client(port);
    expect((await echo(other, 'others are fine')).toString()).toBe('others are fine');
  });

  it('a DangaSocket that does not watch read stops taking bytes at its high-water mark', async () => {
    const { server, client: peer } = await tcpPair();
    peers.add(peer);
    peers.add(server);
    class Idle extends DangaSocket {
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const obj = new Idle(server); // read never watched
    const before = process.memoryUsage().arrayBuffers;
    let peakBuffers = before;
    let done = false;
    const flooding = flood(peer, 2500, () => {
      peakBuffers = Math.max(peakBuffers, process.memoryUsage().arrayBuffers);
    }).then((r) => {
      done = true;
      return r;
    });
    await runUntil(() => done, 6000);
    const { total, lastSecond } = await flooding;
    expect(lastSecond).toBeLessThan(MiB);
    // Kernel buffers (up to ~4 MiB send + 32 MiB autotuned receive on loopback) plus our
    // 256 KiB receive high-water mark; without flow control this would be gigabytes.
    expect(total).toBeLessThan(32 * MiB); // measured here: ~7.5 MiB
    expect(peakBuffers - before).toBeLessThan(4 * MiB); // measured here: ~0.4 MiB
    // Nothing was lost: the object can still read what it was sent, in order.
    obj.watchRead(true);
    expect(obj.read(10)?.length).toBe(10);
  });
});

describe('bin/echo-server --idle-timeout under a slowloris crowd', () => {
  it('closes 200 slowloris clients (1 byte every 2 s) while a busy client keeps its echo', async () => {
    const { child, port } = await startEchoServer(['--idle-timeout', '1']);
    const slow = await Promise.all(Array.from({ length: 200 }, () => client(port)));
    const closed = new Set<net.Socket>();
    for (const s of slow) {
      s.on('end', () => closed.add(s));
      s.on('close', () => closed.add(s));
      s.resume();
      s.write('.');
    }
    const busy = await client(port);
    // The busy client echoes every 100 ms while the crowd trickles a byte every 2 s, until the
    // server has closed the whole crowd (bounded; generous for a loaded machine).
    const t0 = Date.now();
    let lastTrickle = t0;
    let rounds = 0;
    const round = async (): Promise<void> => {
      const msg = `round ${rounds++}`;
      expect((await echo(busy, msg, 15000)).toString()).toBe(msg);
    };
    while (closed.size < 200 && Date.now() - t0 < 30000) {
      if (Date.now() - lastTrickle >= 2000) {
        for (const s of slow) if (!s.destroyed) s.write('.');
        lastTrickle = Date.now();
      }
      await round();
      await sleep(100);
    }
    expect(closed.size).toBe(200);
    // The busy client was served all along, and still is.
    await round();
    expect(busy.destroyed).toBe(false);
    expect(rounds).toBeGreaterThanOrEqual(5);
    expect(fdCount(child.pid)).toBeLessThan(40);
  }, 60_000);
});
