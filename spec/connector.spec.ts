import * as net from 'node:net';
import * as os from 'node:os';
import * as vm from 'node:vm';
import { Worker } from 'node:worker_threads';
import {
  connect,
  ConnectError,
  ResolveError,
  type ConnectFailure,
  type ConnectOptions,
  type LookupFunction,
  type LookupResult,
} from '../lib/connector';
import { DangaSocketError } from '../lib/errors';

// ---------------------------------------------------------------------------------------------
// Loopback fixtures

const HAS_V6 = Object.values(os.networkInterfaces())
  .flat()
  .some((i) => i?.address === '::1');
if (!HAS_V6) console.warn('connector.spec: ::1 is not configured here; IPv6 tests are skipped');
const itV6 = HAS_V6 ? it : it.skip;

const open = new Set<net.Socket>();
afterEach(() => {
  for (const s of open) s.destroy();
  open.clear();
});

/** Resolve with the socket and remember it so every test closes what it opened. */
async function dial(options: ConnectOptions): Promise<net.Socket> {
  const sock = await connect(options);
  open.add(sock);
  return sock;
}

interface TestServer {
  readonly port: number;
  readonly accepted: net.Socket[];
  close(): Promise<void>;
}

function listen(host = '127.0.0.1'): Promise<TestServer> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    accepted.push(s);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host }, () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') throw new Error('no port');
      resolve({
        port: addr.port,
        accepted,
        close: () =>
          new Promise<void>((done) => {
            for (const s of accepted) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** A port nothing listens on: listen on 0, then close. Connecting to it is refused at once. */
async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = await listen(host);
  await s.close();
  return s.port;
}

interface Blackhole {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * An unresponsive address on loopback: a listener with backlog 1 in a worker thread that blocks
 * (Atomics.wait) and never accepts. Two connections fill the accept queue; Linux then drops
 * further SYNs, so a connect hangs until the kernel gives up. Checked before use.
 */
async function blackhole(host: string): Promise<Blackhole> {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const net = require('net');
     const { parentPort, workerData } = require('worker_threads');
     const srv = net.createServer();
     srv.listen({ port: 0, host: workerData.host, backlog: 1 }, () => {
       parentPort.postMessage(srv.address().port);
       Atomics.wait(workerData.flag, 0, 0);
       srv.close();
     });`,
    { eval: true, workerData: { host, flag } },
  );
  const port = await new Promise<number>((resolve, reject) => {
    worker.once('message', (p: number) => resolve(p));
    worker.once('error', reject);
  });
  const fillers: net.Socket[] = [];
  const tryConnect = (ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect({ host, port });
      fillers.push(s);
      s.on('error', () => resolve(false));
      const t = setTimeout(() => resolve(false), ms);
      s.once('connect', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
  const close = async (): Promise<void> => {
    for (const s of fillers) s.destroy();
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
    await new Promise((r) => worker.once('exit', r));
  };
  let filled = 0;
  while (filled < 8 && (await tryConnect(1000))) filled++;
  if (filled >= 8) {
    await close();
    throw new Error('cannot simulate an unresponsive address: the full backlog still accepts');
  }
  return { port, close };
}

function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

/** A resolver that answers from a table, asynchronously, and records its calls. */
function fakeLookup(table: Record<string, Array<[string, 4 | 6]>>): {
  lookup: LookupFunction;
  calls: Array<{ host: string; family: unknown; all: unknown }>;
} {
  const calls: Array<{ host: string; family: unknown; all: unknown }> = [];
  const lookup: LookupFunction = (host, options, cb) => {
    calls.push({ host, family: options.family, all: options.all });
    const rows = table[host];
    setImmediate(() => {
      if (rows === undefined) {
        const err: NodeJS.ErrnoException = new Error(`getaddrinfo ENOTFOUND ${host}`);
        err.code = 'ENOTFOUND';
        err.syscall = 'getaddrinfo';
        cb(err, []);
      } else {
        cb(
          null,
          rows.map(([address, family]): LookupResult => ({ address, family })),
        );
      }
    });
  };
  return { lookup, calls };
}

function tcpHandles(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

async function settleHandles(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

let refused4 = 0;
let refused4b = 0;
let refused6 = 0;
let hole4: Blackhole | undefined;
let hole6: Blackhole | undefined;

beforeAll(async () => {
  refused4 = await freePort();
  refused4b = await freePort();
  if (HAS_V6) refused6 = await freePort('::1');
  hole4 = await blackhole('127.0.0.1');
  if (HAS_V6) hole6 = await blackhole('::1');
});

afterAll(async () => {
  await hole4?.close();
  await hole6?.close();
});

function hole(h: Blackhole | undefined): Blackhole {
  if (h === undefined) throw new Error('blackhole fixture missing');
  return h;
}

// ---------------------------------------------------------------------------------------------

describe('connect() argument checking', () => {
  const bad: Array<[string, unknown]> = [
    ['a non-object', 42],
    ['no target', {}],
    ['two targets', { host: 'x', port: 1, path: '/tmp/x' }],
    ['host without port or service', { host: 'x' }],
    ['host with both port and service', { host: 'x', port: 1, service: '1' }],
    ['an out-of-range port', { host: 'x', port: 70000 }],
    ['a fractional port', { host: 'x', port: 1.5 }],
    ['port without host', { addr: { host: '127.0.0.1', port: 1 }, port: 2 }],
    ['a name in addrs (nothing is resolved there)', { addrs: [{ host: 'localhost', port: 1 }] }],
    ['addrs that is not an array', { addrs: { host: '127.0.0.1', port: 1 } }],
    [
      'an address family that contradicts the literal',
      { addr: { host: '::1', port: 1, family: 4 } },
    ],
    ['family 5', { host: 'x', port: 1, family: 5 }],
    ['a NaN timeoutMs', { host: 'x', port: 1, timeoutMs: NaN }],
    ['an infinite attemptTimeoutMs', { host: 'x', port: 1, attemptTimeoutMs: Infinity }],
    ['a negative happyEyeballsDelayMs', { host: 'x', port: 1, happyEyeballsDelayMs: -1 }],
    ['a non-function onFail', { host: 'x', port: 1, onFail: 'yes' }],
    ['a non-function lookup', { host: 'x', port: 1, lookup: {} }],
    ['a non-signal signal', { host: 'x', port: 1, signal: {} }],
    ['a non-boolean happyEyeballs', { host: 'x', port: 1, happyEyeballs: 1 }],
    ['localPort with a Unix path', { path: '/tmp/x.sock', localPort: 1 }],
    ['an empty localHost', { host: 'x', port: 1, localHost: '' }],
  ];
  it.each(bad)('throws DS_ERR_INVALID_ARG synchronously for %s', (_name, options) => {
    expect(() => connect(options as ConnectOptions)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }) as Error,
    );
  });
});

describe('connect() targets', () => {
  it('connects to {host, port} with allowHalfOpen and none of its listeners left behind', async () => {
    const server = await listen();
    try {
      const sock = await dial({ host: '127.0.0.1', port: server.port });
      expect(sock.remotePort).toBe(server.port);
      expect(sock.allowHalfOpen).toBe(true);
      expect(sock.listenerCount('error')).toBe(0);
      expect(sock.listenerCount('connect')).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('accepts a numeric service string, {addr}, {addrs} and {peer}', async () => {
    const server = await listen();
    try {
      const viaService = await dial({ host: '127.0.0.1', service: String(server.port) });
      const viaAddr = await dial({ addr: { host: '127.0.0.1', port: server.port } });
      const viaAddrs = await dial({ addrs: [{ host: '127.0.0.1', port: server.port, family: 4 }] });
      const peer = net.createServer((s) => s.destroy());
      await new Promise<void>((r) => peer.listen({ port: 0, host: '127.0.0.1' }, r));
      try {
        const viaPeer = await dial({ peer });
        expect(viaPeer.remotePort).toBe((peer.address() as net.AddressInfo).port);
        viaPeer.destroy();
      } finally {
        await new Promise((r) => peer.close(r));
      }
      for (const s of [viaService, viaAddr, viaAddrs]) expect(s.remotePort).toBe(server.port);
    } finally {
      await server.close();
    }
  });

  it('connects to a Unix socket given as {path}', async () => {
    const path = `${os.tmpdir()}/danga-connector-${process.pid}.sock`;
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const sock = await dial({ path });
      expect(sock.allowHalfOpen).toBe(true);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  it('rejects an unknown service name with DS_ERR_RESOLVE (EAI_SERVICE)', async () => {
    const err = await errorOf(connect({ host: '127.0.0.1', service: 'no-such-service' }));
    expect(err).toBeInstanceOf(ResolveError);
    expect(err).toMatchObject({ code: 'DS_ERR_RESOLVE', resolverCode: 'EAI_SERVICE' });
  });
});

describe('connect() attempts in order', () => {
  it('tries addresses strictly in order, reporting each failure once via onFail', async () => {
    const server = await listen();
    try {
      const failures: ConnectFailure[] = [];
      const sock = await dial({
        addrs: [
          { host: '127.0.0.1', port: refused4 },
          { host: '127.0.0.1', port: refused4b },
          { host: '127.0.0.1', port: server.port },
        ],
        onFail: (f) => failures.push(f),
      });
      expect(sock.remotePort).toBe(server.port);
      expect(failures.map((f) => [f.syscall, f.address])).toEqual([
        ['connect', { host: '127.0.0.1', port: refused4, family: 4 }],
        ['connect', { host: '127.0.0.1', port: refused4b, family: 4 }],
      ]);
      expect(failures.map((f) => (f.error as NodeJS.ErrnoException).code)).toEqual([
        'ECONNREFUSED',
        'ECONNREFUSED',
      ]);
      // Plain data, never the live socket (IO::Async passed the handle).
      for (const f of failures) {
        expect(Object.values(f).some((v) => v instanceof net.Socket)).toBe(false);
      }
    } finally {
      await server.close();
    }
  });

  it('rejects with DS_ERR_CONNECT holding every error, which="connect" and the last error as cause', async () => {
    const err = await errorOf(
      connect({
        addrs: [
          { host: '127.0.0.1', port: refused4 },
          { host: '127.0.0.1', port: refused4b },
        ],
      }),
    );
    expect(err).toBeInstanceOf(ConnectError);
    const e = err as ConnectError;
    expect(e.code).toBe('DS_ERR_CONNECT');
    expect(e.which).toBe('connect');
    expect(e.errors).toHaveLength(2);
    expect(e.cause).toBe(e.errors[1]);
    expect(e.cause).toMatchObject({ code: 'ECONNREFUSED', port: refused4b });
  });

  it('rejects an empty address list with DS_ERR_NO_ADDRESS instead of succeeding with nothing', async () => {
    const onConnected = jest.fn();
    const onConnectError = jest.fn();
    const err = await errorOf(connect({ addrs: [], onConnected, onConnectError }));
    expect(err).toMatchObject({ code: 'DS_ERR_NO_ADDRESS' });
    expect(onConnected).not.toHaveBeenCalled();
    expect(onConnectError).toHaveBeenCalledWith(err);
  });

  it('destroys every failed socket: no TCP handle outlives the operation', async () => {
    await settleHandles();
    const before = tcpHandles();
    await errorOf(
      connect({
        addrs: [
          { host: '127.0.0.1', port: refused4 },
          { host: '127.0.0.1', port: hole(hole4).port },
        ],
        attemptTimeoutMs: 300,
      }),
    );
    await settleHandles();
    expect(tcpHandles()).toBe(before);
  });
});

describe('connect() name resolution', () => {
  it('resolves host through the injected lookup with all:true and the family hint', async () => {
    const server = await listen();
    try {
      const { lookup, calls } = fakeLookup({ 'svc.test': [['127.0.0.1', 4]] });
      const sock = await dial({ host: 'svc.test', port: server.port, lookup, family: 4 });
      expect(sock.remotePort).toBe(server.port);
      expect(calls).toEqual([{ host: 'svc.test', family: 4, all: true }]);
    } finally {
      await server.close();
    }
  });

  it('accepts a promise-returning resolver (the dns.promises.lookup shape)', async () => {
    const server = await listen();
    try {
      const lookup: LookupFunction = async () => [{ address: '127.0.0.1', family: 4 }];
      const sock = await dial({ host: 'svc.test', port: server.port, lookup });
      expect(sock.remotePort).toBe(server.port);
    } finally {
      await server.close();
    }
  });

  it('does not pass IP literals to the resolver', async () => {
    const server = await listen();
    try {
      const lookup = jest.fn<void, Parameters<LookupFunction>>();
      await dial({ host: '127.0.0.1', port: server.port, lookup, localHost: '127.0.0.1' });
      expect(lookup).not.toHaveBeenCalled();
    } finally {
      await server.close();
    }
  });

  it('keeps only addresses of the requested family, even from a resolver that ignores the hint', async () => {
    const failures: ConnectFailure[] = [];
    const lookup: LookupFunction = (_h, _o, cb) =>
      cb(null, [
        { address: '::1', family: 6 },
        { address: '127.0.0.1', family: 4 },
      ]);
    await errorOf(
      connect({
        host: 'dual.test',
        port: refused4,
        lookup,
        family: 4,
        onFail: (f) => failures.push(f),
      }),
    );
    expect(failures.map((f) => f.peer)).toEqual([{ host: '127.0.0.1', port: refused4, family: 4 }]);
  });

  it('does not filter explicit addrs by the family hint', async () => {
    const server = await listen();
    try {
      const sock = await dial({ addrs: [{ host: '127.0.0.1', port: server.port }], family: 6 });
      expect(sock.remotePort).toBe(server.port);
    } finally {
      await server.close();
    }
  });

  it('gives onResolveError the real resolver error (not the string "getaddrinfo") and also rejects', async () => {
    const { lookup } = fakeLookup({});
    const onResolveError = jest.fn();
    const onConnectError = jest.fn();
    const p = connect({ host: 'nowhere.test', port: 80, lookup, onResolveError, onConnectError });
    const err = await errorOf(p);
    expect(err).toBeInstanceOf(ResolveError);
    expect(err).toMatchObject({
      code: 'DS_ERR_RESOLVE',
      resolverCode: 'ENOTFOUND',
      hostname: 'nowhere.test',
      syscall: 'getaddrinfo',
    });
    expect((err as ResolveError).cause).toMatchObject({ code: 'ENOTFOUND' });
    expect(onResolveError).toHaveBeenCalledTimes(1);
    expect(onResolveError).toHaveBeenCalledWith(err);
    expect(onConnectError).not.toHaveBeenCalled();
  });

  it('reports a failing localHost resolution as DS_ERR_RESOLVE too', async () => {
    const { lookup } = fakeLookup({});
    const err = await errorOf(
      connect({ host: '127.0.0.1', port: refused4, localHost: 'nolocal.test', lookup }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_RESOLVE', hostname: 'nolocal.test' });
  });

  it('gives up on a resolver that never answers after resolveTimeoutMs', async () => {
    const lookup: LookupFunction = () => undefined;
    const err = await errorOf(
      connect({ host: 'slow.test', port: 80, lookup, resolveTimeoutMs: 200 }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_RESOLVE', resolverCode: 'ETIMEOUT' });
  });

  it('never calls a callback before connect() returns, even with a synchronous resolver', async () => {
    const lookup: LookupFunction = (_h, _o, cb) => {
      const e: NodeJS.ErrnoException = new Error('nope');
      e.code = 'EAI_AGAIN';
      cb(e, []);
    };
    const onResolveError = jest.fn();
    const p = connect({ host: 'sync.test', port: 80, lookup, onResolveError });
    expect(onResolveError).not.toHaveBeenCalled();
    await errorOf(p);
    expect(onResolveError).toHaveBeenCalledTimes(1);
  });
});

describe('connect() callback style', () => {
  it('calls onConnected with the socket and resolves the promise with the same socket', async () => {
    const server = await listen();
    try {
      const onConnected = jest.fn();
      const sock = await dial({ host: '127.0.0.1', port: server.port, onConnected });
      expect(onConnected).toHaveBeenCalledTimes(1);
      expect(onConnected).toHaveBeenCalledWith(sock);
    } finally {
      await server.close();
    }
  });

  it('calls onConnectError once with DS_ERR_CONNECT and causes no unhandled rejection', async () => {
    const unhandled = jest.fn();
    // The host process: jest's sandboxed `process` never receives 'unhandledRejection'.
    const hostProcess = vm.runInThisContext('process') as NodeJS.Process;
    hostProcess.on('unhandledRejection', unhandled);
    try {
      const err = await new Promise<DangaSocketError>((resolve) => {
        void connect({ host: '127.0.0.1', port: refused4, onConnectError: resolve });
      });
      expect(err).toMatchObject({ code: 'DS_ERR_CONNECT', which: 'connect' });
      await settleHandles();
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      hostProcess.off('unhandledRejection', unhandled);
    }
  });

  it('destroys the socket and rejects with the exception when onConnected throws', async () => {
    const server = await listen();
    try {
      let given: net.Socket | undefined;
      const boom = new Error('boom');
      const err = await errorOf(
        connect({
          host: '127.0.0.1',
          port: server.port,
          onConnected: (s) => {
            given = s;
            throw boom;
          },
        }),
      );
      expect(err).toBe(boom);
      expect(given?.destroyed).toBe(true);
    } finally {
      await server.close();
    }
  });
});

describe('connect() local binding', () => {
  it('binds localHost and localPort (IO::Async ignored local_port)', async () => {
    const server = await listen();
    const localPort = await freePort();
    try {
      const sock = await dial({
        host: '127.0.0.1',
        port: server.port,
        localHost: '127.0.0.1',
        localPort,
      });
      expect(sock.localAddress).toBe('127.0.0.1');
      expect(sock.localPort).toBe(localPort);
    } finally {
      await server.close();
    }
  });

  it('reports an address not on this host (EADDRNOTAVAIL) as a bind failure, which="bind"', async () => {
    const failures: ConnectFailure[] = [];
    const err = await errorOf(
      connect({
        host: '127.0.0.1',
        port: refused4,
        localHost: '192.0.2.1',
        onFail: (f) => failures.push(f),
      }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_CONNECT', which: 'bind' });
    expect((err as ConnectError).cause).toMatchObject({ code: 'EADDRNOTAVAIL', syscall: 'bind' });
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({
      syscall: 'bind',
      address: { host: '192.0.2.1', port: 0, family: 4 },
      peer: { host: '127.0.0.1', port: refused4, family: 4 },
    });
  });

  it('reports a localPort already in use as a bind failure (EADDRINUSE)', async () => {
    const server = await listen();
    try {
      const err = await errorOf(
        connect({ host: '127.0.0.1', port: server.port, localPort: server.port }),
      );
      expect(err).toMatchObject({ code: 'DS_ERR_CONNECT', which: 'bind' });
      expect((err as ConnectError).cause).toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await server.close();
    }
  });

  it('prefers a connect error over a bind error whatever their order, keeping the last of the kind', async () => {
    // Local addresses are the outer loop: 192.0.2.1 (bind fails) then 127.0.0.1 (refused).
    const { lookup } = fakeLookup({
      'local.test': [
        ['192.0.2.1', 4],
        ['127.0.0.1', 4],
      ],
    });
    const err = await errorOf(
      connect({ host: '127.0.0.1', port: refused4, localHost: 'local.test', lookup }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_CONNECT', which: 'connect' });
    const e = err as ConnectError;
    expect(e.errors.map((x) => (x as NodeJS.ErrnoException).code)).toEqual([
      'EADDRNOTAVAIL',
      'ECONNREFUSED',
    ]);

    const reversed = fakeLookup({
      'local.test': [
        ['127.0.0.1', 4],
        ['192.0.2.1', 4],
      ],
    });
    const err2 = await errorOf(
      connect({
        addrs: [
          { host: '127.0.0.1', port: refused4 },
          { host: '127.0.0.1', port: refused4b },
        ],
        localHost: 'local.test',
        lookup: reversed.lookup,
      }),
    );
    expect(err2).toMatchObject({ which: 'connect' });
    // Four attempts: two refused, then two bind failures; the cause is the last *connect* error.
    expect((err2 as ConnectError).errors).toHaveLength(4);
    expect((err2 as ConnectError).cause).toMatchObject({ code: 'ECONNREFUSED', port: refused4b });
  });

  itV6('rejects with DS_ERR_NO_ADDRESS when no local address matches a peer family', async () => {
    const err = await errorOf(connect({ host: '127.0.0.1', port: refused4, localHost: '::1' }));
    expect(err).toMatchObject({ code: 'DS_ERR_NO_ADDRESS' });
  });

  itV6('tries local addresses as the outer loop (IO::Async pairing order)', async () => {
    const { lookup } = fakeLookup({
      'peer.test': [
        ['::1', 6],
        ['127.0.0.1', 4],
      ],
      'local.test': [
        ['127.0.0.1', 4],
        ['::1', 6],
      ],
    });
    const order: string[] = [];
    await errorOf(
      connect({
        host: 'peer.test',
        port: refused4,
        localHost: 'local.test',
        lookup,
        onFail: (f) =>
          order.push(`${'host' in f.peer ? f.peer.host : ''} from ${f.local?.host ?? '-'}`),
      }),
    );
    expect(order).toEqual(['127.0.0.1 from 127.0.0.1', '::1 from ::1']);
  });
});

describe('connect() timeouts and abort', () => {
  it('verifies that the blackhole fixture really hangs a connect', async () => {
    const err = await errorOf(
      connect({ host: '127.0.0.1', port: hole(hole4).port, timeoutMs: 400 }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_TIMEOUT' });
  });

  it('moves on from an unresponsive address after attemptTimeoutMs', async () => {
    const server = await listen();
    try {
      const failures: ConnectFailure[] = [];
      const sock = await dial({
        addrs: [
          { host: '127.0.0.1', port: hole(hole4).port },
          { host: '127.0.0.1', port: server.port },
        ],
        attemptTimeoutMs: 300,
        onFail: (f) => failures.push(f),
      });
      expect(sock.remotePort).toBe(server.port);
      expect(failures).toHaveLength(1);
      expect(failures[0]).toMatchObject({ syscall: 'connect', error: { code: 'DS_ERR_TIMEOUT' } });
    } finally {
      await server.close();
    }
  });

  it('rejects with DS_ERR_TIMEOUT after timeoutMs and reports the attempt it cut short', async () => {
    await settleHandles();
    const before = tcpHandles();
    const failures: ConnectFailure[] = [];
    const onConnectError = jest.fn();
    const err = await errorOf(
      connect({
        host: '127.0.0.1',
        port: hole(hole4).port,
        timeoutMs: 300,
        onFail: (f) => failures.push(f),
        onConnectError,
      }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_TIMEOUT' });
    expect(onConnectError).toHaveBeenCalledWith(err);
    expect(failures).toHaveLength(1);
    expect(failures[0]?.error).toBe(err);
    await settleHandles();
    expect(tcpHandles()).toBe(before);
  });

  it('rejects with DS_ERR_ABORTED when the signal aborts mid-attempt, destroying the socket', async () => {
    await settleHandles();
    const before = tcpHandles();
    const ac = new AbortController();
    const p = connect({ host: '127.0.0.1', port: hole(hole4).port, signal: ac.signal });
    setTimeout(() => ac.abort(new Error('user gave up')), 100);
    const err = await errorOf(p);
    expect(err).toMatchObject({ code: 'DS_ERR_ABORTED' });
    expect((err as Error).cause).toMatchObject({ message: 'user gave up' });
    await settleHandles();
    expect(tcpHandles()).toBe(before);
  });

  it('rejects at once, without resolving or dialling, when the signal is already aborted', async () => {
    const { lookup, calls } = fakeLookup({ 'a.test': [['127.0.0.1', 4]] });
    const onFail = jest.fn();
    const err = await errorOf(
      connect({ host: 'a.test', port: 1, lookup, onFail, signal: AbortSignal.abort() }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_ABORTED' });
    expect(calls).toHaveLength(0);
    expect(onFail).not.toHaveBeenCalled();
  });
});

describe('connect() happy eyeballs', () => {
  itV6('interleaves families starting with the first family returned', async () => {
    const lookup: LookupFunction = (_h, _o, cb) =>
      cb(null, [
        { address: '127.0.0.1', family: 4 },
        { address: '127.0.0.2', family: 4 },
        { address: '::1', family: 6 },
        { address: '127.0.0.3', family: 4 },
      ]);
    const order: string[] = [];
    await errorOf(
      connect({
        host: 'dual.test',
        port: refused6,
        lookup,
        happyEyeballs: true,
        onFail: (f) => order.push('host' in f.peer ? f.peer.host : f.peer.path),
      }),
    );
    expect(order).toEqual(['127.0.0.1', '::1', '127.0.0.2', '127.0.0.3']);
  });

  itV6(
    'starts the next attempt after the delay without waiting; the first success wins',
    async () => {
      const server = await listen('127.0.0.1');
      try {
        const failures: ConnectFailure[] = [];
        const started = Date.now();
        const sock = await dial({
          addrs: [
            { host: '::1', port: hole(hole6).port },
            { host: '127.0.0.1', port: server.port },
          ],
          happyEyeballs: true,
          happyEyeballsDelayMs: 300,
          onFail: (f) => failures.push(f),
        });
        const elapsed = Date.now() - started;
        expect(sock.remoteAddress).toBe('127.0.0.1');
        expect(elapsed).toBeGreaterThanOrEqual(250);
        expect(elapsed).toBeLessThan(10_000);
        // The unresponsive v6 attempt lost: destroyed and reported.
        expect(failures).toHaveLength(1);
        expect(failures[0]).toMatchObject({
          syscall: 'connect',
          peer: { host: '::1' },
          error: { code: 'DS_ERR_ABORTED' },
        });
      } finally {
        await server.close();
      }
    },
  );

  itV6('does not wait for the delay after a failure: the next address starts at once', async () => {
    const server = await listen('::1');
    try {
      const started = Date.now();
      const sock = await dial({
        addrs: [
          { host: '127.0.0.1', port: refused4 },
          { host: '::1', port: server.port },
        ],
        happyEyeballs: true,
        happyEyeballsDelayMs: 20_000,
      });
      expect(sock.remoteAddress).toBe('::1');
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await server.close();
    }
  });

  itV6('binds each attempt to a local address of its own family', async () => {
    const server = await listen('127.0.0.1');
    try {
      const { lookup } = fakeLookup({
        'local.test': [
          ['::1', 6],
          ['127.0.0.1', 4],
        ],
      });
      const failures: ConnectFailure[] = [];
      const sock = await dial({
        addrs: [
          { host: '::1', port: hole(hole6).port },
          { host: '127.0.0.1', port: server.port },
        ],
        localHost: 'local.test',
        lookup,
        happyEyeballs: true,
        happyEyeballsDelayMs: 200,
        onFail: (f) => failures.push(f),
      });
      expect(sock.remoteAddress).toBe('127.0.0.1');
      expect(sock.localAddress).toBe('127.0.0.1');
      expect(failures[0]).toMatchObject({ peer: { host: '::1' }, local: { host: '::1' } });
    } finally {
      await server.close();
    }
  });

  itV6('rejects with DS_ERR_CONNECT when every raced attempt fails', async () => {
    const err = await errorOf(
      connect({
        addrs: [
          { host: '::1', port: refused6 },
          { host: '127.0.0.1', port: refused4 },
        ],
        happyEyeballs: true,
      }),
    );
    expect(err).toMatchObject({ code: 'DS_ERR_CONNECT', which: 'connect' });
    expect((err as ConnectError).errors).toHaveLength(2);
  });
});
