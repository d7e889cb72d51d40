import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import { DangaSocket, DangaSocketError, Listener, NativeSocket, connect } from '../lib';
import { nativeEpoll } from '../lib/native-socket';
import {
  LOAD_CLIENT,
  churnClientCommand,
  fdCount,
  socketFdCount,
  killChildren,
  spawnChild,
} from './fixtures/children';
import { Echo, caught, closedPort, runUntil, sleep, waitFor } from './helpers';
import { describeNative } from './native-mode';

// Specs only a real descriptor can pass: kernel partial writes, level-triggered EOF, a flood
// held by the kernel, descriptors closed at the end of the iteration, EBADF, many connections.

const peers = new Set<net.Socket>();
afterEach(async () => {
  for (const p of peers) p.destroy();
  peers.clear();
  await killChildren();
  DangaSocket.Reset();
});

/** Records its hooks; reads nothing unless told to. */
class Recorder extends DangaSocket {
  log: string[] = [];
  override eventRead(): void {
    this.log.push('read');
  }
  override eventWrite(): void {
    this.log.push('write');
  }
  override eventErr(): void {
    this.log.push('err');
  }
  override eventHup(): void {
    this.log.push('hup');
  }
  /** Keep the kernel's refusal in the queue: no automatic flush. */
  override onIncompleteWrite(): void {}
}

/** A native listener and a node client connected to it; resolves the accepted NativeSocket. */
async function nativeServerPair(): Promise<{ ns: NativeSocket; client: net.Socket }> {
  let accepted: NativeSocket | undefined;
  const l = await Listener.listen({ backend: 'native' }, (s) => {
    accepted = s;
  });
  const port = (l.address() as net.AddressInfo).port;
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  client.on('error', () => {});
  peers.add(client);
  await runUntil(() => accepted !== undefined);
  l.close('done');
  return { ns: accepted as NativeSocket, client };
}

/** Reset the connection from the client's side (SO_LINGER 0) and wait until it is gone. */
async function resetFrom(client: net.Socket): Promise<void> {
  const gone = new Promise((resolve) => client.once('close', resolve));
  client.resetAndDestroy();
  await gone;
}

function linkOf(fd: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

describeNative('native backend', () => {
  it('a refused or unbindable native connect reports the address and port, as Node does', async () => {
    const port = await closedPort();
    let err: unknown;
    try {
      await connect({ host: '127.0.0.1', port, backend: 'native' });
    } catch (e) {
      err = e;
    }
    const cause = (err as { cause?: unknown }).cause;
    expect(cause).toMatchObject({
      code: 'ECONNREFUSED',
      syscall: 'connect',
      address: '127.0.0.1',
      port,
    });
    expect((cause as Error).message).toBe(`connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  it('echoes through a native listener to a node client, and connect() dials natively', async () => {
    const l = await Listener.listen({ backend: 'native' }, (s) => new Echo(s as never));
    const port = (l.address() as net.AddressInfo).port;
    const c = net.connect(port, '127.0.0.1');
    peers.add(c);
    let got = '';
    c.on('data', (d) => (got += d.toString()));
    c.write('hello native');
    await runUntil(() => got === 'hello native');

    const ns = await connect({ host: '127.0.0.1', port, backend: 'native' });
    expect(ns).toBeInstanceOf(NativeSocket);
    expect(ns.remotePort).toBe(port);
    expect(ns.remoteAddress).toBe('127.0.0.1');
    expect(ns.remoteFamily).toBe('IPv4');
    const o = new Recorder(ns);
    let back = '';
    o.eventRead = function (this: Recorder) {
      const b = this.read(100);
      if (b !== null) back += b.toString();
    };
    o.watchRead(true);
    o.write('ping');
    await runUntil(() => back === 'ping');
    expect(o.peerAddrString()).toBe(`127.0.0.1:${port}`);
  });

  it('keeps exactly what the kernel refused in writeBufSize (a real partial write)', async () => {
    const { ns, client } = await nativeServerPair();
    client.pause(); // the peer reads nothing: the kernel's buffers fill up
    const o = new Recorder(ns);
    const total = 32 * 1024 * 1024;
    expect(o.write(Buffer.alloc(total, 7))).toBe(false);
    const refused = o.writeBufSize;
    expect(refused).toBeGreaterThan(0);
    expect(refused).toBeLessThan(total);
    // Everything the kernel took reaches the peer; nothing more (we never flush again).
    let received = 0;
    client.on('data', (d: Buffer) => (received += d.length));
    client.resume();
    let last = -1;
    await runUntil(
      () => {
        const settled = received === last && received > 0;
        last = received;
        return settled;
      },
      10000,
      200,
    );
    expect(received).toBe(total - refused);
    expect(o.writeBufSize).toBe(refused);
  });

  it('drains a queue of many Buffers with writev(2): in order, partial counts kept, functions on time', async () => {
    const { ns, client } = await nativeServerPair();
    client.pause();
    const ep = nativeEpoll();
    const real = ep.writev.bind(ep);
    const batch: number[] = []; // Buffers before the first function, per call (the queue mutates)
    const writev = jest.spyOn(ep, 'writev').mockImplementation((fd, bufs, first) => {
      const n = bufs.findIndex((b) => typeof b === 'function');
      batch.push(n < 0 ? bufs.length : n);
      return real(fd, bufs, first);
    });
    try {
      const o = new Recorder(ns);
      // Fill the kernel, then queue 200 distinct chunks and a function after chunk 100.
      const head = Buffer.alloc(32 * 1024 * 1024, 1);
      expect(o.write(head)).toBe(false);
      const chunks = Array.from({ length: 200 }, (_, i) => randomBytes(1000 + i));
      let fnRanAt = -1;
      let received = 0;
      chunks.forEach((c, i) => {
        expect(o.write(c)).toBe(false);
        if (i === 99) o.write(() => (fnRanAt = received));
      });
      const queued = head.length + chunks.reduce((n, c) => n + c.length, 0);
      const refusedAtFirst = o.writeBufSize - chunks.reduce((n, c) => n + c.length, 0) - 1;
      expect(refusedAtFirst).toBeGreaterThan(0);
      const got: Buffer[] = [];
      client.on('data', (d: Buffer) => {
        got.push(d);
        received += d.length;
      });
      client.resume();
      // The library flushes on writability (eventWrite here does what Danga's default does).
      o.eventWrite = function (this: Recorder): void {
        this.write(undefined);
      };
      o.watchWrite(true);
      await runUntil(() => o.writeBufSize === 0 && received === queued, 20000);
      const all = Buffer.concat(got);
      expect(all.length).toBe(queued);
      expect(all.subarray(0, head.length).every((b) => b === 1)).toBe(true);
      expect(all.subarray(head.length).equals(Buffer.concat(chunks))).toBe(true);
      // The function ran once every byte queued before it had been handed to the kernel.
      const beforeFn = head.length + chunks.slice(0, 100).reduce((n, c) => n + c.length, 0);
      expect(fnRanAt).toBeLessThanOrEqual(beforeFn);
      expect(fnRanAt).toBeGreaterThanOrEqual(0);
      // Several Buffers per call: fewer writev calls than chunks.
      expect(batch.filter((n) => n > 1).length).toBeGreaterThan(0);
      expect(batch.length).toBeLessThan(chunks.length);
    } finally {
      writev.mockRestore();
    }
  });

  it('applies interest changes once per iteration: one epoll_ctl for an accept, none for a flip back', async () => {
    const ep = nativeEpoll();
    const { ns, client } = await nativeServerPair();
    const ctl = jest.spyOn(ep, 'ctl');
    const ctlv = jest.spyOn(ep as Required<typeof ep>, 'ctlv');
    try {
      const o = new Recorder(ns);
      o.watchRead(true); // joins the set reading, in one ADD
      await Promise.resolve(); // the flush is a microtask
      expect(ctlv).toHaveBeenCalledTimes(1);
      expect(ctlv.mock.calls[0]?.[1]).toBe(1); // one entry: the ADD, already reading
      // Watching write and dropping it again within one turn changes nothing in the set.
      o.watchWrite(true);
      o.watchWrite(false);
      await Promise.resolve();
      expect(ctlv).toHaveBeenCalledTimes(1);
      // ...and the set does have the read interest: bytes from the peer wake eventRead.
      client.write('x');
      await runUntil(() => o.log.includes('read'));
      // Write interest really reaches the set (a control for the flip above).
      o.log.length = 0;
      o.watchWrite(true);
      await runUntil(() => o.log.includes('write'));
      expect(ctlv).toHaveBeenCalledTimes(2);
      expect(ctl.mock.calls.filter((c) => c[2] !== 2)).toHaveLength(0);
    } finally {
      ctl.mockRestore();
      ctlv.mockRestore();
    }
  });

  it('reads small and large sizes, owned and as views, from both read buffers, byte-exact', async () => {
    const { ns, client } = await nativeServerPair();
    const sent = randomBytes(3 * 1024 * 1024 + 17);
    const sizes = [1, 1000, 64 * 1024, 64 * 1024 + 1, 300 * 1024, 1024 * 1024, 4 * 1024 * 1024];
    const got: Buffer[] = [];
    let largest = 0;
    let k = 0;
    class Reader extends Recorder {
      override eventRead(): void {
        const n = sizes[k++ % sizes.length] as number;
        const view = k % 2 === 0;
        const b = view ? this.readView(n) : this.read(n);
        if (b === null || b.length === 0) return;
        expect(b.length).toBeLessThanOrEqual(Math.min(n, 1024 * 1024));
        largest = Math.max(largest, b.length);
        got.push(view ? Buffer.from(b) : b); // a view is copied before the next read
      }
    }
    const o = new Reader(ns);
    o.watchRead(true);
    client.end(sent);
    let total = 0;
    await runUntil(() => {
      total = got.reduce((t, b) => t + b.length, 0);
      return total === sent.length;
    }, 20000);
    expect(Buffer.concat(got).equals(sent)).toBe(true);
    expect(largest).toBeGreaterThan(64 * 1024); // the big buffer was used
  });

  it('fires eventRead every iteration while an EOF is unread (level-triggered)', async () => {
    const { ns, client } = await nativeServerPair();
    const o = new Recorder(ns);
    o.watchRead(true);
    client.end();
    await runUntil(() => o.log.filter((e) => e === 'read').length >= 5);
    expect(o.read(10)).toBeNull();
    expect(o.osError).toBeUndefined();
  });

  it('holds a flooding peer in the kernel while read is not watched (our RSS stays bounded)', async () => {
    const { ns, client } = await nativeServerPair();
    const o = new Recorder(ns);
    const chunk = randomBytes(64 * 1024);
    const rss0 = process.memoryUsage().rss;
    let accepted = 0;
    // Write until the kernel stops taking bytes for 500 ms (measured, not assumed).
    let stalledSince = 0;
    while (Date.now() - (stalledSince || Date.now()) < 500) {
      if (client.writableNeedDrain) {
        stalledSince ||= Date.now();
        await sleep(20);
      } else {
        stalledSince = 0;
        client.write(chunk, (err) => {
          if (!err) accepted += chunk.length;
        });
        await new Promise((r) => setImmediate(r));
      }
      await runUntil(() => true, 100, 0);
    }
    expect(accepted).toBeGreaterThan(0);
    expect(o.log).not.toContain('read');
    // The object buffered nothing: all of it waits in the kernel (not our memory).
    expect(process.memoryUsage().rss - rss0).toBeLessThan(accepted + 16 * 1024 * 1024);
    o.watchRead(true);
    let drained = 0;
    o.eventRead = function (this: Recorder) {
      const b = this.readView(1024 * 1024);
      if (b !== null) drained += b.length;
    };
    await runUntil(() => drained >= accepted, 10000);
  });

  it('closes the descriptor only at the end of the iteration, not inside close()', async () => {
    const { ns } = await nativeServerPair();
    const fd = ns.fd;
    const link = linkOf(fd);
    expect(link).toMatch(/^socket:/);
    const o = new Recorder(ns);
    let inHook: string | undefined;
    let pending: readonly unknown[] = [];
    DangaSocket.AddTimer(0, () => {
      o.close('bye');
      inHook = linkOf(fd);
      pending = DangaSocket.ToClose();
    });
    await runUntil(() => inHook !== undefined);
    expect(inHook).toBe(link);
    expect(pending).toContain(ns);
    await expect(o.whenClosed()).resolves.toBe('bye');
    expect(ns.fd).toBe(-1);
    expect(linkOf(fd)).not.toBe(link);
  });

  it('closes an object whose descriptor was closed under it (EBADF), without aborting', async () => {
    const { ns } = await nativeServerPair();
    const o = new Recorder(ns);
    fs.closeSync(ns.fd);
    o.write('x');
    expect(o.closed).toBe(true);
    expect(o.closeReason).toBe('write_error');
    expect((o.osError as NodeJS.ErrnoException | undefined)?.code).toBe('EBADF');
    let reason: string | undefined | null = null;
    void o.whenClosed().then((r) => (reason = r));
    await runUntil(() => reason !== null);
    expect(reason).toBe('write_error');
  });

  it("gives eventErr the socket's own errno (SO_ERROR) when the peer resets after its FIN", async () => {
    const { ns, client } = await nativeServerPair();
    const o = new Recorder(ns);
    let inHook: Error | undefined | null = null;
    o.eventErr = function (this: Recorder) {
      inHook ??= this.osError;
      this.log.push('err');
    };
    o.watchRead(true);
    client.end();
    await runUntil(() => o.log.includes('read'));
    expect(o.read(10)).toBeNull(); // the EOF, not an error
    expect(o.osError).toBeUndefined();
    o.watchRead(false);
    await resetFrom(client);
    await runUntil(() => o.log.includes('err'));
    // Linux gives a reset in CLOSE_WAIT as EPIPE: what our next write(2) would have reported.
    expect(inHook).toMatchObject({ code: 'EPIPE', errno: -osConstants.errno.EPIPE });
    expect((inHook as Error | null)?.message).toBe('write EPIPE');
    expect(o.osError).toBe(inHook);
    expect(() => o.write('x')).not.toThrow();
    expect(o.closed).toBe(true);
    expect(o.closeReason).toBe('EPIPE');
  });

  it('still reads the bytes a peer sent before its reset, then fails the read with ECONNRESET', async () => {
    const { ns, client } = await nativeServerPair();
    const o = new Recorder(ns); // reads nothing until told: the bytes wait in the kernel
    let inHook: Error | undefined | null = null;
    o.eventErr = function (this: Recorder) {
      inHook ??= this.osError;
      this.log.push('err');
    };
    await new Promise<void>((resolve) => client.write('last words', () => resolve()));
    await resetFrom(client);
    await runUntil(() => o.log.includes('err'));
    expect(inHook).toMatchObject({ code: 'ECONNRESET', errno: -osConstants.errno.ECONNRESET });
    expect((inHook as Error | null)?.message).toBe('read ECONNRESET');
    expect(o.read(100)?.toString()).toBe('last words');
    expect(o.read(100)).toBeNull();
    expect(o.osError).toBe(inHook);
  });

  it('steals a native object as a net.Socket with the unread bytes put back', async () => {
    const { ns, client } = await nativeServerPair();
    const o = new Recorder(ns);
    o.watchRead(true);
    client.write('abcdef');
    let stolen: net.Socket | undefined;
    o.eventRead = function (this: Recorder) {
      const b = this.read(2);
      if (b !== null && b.length === 2) {
        this.pushBackRead('PB');
        stolen = this.stealSocket() as net.Socket;
      }
    };
    await runUntil(() => stolen !== undefined);
    const s = stolen as net.Socket;
    peers.add(s);
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.resume();
    await runUntil(() => got === 'PBcdef');
    s.write('back');
    let echoed = '';
    client.on('data', (d) => (echoed += d.toString()));
    await runUntil(() => echoed === 'back');
  });

  it('steals a native listener as a listening net.Server: out of our epoll set, never closed by us', async () => {
    const took: NativeSocket[] = [];
    const conns: net.Socket[] = [];
    const holder: { server?: unknown } = {};
    const l: Listener = await Listener.listen({ backend: 'native' }, (s) => {
      took.push(s);
      // Mid-batch: the second connection was accepted but is not taken yet.
      const stolen = l.stealSocket();
      holder.server = stolen;
      if (stolen instanceof net.Server) {
        stolen.on('connection', (c: net.Socket) => {
          peers.add(c);
          conns.push(c);
        });
      }
    });
    const fd = l.osFd() as number;
    const link = linkOf(fd);
    const port = (l.address() as net.AddressInfo).port;
    const clients = [0, 1].map(() => net.connect(port, '127.0.0.1'));
    for (const c of clients) peers.add(c);
    await Promise.all(clients.map((c) => new Promise((resolve) => c.once('connect', resolve))));
    await runUntil(() => holder.server !== undefined);
    expect(holder.server).toBeInstanceOf(net.Server);
    const server = holder.server as net.Server;
    expect(took).toHaveLength(1);
    expect(nativeEpoll().owns(fd)).toBe(false);
    // The connection accepted in the same batch goes to the server's new owner.
    await waitFor(() => conns.length === 1, 'the batched connection');
    const ports = clients.map((c) => c.localPort);
    expect(ports).toContain(conns[0]?.remotePort);
    expect(ports).toContain(took[0]?.remotePort);
    // The object's map entry went at the end of the iteration; the descriptor stayed open.
    await runUntil(() => DangaSocket.DescriptorMap().size === 0);
    expect(linkOf(fd)).toBe(link);
    expect(server.listening).toBe(true);
    expect(server.address()).toMatchObject({ port });
    // And Node keeps accepting on it: a new client talks to the stolen server.
    const late = net.connect(port, '127.0.0.1');
    peers.add(late);
    await waitFor(() => conns.length === 2, 'a connection on the stolen server');
    const s2 = conns[1] as net.Socket;
    let got = '';
    s2.on('data', (d: Buffer) => (got += d.toString()));
    s2.resume(); // accepted paused, as by the node backend's Listener
    late.write('to node');
    await waitFor(() => got === 'to node', 'bytes on the stolen connection');
    took[0]?.destroy();
    for (const c of conns) c.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('hands a NativeSocket to Node with toNetSocket()', async () => {
    const { ns, client } = await nativeServerPair();
    const s = ns.toNetSocket();
    peers.add(s);
    expect(ns.fd).toBe(-1);
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    client.write('over to node');
    await runUntil(() => got === 'over to node');
  });

  it('refuses bad arguments with DS_ERR_INVALID_ARG', async () => {
    expect(caught(() => void Listener.listen({ backend: 'bogus' as never }, () => {})).code).toBe(
      'DS_ERR_INVALID_ARG',
    );
    expect(
      caught(() => void connect({ host: '127.0.0.1', port: 1, backend: 5 as never })).code,
    ).toBe('DS_ERR_INVALID_ARG');
    expect(
      caught(() => {
        DangaSocket.DefaultBackend = 'epoll' as never;
      }).code,
    ).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => new NativeSocket(Symbol('x'), 0, false)).code).toBe('DS_ERR_INVALID_ARG');
    const { ns } = await nativeServerPair();
    expect(caught(() => ns.setNoDelay('yes' as never)).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => ns.setKeepAlive(true, -1)).code).toBe('DS_ERR_INVALID_ARG');
    new Recorder(ns);
    expect(caught(() => new Recorder(ns)).code).toBe('DS_ERR_ALREADY_WRAPPED');
    expect(caught(() => ns.destroy())).toBeInstanceOf(DangaSocketError);
  });

  it('sets TCP_NODELAY and SO_KEEPALIVE through setsockopt', async () => {
    const { ns } = await nativeServerPair();
    const ep = nativeEpoll();
    const k = ep.constants;
    ns.setNoDelay(true);
    expect(ep.getInt(ns.fd, k.IPPROTO_TCP as number, k.TCP_NODELAY as number)).toBe(1);
    ns.setNoDelay(false);
    expect(ep.getInt(ns.fd, k.IPPROTO_TCP as number, k.TCP_NODELAY as number)).toBe(0);
    ns.setKeepAlive(true, 5000);
    expect(ep.getInt(ns.fd, k.SOL_SOCKET as number, k.SO_KEEPALIVE as number)).toBe(1);
    expect(ep.getInt(ns.fd, k.IPPROTO_TCP as number, k.TCP_KEEPIDLE as number)).toBe(5);
    const o = new Recorder(ns);
    o.tcpCork(true);
    expect(ep.getInt(ns.fd, k.IPPROTO_TCP as number, k.TCP_CORK as number)).toBe(1);
    o.tcpCork(false);
  });

  it('setNoDelay ignores a Unix socket and throws on any other setsockopt refusal', async () => {
    const dir = fs.mkdtempSync('/tmp/danga-nodelay-');
    const path = `${dir}/s`;
    let accepted: NativeSocket | undefined;
    let tcp: NativeSocket | undefined;
    const l = await Listener.listen({ path, backend: 'native' }, (s) => {
      accepted = s;
    });
    const client = net.connect({ path });
    client.on('error', () => {});
    peers.add(client);
    try {
      await runUntil(() => accepted !== undefined);
      const us = accepted as NativeSocket;
      expect(us.localFamily).toBeUndefined();
      expect(us.setNoDelay(true)).toBe(us);
      expect(us.setNoDelay(false)).toBe(us);
      // The same refusal on a TCP socket is an error; so is any other errno.
      tcp = (await nativeServerPair()).ns;
      const ns = tcp;
      const ep = nativeEpoll();
      const spy = jest.spyOn(ep, 'setInt').mockReturnValue(-osConstants.errno.EOPNOTSUPP);
      try {
        expect(caught(() => ns.setNoDelay(true)).code).toBe('DS_ERR_SYSCALL');
        spy.mockReturnValue(-osConstants.errno.EINVAL);
        expect(caught(() => us.setNoDelay(true)).code).toBe('DS_ERR_SYSCALL');
      } finally {
        spy.mockRestore();
      }
    } finally {
      if (accepted !== undefined && !accepted.destroyed) accepted.destroy();
      if (tcp !== undefined && !tcp.destroyed) tcp.destroy();
      l.close('done');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('holds 10,000 native connections and churns 50,000 more with no descriptor leak', async () => {
    let count = 0;
    const l = await Listener.listen({ backend: 'native', backlog: 4096 }, (s) => {
      count++;
      new Echo(s);
    });
    const port = (l.address() as net.AddressInfo).port;
    const fds0 = fdCount();
    const sockets0 = socketFdCount();
    const hold = spawnChild(process.execPath, [
      LOAD_CLIENT,
      ...['--port', String(port), '--mode', 'hold', '--conns', '10000', '--deadline-ms', '60000'],
    ]);
    let established = false;
    void hold.waitForStdout(/"phase":"established"/, 60000).then(() => (established = true));
    await runUntil(() => established, 60000);
    expect(hold.stdout()).toMatch(/"open":10000,"mismatches":0/);
    expect(DangaSocket.DescriptorMap().size).toBe(10001);
    expect(socketFdCount() - sockets0).toBeGreaterThanOrEqual(10000);
    hold.proc.stdin?.write('close\n');
    await runUntil(() => DangaSocket.DescriptorMap().size === 1, 30000);
    await runUntil(() => fdCount() <= fds0, 5000);

    const churn = spawnChild(
      ...churnClientCommand([
        ...['--port', String(port), '--count', '50000', '--slots', '64'],
        ...['--deadline-ms', '200000'],
      ]),
    );
    let churned = false;
    void churn.waitForStdout(/"phase":"churned"/, 200000).then(() => (churned = true));
    await runUntil(() => churned, 200000);
    expect(churn.stdout()).toMatch(/"ok":50000/);
    expect(churn.stdout()).toMatch(/"mismatches":0/);
    await runUntil(() => DangaSocket.DescriptorMap().size === 1, 10000);
    await runUntil(() => fdCount() <= fds0, 5000);
    expect(count).toBeGreaterThanOrEqual(60000);
  }, 300000);
});
