import * as net from 'node:net';
import { DangaSocket, DangaSocketError, Listener, type ErrorContext } from '../lib';
import { caught, runUntil } from './helpers';

// Listener.listen({ proxyProtocol }) with hand-written headers from plain Node clients; the
// same behaviour behind the real HAProxy is in spec/haproxy.spec.ts.

const reports: { err: unknown; context: ErrorContext }[] = [];
beforeEach(() => {
  reports.length = 0;
  DangaSocket.setErrorHandler((err, context) => reports.push({ err, context }));
});
afterEach(() => DangaSocket.Reset());

/** Echoes; flushes, then closes, at EOF. Remembers the peer it saw. */
class Echo extends DangaSocket {
  static all: Echo[] = [];
  readonly peer: string | undefined;
  reason: string | undefined = undefined;
  constructor(sock: net.Socket) {
    super(sock);
    this.peer = this.peerAddrString();
    Echo.all.push(this);
    this.watchRead(true);
  }
  override eventRead(): void {
    const b = this.read(65536);
    if (b === null) {
      this.watchRead(false);
      this.write(() => this.close('eof'));
    } else if (b.length > 0) {
      this.write(b);
    }
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
  override close(reason?: string): void {
    if (!this.closed) this.reason = reason;
    super.close(reason);
  }
}
beforeEach(() => (Echo.all = []));

/** The peers of the objects the header failures closed (reason 'proxy_protocol'). */
function refused(): (string | undefined)[] {
  return Echo.all.filter((e) => e.reason === 'proxy_protocol').map((e) => e.peer);
}
/** The peers of the other objects. */
function served(): (string | undefined)[] {
  return Echo.all.filter((e) => e.reason !== 'proxy_protocol').map((e) => e.peer);
}

const V2_SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
function v2Tcp4(src: string, sport: number, cmd = 1): Buffer {
  const h = Buffer.alloc(28);
  V2_SIG.copy(h, 0);
  h[12] = 0x20 | cmd;
  h[13] = 0x11;
  h.writeUInt16BE(12, 14);
  Buffer.from(src.split('.').map(Number)).copy(h, 16);
  Buffer.from([127, 0, 0, 1]).copy(h, 20);
  h.writeUInt16BE(sport, 24);
  h.writeUInt16BE(7777, 26);
  return h;
}

interface Client {
  sock: net.Socket;
  got: () => Buffer;
  closed: () => boolean;
}
function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let closed = false;
    const sock = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () =>
      resolve({ sock, got: () => Buffer.concat(chunks), closed: () => closed }),
    );
    sock.on('data', (d: Buffer) => chunks.push(d));
    // Closed by the server: its FIN (we allow half-open, so no 'close' without our end) or RST.
    sock.on('end', () => (closed = true));
    sock.on('close', () => (closed = true));
    sock.on('error', () => {});
    sock.once('error', reject);
  });
}

async function listen(options: Parameters<typeof Listener.listen>[0]): Promise<number> {
  const l = await Listener.listen(options, (s) => new Echo(s));
  return (l.address() as net.AddressInfo).port;
}

function failures(): DangaSocketError[] {
  return reports
    .filter((r) => r.context.kind === 'proxy_protocol')
    .map((r) => r.err as DangaSocketError);
}

describe('Listener.listen({ proxyProtocol })', () => {
  it('reads a v1 header before the object exists: the object sees the client and only the payload', async () => {
    const port = await listen({ port: 0, proxyProtocol: true });
    const c = await connect(port);
    c.sock.end('PROXY TCP4 203.0.113.7 127.0.0.1 40001 7777\r\nhello');
    await runUntil(() => c.closed());
    expect(c.got().toString()).toBe('hello');
    expect(Echo.all.map((e) => e.peer)).toEqual(['203.0.113.7:40001']);
    expect(failures()).toEqual([]);
  });

  it('takes a v2 header one byte at a time, and a v2 LOCAL header keeps the real peer', async () => {
    const port = await listen({ port: 0, proxyProtocol: true });
    const slow = await connect(port);
    const local = await connect(port);
    local.sock.write(Buffer.concat([v2Tcp4('198.51.100.1', 1, 0), Buffer.from('local')]));
    const bytes = Buffer.concat([v2Tcp4('198.51.100.9', 5555), Buffer.from('x')]);
    let i = 0;
    const drip = setInterval(() => {
      if (i < bytes.length) slow.sock.write(bytes.subarray(i, ++i));
    }, 2);
    try {
      await runUntil(() => slow.got().length === 1 && local.got().length === 5, 10000);
    } finally {
      clearInterval(drip);
    }
    const peers = Echo.all.map((e) => e.peer).sort();
    expect(peers).toHaveLength(2);
    expect(peers[0]).toMatch(/^127\.0\.0\.1:\d+$/); // LOCAL: the real peer
    expect(peers[1]).toBe('198.51.100.9:5555');
    expect(local.got().toString()).toBe('local');
  });

  it.each([
    ['a missing header', Buffer.from('GET / HTTP/1.0\r\n\r\n'), /does not start/],
    ['a malformed v1 line', Buffer.from('PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n'), /address/],
    ['an oversized v1 line', Buffer.from(`PROXY UNKNOWN ${'f'.repeat(200)}`), /longer than 107/],
    [
      'an oversized v2 header',
      Buffer.concat([V2_SIG, Buffer.from([0x21, 0x11, 0xff, 0xff])]),
      /exceeds 65536/,
    ],
  ])(
    'closes only the connection with %s, reported as proxy_protocol',
    async (_name, bytes, why) => {
      const port = await listen({ port: 0, proxyProtocol: true });
      const good = await connect(port);
      const bad = await connect(port);
      bad.sock.write(bytes);
      good.sock.write('PROXY TCP4 192.0.2.1 127.0.0.1 1000 7777\r\nstill here');
      await runUntil(() => bad.closed() && good.got().toString() === 'still here');
      expect(bad.got().length).toBe(0);
      expect(good.closed()).toBe(false);
      expect(served()).toEqual(['192.0.2.1:1000']);
      // The bad connection's object saw no byte and was closed with reason 'proxy_protocol';
      // with no header, its peer is the real one.
      expect(refused()).toEqual([`127.0.0.1:${String(bad.sock.localPort)}`]);
      const [err] = failures();
      expect(err).toBeInstanceOf(DangaSocketError);
      expect(err?.code).toBe('DS_ERR_PROXY_PROTOCOL');
      expect(err?.message).toMatch(why);
      // The report names the connection (read before the socket is destroyed).
      expect(err?.message).toContain(`from 127.0.0.1:${String(bad.sock.localPort)}:`);
    },
  );

  it('closes a connection that ends inside its header (truncated)', async () => {
    const port = await listen({ port: 0, proxyProtocol: true });
    const c = await connect(port);
    c.sock.end('PROXY TCP4 10.0.0.1 ');
    await runUntil(() => c.closed());
    expect(served()).toHaveLength(0);
    expect(refused()).toHaveLength(1);
    expect(failures()[0]?.message).toMatch(/ended inside/);
  });

  it('closes a header that is too slow at its deadline, while another connection is served', async () => {
    const port = await listen({ port: 0, proxyProtocol: true, proxyHeaderTimeoutMs: 400 });
    const slow = await connect(port);
    const fast = await connect(port);
    const header = Buffer.from('PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n');
    let i = 0;
    // One byte every 100 ms: the whole header would need 3.4 s.
    const drip = setInterval(() => {
      if (!slow.closed() && i < header.length) slow.sock.write(header.subarray(i, ++i));
    }, 100);
    try {
      fast.sock.write('PROXY TCP4 10.9.9.9 127.0.0.1 9 7777\r\nping');
      await runUntil(() => slow.closed() && fast.got().toString() === 'ping', 10000);
    } finally {
      clearInterval(drip);
    }
    expect(fast.closed()).toBe(false);
    expect(served()).toEqual(['10.9.9.9:9']);
    expect(refused()).toEqual([`127.0.0.1:${String(slow.sock.localPort)}`]);
    expect(failures()[0]?.message).toMatch(/no complete header within 400 ms/);
  });

  it("'optional' serves connections with and without a header", async () => {
    const port = await listen({ port: 0, proxyProtocol: 'optional' });
    const plain = await connect(port);
    const proxied = await connect(port);
    plain.sock.write('PLAIN talk');
    proxied.sock.write('PROXY TCP6 2001:db8::1 ::1 4242 7777\r\nproxied');
    await runUntil(() => plain.got().length === 10 && proxied.got().length === 7);
    expect(plain.got().toString()).toBe('PLAIN talk');
    const peers = Echo.all.map((e) => e.peer).sort();
    expect(peers[0]).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(peers[1]).toBe('[2001:db8::1]:4242');
  });

  it("'optional' hands over a silent connection at the deadline (the server may speak first)", async () => {
    const port = await listen({ port: 0, proxyProtocol: 'optional', proxyHeaderTimeoutMs: 200 });
    const c = await connect(port);
    await runUntil(() => Echo.all.length === 1, 5000);
    c.sock.write('late');
    await runUntil(() => c.got().toString() === 'late');
    expect(failures()).toEqual([]);
  });

  it('Reset() destroys connections still waiting for their header', async () => {
    const port = await listen({ port: 0, proxyProtocol: true });
    const c = await connect(port);
    // Let the loop accept it and start reading (nothing comes): a while, whatever happens.
    await runUntil(() => false, 300).catch(() => undefined);
    expect(c.closed()).toBe(false);
    DangaSocket.Reset();
    await new Promise<void>((resolve) => {
      if (c.closed()) resolve();
      c.sock.once('end', resolve);
      c.sock.once('close', resolve);
    });
    expect(c.closed()).toBe(true);
  });

  it('rejects bad proxyProtocol and proxyHeaderTimeoutMs values', () => {
    for (const bad of [
      { proxyProtocol: 'yes' },
      { proxyProtocol: 1 },
      { proxyProtocol: true, proxyHeaderTimeoutMs: 0 },
      { proxyProtocol: true, proxyHeaderTimeoutMs: Number.NaN },
      { proxyProtocol: true, proxyHeaderTimeoutMs: '10' },
    ]) {
      expect(caught(() => Listener.listen(bad as never, () => {})).code).toBe('DS_ERR_INVALID_ARG');
    }
  });
});
