import * as net from 'node:net';
import { connect } from '../lib/connector';
import {
  PersistentConnection,
  type Clock,
  type ConnectContext,
  type Connectable,
  type PersistentConnectionEvent,
  type PersistentConnectionOptions,
} from '../lib/persistent-connection';

// ---------------------------------------------------------------------------------------------
// Deterministic time and connections

/** A clock that only moves when the test says so. */
class ManualClock implements Clock {
  time = 0;
  /** Every sleep ever requested, in ms. */
  readonly requested: number[] = [];
  private sleepers: Array<{ at: number; wake: () => void }> = [];

  now(): number {
    return this.time;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.requested.push(ms);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((s) => s !== entry);
        resolve();
      };
      const entry = {
        at: this.time + ms,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.sleepers.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get pending(): number {
    return this.sleepers.length;
  }

  /** Move time forward, waking sleepers in deadline order and letting promises run between. */
  async advance(ms: number): Promise<void> {
    const target = this.time + ms;
    for (;;) {
      const due = this.sleepers.filter((s) => s.at <= target).sort((a, b) => a.at - b.at)[0];
      if (due === undefined) break;
      this.sleepers = this.sleepers.filter((s) => s !== due);
      this.time = Math.max(this.time, due.at);
      due.wake();
      await flush();
    }
    this.time = target;
    await flush();
  }
}

/** Let every pending promise chain run (a few macrotask turns). */
async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

let nextConnId = 1;

/** A connection that closes when told to, or when the "server" drops it. */
class FakeConn implements Connectable {
  readonly id = nextConnId++;
  closed = false;
  closeCalls = 0;
  private resolveClosed: (reason: string) => void = () => {};
  private readonly closedP = new Promise<string>((r) => (this.resolveClosed = r));

  constructor(readonly address: string) {}

  close(): void {
    this.closeCalls++;
    this.drop('closed');
  }

  /** The peer went away. */
  drop(reason = 'hup'): void {
    if (this.closed) return;
    this.closed = true;
    setImmediate(() => this.resolveClosed(reason));
  }

  whenClosed(): Promise<string> {
    return this.closedP;
  }
}

type Ev = PersistentConnectionEvent<FakeConn, string>;

/** Events as short strings: attempting, obtained:A, failed:msg, connected:A, disconnected. */
function show(e: Ev): string {
  switch (e.type) {
    case 'attempting_to_connect':
      return 'attempting';
    case 'obtained_address':
      return `obtained:${e.address}`;
    case 'failed_to_connect':
      return `failed:${e.error instanceof Error ? e.error.message : String(e.error)}`;
    case 'connected':
      return `connected:${e.connection.address}`;
    case 'disconnected':
      return 'disconnected';
  }
}

interface Harness {
  pc: PersistentConnection<FakeConn, string>;
  clock: ManualClock;
  events: string[];
  conns: FakeConn[];
  /** Each attempt's (address, context). */
  attempts: Array<{ address: string; ctx: ConnectContext }>;
}

/**
 * `script` decides each attempt in turn: an address to connect to, an Error to fail with, or a
 * function for anything fancier. The last entry repeats.
 */
function harness(
  plan: {
    addresses?: Array<string | Error>;
    results?: Array<'ok' | Error | ((addr: string) => Promise<FakeConn>)>;
  },
  extra: Partial<PersistentConnectionOptions<FakeConn, string>> = {},
): Harness {
  const clock = new ManualClock();
  const events: string[] = [];
  const conns: FakeConn[] = [];
  const attempts: Array<{ address: string; ctx: ConnectContext }> = [];
  const addresses = plan.addresses ?? ['A'];
  const results = plan.results ?? ['ok'];
  let a = 0;
  let r = 0;
  const pc = new PersistentConnection<FakeConn, string>({
    serverName: 'test-server',
    clock,
    random: 'none',
    retryDelayMs: () => 1000,
    getAddress: async () => {
      const next = addresses[Math.min(a++, addresses.length - 1)];
      if (next instanceof Error) throw next;
      return next ?? 'A';
    },
    connect: async (address, ctx) => {
      attempts.push({ address, ctx });
      const next = results[Math.min(r++, results.length - 1)];
      if (next instanceof Error) throw next;
      if (typeof next === 'function') return next(address);
      const c = new FakeConn(address);
      conns.push(c);
      return c;
    },
    onEvent: (e) => {
      events.push(show(e));
    },
    ...extra,
  });
  return { pc, clock, events, conns, attempts };
}

/** Resolves `'pending'` if `p` has not settled after a flush. */
async function state(p: Promise<unknown>): Promise<unknown> {
  const marker = Symbol('pending');
  const result = await Promise.race([p, flush().then(() => marker)]);
  return result === marker ? 'pending' : result;
}

const cleanup: Array<PersistentConnection<Connectable, unknown>> = [];
afterEach(async () => {
  for (const pc of cleanup.splice(0)) await pc.close();
});
function track<T extends PersistentConnection<FakeConn, string>>(h: { pc: T }): void {
  cleanup.push(h.pc as unknown as PersistentConnection<Connectable, unknown>);
}

// ---------------------------------------------------------------------------------------------

describe('PersistentConnection construction', () => {
  const valid = {
    serverName: 's',
    getAddress: () => 'A',
    connect: () => Promise.resolve(new FakeConn('A')),
  };
  const bad: Array<[string, Record<string, unknown>]> = [
    ['no serverName', { serverName: undefined }],
    ['a non-function getAddress', { getAddress: 'A' }],
    ['a missing connect', { connect: undefined }],
    ['a non-function onEvent', { onEvent: 1 }],
    ['a negative retryDelayMs', { retryDelayMs: -5 }],
    ['a NaN retryDelayMs', { retryDelayMs: NaN }],
    ['a random that is neither a function nor "none"', { random: 0.5 }],
    ['a clock without sleep', { clock: { now: () => 0 } }],
  ];
  it.each(bad)('throws DS_ERR_INVALID_ARG for %s', (_name, patch) => {
    expect(
      () =>
        new PersistentConnection({
          ...valid,
          ...patch,
        }),
    ).toThrow(expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }) as Error);
  });

  it('delivers attempting_to_connect before the constructor returns', () => {
    const events: string[] = [];
    const pc = new PersistentConnection<FakeConn, string>({
      ...valid,
      clock: new ManualClock(),
      onEvent: (e) => {
        events.push(e.type);
      },
    });
    cleanup.push(pc as unknown as PersistentConnection<Connectable, unknown>);
    expect(events).toEqual(['attempting_to_connect']);
  });
});

describe('PersistentConnection events', () => {
  it('reports attempting, obtained_address, connected for a first attempt that succeeds', async () => {
    const h = harness({});
    track(h);
    const conn = await h.pc.connected();
    expect(conn).toBe(h.conns[0]);
    expect(h.events).toEqual(['attempting', 'obtained:A', 'connected:A']);
    expect(h.pc.currentConnection).toBe(h.conns[0]);
  });

  it('emits attempting_to_connect once per cycle, not once per attempt', async () => {
    const h = harness({ addresses: [new Error('no address yet'), 'A'] });
    track(h);
    await flush();
    expect(h.events).toEqual(['attempting', 'failed:no address yet']);
    await h.clock.advance(1000);
    expect(h.events).toEqual(['attempting', 'failed:no address yet', 'obtained:A', 'connected:A']);
  });

  it('suppresses a failure or address equal to the previous one of the cycle, but reports A, B, A', async () => {
    const h = harness({
      addresses: ['A', 'A', 'B', 'A', 'A'],
      results: [new Error('E1'), new Error('E1'), new Error('E1'), new Error('E2'), 'ok'],
    });
    track(h);
    await flush();
    for (let i = 0; i < 4; i++) await h.clock.advance(1000);
    expect(h.events).toEqual([
      'attempting',
      'obtained:A',
      'failed:E1',
      // second attempt: same address, same error: silent
      'obtained:B',
      // third attempt: same error E1 again: silent
      'obtained:A',
      'failed:E2',
      // fifth attempt: same address A: silent; then success
      'connected:A',
    ]);
    expect(h.attempts.map((a) => a.address)).toEqual(['A', 'A', 'B', 'A', 'A']);
  });

  it('shares one previous-error slot between getAddress and connect failures', async () => {
    const same = (): Error => new Error('E');
    const h = harness({ addresses: ['A', same(), 'A'], results: [same(), same(), 'ok'] });
    track(h);
    await flush();
    for (let i = 0; i < 3; i++) await h.clock.advance(1000);
    // 1: A, connect fails E. 2: getAddress fails E (silent: same slot). 3: A again (silent: the
    // previous address of the cycle), connect fails E (silent). 4: A (silent), connected.
    expect(h.events).toEqual(['attempting', 'obtained:A', 'failed:E', 'connected:A']);
  });

  it('passes the consecutive-failure count to connect, reset after a success', async () => {
    const h = harness({ results: [new Error('x'), new Error('y'), 'ok', 'ok'] });
    track(h);
    await flush();
    for (let i = 0; i < 2; i++) await h.clock.advance(1000);
    h.conns[0]?.drop();
    await h.clock.advance(1000);
    expect(h.attempts.map((a) => a.ctx.consecutiveUnsuccessfulAttempts)).toEqual([0, 1, 2, 0]);
  });

  it('awaits onEvent: nothing is resolved or connected before a handler finishes', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const getAddress = jest.fn(() => 'A');
    const pc = new PersistentConnection<FakeConn, string>({
      serverName: 's',
      clock: new ManualClock(),
      getAddress,
      connect: async (a) => new FakeConn(a),
      onEvent: (e) => (e.type === 'attempting_to_connect' ? gate : undefined),
    });
    cleanup.push(pc as unknown as PersistentConnection<Connectable, unknown>);
    await flush();
    expect(getAddress).not.toHaveBeenCalled();
    release();
    await flush();
    expect(getAddress).toHaveBeenCalledTimes(1);
  });

  it('delivers disconnected only after the connected handler finished, even if the link dropped', async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const events: string[] = [];
    let conn: FakeConn | undefined;
    const pc = new PersistentConnection<FakeConn, string>({
      serverName: 's',
      clock: new ManualClock(),
      getAddress: () => 'A',
      connect: async (a) => (conn = new FakeConn(a)),
      onEvent: async (e) => {
        events.push(`${e.type}:start`);
        if (e.type === 'connected') {
          e.connection.drop();
          await gate;
        }
        events.push(`${e.type}:end`);
      },
    });
    cleanup.push(pc as unknown as PersistentConnection<Connectable, unknown>);
    await flush();
    expect(conn?.closed).toBe(true);
    expect(events).not.toContain('disconnected:start');
    release();
    await flush();
    expect(events.slice(-3)).toEqual(['connected:end', 'disconnected:start', 'disconnected:end']);
  });

  it('reports a throwing or rejecting onEvent and carries on', async () => {
    const reported: Array<[string, string]> = [];
    const pc = new PersistentConnection<FakeConn, string>({
      serverName: 's',
      clock: new ManualClock(),
      getAddress: () => 'A',
      connect: async (a) => new FakeConn(a),
      onEvent: (e) => {
        if (e.type === 'attempting_to_connect') throw new Error('sync boom');
        if (e.type === 'obtained_address') return Promise.reject(new Error('async boom'));
        return undefined;
      },
      onHandlerError: (err, e) => reported.push([e.type, (err as Error).message]),
    });
    cleanup.push(pc as unknown as PersistentConnection<Connectable, unknown>);
    await expect(pc.connected()).resolves.toBeInstanceOf(FakeConn);
    expect(reported).toEqual([
      ['attempting_to_connect', 'sync boom'],
      ['obtained_address', 'async boom'],
    ]);
  });
});

describe('PersistentConnection retry timing', () => {
  it('retries a failed attempt after retryDelayMs, asking getAddress again each time', async () => {
    const h = harness({ addresses: ['A', 'B'], results: [new Error('refused'), 'ok'] });
    track(h);
    await flush();
    expect(h.attempts).toHaveLength(1);
    await h.clock.advance(999);
    expect(h.attempts).toHaveLength(1);
    await h.clock.advance(1);
    expect(h.attempts.map((a) => a.address)).toEqual(['A', 'B']);
    expect(h.events).toEqual([
      'attempting',
      'obtained:A',
      'failed:refused',
      'obtained:B',
      'connected:B',
    ]);
  });

  it('measures the delay from the start of the attempt, not from the failure', async () => {
    const clock = new ManualClock();
    let n = 0;
    const pc = new PersistentConnection<FakeConn, string>({
      serverName: 's',
      clock,
      random: 'none',
      retryDelayMs: 1000,
      getAddress: () => 'A',
      connect: async (_a, ctx) => {
        n++;
        await clock.sleep(600, ctx.signal); // a slow attempt, that then fails
        throw new Error('timeout');
      },
    });
    cleanup.push(pc as unknown as PersistentConnection<Connectable, unknown>);
    await flush();
    await clock.advance(600);
    expect(n).toBe(1);
    expect(clock.requested).toEqual([600, 400]); // only the remainder is waited
    await clock.advance(400);
    expect(n).toBe(2);
  });

  it('retries at once when an attempt took longer than the delay', async () => {
    const clock = new ManualClock();
    let n = 0;
    const pc = new PersistentConnection<FakeConn, string>({
      serverName: 's',
      clock,
      random: 'none',
      retryDelayMs: 1000,
      getAddress: () => 'A',
      connect: async (_a, ctx) => {
        n++;
        await clock.sleep(1500, ctx.signal);
        throw new Error('slow');
      },
    });
    cleanup.push(pc as unknown as PersistentConnection<Connectable, unknown>);
    await flush();
    await clock.advance(1500);
    expect(n).toBe(2);
  });

  it('reconnects at once after a long-lived connection drops', async () => {
    const h = harness({});
    track(h);
    await flush();
    await h.clock.advance(60_000); // connected for a minute
    h.conns[0]?.drop();
    await flush();
    expect(h.events).toEqual([
      'attempting',
      'obtained:A',
      'connected:A',
      'disconnected',
      // a new cycle: attempting and the (same) address are reported again
      'attempting',
      'obtained:A',
      'connected:A',
    ]);
    expect(h.conns).toHaveLength(2);
  });

  it('waits only the remainder after a short-lived connection drops', async () => {
    const h = harness({});
    track(h);
    await flush();
    await h.clock.advance(300);
    h.conns[0]?.drop();
    await flush();
    expect(h.events.slice(-1)).toEqual(['disconnected']);
    await h.clock.advance(699);
    expect(h.conns).toHaveLength(1);
    await h.clock.advance(1);
    expect(h.conns).toHaveLength(2);
  });

  it('randomises the delay by ±30 % with a fair coin (Async rule: span ± span·0.3·U)', async () => {
    const draws = [0.5, 0.2, 0.5, 0.7, 0.999, 0.9];
    const h = harness(
      { results: [new Error('a'), new Error('b'), new Error('c'), 'ok'] },
      { random: () => draws.shift() ?? 0, retryDelayMs: () => 1000 },
    );
    track(h);
    await flush();
    await h.clock.advance(1150);
    await h.clock.advance(850);
    await h.clock.advance(701);
    // 1000 + 150 (coin < 0.5), 1000 - 150, 1000 - 299.7
    expect(h.clock.requested).toEqual([1150, 850, expect.closeTo(700.3, 5) as number]);
    expect(h.attempts).toHaveLength(4);
  });

  it('keeps the default randomised delay between 0.7 and 1.3 times the base', async () => {
    const h = harness({ results: [new Error('x')] }, { random: Math.random, retryDelayMs: 10_000 });
    track(h);
    await flush();
    for (let i = 0; i < 20; i++) await h.clock.advance(13_000);
    expect(h.clock.requested.length).toBeGreaterThanOrEqual(20);
    for (const ms of h.clock.requested) {
      expect(ms).toBeGreaterThanOrEqual(7000);
      expect(ms).toBeLessThanOrEqual(13_000);
    }
  });
});

describe('PersistentConnection default clock', () => {
  it('runs on real timers, so jest fake timers drive it too', async () => {
    jest.useFakeTimers();
    try {
      let n = 0;
      const events: string[] = [];
      const pc = new PersistentConnection<FakeConn, string>({
        serverName: 's',
        random: 'none',
        getAddress: () => 'A',
        connect: async (a) => {
          if (++n < 3) throw new Error('refused');
          return new FakeConn(a);
        },
        onEvent: (e) => {
          events.push(e.type);
        },
      });
      await jest.advanceTimersByTimeAsync(0);
      expect(n).toBe(1);
      await jest.advanceTimersByTimeAsync(9_999); // default retryDelayMs: 10 000
      expect(n).toBe(1);
      await jest.advanceTimersByTimeAsync(1);
      expect(n).toBe(2);
      await jest.advanceTimersByTimeAsync(10_000);
      expect(events).toEqual([
        'attempting_to_connect',
        'obtained_address',
        'failed_to_connect',
        'connected',
      ]);
      const closing = pc.close();
      await jest.advanceTimersByTimeAsync(0);
      await closing;
    } finally {
      jest.useRealTimers();
    }
  });
});

describe('PersistentConnection connected() and close()', () => {
  it('connected() resolves at once while connected, and waits for the next connection after a drop', async () => {
    const h = harness({});
    track(h);
    const first = await h.pc.connected();
    await expect(h.pc.connected()).resolves.toBe(first);
    first.drop();
    const next = h.pc.connected();
    await h.clock.advance(1000);
    const second = await next;
    expect(second).not.toBe(first);
    expect(second.closed).toBe(false);
  });

  it('never hands out a closed connection', async () => {
    const h = harness({});
    track(h);
    const first = await h.pc.connected();
    first.drop(); // closing has started; whenClosed() resolves a little later
    const p = h.pc.connected();
    expect(h.pc.currentConnection).toBe(first); // the loop has not noticed yet
    await h.clock.advance(1000);
    const next = await p;
    expect(next).not.toBe(first);
    expect(next.closed).toBe(false);
  });

  it('close() while connected closes the connection, delivers disconnected, then resolves; no reconnect', async () => {
    const h = harness({});
    const conn = await h.pc.connected();
    const closing = h.pc.close();
    expect(h.pc.isClosed).toBe(true);
    let resolvedAt = -1;
    void closing.then(() => (resolvedAt = h.events.length));
    await closing;
    expect(conn.closeCalls).toBe(1);
    expect(h.events).toEqual(['attempting', 'obtained:A', 'connected:A', 'disconnected']);
    expect(resolvedAt).toBe(4);
    await h.clock.advance(5000);
    expect(h.conns).toHaveLength(1);
    expect(h.pc.currentConnection).toBeUndefined();
    expect(h.pc.close()).toBe(closing);
    expect(h.pc.closeFinished).toBe(closing);
  });

  it('close() during the retry wait resolves at once; connected() then never resolves', async () => {
    const h = harness({ results: [new Error('refused')] });
    await flush();
    const pending = h.pc.connected();
    await h.pc.close();
    await h.clock.advance(10_000);
    expect(h.attempts).toHaveLength(1);
    expect(await state(pending)).toBe('pending');
    expect(await state(h.pc.connected())).toBe('pending');
    await expect(h.pc.connection()).resolves.toEqual({ closed: true });
  });

  it('close() during an attempt that then succeeds: the caller gets it, it is closed, events follow', async () => {
    let finish: (c: FakeConn) => void = () => {};
    const h = harness({
      results: [() => new Promise<FakeConn>((r) => (finish = r))],
    });
    await flush();
    const pending = h.pc.connected();
    const closing = h.pc.close();
    expect(h.pc.isClosed).toBe(true);
    expect(await state(closing)).toBe('pending');
    expect(h.attempts[0]?.ctx.signal.aborted).toBe(true);
    const late = new FakeConn('A');
    finish(late);
    await expect(pending).resolves.toBe(late);
    await closing;
    expect(late.closeCalls).toBe(1);
    expect(h.events).toEqual(['attempting', 'obtained:A', 'connected:A', 'disconnected']);
  });

  it('close() during an attempt that then fails resolves after the failure, without retrying', async () => {
    let fail: (e: Error) => void = () => {};
    const h = harness({
      results: [() => new Promise<FakeConn>((_r, j) => (fail = j))],
    });
    await flush();
    const closing = h.pc.close();
    expect(await state(closing)).toBe('pending');
    fail(new Error('refused'));
    await closing;
    await h.clock.advance(10_000);
    expect(h.attempts).toHaveLength(1);
    expect(h.events).toEqual(['attempting', 'obtained:A', 'failed:refused']);
  });

  it('close() awaited inside an onEvent handler does not deadlock', async () => {
    for (const when of ['failed_to_connect', 'connected', 'disconnected'] as const) {
      let conn: FakeConn | undefined;
      let closedInHandler = false;
      const clock = new ManualClock();
      let attempt = 0;
      const pc: PersistentConnection<FakeConn, string> = new PersistentConnection<FakeConn, string>(
        {
          serverName: 's',
          clock,
          getAddress: () => 'A',
          connect: async (a) => {
            if (attempt++ === 0 && when === 'failed_to_connect') throw new Error('x');
            return (conn = new FakeConn(a));
          },
          onEvent: async (e) => {
            if (e.type === 'connected' && when === 'disconnected') e.connection.drop();
            if (e.type === when) {
              await pc.close();
              closedInHandler = true;
            }
          },
        },
      );
      await flush();
      expect({ when, closedInHandler }).toEqual({ when, closedInHandler: true });
      expect(pc.isClosed).toBe(true);
      if (when !== 'failed_to_connect') expect(conn?.closed).toBe(true);
    }
  });

  it('connectedOrFailedToConnect() reports every attempt, deduplication aside', async () => {
    const h = harness({ results: [new Error('E'), new Error('E'), 'ok'] });
    track(h);
    const first = h.pc.connectedOrFailedToConnect();
    await flush();
    await expect(first).resolves.toMatchObject({ ok: false, error: { message: 'E' } });
    const second = h.pc.connectedOrFailedToConnect();
    await h.clock.advance(1000);
    await expect(second).resolves.toMatchObject({ ok: false, error: { message: 'E' } });
    const third = h.pc.connectedOrFailedToConnect();
    await h.clock.advance(1000);
    await expect(third).resolves.toMatchObject({ ok: true, connection: h.conns[0] });
    expect(h.events.filter((e) => e.startsWith('failed'))).toHaveLength(1);
    await h.pc.close();
    await expect(h.pc.connectedOrFailedToConnect()).resolves.toMatchObject({
      ok: false,
      error: { code: 'DS_ERR_CLOSED' },
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Real sockets on loopback, real (short) timers

/** The minimal adapter a plain net.Socket needs to be a Conn. */
class SocketConn implements Connectable {
  private readonly closedP: Promise<void>;
  constructor(readonly sock: net.Socket) {
    this.closedP = new Promise((r) => sock.once('close', () => r()));
    sock.on('error', () => {});
    // connect() sockets are half-open capable: the adapter decides that EOF ends the connection.
    sock.on('end', () => sock.destroy());
    sock.resume();
  }
  close(): void {
    this.sock.destroy();
  }
  whenClosed(): Promise<void> {
    return this.closedP;
  }
}

function startServer(port = 0): Promise<{ port: number; stop(): Promise<void> }> {
  const clients = new Set<net.Socket>();
  const server = net.createServer((s) => {
    clients.add(s);
    s.on('close', () => clients.delete(s));
    s.on('error', () => {});
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: '127.0.0.1' }, () => {
      const addr = server.address() as net.AddressInfo;
      resolve({
        port: addr.port,
        stop: () =>
          new Promise<void>((done) => {
            for (const c of clients) c.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

async function eventually(check: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('PersistentConnection over loopback', () => {
  it('keeps a connection to a server across a server restart on the same port', async () => {
    let server = await startServer();
    const port = server.port;
    const events: string[] = [];
    const pc = new PersistentConnection<SocketConn, { host: string; port: number }>({
      serverName: 'loopback',
      retryDelayMs: 200,
      getAddress: () => ({ host: '127.0.0.1', port }),
      connect: async (addr) => new SocketConn(await connect({ addr })),
      onEvent: (e) => {
        events.push(
          e.type === 'failed_to_connect' ? `failed:${(e.error as { code?: string }).code}` : e.type,
        );
      },
    });
    try {
      const first = await pc.connected();
      expect(first.sock.remotePort).toBe(port);
      await server.stop();
      await eventually(() => events.includes('failed:DS_ERR_CONNECT'));
      server = await startServer(port);
      const second = await pc.connected();
      expect(second).not.toBe(first);
      expect(second.sock.remotePort).toBe(port);
      expect(events).toEqual([
        'attempting_to_connect',
        'obtained_address',
        'connected',
        'disconnected',
        'attempting_to_connect',
        'obtained_address',
        'failed:DS_ERR_CONNECT',
        'connected',
      ]);
    } finally {
      await pc.close();
      await server.stop();
    }
  });

  it('follows an address that changes between attempts', async () => {
    const a = await startServer();
    const b = await startServer();
    let target = a.port;
    const pc = new PersistentConnection<SocketConn, number>({
      serverName: 'moving',
      retryDelayMs: 100,
      getAddress: () => target,
      connect: async (port) => new SocketConn(await connect({ host: '127.0.0.1', port })),
    });
    try {
      const first = await pc.connected();
      expect(first.sock.remotePort).toBe(a.port);
      target = b.port;
      first.close();
      await eventually(() => pc.currentConnection !== undefined && pc.currentConnection !== first);
      expect((await pc.connected()).sock.remotePort).toBe(b.port);
    } finally {
      await pc.close();
      await a.stop();
      await b.stop();
    }
  });
});
