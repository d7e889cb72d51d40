import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DangaSocket, DangaSocketError, Listener, type ErrorContext } from '../lib';
import { Echo, type ServerSock, closedPort, dispose, tcpPair } from './helpers';
import { beyondKernelBuffers } from './fill';
import { NATIVE_OFF } from './native-mode';

// Issue 4, faults: whatever goes wrong on one object, that object ends closed with the right
// reason, every other connection keeps its bytes, and the loop keeps running.

const peers = new Set<ServerSock>();
afterEach(() => {
  DangaSocket.Reset();
  for (const p of peers) dispose(p);
  peers.clear();
});

/** A tcpPair whose client side is destroyed after the test. */
async function pair(): Promise<{ server: ServerSock; client: net.Socket }> {
  const p = await tcpPair();
  peers.add(p.client);
  peers.add(p.server);
  return p;
}

/** Records its hooks; override what a test needs. */
class Probe extends DangaSocket {
  readonly events: string[] = [];
  readonly reads: (string | null)[] = [];
  override eventRead(): void {
    this.events.push('read');
    const b = this.read(65536);
    if (b === null || b.length > 0) this.reads.push(b === null ? null : b.toString());
  }
  override eventWrite(): void {
    this.events.push('write');
    super.eventWrite();
  }
  override eventErr(): void {
    this.events.push('err');
  }
  override eventHup(): void {
    this.events.push('hup');
  }
}

/**
 * An unrelated connection that keeps echoing random chunks (ping-pong) through an `Echo`
 * object on the loop, verifying every byte. Its progress proves the loop keeps running.
 */
class Bystander {
  rounds = 0;
  mismatches = 0;
  private sent = Buffer.alloc(0);
  private got: Buffer[] = [];
  private gotLen = 0;
  private stopped = false;
  private constructor(
    readonly obj: Echo,
    readonly client: net.Socket,
  ) {
    client.on('data', (d: Buffer) => this.onData(d));
    this.next();
  }

  static async start(): Promise<Bystander> {
    const { server, client } = await pair();
    return new Bystander(new Echo(server), client);
  }

  private next(): void {
    if (this.stopped) return;
    this.sent = randomBytes(1 + Math.floor(Math.random() * 32768));
    this.got = [];
    this.gotLen = 0;
    this.client.write(this.sent);
  }

  private onData(d: Buffer): void {
    this.got.push(d);
    this.gotLen += d.length;
    if (this.gotLen < this.sent.length) return;
    if (!Buffer.concat(this.got).equals(this.sent)) this.mismatches++;
    this.rounds++;
    this.next();
  }

  /** Stop sending and check that nothing was lost or mixed up and the object is still open. */
  expectIntact(minRounds = 3): void {
    this.stopped = true;
    expect(this.mismatches).toBe(0);
    expect(this.rounds).toBeGreaterThanOrEqual(minRounds);
    expect(this.obj.closed).toBe(false);
  }
}

/** Collect what reaches the error handler. */
function collectErrors(): { err: unknown; ctx: ErrorContext }[] {
  const seen: { err: unknown; ctx: ErrorContext }[] = [];
  DangaSocket.setErrorHandler((err, ctx) => seen.push({ err, ctx }));
  return seen;
}

/**
 * Run the loop until `done()` holds and the bystander made `extraRounds` more rounds since
 * the call (so the loop demonstrably went on after the fault). Rejects when `maxMs` pass first.
 */
async function runUntil(
  done: () => boolean,
  by?: Bystander,
  extraRounds = 3,
  maxMs = 8000,
): Promise<void> {
  const deadline = Date.now() + maxMs;
  let target = Infinity;
  let met = false;
  DangaSocket.SetLoopTimeout(20);
  DangaSocket.SetPostLoopCallback(() => {
    if (Date.now() >= deadline) return false;
    if (!done()) return true;
    if (by === undefined) {
      met = true;
      return false;
    }
    if (target === Infinity) target = by.rounds + extraRounds;
    met = by.rounds >= target;
    return !met;
  });
  await DangaSocket.EventLoop();
  if (!met) throw new Error(`runUntil: not done after ${maxMs} ms (or the loop was reset)`);
}

function readAll(c: net.Socket): { text: () => string; ended: () => boolean; bytes: () => number } {
  const chunks: Buffer[] = [];
  let ended = false;
  let n = 0;
  c.on('data', (d: Buffer) => {
    chunks.push(d);
    n += d.length;
  });
  c.on('end', () => (ended = true));
  c.on('error', () => {});
  return { text: () => Buffer.concat(chunks).toString(), ended: () => ended, bytes: () => n };
}

describe('DangaSocket under faults', () => {
  it('closes with ECONNRESET/EPIPE when the peer resets in the middle of a large write', async () => {
    const by = await Bystander.start();
    const { server, client } = await pair();
    class Sender extends Probe {}
    const s = new Sender(server);
    const big = Buffer.alloc(beyondKernelBuffers(), 0x5a);
    expect(s.write(big)).toBe(false);
    let received = 0;
    client.on('data', (d: Buffer) => {
      received += d.length;
      if (received >= 1024 * 1024 && !client.destroyed) client.resetAndDestroy();
    });
    await runUntil(() => s.closed, by);
    expect(['ECONNRESET', 'EPIPE']).toContain(s.closeReason);
    expect(s.events).not.toContain('err'); // the write path closed it first
    await expect(s.whenClosed()).resolves.toBe(s.closeReason);
    by.expectIntact();
  });

  it('half-close by the peer: EOF is read, our side stays open and can still answer', async () => {
    const by = await Bystander.start();
    const { server, client } = await pair();
    const peer = readAll(client);
    class Answer extends Probe {
      override eventRead(): void {
        super.eventRead();
        if (this.reads.at(-1) === null) {
          this.watchRead(false);
          this.write('answer after EOF');
          this.write(() => this.close('answered'));
        }
      }
    }
    const a = new Answer(server);
    a.watchRead(true);
    client.end('request');
    await runUntil(() => a.closed && peer.ended(), by);
    expect(a.reads).toEqual(['request', null]);
    expect(a.events).not.toContain('hup'); // a FIN alone is no hang-up
    expect(a.closeReason).toBe('answered');
    expect(peer.text()).toBe('answer after EOF');
    by.expectIntact();
  });

  it('half-close by the peer while read is not watched delivers no event at all', async () => {
    const by = await Bystander.start();
    const { server, client } = await pair();
    const p = new Probe(server);
    client.end();
    await runUntil(() => by.rounds >= 5, by);
    expect(p.events).toEqual([]);
    expect(p.closed).toBe(false);
    by.expectIntact();
  });

  it('half-close by us: the peer still sends, we read to EOF, then HUP once both sides are shut', async () => {
    const by = await Bystander.start();
    const { server, client } = await pair();
    const peer = readAll(client);
    const p = new Probe(server);
    p.write('bye');
    (p.sock() as net.Socket).end(); // our FIN, through the raw socket
    client.on('end', () => client.end('late data'));
    p.watchRead(true);
    await runUntil(() => p.reads.at(-1) === null && p.events.includes('hup'), by);
    expect(peer.text()).toBe('bye');
    expect(p.reads.join('')).toBe('late data');
    expect(p.reads.at(-1)).toBeNull();
    // Reference §5: both directions shut → IN|HUP, read first.
    expect(p.events.indexOf('read')).toBeLessThan(p.events.indexOf('hup'));
    expect(p.events).not.toContain('err');
    by.expectIntact();
  });

  it('a Unix peer that is gone is IN|HUP (read, then hup); one that only shut writing is IN', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-unix-hup-'));
    const accepted: Probe[] = [];
    const l = await Listener.listen({ path: path.join(dir, 's') }, (s) => {
      const p = new Probe(s);
      p.watchRead(true);
      accepted.push(p);
    });
    const clients: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = net.connect(path.join(dir, 's'));
        c.on('error', () => {});
        clients.push(c);
        await runUntil(() => accepted.length === i + 1);
      }
      const [gone, halfShut] = accepted as [Probe, Probe];
      (clients[0] as net.Socket).destroy(); // both directions: the kernel reports HUP
      (clients[1] as net.Socket).end(); // only the peer's writing: EOF, no HUP
      if (NATIVE_OFF) {
        // The node backend learns of the HUP from the addon (libuv stops polling at EOF):
        // without it, a gone Unix peer reads as EOF only, like a half-shut one.
        await runUntil(() => gone.reads.includes(null) && halfShut.reads.includes(null));
        expect(gone.events).not.toContain('hup');
        expect(halfShut.events).not.toContain('hup');
        return;
      }
      await runUntil(() => gone.events.includes('hup') && halfShut.reads.includes(null));
      // Reference §5 (V: unix-peer-close): read (read → null) first, then hup.
      // (Level-triggered: each iteration reads null again until the test stops.)
      expect(gone.reads.length).toBeGreaterThan(0);
      expect(gone.reads.every((r) => r === null)).toBe(true);
      expect(gone.events.indexOf('read')).toBeLessThan(gone.events.indexOf('hup'));
      expect(gone.events).not.toContain('err');
      expect(halfShut.events).not.toContain('hup');
      expect(halfShut.reads.every((r) => r === null)).toBe(true);
    } finally {
      for (const c of clients) c.destroy();
      l.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('connect refused: queued data closes the object with write_error', async () => {
    const by = await Bystander.start();
    const port = await closedPort();
    const c = new Probe(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }));
    expect(c.write('never sent')).toBe(false);
    await runUntil(() => c.closed, by);
    expect(c.closeReason).toBe('write_error');
    expect(c.events).toEqual(['write']);
    by.expectIntact();
  });

  it('connect refused with nothing queued: write, then err, then hup, as the kernel reports', async () => {
    const by = await Bystander.start();
    const port = await closedPort();
    class Refused extends Probe {
      override eventHup(): void {
        super.eventHup();
        this.close('refused');
      }
    }
    const c = new Refused(net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }));
    c.watchWrite(true);
    await runUntil(() => c.closed, by);
    expect(c.events.slice(0, 3)).toEqual(['write', 'err', 'hup']);
    expect(c.closeReason).toBe('refused');
    by.expectIntact();
  });

  describe.each(['eventRead', 'eventWrite', 'eventErr', 'eventHup'] as const)(
    'a throwing %s',
    (hook) => {
      it('closes only that object (handler_error), reports the error, and the loop goes on', async () => {
        const errors = collectErrors();
        const by = await Bystander.start();
        const { server, client } = await pair();
        const boom = new Error(`boom in ${hook}`);
        class Thrower extends Probe {
          override eventRead(): void {
            if (hook === 'eventRead') throw boom;
            super.eventRead();
          }
          override eventWrite(): void {
            if (hook === 'eventWrite') throw boom;
            super.eventWrite();
          }
          override eventErr(): void {
            if (hook === 'eventErr') throw boom;
            super.eventErr();
          }
          override eventHup(): void {
            if (hook === 'eventHup') throw boom;
            super.eventHup();
          }
        }
        const t = new Thrower(server);
        const peer = readAll(client);
        if (hook === 'eventRead') {
          t.watchRead(true);
          client.write('data');
        } else if (hook === 'eventWrite') {
          t.watchWrite(true);
        } else if (hook === 'eventErr') {
          client.resetAndDestroy(); // RST: ERR|HUP
        } else {
          // Both directions shut, nothing watched: HUP only.
          (t.sock() as net.Socket).end();
          client.end();
        }
        await runUntil(() => t.closed, by);
        expect(t.closeReason).toBe('handler_error');
        expect(errors).toHaveLength(1);
        expect(errors[0]?.err).toBe(boom);
        expect(errors[0]?.ctx).toEqual({ kind: hook, object: t });
        await expect(t.whenClosed()).resolves.toBe('handler_error');
        if (hook !== 'eventErr') {
          await runUntil(() => peer.ended(), by, 0, 2000);
          expect(peer.ended()).toBe(true);
        }
        by.expectIntact();
      });
    },
  );

  it('a base class hook that was not overridden closes the object with DS_ERR_UNHANDLED_EVENT', async () => {
    const errors = collectErrors();
    const by = await Bystander.start();
    const { server, client } = await pair();
    // A JavaScript subclass without the hooks (TypeScript rejects one: they are abstract).
    type Hooks = { eventRead(): void; eventErr(): void; eventHup(): void };
    type Args = ConstructorParameters<typeof DangaSocket>;
    const Base = DangaSocket as unknown as new (...args: Args) => DangaSocket & Hooks;
    class NoErr extends Base {}
    const o = new NoErr(server);
    client.resetAndDestroy();
    await runUntil(() => o.closed, by);
    expect(o.closeReason).toBe('handler_error');
    expect(errors[0]?.err).toBeInstanceOf(DangaSocketError);
    expect((errors[0]?.err as DangaSocketError).code).toBe('DS_ERR_UNHANDLED_EVENT');
    by.expectIntact();
  });

  it('a throwing timer is reported; later and same-pass timers still fire', async () => {
    const errors = collectErrors();
    const by = await Bystander.start();
    const fired: string[] = [];
    const boom = new Error('timer boom');
    DangaSocket.AddTimer(0.01, () => {
      fired.push('a');
      throw boom;
    });
    DangaSocket.AddTimer(0.01, () => fired.push('b'));
    DangaSocket.AddTimer(0.2, () => fired.push('c'));
    await runUntil(() => fired.length === 3, by);
    expect(fired).toEqual(['a', 'b', 'c']);
    expect(errors).toEqual([{ err: boom, ctx: { kind: 'timer' } }]);
    by.expectIntact();
  });

  it('a throwing global post-loop callback is reported and called again next iteration', async () => {
    const errors = collectErrors();
    const by = await Bystander.start();
    let calls = 0;
    const deadline = Date.now() + 8000;
    DangaSocket.SetLoopTimeout(20);
    DangaSocket.SetPostLoopCallback(() => {
      calls++;
      if (calls === 3) throw new Error('plc boom');
      return by.rounds < 10 && Date.now() < deadline;
    });
    await DangaSocket.EventLoop();
    expect(calls).toBeGreaterThan(3);
    expect(errors).toHaveLength(1);
    expect(errors[0]?.ctx).toEqual({ kind: 'postLoopCallback' });
    by.expectIntact();
  });

  it('a throwing per-object post-loop callback closes that object with handler_error', async () => {
    const errors = collectErrors();
    const by = await Bystander.start();
    const { server } = await pair();
    const p = new Probe(server);
    let calls = 0;
    p.setPostLoopCallback(() => {
      if (++calls === 2) throw new Error('object plc boom');
      return true;
    });
    await runUntil(() => p.closed, by);
    expect(p.closeReason).toBe('handler_error');
    expect(errors[0]?.ctx).toEqual({ kind: 'postLoopCallback', object: p });
    by.expectIntact();
  });

  it('an error handler that rethrows rejects EventLoop() (the one way to stop it)', async () => {
    const fatal = new Error('fatal');
    DangaSocket.setErrorHandler(() => {
      throw fatal;
    });
    DangaSocket.AddTimer(0, () => {
      throw new Error('timer boom');
    });
    DangaSocket.SetPostLoopCallback(() => true);
    await expect(DangaSocket.EventLoop()).rejects.toBe(fatal);
  });

  describe('close() from inside', () => {
    async function closeIn(
      where: 'eventRead' | 'eventWrite' | 'eventErr' | 'eventHup' | 'write callback',
    ): Promise<void> {
      const by = await Bystander.start();
      const { server, client } = await pair();
      const peer = readAll(client);
      const mapSizeInHook: number[] = [];
      class Closer extends Probe {
        private shut(): void {
          mapSizeInHook.push(DangaSocket.WatchedSockets());
          this.close(`in ${where}`);
          // Still in the map until the end of the iteration, but dead to the user.
          expect(this.sock()).toBeNull();
          expect(this.write('ignored')).toBe(true);
        }
        override eventRead(): void {
          super.eventRead();
          if (where === 'eventRead') this.shut();
        }
        override eventWrite(): void {
          this.events.push('write');
          if (where === 'eventWrite') this.shut();
          else if (where === 'write callback') this.write(() => this.shut());
        }
        override eventErr(): void {
          super.eventErr();
          if (where === 'eventErr') this.shut();
        }
        override eventHup(): void {
          super.eventHup();
          if (where === 'eventHup') this.shut();
        }
      }
      const o = new Closer(server);
      if (where === 'eventRead') {
        // IN and OUT in the same snapshot: write must be skipped once read closed.
        o.watchRead(true);
        o.watchWrite(true);
        client.write('x');
        await new Promise((r) => setTimeout(r, 50));
      } else if (where === 'eventWrite' || where === 'write callback') {
        o.watchWrite(true);
      } else if (where === 'eventErr') {
        client.resetAndDestroy();
      } else {
        (o.sock() as net.Socket).end();
        client.end();
      }
      const before = DangaSocket.WatchedSockets();
      await runUntil(() => o.closed, by);
      expect(o.closeReason).toBe(`in ${where}`);
      await expect(o.whenClosed()).resolves.toBe(`in ${where}`);
      expect(mapSizeInHook).toEqual([before]);
      expect(DangaSocket.DescriptorMap().has(o.id)).toBe(false);
      // Hooks after the closing one were skipped in that iteration.
      const last = where === 'write callback' ? 'write' : where.replace(/^event/, '').toLowerCase();
      expect(o.events.at(-1)).toBe(last);
      if (where !== 'eventErr') {
        await runUntil(() => peer.ended(), by, 0, 2000);
        expect(peer.text()).toBe('');
      }
      by.expectIntact();
    }
    it.each(['eventRead', 'eventWrite', 'eventErr', 'eventHup', 'write callback'] as const)(
      '%s closes with its reason and skips the remaining hooks',
      closeIn,
    );

    it('a timer or a post-loop callback closes with its reason', async () => {
      const by = await Bystander.start();
      const a = new Probe((await pair()).server);
      const b = new Probe((await pair()).server);
      DangaSocket.AddTimer(0.01, () => a.close('in timer'));
      b.setPostLoopCallback(() => {
        b.close('in plc');
        return true;
      });
      await runUntil(() => a.closed && b.closed, by);
      await expect(a.whenClosed()).resolves.toBe('in timer');
      await expect(b.whenClosed()).resolves.toBe('in plc');
      by.expectIntact();
    });
  });

  /** Run the loop (LoopTimeout -1) until the peer sees our FIN; resolves with its delay. */
  async function peerEndDelay(client: net.Socket, t0: number, maxMs = 5000): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<number>((resolve) => {
      client.once('end', () => resolve(Date.now() - t0));
      timer = setTimeout(() => resolve(-1), maxMs);
    });
    client.resume();
    DangaSocket.SetPostLoopCallback(() => true);
    const running = DangaSocket.EventLoop();
    const ms = await ended;
    clearTimeout(timer);
    DangaSocket.Reset();
    await running;
    return ms;
  }

  it('carries out a close() made in a promise callback between two iterations at once', async () => {
    const { server, client } = await pair();
    class Later extends Probe {
      override eventWrite(): void {
        this.watchWrite(false);
        // A microtask queued in an iteration runs after it, before the next one starts: the
        // loop is neither inside an iteration nor waiting (a signal handler can land there too).
        void Promise.resolve().then(() => this.close('from a promise'));
      }
    }
    const p = new Later(server);
    p.watchWrite(true);
    DangaSocket.AddTimer(3, () => {}); // the loop's next wake-up if nothing else happens
    const ms = await peerEndDelay(client, Date.now());
    expect(p.closeReason).toBe('from a promise');
    expect(ms).toBeGreaterThanOrEqual(0);
    expect(ms).toBeLessThan(1500);
  });

  it('carries out a close() made from outside the loop at once', async () => {
    const { server, client } = await pair();
    const p = new Probe(server);
    setTimeout(() => p.close('outside'), 50);
    DangaSocket.AddTimer(3, () => {});
    const ms = await peerEndDelay(client, Date.now());
    expect(ms).toBeGreaterThanOrEqual(0);
    expect(ms).toBeLessThan(1500);
  });

  it('writes after close return true, send nothing and run no callbacks', async () => {
    const by = await Bystander.start();
    const { server, client } = await pair();
    const peer = readAll(client);
    const p = new Probe(server);
    let ran = false;
    expect(p.write('before')).toBe(true);
    p.close('done');
    expect(p.write('after')).toBe(true);
    expect(p.write(Buffer.from('after'))).toBe(true);
    expect(p.write(() => (ran = true))).toBe(true);
    expect(p.write(undefined)).toBe(true);
    await runUntil(() => peer.ended(), by);
    expect(peer.text()).toBe('before');
    expect(ran).toBe(false);
    // Validation still comes first on a closed object.
    let code: unknown;
    try {
      p.write(42 as unknown as string);
    } catch (err) {
      code = (err as DangaSocketError).code;
    }
    expect(code).toBe('DS_ERR_INVALID_ARG');
    by.expectIntact();
  });

  it('close() drops queued data and never runs queued callbacks', async () => {
    const { server, client } = await pair();
    client.pause(); // let the queue build up
    const p = new Probe(server);
    let ran = false;
    // The first write is handed to the socket at once (what libuv holds is "in the kernel"
    // for Danga); the second waits in our queue behind it and is dropped by close().
    const first = Buffer.alloc(beyondKernelBuffers(), 'a');
    p.write(first);
    expect(p.write(Buffer.alloc(1024 * 1024, 'b'))).toBe(false);
    p.write(() => (ran = true));
    p.close('drop');
    client.resume();
    const peer = readAll(client);
    await runUntil(() => peer.ended(), undefined, 0, 5000);
    expect(peer.ended()).toBe(true);
    expect(ran).toBe(false);
    expect(peer.bytes()).toBeLessThanOrEqual(first.length);
    expect(peer.text()).not.toContain('b');
  });

  it('Reset() with open sockets, a listener, queued writes and a pending close ends them all', async () => {
    const accepted: Echo[] = [];
    const l = await Listener.listen({ port: 0 }, (s) => accepted.push(new Echo(s)));
    const port = (l.address() as net.AddressInfo).port;
    const clients = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<net.Socket>((resolve) => {
            const c = net.connect({ host: '127.0.0.1', port }, () => resolve(c));
            peers.add(c);
            c.on('error', () => {});
          }),
      ),
    );
    const closedPeers = clients.map(
      (c) => new Promise<void>((resolve) => c.once('close', () => resolve())),
    );
    const echoed = clients.map(readAll);
    for (const c of clients) c.write('hi');
    await runUntil(() => echoed.every((e) => e.text() === 'hi'));
    const { server, client } = await pair();
    client.pause();
    const queued = new Probe(server);
    queued.write(Buffer.alloc(beyondKernelBuffers(), 0x71));
    expect(queued.writeBufSize).toBeGreaterThan(0);
    const objects = [l, queued, ...accepted];

    DangaSocket.SetPostLoopCallback(() => true);
    const running = DangaSocket.EventLoop();
    let pendingAtReset = -1;
    setTimeout(() => {
      (accepted[0] as Echo).close('pending'); // its handle waits in ToClose...
      pendingAtReset = DangaSocket.ToClose().length;
      DangaSocket.Reset(); // ...when Reset comes
    }, 50);
    await running;
    expect(pendingAtReset).toBe(1);

    expect(DangaSocket.WatchedSockets()).toBe(0);
    expect(DangaSocket.ToClose()).toHaveLength(0);
    for (const o of objects) expect(o.closed).toBe(true);
    await expect((accepted[0] as Echo).whenClosed()).resolves.toBe('reset');
    for (const o of [l, queued, ...accepted.slice(1)]) {
      expect(o.closeReason).toBe('reset');
      await expect(o.whenClosed()).resolves.toBe('reset');
    }
    await Promise.all(closedPeers);
    await expect(
      new Promise((resolve, reject) => {
        const c = net.connect({ host: '127.0.0.1', port }, () => reject(new Error('connected')));
        peers.add(c);
        c.on('error', (e: Error & { code?: string }) => resolve(e.code));
      }),
    ).resolves.toBe('ECONNREFUSED');

    // Everything works again after Reset.
    const by = await Bystander.start();
    await runUntil(() => by.rounds >= 3);
    by.expectIntact();
  });
});
