import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DangaSocket } from '../lib';
import { getTcpCork } from '../lib/native';
import { runUntil, tcpPair } from './helpers';
import { describeNative } from './native-mode';

afterEach(() => DangaSocket.Reset());

function fifo(): { rfd: number; wfd: number; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-fifo-'));
  const file = path.join(dir, 'f');
  execFileSync('mkfifo', [file]);
  const rfd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  const wfd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  return {
    rfd,
    wfd,
    cleanup() {
      fs.closeSync(wfd);
      fs.closeSync(rfd);
      fs.rmSync(dir, { recursive: true });
    },
  };
}

describeNative('DangaSocket.OtherFds (native)', () => {
  it('calls back with mask 1 inside a loop iteration when a pipe is written to', async () => {
    const f = fifo();
    const masks: number[] = [];
    const data: string[] = [];
    let iteration = 0;
    const seenIn: number[] = [];
    DangaSocket.OtherFds({
      [f.rfd]: (mask) => {
        masks.push(mask);
        seenIn.push(iteration);
        const buf = Buffer.alloc(100);
        const n = fs.readSync(f.rfd, buf);
        data.push(buf.subarray(0, n).toString());
      },
    });
    expect([...DangaSocket.OtherFds().keys()]).toEqual([f.rfd]);
    setTimeout(() => fs.writeSync(f.wfd, 'other\n'), 50);
    DangaSocket.SetPostLoopCallback(() => {
      iteration++;
      return data.length === 0 && iteration < 1000;
    });
    DangaSocket.SetLoopTimeout(-1);
    await DangaSocket.EventLoop();
    expect(masks[0]).toBe(1);
    expect(data).toEqual(['other\n']);
    expect(seenIn[0]).toBe(iteration - 1);
    DangaSocket.OtherFds({});
    f.cleanup();
  });

  it('is level-triggered: an unconsumed pipe fires every iteration; removal applies at once', async () => {
    const f = fifo();
    let calls = 0;
    fs.writeSync(f.wfd, 'x');
    DangaSocket.AddOtherFds(new Map([[f.rfd, () => calls++]]));
    let n = 0;
    await runUntil(() => ++n >= 5, 3000, 10);
    expect(calls).toBeGreaterThanOrEqual(3);
    DangaSocket.OtherFds({});
    const before = calls;
    n = 0;
    await runUntil(() => ++n >= 5, 3000, 10);
    expect(calls).toBe(before);
    f.cleanup();
  });

  it('rejects bad maps with DS_ERR_INVALID_ARG', () => {
    expect(() => DangaSocket.OtherFds({ [-1]: () => {} })).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => DangaSocket.AddOtherFds({ 5: 'x' as unknown as () => void })).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => DangaSocket.AddOtherFds(null as unknown as Map<number, () => void>)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });
});

describeNative('DangaSocket#tcpCork (native)', () => {
  it('sets TCP_CORK visibly with getsockopt and delivers everything after uncork', async () => {
    const p = await tcpPair();
    class W extends DangaSocket {
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const w = new W(p.server);
    const fd = w.osFd() as number;
    w.tcpCork(true);
    expect(getTcpCork(fd)).toBe(true);
    w.write('corked ');
    w.write('bytes');
    w.tcpCork(false);
    expect(getTcpCork(fd)).toBe(false);
    let got = '';
    p.client.on('data', (d: Buffer) => (got += d.toString()));
    await runUntil(() => got === 'corked bytes', 3000);
    expect(got).toBe('corked bytes');
    p.close();
  });

  it('ignores TCP_CORK on Unix sockets (ENOPROTOOPT/EOPNOTSUPP) and keeps the flag unchanged', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-u-'));
    const sockPath = path.join(dir, 's');
    const srv = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((r) => srv.listen(sockPath, r));
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const c = net.connect(sockPath);
    const s = await accepted;
    class U extends DangaSocket {
      override eventRead(): void {}
      override eventErr(): void {}
      override eventHup(): void {}
    }
    const u = new U(s);
    u.tcpCork(true);
    expect(u.closed).toBe(false);
    expect(u.isCorked).toBe(false);
    c.destroy();
    DangaSocket.Reset();
    await new Promise<void>((r) => srv.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
