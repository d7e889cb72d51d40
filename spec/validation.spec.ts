import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import * as fc from 'fast-check';
import { DangaSocket, DangaSocketError, Listener } from '../lib';
import { Quiet, type ServerSock, dispose, runUntil, tcpPair } from './helpers';
import { beyondKernelBuffers } from './fill';

// Issue 4, bad input: every public function and constructor of DangaSocket and Listener
// checks its arguments and throws DangaSocketError DS_ERR_INVALID_ARG (API §8), with no
// side effect. Perl coerces or silently ignores here; this port refuses.

const sockets: ServerSock[] = [];
afterEach(() => {
  DangaSocket.Reset();
  for (const s of sockets.splice(0)) dispose(s);
});

/** An object on an unconnected socket: enough for argument checks, no I/O. */
function quiet(): Quiet {
  const s = new net.Socket();
  sockets.push(s);
  return new Quiet(s);
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof DangaSocketError)) throw err;
    return err.code;
  }
  return undefined;
}

function expectInvalidArg(fn: () => unknown): void {
  expect(codeOf(fn)).toBe('DS_ERR_INVALID_ARG');
}

const fn = (): void => {};
/** Values that are neither a function nor null. */
const NOT_CALLBACKS: unknown[] = [undefined, 42, 'f', {}, [], true, Symbol('s'), 1n];
const NOT_BOOLEANS: unknown[] = [undefined, null, 1, 0, 'true', '', {}, []];
const NOT_NUMBERS: unknown[] = [undefined, null, '1', '', {}, [], true, 1n, NaN];
const NON_FINITE: unknown[] = [NaN, Infinity, -Infinity];
const NOT_WRITABLE: unknown[] = [
  null,
  42,
  true,
  {},
  [1, 2],
  Symbol('s'),
  1n,
  new ArrayBuffer(4),
  new Uint16Array(2),
  new DataView(new ArrayBuffer(2)),
];

/** Anything that is not a function, a Uint8Array, a string or undefined (write's types). */
const notWriteData = fc
  .anything({ withBigInt: true, withTypedArray: true, withSparseArray: true })
  .filter((v) => v !== undefined && typeof v !== 'string' && !(v instanceof Uint8Array));

describe('DangaSocket constructor', () => {
  it.each([42, 'sock', null, undefined, {}, [], new EventEmitter(), new PassThrough()])(
    'refuses %p, which is not a net.Socket or net.Server',
    (bad) => {
      expectInvalidArg(() => new Quiet(bad as never));
      expect(DangaSocket.WatchedSockets()).toBe(0);
    },
  );

  it('refuses a destroyed socket and the socket of a closed object', () => {
    const s = new net.Socket();
    s.destroy();
    expectInvalidArg(() => new Quiet(s));
    const q = quiet();
    const sock = q.sock() as net.Socket;
    q.close('done');
    expectInvalidArg(() => new Quiet(sock));
  });

  it('refuses the server of a closed object once it is gone, but takes a stolen one', async () => {
    const closed = await Listener.listen({ port: 0, backend: 'node' }, () => {});
    const stolen = await Listener.listen({ port: 0, backend: 'node' }, () => {});
    const server = closed.sock() as net.Server;
    closed.close('done');
    const taken = stolen.stealSocket() as net.Server;
    try {
      let gone = false;
      void closed.whenClosed().then(() => (gone = true));
      await runUntil(() => gone);
      expect(server.listening).toBe(false); // not destroyed, as a closed net.Socket would be
      expectInvalidArg(() => new Quiet(server));
      const again = new Quiet(taken);
      expect(again.sock()).toBe(taken);
    } finally {
      server.close();
      taken.close();
    }
  });

  it('refuses a socket an open object wraps with DS_ERR_ALREADY_WRAPPED', () => {
    const q = quiet();
    expect(codeOf(() => new Quiet(q.sock() as net.Socket))).toBe('DS_ERR_ALREADY_WRAPPED');
    expect(DangaSocket.WatchedSockets()).toBe(1);
  });
});

describe('DangaSocket#read', () => {
  it.each(['x', '5', ...NOT_NUMBERS])('throws for n = %p, open or closed', (bad) => {
    const q = quiet();
    expectInvalidArg(() => q.read(bad as never));
    q.close();
    expectInvalidArg(() => q.read(bad as never));
  });

  it('returns null (not an error) for n <= 0, as Danga', () => {
    const q = quiet();
    expect(q.read(0)).toBeNull();
    expect(q.read(-5)).toBeNull();
  });

  it('throws for any non-number (property)', () => {
    const q = quiet();
    fc.assert(
      fc.property(
        fc.anything().filter((v) => typeof v !== 'number'),
        (bad) => codeOf(() => q.read(bad as never)) === 'DS_ERR_INVALID_ARG',
      ),
    );
  });
});

describe('DangaSocket#pushBackRead', () => {
  it.each([42, null, undefined, {}, true, [1], new Uint16Array(1)])('throws for %p', (bad) => {
    const q = quiet();
    q.watchRead(true);
    expectInvalidArg(() => q.pushBackRead(bad as never));
    expect(q.read(10)?.length).toBe(0); // nothing was pushed back
  });
});

describe.each(['watchRead', 'watchWrite', 'tcpCork'] as const)('DangaSocket#%s', (method) => {
  it.each(NOT_BOOLEANS)('throws for %p, open or closed', (bad) => {
    const q = quiet();
    const before = q.asString();
    expectInvalidArg(() => q[method](bad as never));
    expect(q.asString()).toBe(before);
    q.close();
    expectInvalidArg(() => q[method](bad as never));
  });
});

describe('DangaSocket#write', () => {
  it.each(NOT_WRITABLE)('throws for %p and queues nothing, open or closed', async (bad) => {
    const { server, client } = await tcpPair();
    sockets.push(server, client);
    client.pause();
    const q = new Quiet(server);
    q.write(Buffer.alloc(beyondKernelBuffers())); // something stays queued
    q.write('tail');
    const queued = q.writeBufSize;
    expect(queued).toBeGreaterThan(0);
    expectInvalidArg(() => q.write(bad as never));
    expect(q.writeBufSize).toBe(queued);
    q.close();
    expectInvalidArg(() => q.write(bad as never));
  });

  it('throws for any value that is not bytes, a string, a function or undefined (property)', () => {
    const open = quiet();
    const closed = quiet();
    closed.close();
    fc.assert(
      fc.property(notWriteData, (bad) => {
        expect(codeOf(() => open.write(bad as never))).toBe('DS_ERR_INVALID_ARG');
        expect(codeOf(() => closed.write(bad as never))).toBe('DS_ERR_INVALID_ARG');
      }),
    );
    expect(open.writeBufSize).toBe(0);
  });

  it('accepts Buffer, Uint8Array, string, function and undefined, also once closed', () => {
    const q = quiet();
    q.close();
    for (const ok of [Buffer.from('a'), new Uint8Array([1]), 's', '', fn, undefined]) {
      expect(q.write(ok)).toBe(true);
    }
  });
});

describe('DangaSocket#setWriterFunc, #setPostLoopCallback', () => {
  it.each(NOT_CALLBACKS)('setWriterFunc throws for %p; null restores the socket', (bad) => {
    const q = quiet();
    expectInvalidArg(() => q.setWriterFunc(bad as never));
    expect(() => q.setWriterFunc(null)).not.toThrow();
  });

  it.each(NOT_CALLBACKS)('setPostLoopCallback throws for %p; only null clears', (bad) => {
    const q = quiet();
    expectInvalidArg(() => q.setPostLoopCallback(bad as never));
    expect(() => q.setPostLoopCallback(null)).not.toThrow();
  });
});

describe('DangaSocket#close, #debugMsg, #dumpError', () => {
  it.each([42, null, {}, true])('close throws for reason %p and stays open', (bad) => {
    const q = quiet();
    expectInvalidArg(() => q.close(bad as never));
    expect(q.closed).toBe(false);
    q.close('ok');
    expect(q.closeReason).toBe('ok');
  });

  it.each([42, null, undefined, {}])('debugMsg and dumpError throw for %p', (bad) => {
    const q = quiet();
    const write = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expectInvalidArg(() => q.debugMsg(bad as never));
      expectInvalidArg(() => q.dumpError(bad as never));
      expect(write).not.toHaveBeenCalled();
    } finally {
      write.mockRestore();
    }
  });
});

describe('DangaSocket statics', () => {
  it.each([...NOT_CALLBACKS])(
    'SetPostLoopCallback throws for %p and keeps the old one',
    async (bad) => {
      let calls = 0;
      DangaSocket.SetPostLoopCallback(() => ++calls < 2);
      expectInvalidArg(() => DangaSocket.SetPostLoopCallback(bad as never));
      DangaSocket.SetLoopTimeout(0);
      await DangaSocket.EventLoop();
      expect(calls).toBe(2);
    },
  );

  it.each([...NOT_NUMBERS, Infinity, -Infinity])('SetLoopTimeout throws for %p', (bad) => {
    expectInvalidArg(() => DangaSocket.SetLoopTimeout(bad as never));
    expect(DangaSocket.SetLoopTimeout(-1)).toBe(-1);
  });

  it.each([...NOT_NUMBERS, ...NON_FINITE])('AddTimer throws for a delay of %p', (bad) => {
    expectInvalidArg(() => DangaSocket.AddTimer(bad as never, fn));
  });

  it.each(NOT_CALLBACKS.concat([null]))('AddTimer throws for a callback %p', (bad) => {
    expectInvalidArg(() => DangaSocket.AddTimer(1, bad as never));
  });

  it('AddTimer accepts negative finite delays (Danga: they run in the same pass)', async () => {
    const fired: number[] = [];
    DangaSocket.AddTimer(-5, () => fired.push(-5));
    DangaSocket.AddTimer(-0.001, () => fired.push(-0.001));
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => false);
    await DangaSocket.EventLoop();
    expect(fired).toEqual([-5, -0.001]);
  });

  it('AddTimer rejects every non-finite or non-number delay (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.constantFrom(NaN, Infinity, -Infinity),
          fc.anything().filter((v) => typeof v !== 'number'),
        ),
        (bad) => codeOf(() => DangaSocket.AddTimer(bad as never, fn)) === 'DS_ERR_INVALID_ARG',
      ),
    );
  });

  it.each([42, undefined, null, {}, Symbol('s')])('DebugMsg throws for a format %p', (bad) => {
    expectInvalidArg(() => DangaSocket.DebugMsg(bad as never));
  });

  it.each(NOT_CALLBACKS)('setErrorHandler throws for %p; null restores the default', (bad) => {
    expectInvalidArg(() => DangaSocket.setErrorHandler(bad as never));
    expect(() => DangaSocket.setErrorHandler(null)).not.toThrow();
  });

  it.each([
    ['null', null],
    ['a number', 42],
    ['a string', 'fds'],
    ['a negative fd', { '-1': fn }],
    ['a non-numeric key', { abc: fn }],
    ['a fractional fd', new Map([[1.5, fn]])],
    ['a non-function callback', { 3: 42 }],
    ['a null callback', new Map([[3, null]])],
  ])('OtherFds and AddOtherFds throw for %s', (_label, bad) => {
    expectInvalidArg(() => DangaSocket.OtherFds(bad as never));
    expectInvalidArg(() => DangaSocket.AddOtherFds(bad as never));
  });

  it('AddOtherFds requires a map', () => {
    expectInvalidArg(() => DangaSocket.AddOtherFds(undefined as never));
  });
});

describe('Listener constructor', () => {
  it.each(NOT_CALLBACKS.concat([null]))('throws for an accept callback %p', (bad) => {
    const server = net.createServer();
    expectInvalidArg(() => new Listener(server, bad as never));
    expect(DangaSocket.WatchedSockets()).toBe(0);
  });

  it.each([42, null, undefined, {}, 'server'])('throws for a server %p', (bad) => {
    expectInvalidArg(() => new Listener(bad as never, fn));
  });

  it('throws for a net.Socket, which is not a server', () => {
    const s = new net.Socket();
    sockets.push(s);
    expectInvalidArg(() => new Listener(s as never, fn));
    expect(DangaSocket.WatchedSockets()).toBe(0);
  });
});

describe('Listener.listen', () => {
  it.each([
    ['no options', undefined],
    ['null options', null],
    ['a number', 7777],
    ['a string', '127.0.0.1:0'],
    ['port -1', { port: -1 }],
    ['port 65536', { port: 65536 }],
    ['port 1.5', { port: 1.5 }],
    ['port "80"', { port: '80' }],
    ['port NaN', { port: NaN }],
    ['port Infinity', { port: Infinity }],
    ['host 42', { port: 0, host: 42 }],
    ['path ""', { path: '' }],
    ['path 42', { path: 42 }],
    ['backlog -1', { port: 0, backlog: -1 }],
    ['backlog 1.5', { port: 0, backlog: 1.5 }],
    ['backlog 2^31', { port: 0, backlog: 2 ** 31 }],
    ['backlog 2^40', { port: 0, backlog: 2 ** 40 }],
    ['backlog "x"', { port: 0, backlog: 'x' }],
  ])('throws DS_ERR_INVALID_ARG at call time for %s', (_label, bad) => {
    expectInvalidArg(() => Listener.listen(bad as never, fn));
    expect(DangaSocket.WatchedSockets()).toBe(0);
  });

  it.each(NOT_CALLBACKS.concat([null]))('throws for an accept callback %p', (bad) => {
    expectInvalidArg(() => Listener.listen({ port: 0 }, bad as never));
  });

  it('names the bad value in the message', () => {
    let message = '';
    try {
      void Listener.listen({ port: -1 }, fn);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/port/);
    expect(message).toMatch(/-1/);
  });
});

describe('methods without arguments', () => {
  it('ignore extra arguments and never throw on a fresh or closed object', () => {
    const q = quiet();
    const calls: (() => unknown)[] = [
      () => q.peerIpString(),
      () => q.peerAddrString(),
      () => q.localIpString(),
      () => q.localAddrString(),
      () => q.asString(),
      () => q.toString(),
      () => q.sock(),
      () => q.osFd(),
      () => q.writeBufSize,
      () => q.closed,
      () => DangaSocket.DescriptorMap(),
      () => DangaSocket.WatchedSockets(),
      () => DangaSocket.ToClose(),
      () => DangaSocket.HaveEpoll(),
      () => DangaSocket.ProfilingData(),
    ];
    for (const call of calls) expect(call).not.toThrow();
    q.close();
    for (const call of calls) expect(call).not.toThrow();
    expect(q.stealSocket()).toBeNull();
    expect(q.asString()).toBe('Quiet(): closed');
  });
});
