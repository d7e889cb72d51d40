import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';
import fc from 'fast-check';
import * as ts from 'typescript';
import * as lib from '../lib';
import { DangaSocket, Listener } from '../lib';
import { StreamSocket, type StreamSocketOptions } from '../lib/stream-socket';
import { runFor, runUntil, sleep, tcpPair } from './helpers';
import { beyondKernelBuffers } from './fill';

afterEach(() => DangaSocket.Reset());

type Call = [data: string, eof: boolean, ret: number];

/** A server-side StreamSocket on a loopback pair; the client collects what it receives. */
async function streamPair(options: StreamSocketOptions): Promise<{
  stream: StreamSocket;
  client: net.Socket;
  received: () => Buffer;
  ended: () => boolean;
}> {
  const pair = await tcpPair();
  const chunks: Buffer[] = [];
  let ended = false;
  pair.client.on('data', (c: Buffer) => chunks.push(c));
  pair.client.on('end', () => (ended = true));
  pair.client.on('error', () => {});
  const stream = new StreamSocket(pair.server, options);
  return {
    stream,
    client: pair.client,
    received: () => Buffer.concat(chunks),
    ended: () => ended,
  };
}

/** An onRead that logs (data, eof, return) and returns `decide(buffer, eof)`. */
function logging(calls: Call[], decide: (buffer: Buffer, eof: boolean) => number) {
  return (buffer: Buffer, eof: boolean): number => {
    const ret = decide(buffer, eof);
    calls.push([buffer.toString('latin1'), eof, ret]);
    return ret;
  };
}

/** One line per call; at EOF the unterminated rest counts as a line. */
function oneLine(buffer: Buffer, eof: boolean): number {
  const nl = buffer.indexOf(0x0a);
  if (nl >= 0) return nl + 1;
  return eof ? buffer.length : 0;
}

/**
 * Run the loop until the peer's send backlog either empties (false) or stays the same for
 * `stableMs` while our loop runs (true: TCP flow control holds it). Bounded at 20 s.
 */
async function backlogHolds(peer: net.Socket, stableMs: number): Promise<boolean> {
  let last = peer.writableLength;
  let since = Date.now();
  let holds = false;
  await runUntil(
    () => {
      const now = peer.writableLength;
      if (now === 0) return true;
      if (now !== last) {
        last = now;
        since = Date.now();
        return false;
      }
      holds = Date.now() - since >= stableMs;
      return holds;
    },
    20_000,
    50,
  );
  return holds;
}

function captureErrors(): unknown[] {
  const errors: unknown[] = [];
  DangaSocket.setErrorHandler((err) => errors.push(err));
  return errors;
}

function closedWith(stream: StreamSocket): Promise<string | undefined> {
  return stream.whenClosed();
}

describe('StreamSocket onRead', () => {
  it('is called again while it consumes and bytes remain, and stops when the buffer is empty', async () => {
    const calls: Call[] = [];
    const { client } = await streamPair({ onRead: logging(calls, oneLine) });
    client.write('a\nb\nc\n');
    await runUntil(() => calls.length >= 3, 3000);
    await runFor(100);
    expect(calls).toEqual([
      ['a\nb\nc\n', false, 2],
      ['b\nc\n', false, 2],
      ['c\n', false, 2],
    ]);
  });

  it('keeps unconsumed bytes for the next call when it returns 0', async () => {
    const calls: Call[] = [];
    const { client } = await streamPair({ onRead: logging(calls, oneLine) });
    client.write('ab');
    await runUntil(() => calls.length >= 1, 3000);
    client.write('c\nd');
    await runUntil(() => calls.length >= 3, 3000);
    expect(calls).toEqual([
      ['ab', false, 0],
      ['abc\nd', false, 4],
      ['d', false, 0],
    ]);
  });

  it('drops exactly the returned count (partial consumption)', async () => {
    const calls: Call[] = [];
    const { stream, client } = await streamPair({
      onRead: logging(calls, (b) => (b.length >= 4 ? 4 : 0)),
    });
    client.write('abcdef');
    await runUntil(() => calls.length >= 2, 3000);
    expect(stream.readBufSize).toBe(2);
    client.write('gh');
    await runUntil(() => calls.length >= 3, 3000);
    expect(calls).toEqual([
      ['abcdef', false, 4],
      ['ef', false, 0],
      ['efgh', false, 4],
    ]);
    expect(stream.readBufSize).toBe(0);
  });

  it('at EOF calls onRead(buffer, true) until it returns 0, then onReadEof, then closes with reason eof', async () => {
    const calls: Call[] = [];
    const events: string[] = [];
    const { stream, client, ended } = await streamPair({
      onRead: logging(calls, oneLine),
      onReadEof: (s) => {
        events.push(`eof buffered=${s.readBufSize} isReadEof=${String(s.isReadEof)}`);
      },
    });
    client.write('x\ny');
    await runUntil(() => calls.length >= 2, 3000);
    client.end();
    await runUntil(() => stream.closed, 3000);
    expect(calls).toEqual([
      ['x\ny', false, 2],
      ['y', false, 0],
      ['y', true, 1],
      ['', true, 0],
    ]);
    expect(events).toEqual(['eof buffered=0 isReadEof=true']);
    await expect(closedWith(stream)).resolves.toBe('eof');
    await runUntil(ended, 3000);
    expect(ended()).toBe(true);
  });

  it('leaves bytes it never consumes at EOF in the buffer and still reaches onReadEof', async () => {
    const calls: Call[] = [];
    let eofBuffered = -1;
    const { stream, client } = await streamPair({
      onRead: logging(calls, () => 0),
      onReadEof: (s) => (eofBuffered = s.readBufSize),
    });
    client.end('partial');
    await runUntil(() => stream.closed, 3000);
    expect(calls).toEqual([
      ['partial', false, 0],
      ['partial', true, 0],
    ]);
    expect(eofBuffered).toBe(7);
  });

  it('calls onRead exactly once with an empty buffer at EOF', async () => {
    const calls: Call[] = [];
    let eofs = 0;
    const { stream, client } = await streamPair({
      onRead: logging(calls, () => 0),
      onReadEof: () => eofs++,
    });
    client.end();
    await runUntil(() => stream.closed, 3000);
    expect(calls).toEqual([['', true, 0]]);
    expect(eofs).toBe(1);
  });

  it('does not spin at EOF when the handler always claims progress (returns 1)', async () => {
    const calls: Call[] = [];
    let eofs = 0;
    const { stream, client } = await streamPair({
      onRead: logging(calls, (_b, eof) => (eof ? 1 : 0)),
      onReadEof: () => eofs++,
    });
    client.end('abc');
    await runUntil(() => stream.closed, 3000);
    expect(calls).toEqual([
      ['abc', false, 0],
      ['abc', true, 1],
      ['bc', true, 1],
      ['c', true, 1],
      ['', true, 1], // empty buffer at EOF: called once, the claim is ignored
    ]);
    expect(eofs).toBe(1);
    await expect(closedWith(stream)).resolves.toBe('eof');
  });

  it.each([[-1], [1.5], [NaN], [99], ['1'], [undefined]])(
    'closes the stream (handler_error) and reports DS_ERR_INVALID_ARG when onRead returns %p',
    async (bad) => {
      const errors = captureErrors();
      const { stream, client } = await streamPair({ onRead: () => bad as number });
      client.write('abc');
      await runUntil(() => stream.closed, 3000);
      await expect(closedWith(stream)).resolves.toBe('handler_error');
      expect(errors).toEqual([expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' })]);
    },
  );

  it('closes the stream (handler_error) and reports when onRead throws; the loop goes on', async () => {
    const errors = captureErrors();
    const { stream, client } = await streamPair({
      onRead: () => {
        throw new Error('parser exploded');
      },
    });
    client.write('abc');
    let after = 0;
    DangaSocket.AddTimer(0.1, () => after++);
    await runUntil(() => stream.closed && after > 0, 3000);
    expect(errors).toEqual([expect.objectContaining({ message: 'parser exploded' })]);
    expect(stream.closeReason).toBe('handler_error');
  });

  it('with closeOnReadEof false reports EOF once and stays open for writing', async () => {
    const calls: Call[] = [];
    let eofs = 0;
    const { stream, client, received } = await streamPair({
      onRead: logging(calls, (b) => b.length),
      onReadEof: () => eofs++,
      closeOnReadEof: false,
    });
    client.end('q');
    await runUntil(() => eofs > 0, 3000);
    const end = Date.now() + 150;
    await runUntil(() => Date.now() >= end, 1000);
    expect(eofs).toBe(1);
    expect(calls).toEqual([
      ['q', false, 1],
      ['', true, 0],
    ]);
    expect(stream.closed).toBe(false);
    stream.write('still here');
    await runUntil(() => received().length >= 10, 3000);
    expect(received().toString()).toBe('still here');
    stream.close('done');
  });

  it('accepts a subclass override instead of the onRead option', async () => {
    const lines: string[] = [];
    class Lines extends StreamSocket {
      override onRead(buffer: Buffer, eof: boolean): number {
        const n = oneLine(buffer, eof);
        if (n > 0) lines.push(buffer.toString('utf8', 0, n));
        return n;
      }
    }
    const pair = await tcpPair();
    const stream = new Lines(pair.server);
    pair.client.end('one\ntwo\nthree');
    await runUntil(() => stream.closed, 3000);
    expect(lines).toEqual(['one\n', 'two\n', 'three']);
  });
});

describe('StreamSocket property: chunking does not change what onRead consumes', () => {
  /** Run a line parser over `chunks` injected as separate reads, then EOF; returns the records. */
  async function parse(chunks: readonly Buffer[], readLen?: number): Promise<string[]> {
    const records: Buffer[] = [];
    const sock = new net.Socket(); // never connected: data arrives only through pushBackRead
    const opts: StreamSocketOptions = {
      onRead: (buffer, eof) => {
        const n = oneLine(buffer, eof);
        // Keep views, not copies: bytes handed to onRead must never be overwritten later.
        if (n > 0) records.push(buffer.subarray(0, n));
        return n;
      },
    };
    if (readLen !== undefined) opts.readLen = readLen;
    const stream = new StreamSocket(sock, opts);
    for (const c of chunks) stream.pushBackRead(c);
    sock.push(null); // EOF after the pushed-back bytes
    await runUntil(() => stream.closed, 3000, 0);
    DangaSocket.Reset();
    return records.map((r) => r.toString('latin1'));
  }

  function split(data: Buffer, cuts: number[]): Buffer[] {
    const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const p of points) {
      out.push(data.subarray(prev, p));
      prev = p;
    }
    out.push(data.subarray(prev));
    return out.filter((c) => c.length > 0);
  }

  const input = fc
    .array(fc.oneof(fc.constant(0x0a), fc.integer({ min: 0x20, max: 0x7e })), { maxLength: 200 })
    .map((bytes) => Buffer.from(bytes));

  it('any split, whole, and one byte at a time give the same records', async () => {
    await fc.assert(
      fc.asyncProperty(input, fc.array(fc.nat(), { maxLength: 20 }), async (data, cuts) => {
        const expected = await parse([data]);
        expect(expected.join('')).toBe(data.toString('latin1'));
        expect(await parse(split(data, cuts))).toEqual(expected);
        expect(await parse([...data].map((b) => Buffer.from([b])))).toEqual(expected);
      }),
      { numRuns: 60 },
    );
  });

  it('the read size does not change the records either', async () => {
    await fc.assert(
      fc.asyncProperty(input, fc.integer({ min: 1, max: 16 }), async (data, readLen) => {
        expect(await parse([data], readLen)).toEqual(await parse([data]));
      }),
      { numRuns: 40 },
    );
  });

  it('over TCP, a peer writing whole or one byte at a time gives the same records', async () => {
    const data = Buffer.from('alpha\nbeta\n\ngamma delta\nepsilon');
    const run = async (bytewise: boolean): Promise<string[]> => {
      const records: string[] = [];
      const { stream, client } = await streamPair({
        onRead: (buffer, eof) => {
          const n = oneLine(buffer, eof);
          if (n > 0) records.push(buffer.toString('latin1', 0, n));
          return n;
        },
      });
      if (bytewise) {
        for (const b of data) {
          client.write(Buffer.from([b]));
          await runFor(2, 0);
        }
        client.end();
      } else {
        client.end(data);
      }
      await runUntil(() => stream.closed, 5000);
      DangaSocket.Reset();
      return records;
    };
    const whole = await run(false);
    expect(whole).toEqual(['alpha\n', 'beta\n', '\n', 'gamma delta\n', 'epsilon']);
    expect(await run(true)).toEqual(whole);
  });
});

describe('StreamSocket read watermarks', () => {
  it('pauses at the high mark and resumes below the low mark (reference: readLen 8, high 10, low 4, 30 bytes)', async () => {
    const highs: number[] = [];
    const lows: number[] = [];
    let want = 0;
    const got: Buffer[] = [];
    const { stream, client } = await streamPair({
      readLen: 8,
      readHighWatermark: 10,
      readLowWatermark: 4,
      onRead: (buffer) => {
        if (want === 0 || (want !== Infinity && buffer.length < want)) return 0;
        const n = want === Infinity ? buffer.length : want;
        got.push(Buffer.from(buffer.subarray(0, n)));
        if (want !== Infinity) want = 0;
        return n;
      },
      onReadHighWatermark: (len, s) => {
        highs.push(len);
        s.watchRead(false);
      },
      onReadLowWatermark: (len, s) => {
        lows.push(len);
        s.watchRead(true);
      },
    });
    const data = Buffer.from('0123456789abcdefghijklmnopqrst');
    client.write(data);
    await runUntil(() => highs.length > 0, 3000);
    const settle = Date.now() + 150;
    await runUntil(() => Date.now() >= settle, 1000);
    expect(highs).toEqual([16]);
    expect(stream.readBufSize).toBe(16);

    want = 9; // like read_exactly(9): leaves 7, not below 4, so no low event
    stream.retryRead();
    expect(stream.readBufSize).toBe(7);
    expect(lows).toEqual([]);

    want = Infinity;
    stream.retryRead();
    expect(lows).toEqual([0]);
    await runUntil(() => Buffer.concat(got).length >= 30, 3000);
    expect(Buffer.concat(got)).toEqual(data);
  });

  it('bounds memory against a flooding peer, then delivers every byte once resumed', async () => {
    // No kernel buffer size is assumed: the peer writes until TCP flow control holds its
    // bytes (its own send queue stops draining while our loop runs), however much the kernel
    // took first (loopback autotuning may take tens of MiB).
    const CHUNK = 1024 * 1024;
    const MAX_TOTAL = 512 * CHUNK;
    const HIGH = 64 * 1024;
    const READ_LEN = 16 * 1024;
    let busy = true;
    let highs = 0;
    let lows = 0;
    let maxBuffered = 0;
    let consumed = 0;
    const seen = crypto.createHash('sha256');
    const sent = crypto.createHash('sha256');
    const { stream, client } = await streamPair({
      readLen: READ_LEN,
      readHighWatermark: HIGH,
      readLowWatermark: 16 * 1024,
      onRead: (buffer) => {
        maxBuffered = Math.max(maxBuffered, buffer.length);
        if (busy) return 0;
        seen.update(buffer);
        consumed += buffer.length;
        return buffer.length;
      },
      onReadHighWatermark: (_len, s) => {
        highs++;
        s.watchRead(false);
      },
      onReadLowWatermark: (_len, s) => {
        lows++;
        s.watchRead(true);
      },
    });
    const block = crypto.randomBytes(CHUNK);
    let total = 0;
    // Write while the kernel keeps taking everything; stop once a backlog stays in the
    // client's own queue across a whole settle window of our running loop.
    for (;;) {
      expect(total).toBeLessThan(MAX_TOTAL);
      client.write(block);
      sent.update(block);
      total += CHUNK;
      if (client.writableLength === 0) continue;
      if (await backlogHolds(client, 500)) break;
    }
    expect(highs).toBe(1);
    expect(stream.readBufSize).toBeGreaterThanOrEqual(HIGH);
    expect(maxBuffered).toBeLessThan(HIGH + READ_LEN);
    // Our buffer stays at the high mark while the loop keeps running: TCP flow control
    // holds the rest at the peer, which still has bytes it cannot send.
    const held = client.writableLength;
    const buffered = stream.readBufSize;
    expect(held).toBeGreaterThan(0);
    expect(await backlogHolds(client, 500)).toBe(true);
    expect(client.writableLength).toBe(held);
    expect(stream.readBufSize).toBe(buffered);

    busy = false;
    stream.retryRead();
    expect(lows).toBe(1);
    await runUntil(() => consumed >= total, 60_000);
    expect(consumed).toBe(total);
    expect(seen.digest('hex')).toBe(sent.digest('hex'));
  }, 90_000);

  it('pauses reading by default at the high mark (watchRead off) and resumes by default', async () => {
    let busy = true;
    let consumed = 0;
    const { stream, client } = await streamPair({
      readLen: 4,
      readHighWatermark: 8,
      readLowWatermark: 2,
      onRead: (buffer) => {
        if (busy) return 0;
        consumed += buffer.length;
        return buffer.length;
      },
    });
    client.write('0123456789abcdef');
    await runUntil(() => stream.readBufSize >= 8, 3000);
    await runFor(100);
    expect(stream.readBufSize).toBe(8);
    expect(stream.asString()).toMatch(/^StreamSocket\(\): open/);
    busy = false;
    stream.retryRead();
    expect(stream.asString()).toMatch(/^StreamSocket\(R\): open/);
    await runUntil(() => consumed >= 16, 3000);
    expect(consumed).toBe(16);
  });
});

describe('StreamSocket writing and closing', () => {
  it('delivers writes queued before and during EOF handling before closing (fix over IO::Async)', async () => {
    const BIG = beyondKernelBuffers();
    const { stream, client, received, ended } = await streamPair({
      onRead: (buffer, eof) => {
        const n = oneLine(buffer, eof);
        if (n > 0) stream.write(Buffer.alloc(BIG, 0x61));
        return n;
      },
      onReadEof: (s) => {
        s.write('BYE\n');
      },
    });
    client.pause(); // make the reply queue up on our side
    client.end('go\n');
    await runUntil(() => stream.isReadEof, 3000);
    expect(stream.closed).toBe(false);
    expect(stream.isClosing).toBe(true);
    expect(stream.writeBufSize).toBeGreaterThan(0);
    client.resume();
    await runUntil(() => stream.closed, 20000);
    await expect(closedWith(stream)).resolves.toBe('eof');
    await sleep(0);
    await runUntil(ended, 5000);
    const got = received();
    expect(got.length).toBe(BIG + 4);
    expect(got.subarray(BIG).toString()).toBe('BYE\n');
  });

  it('closeWhenEmpty flushes first; order: write callbacks, onOutgoingEmpty, close; later writes are dropped', async () => {
    const BIG = beyondKernelBuffers();
    const order: string[] = [];
    const { stream, client, received, ended } = await streamPair({
      onRead: (b) => b.length,
      onOutgoingEmpty: () => order.push('outgoing-empty'),
    });
    client.pause();
    expect(stream.write(Buffer.alloc(BIG, 0x62))).toBe(false);
    stream.write(() => order.push('flushed'));
    stream.closeWhenEmpty('done');
    stream.closeWhenEmpty('second'); // pending already: the first reason stays, as with close()
    void stream.whenClosed().then((r) => order.push(`closed:${String(r)}`));
    expect(stream.isClosing).toBe(true);
    expect(stream.write('late')).toBe(true);
    client.resume();
    await runUntil(() => order.length >= 3, 20000);
    expect(order).toEqual(['flushed', 'outgoing-empty', 'closed:done']);
    await runUntil(ended, 5000);
    expect(received().length).toBe(BIG);
    expect(received().includes('late')).toBe(false);
  });

  it('closeWhenEmpty with nothing queued closes at once', async () => {
    const { stream } = await streamPair({ onRead: (b) => b.length });
    stream.closeWhenEmpty();
    expect(stream.closed).toBe(true);
    expect(() => stream.closeWhenEmpty(42 as never)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });

  it('signals onWriteHighWatermark, then onWritable once the queue drains below the low mark', async () => {
    const events: string[] = [];
    const { stream, client, received } = await streamPair({
      onRead: (b) => b.length,
      writeHighWatermark: 1024 * 1024,
      writeLowWatermark: 256 * 1024,
      onWriteHighWatermark: (n) => events.push(`high ${n >= 1024 * 1024 ? 'ok' : n}`),
      onWritable: (n) => events.push(`writable ${n < 256 * 1024 ? 'ok' : n}`),
    });
    client.pause();
    const CHUNK = Buffer.alloc(64 * 1024, 0x63);
    let written = 0;
    while (stream.canWrite && written < 256 * 1024 * 1024) {
      stream.write(CHUNK);
      written += CHUNK.length;
    }
    expect(events).toEqual(['high ok']);
    expect(stream.canWrite).toBe(false);
    client.resume();
    await runUntil(() => events.length >= 2, 20000);
    expect(events).toEqual(['high ok', 'writable ok']);
    expect(stream.canWrite).toBe(true);
    await runUntil(() => received().length >= written, 20000);
    expect(received().length).toBe(written);
  });

  it('calls onWriteError with the OS error when a write fails, then closes', async () => {
    const writeErrors: Error[] = [];
    const readErrors: Error[] = [];
    const { stream, client } = await streamPair({
      onRead: (b) => b.length,
      onWriteError: (err) => writeErrors.push(err),
      onReadError: (err) => readErrors.push(err),
    });
    client.resetAndDestroy();
    await sleep(100); // let the server's socket see the RST (the loop is not running)
    DangaSocket.AddTimer(0, () => stream.write('into the void'));
    await runUntil(() => stream.closed, 3000);
    expect(writeErrors).toHaveLength(1);
    expect(readErrors).toHaveLength(0);
    expect(['ECONNRESET', 'EPIPE']).toContain((writeErrors[0] as NodeJS.ErrnoException).code);
    expect(['ECONNRESET', 'EPIPE']).toContain(stream.closeReason);
  });

  it('gives onWriteError and osError the OS errno (EPIPE) when the peer resets after its FIN', async () => {
    const writeErrors: Error[] = [];
    const readErrors: Error[] = [];
    let eofs = 0;
    const { stream, client } = await streamPair({
      onRead: (b) => b.length,
      onReadEof: () => eofs++,
      closeOnReadEof: false,
      onWriteError: (err) => writeErrors.push(err),
      onReadError: (err) => readErrors.push(err),
    });
    client.end();
    await runUntil(() => eofs === 1, 3000);
    const gone = new Promise((resolve) => client.once('close', resolve));
    client.resetAndDestroy();
    await gone;
    // A reset in CLOSE_WAIT is EPIPE on Linux. The native backend learns it from epoll
    // (EPOLLERR, then SO_ERROR) within a turn or two; the node one only from a write.
    let turns = 0;
    await runUntil(() => ++turns >= 3 || stream.closed, 3000);
    if (DangaSocket.DefaultBackend === 'native') expect(stream.closed).toBe(true);
    if (!stream.closed) DangaSocket.AddTimer(0, () => stream.write('into the void'));
    await runUntil(() => stream.closed, 3000);
    expect(readErrors).toHaveLength(0);
    expect(writeErrors).toHaveLength(1);
    const err = writeErrors[0] as NodeJS.ErrnoException;
    expect(err).toMatchObject({ code: 'EPIPE', errno: -osConstants.errno.EPIPE });
    expect(stream.osError).toBe(err);
  });

  it('calls onReadError when the peer resets the connection while we read, then closes', async () => {
    const readErrors: Error[] = [];
    let eofs = 0;
    const { stream, client } = await streamPair({
      onRead: (b) => b.length,
      onReadEof: () => eofs++,
      onReadError: (err) => readErrors.push(err),
    });
    const done = runUntil(() => stream.closed, 3000);
    client.resetAndDestroy();
    await done;
    expect(readErrors).toHaveLength(1);
    expect((readErrors[0] as NodeJS.ErrnoException).code).toBe('ECONNRESET');
    expect(stream.closeReason).toBe('ECONNRESET');
    expect(eofs).toBe(0);
  });
});

describe('StreamSocket constructor', () => {
  const onRead = (b: Buffer): number => b.length;
  it.each([
    ['onRead not a function', { onRead: 'x' }],
    ['onReadEof not a function', { onRead, onReadEof: 1 }],
    ['readLen 0', { onRead, readLen: 0 }],
    ['readLen 1.5', { onRead, readLen: 1.5 }],
    ['high without low', { onRead, readHighWatermark: 10 }],
    ['low without high', { onRead, readLowWatermark: 10 }],
    ['low above high', { onRead, readHighWatermark: 10, readLowWatermark: 11 }],
    ['high 0', { onRead, readHighWatermark: 0, readLowWatermark: 0 }],
    ['write low above high', { onRead, writeHighWatermark: 5, writeLowWatermark: 6 }],
    ['write high NaN', { onRead, writeHighWatermark: NaN, writeLowWatermark: 1 }],
    ['closeOnReadEof "yes"', { onRead, closeOnReadEof: 'yes' }],
  ])('rejects %s with DS_ERR_INVALID_ARG and leaves the socket unwrapped', async (_name, opts) => {
    const pair = await tcpPair();
    expect(() => new StreamSocket(pair.server, opts as StreamSocketOptions)).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(DangaSocket.DescriptorMap().size).toBe(0);
    pair.close();
  });

  it('rejects a non-socket handle with DS_ERR_INVALID_ARG', () => {
    expect(() => new StreamSocket(net.createServer() as never, { onRead })).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
    expect(() => new StreamSocket(null as never, { onRead })).toThrow(
      expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
    );
  });
});

describe('docs/line-protocol-example.md', () => {
  /** Compile and run the doc's first ts block with `danga-socket` mapped to this checkout. */
  function loadExample(): { startLineServer: (port?: number) => Promise<Listener> } {
    const md = fs.readFileSync(
      path.join(__dirname, '..', 'docs', 'line-protocol-example.md'),
      'utf8',
    );
    const match = /```ts\n([\s\S]*?)```/.exec(md);
    if (match === null) throw new Error('no ts block in docs/line-protocol-example.md');
    const js = ts.transpileModule(match[1] as string, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    const mod = { exports: {} as Record<string, unknown> };
    const req = (id: string): unknown => {
      if (id === 'danga-socket') return lib;
      throw new Error(`example requires ${id}`);
    };
    const fn = vm.compileFunction(js, ['require', 'module', 'exports']) as (
      r: typeof req,
      m: typeof mod,
      e: Record<string, unknown>,
    ) => void;
    fn(req, mod, mod.exports);
    return mod.exports as { startLineServer: (port?: number) => Promise<Listener> };
  }

  it('serves the line protocol as documented, answers a half-closed client and flushes BYE', async () => {
    const { startLineServer } = loadExample();
    const listener = await startLineServer(0);
    const port = (listener.address() as net.AddressInfo).port;
    const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let ended = false;
    client.on('data', (c: Buffer) => (text += c.toString()));
    client.on('end', () => (ended = true));
    // Byte at a time for the first request, then the rest at once, then EOF without a newline.
    for (const ch of 'PING\n') {
      client.write(ch);
      await runFor(2, 0);
    }
    client.end('ECHO hello there\r\nCOUNT\nNOPE\nCOUNT');
    await runUntil(() => ended, 5000);
    expect(text).toBe('PONG\nhello there\n3\nERR unknown command\n5\nBYE\n');
    client.destroy();
    listener.close('done');
  });

  it('QUIT replies BYE and closes after the reply is flushed', async () => {
    const { startLineServer } = loadExample();
    const listener = await startLineServer(0);
    const port = (listener.address() as net.AddressInfo).port;
    const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let ended = false;
    client.on('data', (c: Buffer) => (text += c.toString()));
    client.on('end', () => (ended = true));
    client.write('PING\nQUIT\nPING\n');
    await runUntil(() => ended, 5000);
    expect(text).toBe('PONG\nBYE\n');
    client.destroy();
    listener.close('done');
  });
});
