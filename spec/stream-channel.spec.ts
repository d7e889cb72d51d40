import * as net from 'node:net';
import { copyOut } from '../lib/fast-accept';
import { kNotify } from '../lib/internal';
import { StreamChannel } from '../lib/stream-channel';
import { sleep } from './helpers';

/** A connected loopback pair; `server` is the accepted side, paused. */
async function tcpPair(): Promise<{ server: net.Socket; client: net.Socket; close(): void }> {
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const accepted = new Promise<net.Socket>((resolve) => srv.once('connection', resolve));
  const client = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1' });
  const server = await accepted;
  srv.close();
  return {
    server,
    client,
    close() {
      server.destroy();
      client.destroy();
    },
  };
}

/** A channel owner that counts readiness notifications. */
class Owner {
  notified = 0;
  [kNotify](): void {
    this.notified++;
  }
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** Write `parts` one by one, each after the previous one has reached the channel. */
async function feed(client: net.Socket, ch: StreamChannel, parts: string[]): Promise<void> {
  for (const p of parts) {
    const want = ch.pendingBytes + p.length;
    client.write(p);
    await until(() => ch.pendingBytes === want);
  }
}

describe('StreamChannel', () => {
  let pair: Awaited<ReturnType<typeof tcpPair>>;
  beforeEach(async () => {
    pair = await tcpPair();
  });
  afterEach(() => pair.close());

  it('notifies its owner when bytes arrive with none waiting, not for each later chunk', async () => {
    const owner = new Owner();
    const ch = new StreamChannel(pair.server, owner);
    await feed(pair.client, ch, ['ab', 'cd', 'ef']);
    expect(owner.notified).toBe(1);
    expect(ch.read(100)?.toString()).toBe('abcdef');
    await feed(pair.client, ch, ['gh']);
    expect(owner.notified).toBe(2);
  });

  it('reads queued chunks in order, across chunk boundaries, keeping the rest', async () => {
    const ch = new StreamChannel(pair.server, new Owner());
    await feed(pair.client, ch, ['abc', 'defg', 'hi']);
    expect(ch.read(2)?.toString()).toBe('ab');
    expect(ch.read(3)?.toString()).toBe('cde');
    expect(ch.read(3)?.toString()).toBe('fgh');
    expect(ch.pendingBytes).toBe(1);
    expect(ch.read(10)?.toString()).toBe('i');
    expect(ch.read(10)?.length).toBe(0);
  });

  it('gives unread bytes back on detach, pushed-back bytes first', async () => {
    const ch = new StreamChannel(pair.server, new Owner());
    await feed(pair.client, ch, ['abc', 'def']);
    expect(ch.read(1)?.toString()).toBe('a');
    const sock = ch.detach([Buffer.from('>')]);
    expect(ch.pendingBytes).toBe(0);
    expect((sock.read() as Buffer).toString()).toBe('>bcdef');
  });
});

describe('copyOut', () => {
  const src = Buffer.alloc(64 * 1024);
  for (let i = 0; i < src.length; i++) src[i] = i & 0xff;

  it('copies reads under 4 KiB into a shared 8 KiB slab, on every Node version', () => {
    const a = copyOut(src, 100);
    const b = copyOut(src, 4095);
    expect(a.equals(src.subarray(0, 100))).toBe(true);
    expect(b.equals(src.subarray(0, 4095))).toBe(true);
    for (const c of [a, b]) expect(c.buffer.byteLength).toBe(8 * 1024);
    // Node 24+ Buffer.allocUnsafe would pool these in 64 KiB slabs.
    expect(a.buffer === b.buffer || b.byteOffset === 0).toBe(true);
  });

  it('gives larger reads an exact-size buffer of their own', () => {
    for (const n of [4096, 16 * 1024, 64 * 1024]) {
      const c = copyOut(src, n);
      expect(c.equals(src.subarray(0, n))).toBe(true);
      expect(c.buffer.byteLength).toBe(n);
    }
  });
});
