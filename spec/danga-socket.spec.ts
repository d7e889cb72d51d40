import * as net from 'node:net';
import { DangaSocket, DangaSocketError, Listener, type NativeSocket } from '../lib';
import { Quiet, type ServerSock, closedPort, runUntil, tcpPair } from './helpers';
import { beyondKernelBuffers } from './fill';
import * as hooks from '../lib/native-hooks';

afterEach(() => DangaSocket.Reset());

describe('t/10 events: listener, client and pushback', () => {
  it('reads Hello / lo / Hel / lo / !\\n in the reference order', async () => {
    const reads: string[] = [];
    let acc = '';
    let port = 0;
    class Server extends DangaSocket {
      constructor(s: net.Socket) {
        super(s);
        this.watchRead(true);
      }
      step = 0;
      override eventRead(): void {
        const take = (n: number): string => {
          const b = this.read(n);
          const s = b === null ? '<eof>' : b.toString();
          reads.push(s);
          return s;
        };
        switch (this.step++) {
          case 0:
            acc += take(5);
            this.pushBackRead('lo');
            break;
          case 1:
            take(3);
            this.pushBackRead('Hello');
            break;
          case 2:
            take(3);
            take(500);
            break;
          default:
            acc += take(500);
            if (acc.endsWith('\n')) this.watchRead(false);
        }
      }
      override eventErr(): void {
        this.close('error');
      }
      override eventHup(): void {
        this.close('hup');
      }
    }
    class Client extends DangaSocket {
      override eventRead(): void {
        this.watchRead(false); // never watched: it only writes
      }
      override eventWrite(): void {
        this.write('Hello!\n');
        this.watchWrite(false);
      }
      override eventErr(): void {
        this.close('error');
      }
      override eventHup(): void {
        this.close('hup');
      }
    }
    let iter = 0;
    DangaSocket.SetLoopTimeout(150);
    DangaSocket.SetPostLoopCallback(() => {
      iter++;
      if (iter === 1) {
        void Listener.listen({ port: 0 }, (s) => new Server(s)).then((l) => {
          port = (l.address() as net.AddressInfo).port;
        });
      }
      if (iter >= 3 && port !== 0 && DangaSocket.WatchedSockets() === 1) {
        const c = new Client(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
        c.watchWrite(true);
        expect(DangaSocket.WatchedSockets()).toBe(2);
      }
      return !acc.endsWith('\n') && iter < 200;
    });
    await DangaSocket.EventLoop();
    expect(reads).toEqual(['Hello', 'lo', 'Hel', 'lo', '!\n']);
    expect(DangaSocket.WatchedSockets()).toBe(3);
    const map = DangaSocket.DescriptorMap();
    DangaSocket.Reset();
    expect(map.size).toBe(0);
    expect(DangaSocket.DescriptorMap()).toBe(map);
  });
});

class Recorder extends DangaSocket {
  log: string[] = [];
  onRead: (self: Recorder) => void = () => {};
  override eventRead(): void {
    this.log.push('read');
    this.onRead(this);
  }
  override eventWrite(): void {
    this.log.push('write');
    super.eventWrite();
  }
  override eventErr(): void {
    this.log.push('err');
  }
  override eventHup(): void {
    this.log.push('hup');
  }
}

describe('readiness (reference §5)', () => {
  it('delivers eventRead every iteration while data is unread (level-triggered)', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.watchRead(true);
    p.client.write('data');
    let iterations = 0;
    await runUntil(() => ++iterations >= 5 && r.log.length >= 3, 3000, 10);
    expect(r.log.length).toBeGreaterThanOrEqual(3);
    expect(r.log.every((e) => e === 'read')).toBe(true);
    p.close();
  });

  it('peer FIN: read returns the data, then null; no hup', async () => {
    const p = await tcpPair();
    const reads: (string | null)[] = [];
    const r = new Recorder(p.server);
    r.onRead = (self) => {
      const b = self.read(100);
      reads.push(b === null ? null : b.toString());
      if (b === null) self.close('eof');
    };
    r.watchRead(true);
    p.client.end('bye');
    await runUntil(() => r.closed);
    expect(reads).toEqual(['bye', null]);
    expect(r.log).toEqual(['read', 'read']);
    p.close();
  });

  it('peer FIN with read not watched: no handler at all', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    // The control: the same FIN, at the same time, to an object that watches read.
    const q = await tcpPair();
    const watched = new Recorder(q.server);
    watched.watchRead(true);
    p.client.end();
    q.client.end();
    let n = 0;
    await runUntil(() => ++n > 10 && watched.log.includes('read'), 2000, 10);
    expect(r.log).toEqual([]);
    p.close();
    q.close();
  });

  it('peer RST with read watched: eventRead sees null, the app closes, err/hup skipped', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.onRead = (self) => {
      if (self.read(100) === null) self.close('gone');
    };
    r.watchRead(true);
    p.client.resetAndDestroy();
    await runUntil(() => r.closed);
    expect(r.log).toEqual(['read']);
    p.close();
  });

  it('peer RST with nothing watched: eventErr, then eventHup unless closed', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    p.client.resetAndDestroy();
    await runUntil(() => r.log.includes('hup'));
    expect(r.log.slice(0, 2)).toEqual(['err', 'hup']);
    p.close();
  });

  it('refused non-blocking connect with watchWrite: write, then err, then hup', async () => {
    const port = await closedPort();
    const c = new Recorder(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
    c.watchWrite(true);
    c.onRead = () => {};
    class Closer extends Recorder {}
    void Closer;
    await runUntil(() => c.log.includes('hup'));
    expect(c.log.slice(0, 3)).toEqual(['write', 'err', 'hup']);
  });

  it('successful connect with watchWrite: eventWrite', async () => {
    const l = await Listener.listen({ port: 0 }, (s) => s.destroy());
    const port = (l.address() as net.AddressInfo).port;
    const c = new Recorder(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
    c.watchWrite(true);
    await runUntil(() => c.log.includes('write'));
    expect(c.log[0]).toBe('write');
  });

  it('user-set watchWrite with an empty queue fires eventWrite every iteration', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.watchWrite(true);
    let n = 0;
    await runUntil(() => ++n >= 5, 2000, 10);
    expect(r.log.filter((e) => e === 'write').length).toBeGreaterThanOrEqual(4);
    p.close();
  });
});

describe('dispatch order and deferred close', () => {
  it('a close in the first handler suppresses the other object’s handler this iteration (t/12)', async () => {
    const p = await tcpPair();
    const history: string[] = [];
    class W extends DangaSocket {
      peer: W | null = null;
      constructor(
        s: ServerSock,
        readonly name: string,
      ) {
        super(s);
      }
      override eventWrite(): void {
        history.push(this.name);
        this.peer?.close('race');
        this.peer?.close('race');
        this.watchWrite(false);
      }
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const a = new W(p.server, 'a');
    const b = new W(p.client, 'b');
    a.peer = b;
    b.peer = a;
    a.watchWrite(true);
    b.watchWrite(true);
    const warn = jest.spyOn(process.stderr, 'write');
    await runUntil(() => history.length >= 1 && DangaSocket.WatchedSockets() === 1);
    expect(history).toHaveLength(1);
    expect(a.closed !== b.closed).toBe(true);
    expect(warn).not.toHaveBeenCalled();
    warn.mockRestore();
    p.close();
  });

  it('close on a corked object whose uncork fails (EBADF) keeps its reason and closes once (§4.4)', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.tcpCork(true);
    expect(r.isCorked).toBe(true);
    const reasons: (string | undefined)[] = [];
    const close = r.close.bind(r);
    r.close = (reason?: string): void => {
      reasons.push(reason);
      close(reason);
    };
    const cork = jest.spyOn(hooks, 'nativeCork').mockImplementation(() => {
      throw Object.assign(new Error('setsockopt EBADF'), { code: 'EBADF' });
    });
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    let calls: { cork: number; warn: number } | undefined;
    try {
      r.close('normal');
      calls = { cork: cork.mock.calls.length, warn: warn.mock.calls.length };
    } finally {
      cork.mockRestore();
      warn.mockRestore();
    }
    // Perl: closed = 1 first, then tcp_cork(0); its close('tcp_cork_failed') returns at once,
    // with one warning.
    expect(calls).toEqual({ cork: 1, warn: 1 });
    expect(reasons).toEqual(['normal', 'tcp_cork_failed']);
    expect(r.closeReason).toBe('normal');
    expect(DangaSocket.ToClose()).toHaveLength(1);
    p.close();
  });

  it('runs read, write, err, hup in that order for one object in one iteration', async () => {
    const port = await closedPort();
    const c = new Recorder(net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }));
    c.watchRead(true);
    c.watchWrite(true);
    await runUntil(() => c.log.includes('hup'));
    expect(c.log.slice(0, 4)).toEqual(['read', 'write', 'err', 'hup']);
  });

  it('the peer sees FIN only after the iteration that closed the socket', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    let destroyedInside: boolean | undefined;
    DangaSocket.AddTimer(0, () => {
      r.close('x');
      destroyedInside = p.server.destroyed;
    });
    await runUntil(() => destroyedInside !== undefined);
    expect(destroyedInside).toBe(false);
    expect(p.server.destroyed).toBe(true);
    p.close();
  });
});

describe('read()', () => {
  it('returns an empty Buffer when nothing is available, null for n <= 0, EOF and closed', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    const empty = r.read(10);
    expect(Buffer.isBuffer(empty) && empty.length).toBe(0);
    expect(r.read(0)).toBeNull();
    expect(r.read(-5)).toBeNull();
    expect(() => r.read('x' as unknown as number)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    r.close();
    expect(r.read(10)).toBeNull();
    p.close();
  });

  it('serves pushback first, one chunk per call, split when larger than n (AAA, BB, B, sock)', async () => {
    const p = await tcpPair();
    const got: string[] = [];
    const r = new Recorder(p.server);
    r.onRead = (self) => {
      if (got.length === 0) {
        self.pushBackRead('AAA');
        self.pushBackRead(Buffer.from('BBB'));
        got.push('start');
        return;
      }
      const b = self.read(2 + (got.length === 1 ? 1 : 0));
      if (b && b.length) got.push(b.toString());
    };
    r.watchRead(true);
    p.client.write('sock');
    await runUntil(() => got.join('').includes('so'));
    expect(got.slice(1, 4)).toEqual(['AAA', 'BB', 'B']);
    expect(got.slice(4).join('')).toMatch(/^so/);
    p.close();
  });
});

describe('write()', () => {
  it('returns true on an empty queue and delivers bytes; runs callbacks in order', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    const order: string[] = [];
    expect(r.write('abc')).toBe(true);
    expect(r.write(() => order.push('cb1'))).toBe(true);
    expect(order).toEqual(['cb1']);
    expect(r.write(new Uint8Array([100, 101]))).toBe(true);
    let got = '';
    p.client.on('data', (d: Buffer) => (got += d.toString()));
    await runUntil(() => got === 'abcde');
    expect(got).toBe('abcde');
    p.close();
  });

  it('a partial write calls onIncompleteWrite, watches write, and drains once the peer reads', async () => {
    const p = await tcpPair();
    let incomplete = 0;
    class Big extends Recorder {
      override onIncompleteWrite(): void {
        incomplete++;
        super.onIncompleteWrite();
      }
    }
    const r = new Big(p.server);
    const big = Buffer.alloc(beyondKernelBuffers(), 7);
    const order: string[] = [];
    expect(r.write(big)).toBe(false);
    expect(incomplete).toBe(1);
    expect(r.writeBufSize).toBeGreaterThan(0);
    expect(r.writeBufSize).toBeLessThanOrEqual(big.length);
    expect(r.asString()).toMatch(/^Big\(W\): open to 127\.0\.0\.1:\d+$/);
    expect(r.write('tail')).toBe(false);
    expect(r.write(() => order.push('done'))).toBe(false);
    let received = 0;
    p.client.on('data', (d: Buffer) => (received += d.length));
    await runUntil(() => order.length === 1, 20000);
    expect(order).toEqual(['done']);
    expect(r.writeBufSize).toBe(0);
    await runUntil(() => received === big.length + 4, 10000);
    expect(received).toBe(big.length + 4);
    // The library turned write-watching on, so it turned it off again.
    expect(r.asString()).toMatch(/^Big\(\): open/);
    p.close();
  });

  it('counts queued functions as 1 in writeBufSize', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.write(Buffer.alloc(beyondKernelBuffers()));
    expect(r.writeBufSize).toBeGreaterThan(0);
    const before = r.writeBufSize;
    r.write(() => {});
    r.write('xy');
    expect(r.writeBufSize).toBe(before + 3);
    p.close();
  });

  it('on a closed object returns true and queues nothing; validation still comes first', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.close('done');
    let ran = false;
    expect(r.write('x')).toBe(true);
    expect(r.write(() => (ran = true))).toBe(true);
    expect(ran).toBe(false);
    expect(() => r.write(42 as unknown as string)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => r.write({} as unknown as string)).toThrow(DangaSocketError);
    p.close();
  });

  it('close() drops queued functions without running them', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    let ran = false;
    r.write(Buffer.alloc(beyondKernelBuffers()));
    r.write(() => (ran = true));
    expect(r.writeBufSize).toBeGreaterThan(1);
    r.close('bye');
    await runUntil(() => true);
    expect(ran).toBe(false);
    p.close();
  });

  it('setWriterFunc replaces the socket write and sees (buf, length, offset)', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    const calls: [string, number, number][] = [];
    r.setWriterFunc((buf, len, off) => {
      calls.push([buf.toString(), len, off]);
      return Math.min(len, 2);
    });
    expect(r.write('hello')).toBe(false);
    expect(calls).toEqual([['hello', 5, 0]]);
    expect(r.writeBufSize).toBe(3);
    r.write(undefined);
    expect(calls[1]).toEqual(['hello', 3, 2]);
    expect(() => r.setWriterFunc('x' as unknown as null)).toThrow(DangaSocketError);
    p.close();
  });

  it('a writer error EPIPE closes with reason EPIPE through the overridable close()', async () => {
    const p = await tcpPair();
    const reasons: (string | undefined)[] = [];
    class C extends Recorder {
      override close(reason?: string): void {
        reasons.push(reason);
        super.close(reason);
      }
    }
    const r = new C(p.server);
    r.setWriterFunc(() => {
      throw Object.assign(new Error('EPIPE'), { code: 'EPIPE' });
    });
    expect(r.write('x')).toBe(false);
    expect(reasons).toEqual(['EPIPE']);
    expect(r.closeReason).toBe('EPIPE');
    p.close();
  });
});

describe('errors from hooks', () => {
  it('closes the throwing object with handler_error, reports it, and keeps the loop running', async () => {
    const p = await tcpPair();
    const q = await tcpPair();
    const errors: [unknown, string][] = [];
    DangaSocket.setErrorHandler((err, ctx) => errors.push([err, ctx.kind]));
    class Boom extends Recorder {
      override eventRead(): void {
        throw new Error('boom');
      }
    }
    const bad = new Boom(p.server);
    bad.watchRead(true);
    const good = new Recorder(q.server);
    let got = '';
    good.onRead = (self) => {
      const b = self.read(100);
      if (b) got += b.toString();
    };
    good.watchRead(true);
    p.client.write('x');
    q.client.write('still here');
    await runUntil(() => bad.closed && got === 'still here');
    expect(bad.closeReason).toBe('handler_error');
    expect(errors).toHaveLength(1);
    expect(errors[0]?.[1]).toBe('eventRead');
    expect(got).toBe('still here');
    p.close();
    q.close();
  });

  it('base eventErr throws DS_ERR_UNHANDLED_EVENT, which closes the object', async () => {
    const p = await tcpPair();
    const errors: unknown[] = [];
    DangaSocket.setErrorHandler((err) => errors.push(err));
    // A JavaScript subclass without eventErr/eventHup (TypeScript rejects one: they are abstract).
    type Hooks = { eventRead(): void; eventErr(): void; eventHup(): void };
    type Args = ConstructorParameters<typeof DangaSocket>;
    const Base = DangaSocket as unknown as new (...args: Args) => DangaSocket & Hooks;
    class OnlyRead extends Base {
      override eventRead(): void {}
    }
    const o = new OnlyRead(p.server);
    p.client.resetAndDestroy();
    await runUntil(() => o.closed);
    expect(errors[0]).toMatchObject({ code: 'DS_ERR_UNHANDLED_EVENT' });
    expect(o.closeReason).toBe('handler_error');
    p.close();
  });

  it('reports a throwing timer and a throwing PLC without stopping the loop', async () => {
    const kinds: string[] = [];
    DangaSocket.setErrorHandler((_e, ctx) => kinds.push(ctx.kind));
    DangaSocket.AddTimer(0, () => {
      throw new Error('t');
    });
    let n = 0;
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => {
      if (++n === 2) throw new Error('plc');
      return n < 4;
    });
    await DangaSocket.EventLoop();
    expect(kinds).toEqual(['timer', 'postLoopCallback']);
    expect(n).toBe(4);
  });

  it('rejects EventLoop when the error handler rethrows', async () => {
    DangaSocket.setErrorHandler((err) => {
      throw err;
    });
    DangaSocket.AddTimer(0, () => {
      throw new Error('fatal');
    });
    DangaSocket.SetLoopTimeout(0);
    DangaSocket.SetPostLoopCallback(() => true);
    await expect(DangaSocket.EventLoop()).rejects.toThrow('fatal');
  });
});

describe('construction, identity and strings', () => {
  it('refuses non-sockets, double wrapping and closed sockets', async () => {
    const p = await tcpPair();
    expect(() => new Recorder({} as net.Socket)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    const a = new Recorder(p.server);
    expect(() => new Recorder(p.server)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_ALREADY_WRAPPED' }),
    );
    a.close();
    expect(() => new Recorder(p.server)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    p.client.destroy();
    await new Promise((r) => setImmediate(r));
    expect(() => new Recorder(p.client)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });

  it('gives never-reused ids and registers at once', async () => {
    const p = await tcpPair();
    const a = new Recorder(p.server);
    const b = new Recorder(p.client);
    expect(b.id).toBeGreaterThan(a.id);
    expect(DangaSocket.DescriptorMap().get(a.id)).toBe(a);
    expect(typeof a.osFd()).toBe('number');
    p.close();
  });

  it('formats asString, address strings, and closed state', async () => {
    const p = await tcpPair();
    const a = new Recorder(p.server);
    expect(a.asString()).toBe(`Recorder(): open to ${a.peerAddrString()}`);
    a.watchRead(true);
    expect(String(a)).toMatch(/^Recorder\(R\): open to 127\.0\.0\.1:\d+$/);
    expect(a.peerIpString()).toBe('127.0.0.1');
    expect(a.localAddrString()).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(a.localIpString()).toBe('127.0.0.1');
    a.close();
    expect(a.asString()).toBe('Recorder(): closed');
    expect(a.peerAddrString()).toBeUndefined();
    expect(a.sock()).toBeNull();
    p.close();
  });

  it('formats IPv6 peers as [ip]:port', async () => {
    const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const ok = await new Promise<boolean>((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen(0, '::1', () => resolve(true));
    });
    if (!ok) return; // no IPv6 loopback on this host
    const port = (srv.address() as net.AddressInfo).port;
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const c = net.connect({ port, host: '::1' });
    const s = await accepted;
    const a = new Recorder(s);
    expect(a.peerAddrString()).toMatch(/^\[::1\]:\d+$/);
    expect(a.localAddrString()).toBe(`[::1]:${port}`);
    c.destroy();
    srv.close();
  });

  it('DebugMsg writes ">>> " + a Perl-style sprintf to stderr, ignoring surplus args', () => {
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    DangaSocket.DebugMsg('fd=%d name=%s hex=%x pct=%% f=%.2f\n', 12.7, 'x', 255, 1.234, 'extra');
    expect(spy).toHaveBeenCalledWith('>>> fd=12 name=x hex=ff pct=% f=1.23\n');
    spy.mockRestore();
  });

  it('dumpError writes ERROR:, the object and a stack', async () => {
    const p = await tcpPair();
    const a = new Recorder(p.server);
    let out = '';
    const spy = jest.spyOn(process.stderr, 'write').mockImplementation((s) => {
      out += String(s);
      return true;
    });
    a.dumpError('bad thing');
    spy.mockRestore();
    expect(out).toMatch(/^ERROR: bad thing\n\tRecorder = Recorder\(\): open to 127/);
    p.close();
  });
});

describe('stealSocket()', () => {
  it('returns the open socket with unread bytes put back; the entry goes at iteration end', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    let stolen: net.Socket | net.Server | NativeSocket | null = null;
    r.onRead = (self) => {
      const b = self.read(2);
      if (b !== null && b.length === 2) {
        self.pushBackRead('PB');
        stolen = self.stealSocket();
      }
    };
    r.watchRead(true);
    p.client.write('abcdef');
    await runUntil(() => stolen !== null);
    expect(r.closed).toBe(true);
    expect(DangaSocket.WatchedSockets()).toBe(0);
    await expect(r.whenClosed()).resolves.toBe('stolen');
    const s = stolen as unknown as net.Socket;
    expect(s.destroyed).toBe(false);
    const rest = await new Promise<string>((resolve) => {
      let acc = '';
      s.on('data', (d: Buffer) => {
        acc += d.toString();
        if (acc.length >= 6) resolve(acc);
      });
      s.resume();
    });
    expect(rest).toBe('PBcdef');
    // A stolen socket can be wrapped again.
    const again = new Recorder(s);
    expect(again.closed).toBe(false);
    expect(r.stealSocket()).toBeNull();
    p.close();
  });
});

describe('profiling', () => {
  it('records <Class>-read rows only while enabled', async () => {
    const p = await tcpPair();
    const r = new Recorder(p.server);
    r.onRead = (self) => {
      self.read(100);
    };
    r.watchRead(true);
    expect(DangaSocket.EnableProfiling()).toBe(true);
    p.client.write('x');
    await runUntil(() => r.log.length > 0);
    const data = DangaSocket.ProfilingData();
    expect(data['Recorder-read']?.[2]).toBeGreaterThanOrEqual(1);
    expect(data['Recorder-read']?.[0]).toEqual(expect.any(Number));
    DangaSocket.DisableProfiling();
    const calls = data['Recorder-read']?.[2];
    p.client.write('y');
    await runUntil(() => r.log.length > 1);
    expect(DangaSocket.ProfilingData()['Recorder-read']?.[2]).toBe(calls);
    p.close();
  });
});

describe('Reset()', () => {
  it('really closes the old listener, so the same port can be bound again (t/10)', async () => {
    const l = await Listener.listen({ port: 0 }, (s) => s.destroy());
    const port = (l.address() as net.AddressInfo).port;
    DangaSocket.Reset();
    expect(l.closed).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    const again = await Listener.listen({ port }, (s) => s.destroy());
    expect((again.address() as net.AddressInfo).port).toBe(port);
  });
});

describe('Listener', () => {
  it('accepts every pending connection and survives a throwing onAccept', async () => {
    const errors: unknown[] = [];
    DangaSocket.setErrorHandler((e) => errors.push(e));
    let n = 0;
    const accepted: net.Socket[] = [];
    const l = await Listener.listen({ port: 0 }, (s) => {
      if (++n === 1) throw new Error('bad accept');
      accepted.push(s);
    });
    const port = (l.address() as net.AddressInfo).port;
    const clients = [1, 2, 3].map(() => net.connect({ port, host: '127.0.0.1' }));
    for (const c of clients) c.on('error', () => {});
    await runUntil(() => accepted.length === 2);
    expect(errors).toHaveLength(1);
    expect(l.closed).toBe(false);
    expect(l.asString()).toBe('Listener(R): open');
    for (const s of accepted) s.destroy();
    for (const c of clients) c.destroy();
  });

  it('closes the object a throwing onAccept made with handler_error; the client sees the end', async () => {
    const errors: unknown[] = [];
    DangaSocket.setErrorHandler((e) => errors.push(e));
    const made: Quiet[] = [];
    const gone: (string | undefined)[] = [];
    const l = await Listener.listen({ port: 0 }, (s) => {
      const q = new Quiet(s); // its hooks close nothing: only the listener can
      made.push(q);
      void q.whenClosed().then((r) => gone.push(r));
      throw new Error('bad accept');
    });
    const port = (l.address() as net.AddressInfo).port;
    const c = net.connect({ port, host: '127.0.0.1' });
    c.on('error', () => {});
    let ended = false;
    c.on('close', () => (ended = true));
    c.resume();
    await runUntil(() => ended && gone.length === 1);
    expect(errors).toHaveLength(1);
    expect(gone).toEqual(['handler_error']);
    expect(made[0]?.closed).toBe(true);
    expect(DangaSocket.WatchedSockets()).toBe(1); // the listener only
    c.destroy();
  });

  it('rejects with DS_ERR_LISTEN when the port is taken and DS_ERR_INVALID_ARG for bad options', async () => {
    const l = await Listener.listen({ port: 0 }, () => {});
    const port = (l.address() as net.AddressInfo).port;
    await expect(Listener.listen({ port }, () => {})).rejects.toMatchObject({
      code: 'DS_ERR_LISTEN',
    });
    expect(() => Listener.listen({ port: -1 }, () => {})).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => Listener.listen({ port: 0 }, 'nope' as unknown as () => void)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });
});
