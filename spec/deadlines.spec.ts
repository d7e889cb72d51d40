import type * as net from 'node:net';
import { DangaSocket } from '../lib';
import { beyondKernelBuffers } from './fill';
import { type ServerSock, caught, runUntil, tcpPair } from './helpers';

/** Reads and discards; records nothing. The writer can be held shut to keep a queue. */
class Conn extends DangaSocket {
  reads = 0;
  private held = false;
  constructor(sock: ServerSock) {
    super(sock);
    this.watchRead(true);
  }
  /** Hold the queue: the "kernel" takes nothing until `open()`; no write-watching spin. */
  hold(): void {
    this.held = true;
    this.setWriterFunc(() => 0);
  }
  open(): void {
    this.setWriterFunc(null);
  }
  override onIncompleteWrite(): void {
    // While held (fake time), no write-watching: the socket is writable, the loop would spin.
    if (!this.held) super.onIncompleteWrite();
  }
  override eventRead(): void {
    const buf = this.read(65536);
    if (buf === null) this.watchRead(false);
    else this.reads += buf.length;
  }
  override eventErr(): void {
    this.close('error');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

let pairs: { close(): void }[] = [];
async function conn(): Promise<{ obj: Conn; client: net.Socket }> {
  const pair = await tcpPair();
  pairs.push(pair);
  pair.client.on('error', () => {});
  return { obj: new Conn(pair.server), client: pair.client };
}

/** Fake time for the loop (promises and streams stay real); the loop runs until Reset(). */
function fakeLoop(): void {
  jest.useFakeTimers({ doNotFake: ['nextTick', 'queueMicrotask'] });
  DangaSocket.SetPostLoopCallback(() => true);
  void DangaSocket.EventLoop();
}

const advance = (ms: number): Promise<void> => jest.advanceTimersByTimeAsync(ms);

afterEach(() => {
  DangaSocket.Reset();
  jest.useRealTimers();
  for (const p of pairs) p.close();
  pairs = [];
});

describe('DangaSocket#closeAfterFlush', () => {
  it('closes at once with reason flushed when nothing is queued', async () => {
    const { obj } = await conn();
    obj.closeAfterFlush(5);
    expect(obj.closed).toBe(true);
    expect(obj.closeReason).toBe('flushed');
    await runUntil(() => DangaSocket.DescriptorMap().size === 0, 2_000);
  });

  it('stops reading at once and closes with flushed once the queue drains, before the deadline', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.hold();
    obj.write('queued');
    expect(obj.writeBufSize).toBe(6);
    obj.closeAfterFlush(5);
    expect(obj.asString()).toMatch(/^Conn\(\): open/); // read no longer watched
    await advance(1_000);
    expect(obj.closed).toBe(false);
    obj.open();
    obj.write(undefined); // the kernel takes it now
    expect(obj.closed).toBe(true);
    expect(obj.closeReason).toBe('flushed');
    await advance(10_000); // the cancelled deadline changes nothing
    expect(obj.closeReason).toBe('flushed');
  });

  it('closes with flush_timeout after timeoutS when the queue never drains', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.hold();
    obj.write('stuck');
    obj.closeAfterFlush(5);
    await advance(4_900);
    expect(obj.closed).toBe(false);
    await advance(200);
    expect(obj.closed).toBe(true);
    expect(obj.closeReason).toBe('flush_timeout');
  });

  it('a second call only brings the deadline forward', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.hold();
    obj.write('stuck');
    obj.closeAfterFlush(5);
    obj.closeAfterFlush(60); // later: ignored
    await advance(5_100);
    expect(obj.closeReason).toBe('flush_timeout');

    const other = (await conn()).obj;
    other.hold();
    other.write('stuck');
    other.closeAfterFlush(60);
    other.closeAfterFlush(2); // earlier: wins
    await advance(1_900);
    expect(other.closed).toBe(false);
    await advance(200);
    expect(other.closeReason).toBe('flush_timeout');
  });

  it('drops data written after the call', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.hold();
    obj.write('before');
    obj.closeAfterFlush(5);
    obj.write('after');
    const sent: string[] = [];
    obj.setWriterFunc((buf, len, off) => {
      sent.push(buf.toString('latin1', off, off + len));
      return len;
    });
    obj.write(undefined);
    expect(sent).toEqual(['before']);
    expect(obj.closeReason).toBe('flushed');
  });

  it('is a no-op on a closed object', async () => {
    const { obj } = await conn();
    obj.close('mine');
    obj.closeAfterFlush(1);
    expect(obj.closeReason).toBe('mine');
  });

  it.each([
    ['negative', -1],
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['a string', '1'],
    ['undefined', undefined],
  ])('throws DS_ERR_INVALID_ARG for %s and changes nothing', async (_name, bad) => {
    const { obj } = await conn();
    expect(caught(() => obj.closeAfterFlush(bad as never)).code).toBe('DS_ERR_INVALID_ARG');
    expect(obj.asString()).toMatch(/^Conn\(R\): open/);
  });

  it('real sockets: a reading peer gets every byte, then EOF, and the reason is flushed', async () => {
    const { obj, client } = await conn();
    let got = 0;
    let ended = false;
    client.on('data', (b: Buffer) => (got += b.length));
    client.on('end', () => (ended = true));
    const total = 4 * 1024 * 1024;
    obj.write(Buffer.alloc(total, 0x61));
    obj.closeAfterFlush(30);
    await runUntil(() => ended, 20_000);
    expect(got).toBe(total);
    expect(obj.closeReason).toBe('flushed');
  });

  it('real sockets: a peer that stopped reading cannot hold it open (flush_timeout)', async () => {
    const { obj, client } = await conn();
    client.pause(); // reads nothing from now on
    const total = beyondKernelBuffers();
    obj.write(Buffer.alloc(total, 0x62));
    await runUntil(() => false, 200).catch(() => {}); // let the kernel take what it takes
    expect(obj.writeBufSize).toBeGreaterThan(0); // the backlog the flush would wait on forever
    obj.closeAfterFlush(0.5);
    await runUntil(() => obj.closed, 10_000);
    expect(obj.closeReason).toBe('flush_timeout');
    await obj.whenClosed();
  });
});

describe('DangaSocket#setIdleTimeout', () => {
  it('closes with idle_timeout no earlier than the period and within 1.25 periods', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.setIdleTimeout(10);
    await advance(9_990);
    expect(obj.closed).toBe(false);
    await advance(2_510);
    expect(obj.closed).toBe(true);
    expect(obj.closeReason).toBe('idle_timeout');
  });

  it('is reset by writes the kernel takes', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.setIdleTimeout(10);
    for (let i = 0; i < 6; i++) {
      await advance(5_000);
      obj.write('x'); // loopback takes it at once
    }
    expect(obj.closed).toBe(false); // 30 s, never 10 s without a byte
    await advance(9_990);
    expect(obj.closed).toBe(false); // measured from the last write, not from the start
    await advance(2_510);
    expect(obj.closeReason).toBe('idle_timeout');
  });

  it('does not count writes that only queue', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.hold();
    obj.setIdleTimeout(10);
    for (let i = 0; i < 4; i++) {
      await advance(5_000);
      obj.write('x'); // queued: nothing moved
    }
    expect(obj.closeReason).toBe('idle_timeout');
  });

  it('null turns it off; a new call restarts the period', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.setIdleTimeout(10);
    await advance(5_000);
    obj.setIdleTimeout(null);
    await advance(100_000);
    expect(obj.closed).toBe(false);
    obj.setIdleTimeout(4);
    await advance(3_000);
    obj.setIdleTimeout(4); // restart
    await advance(3_990);
    expect(obj.closed).toBe(false);
    await advance(1_010);
    expect(obj.closeReason).toBe('idle_timeout');
  });

  it('a close for another reason stops the checks', async () => {
    const { obj } = await conn();
    fakeLoop();
    obj.setIdleTimeout(1);
    obj.close('mine');
    await advance(5_000);
    expect(obj.closeReason).toBe('mine');
    obj.setIdleTimeout(1); // closed: no-op
    expect(obj.closeReason).toBe('mine');
  });

  it.each([
    ['zero', 0],
    ['negative', -5],
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['a string', '30'],
    ['undefined', undefined],
  ])('throws DS_ERR_INVALID_ARG for %s', async (_name, bad) => {
    const { obj } = await conn();
    expect(caught(() => obj.setIdleTimeout(bad as never)).code).toBe('DS_ERR_INVALID_ARG');
  });

  it('real sockets: reads keep it open; it closes once the peer goes quiet', async () => {
    const { obj, client } = await conn();
    obj.setIdleTimeout(1);
    const ticker = setInterval(() => client.write('.'), 100);
    const started = Date.now();
    try {
      await runUntil(() => obj.closed || Date.now() - started > 2_500, 10_000);
      expect(obj.closed).toBe(false); // 2.5 s of bytes every 100 ms
      expect(obj.reads).toBeGreaterThan(5);
    } finally {
      clearInterval(ticker);
    }
    const quietFrom = Date.now();
    await runUntil(() => obj.closed, 10_000);
    expect(obj.closeReason).toBe('idle_timeout');
    expect(Date.now() - quietFrom).toBeGreaterThanOrEqual(900); // not before the period
  });
});
