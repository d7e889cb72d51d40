import * as net from 'node:net';
import { DangaSocket, Listener } from '../lib';
import { type ServerSock, runUntil, tcpPair } from './helpers';
import { beyondKernelBuffers } from './fill';

afterEach(() => DangaSocket.Reset());

/** Perlbal::Service echo: each complete line comes back with \r\n, optionally after a delay. */
class EchoLines extends DangaSocket {
  private buf = '';
  constructor(
    sock: net.Socket,
    private readonly delayS = 0,
  ) {
    super(sock);
    this.watchRead(true);
  }
  override eventRead(): void {
    const b = this.read(1024);
    if (b === null) {
      this.close('eof');
      return;
    }
    this.buf += b.toString();
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, '');
      this.buf = this.buf.slice(nl + 1);
      if (this.delayS > 0) DangaSocket.AddTimer(this.delayS, () => this.write(`${line}\r\n`));
      else this.write(`${line}\r\n`);
    }
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

describe('Perlbal idioms (reference §7.B)', () => {
  it('registers the listener before the loop runs (WatchedSockets > 0)', async () => {
    await Listener.listen({ port: 0 }, (s) => new EchoLines(s));
    expect(DangaSocket.WatchedSockets()).toBeGreaterThan(0);
  });

  it('SetLoopTimeout(1000) + a PLC returning 1 wakes at least once a second when idle', async () => {
    DangaSocket.SetLoopTimeout(1000);
    const stamps: number[] = [];
    DangaSocket.SetPostLoopCallback(() => {
      stamps.push(Date.now());
      return stamps.length < 3 ? 1 : 0;
    });
    await DangaSocket.EventLoop();
    for (let i = 1; i < stamps.length; i++) {
      expect((stamps[i] as number) - (stamps[i - 1] as number)).toBeLessThan(1600);
    }
  });

  it('echoes lines with \\r\\n, and after echo_delay via AddTimer', async () => {
    for (const delay of [0, 0.2]) {
      const l = await Listener.listen({ port: 0 }, (s) => new EchoLines(s, delay));
      const port = (l.address() as net.AddressInfo).port;
      const c = net.connect({ port, host: '127.0.0.1' });
      let got = '';
      c.on('data', (d: Buffer) => (got += d.toString()));
      const t0 = Date.now();
      c.write('one\ntwo\r\nthr');
      c.write('ee\n');
      await runUntil(() => got === 'one\r\ntwo\r\nthree\r\n');
      expect(got).toBe('one\r\ntwo\r\nthree\r\n');
      if (delay > 0) expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
      c.destroy();
      DangaSocket.Reset();
    }
  });

  it('graceful stop: a PLC returns 0 once no client objects remain in the map', async () => {
    const l = await Listener.listen({ port: 0 }, (s) => new EchoLines(s));
    const port = (l.address() as net.AddressInfo).port;
    const clients = [1, 2].map(() => net.connect({ port, host: '127.0.0.1' }));
    let sawClients = false;
    DangaSocket.SetLoopTimeout(50);
    DangaSocket.SetPostLoopCallback((map) => {
      const n = [...map.values()].filter((o) => o instanceof EchoLines).length;
      if (n === 2 && !sawClients) {
        sawClients = true;
        for (const c of clients) c.end();
      }
      return !sawClients || n > 0;
    });
    await DangaSocket.EventLoop();
    expect(sawClients).toBe(true);
    expect([...DangaSocket.DescriptorMap().values()]).toEqual([l]);
    for (const c of clients) c.destroy();
  });

  it('backpressure: stop reading one side while the other side’s writeBufSize is over a limit', async () => {
    // A proxy pair: data read from `up` is written to `down`; `down`'s peer reads slowly.
    const upPair = await tcpPair();
    const downPair = await tcpPair();
    const LIMIT = 512 * 1024;
    let pauses = 0;
    class Down extends DangaSocket {
      up: Up | null = null;
      override eventWrite(): void {
        super.eventWrite();
        if (this.writeBufSize < LIMIT && this.up) this.up.watchRead(true);
      }
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    }
    class Up extends DangaSocket {
      constructor(
        s: ServerSock,
        readonly down: Down,
      ) {
        super(s);
        this.watchRead(true);
      }
      override eventRead(): void {
        const b = this.read(64 * 1024);
        if (b === null) return this.close('eof');
        this.down.write(b);
        if (this.down.writeBufSize > LIMIT) {
          pauses++;
          this.watchRead(false);
        }
      }
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const down = new Down(downPair.server);
    const up = new Up(upPair.server, down);
    down.up = up;
    // More than the kernel can hold, so `down` must queue past LIMIT while its peer does
    // not read; the peer starts reading only once the proxy has paused `up`.
    const total = beyondKernelBuffers() + LIMIT;
    const payload = Buffer.alloc(total);
    for (let i = 0; i < total; i++) payload[i] = (i * 31) & 0xff;
    downPair.client.pause();
    upPair.client.end(payload);
    const received: Buffer[] = [];
    let receivedBytes = 0;
    await runUntil(() => pauses > 0, 30000);
    expect(pauses).toBeGreaterThan(0);
    downPair.client.on('data', (chunk: Buffer) => {
      received.push(chunk);
      receivedBytes += chunk.length;
    });
    downPair.client.resume();
    await runUntil(() => receivedBytes >= total, 30000);
    expect(Buffer.concat(received).equals(payload)).toBe(true);
    expect(pauses).toBeGreaterThan(0);
    upPair.close();
    downPair.close();
  });

  it('tcp_cork(1) before the headers and file, tcp_cork(0) after: the body arrives complete', async () => {
    const p = await tcpPair();
    class Web extends DangaSocket {
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const w = new Web(p.server);
    w.tcpCork(true);
    expect(w.isCorked).toBe(true);
    w.write('HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n');
    w.write('hello');
    w.write(() => w.tcpCork(false));
    let got = '';
    p.client.on('data', (d: Buffer) => (got += d.toString()));
    await runUntil(() => got.endsWith('hello'), 3000);
    expect(got).toBe('HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello');
    expect(w.isCorked).toBe(false);
    p.close();
  });

  it('a subclass close() sees EPIPE/ECONNRESET when writing to a reset peer', async () => {
    const p = await tcpPair();
    const reasons: (string | undefined)[] = [];
    class Backend extends DangaSocket {
      override close(reason?: string): void {
        reasons.push(reason);
        super.close(reason);
      }
      override eventRead(): void {}
      override eventErr(): void {
        this.write('more');
      }
      override eventHup(): void {}
    }
    const b = new Backend(p.server);
    p.client.resetAndDestroy();
    const chunk = Buffer.alloc(64 * 1024);
    DangaSocket.SetLoopTimeout(10);
    await runUntil(() => {
      if (!b.closed) b.write(chunk);
      return b.closed;
    });
    expect(reasons).toHaveLength(1);
    expect(['EPIPE', 'ECONNRESET']).toContain(reasons[0]);
    p.close();
  });
});
