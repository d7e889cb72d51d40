import type * as net from 'node:net';
import fc from 'fast-check';
import { DangaSocket, DangaSocketError, StreamSocket } from '../lib';
import { caught, runUntil, tcpPair } from './helpers';

let pairs: { close(): void }[] = [];

afterEach(() => {
  DangaSocket.Reset();
  for (const p of pairs) p.close();
  pairs = [];
});

/** A server-side StreamSocket made without onRead, and its peer. */
async function consumerPair(
  options: ConstructorParameters<typeof StreamSocket>[1] = {},
): Promise<{ stream: StreamSocket; client: net.Socket }> {
  const pair = await tcpPair();
  pairs.push(pair);
  pair.client.on('error', () => {});
  return { stream: new StreamSocket(pair.server, options), client: pair.client };
}

/** Let promise continuations (the consumer's next request) run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Deliver `chunks` to the stream one read at a time, in order, without the kernel merging
 * them: each is pushed back and read by one `eventRead`, and the consumer runs in between.
 */
async function feed(stream: StreamSocket, chunks: Buffer[]): Promise<void> {
  for (const chunk of chunks) {
    stream.pushBackRead(chunk); // chunks here stay under readLen: one eventRead reads each
    if (!stream.closed) stream.eventRead();
    await settle();
  }
}

/** Cut `data` at the given points (each taken modulo the length). */
function cut(data: Buffer, points: number[], bytewise: boolean): Buffer[] {
  if (bytewise) return [...data].map((b) => Buffer.from([b]));
  const at = [...new Set(points.map((p) => (data.length === 0 ? 0 : p % data.length)))]
    .filter((p) => p > 0)
    .sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of at) {
    out.push(data.subarray(from, p));
    from = p;
  }
  out.push(data.subarray(from));
  return out.filter((c) => c.length > 0);
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const line of it) out.push(line);
  return out;
}

/** Line text without terminators (any Unicode, incl. multi-byte characters). */
const lineText = fc
  .string({ unit: 'grapheme', maxLength: 12 })
  .map((s) => s.replace(/[\r\n]/g, ''));

describe('StreamSocket#lines', () => {
  it('yields each line without its \\n or \\r\\n, the last unterminated one at EOF, then ends', async () => {
    const { stream, client } = await consumerPair();
    const got = collect(stream.lines());
    client.end('one\ntwo\r\n\nthree\rx\nlast');
    let lines: string[] | undefined;
    void got.then((l) => (lines = l));
    await runUntil(() => lines !== undefined, 5_000);
    expect(lines).toEqual(['one', 'two', '', 'three\rx', 'last']);
  });

  it('decodes a multi-byte UTF-8 character split across reads', async () => {
    const { stream } = await consumerPair();
    const got: string[] = [];
    const it = stream.lines();
    const pending = it.next().then((r) => got.push(r.value ?? '<done>'));
    const bytes = Buffer.from('€😀é\n', 'utf8');
    await feed(stream, cut(bytes, [], true)); // one byte per read
    await pending;
    expect(got).toEqual(['€😀é']);
  });

  it('property: any lines, cut anywhere or one byte at a time, come out the same', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(lineText, fc.boolean()), { maxLength: 8 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        async (lines, lastTerminated, points, bytewise) => {
          let text = '';
          const expected: string[] = [];
          lines.forEach(([line, crlf], i) => {
            const last = i === lines.length - 1;
            if (last && !lastTerminated) {
              text += line;
              if (line !== '') expected.push(line);
            } else {
              text += line + (crlf ? '\r\n' : '\n');
              expected.push(line);
            }
          });
          const { stream, client } = await consumerPair();
          let result: string[] | undefined;
          void collect(stream.lines()).then((l) => (result = l));
          await feed(stream, cut(Buffer.from(text, 'utf8'), points, bytewise));
          client.end();
          await runUntil(() => result !== undefined, 5_000);
          expect(result).toEqual(expected);
          await runUntil(() => stream.closed, 5_000);
          expect(stream.closeReason).toBe('eof');
          DangaSocket.Reset();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a line of exactly maxLength passes; one byte more closes with line_too_long', async () => {
    const { stream } = await consumerPair();
    const it = stream.lines({ maxLength: 8 });
    const first = it.next();
    await feed(stream, [Buffer.from('12345678\r\n')]);
    expect(await first).toEqual({ value: '12345678', done: false });
    const second = it.next();
    await feed(stream, [Buffer.from('123456789')]); // no newline yet, already too long
    expect(await second).toEqual({ value: undefined, done: true });
    expect(stream.closeReason).toBe('line_too_long');
  });

  it('closes with line_too_long at the default 64 KiB without buffering more', async () => {
    const { stream, client } = await consumerPair();
    let result: string[] | undefined;
    void collect(stream.lines()).then((l) => (result = l));
    client.write(Buffer.alloc(1024 * 1024, 0x61)); // 1 MiB without a newline
    await runUntil(() => result !== undefined, 10_000);
    expect(result).toEqual([]);
    expect(stream.closeReason).toBe('line_too_long');
  });

  it('break keeps the unread bytes for the next consumer (a header, then a body)', async () => {
    const { stream } = await consumerPair();
    await feed(stream, [Buffer.from('HEAD 5\r\nhello+more')]);
    let header = '';
    for await (const line of stream.lines()) {
      header = line;
      break;
    }
    expect(header).toBe('HEAD 5');
    expect((await stream.readExactly(5)).toString()).toBe('hello');
    expect((await stream.readUntil('e')).toString()).toBe('+more');
  });

  it('replies to lines received before the EOF reach the peer, then the stream closes', async () => {
    const { stream, client } = await consumerPair();
    let reply = '';
    let ended = false;
    client.on('data', (b: Buffer) => (reply += b.toString()));
    client.on('end', () => (ended = true));
    void (async () => {
      for await (const line of stream.lines()) {
        await settle(); // the peer's EOF arrives while we are busy with the line
        stream.write(`${line.toUpperCase()}\n`);
      }
    })();
    client.end('a\nb\nc');
    await runUntil(() => ended, 5_000);
    expect(reply).toBe('A\nB\nC\n');
    expect(stream.closeReason).toBe('eof');
  });
});

describe('StreamSocket#readExactly', () => {
  it('property: any byte stream, cut anywhere, read back in any sizes is the same bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 200 }),
        fc.array(fc.nat({ max: 40 }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        async (bytes, sizes, points, bytewise) => {
          const data = Buffer.from(bytes);
          const { stream, client } = await consumerPair();
          const parts: Buffer[] = [];
          let failure: unknown;
          let finished = false;
          void (async () => {
            try {
              for (const n of sizes) parts.push(await stream.readExactly(n));
            } catch (err) {
              failure = err;
            }
            finished = true;
          })();
          await feed(stream, cut(data, points, bytewise));
          client.end();
          await runUntil(() => finished, 5_000);
          let offset = 0;
          for (const [i, part] of parts.entries()) {
            expect(part.length).toBe(sizes[i]);
            expect(part.equals(data.subarray(offset, offset + part.length))).toBe(true);
            offset += part.length;
          }
          const wanted = sizes.reduce((a, b) => a + b, 0);
          if (wanted <= data.length) expect(failure).toBeUndefined();
          else expect(failure).toMatchObject({ code: 'DS_ERR_CLOSED' });
          DangaSocket.Reset();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('reads past the read high-water mark for a waiting request', async () => {
    const { stream, client } = await consumerPair();
    const size = 512 * 1024; // 8 × the default mark
    const payload = Buffer.alloc(size, 0x7a);
    let got: Buffer | undefined;
    void stream.readExactly(size).then((b) => (got = b));
    client.write(payload);
    await runUntil(() => got !== undefined, 10_000);
    expect(got?.equals(payload)).toBe(true);
  });

  it('without a consumer, unread bytes stop at the read high-water mark, and nothing is lost', async () => {
    const { stream, client } = await consumerPair();
    const payload = Buffer.alloc(1024 * 1024, 0x71);
    client.write(payload);
    await runUntil(() => stream.readBufSize >= 64 * 1024, 10_000);
    await runUntil(() => false, 300).catch(() => {}); // time to read more, if it would
    expect(stream.readBufSize).toBeLessThan(64 * 1024 + stream.readLen);
    let got: Buffer | undefined;
    void stream.readExactly(payload.length).then((b) => (got = b));
    await runUntil(() => got !== undefined, 10_000);
    expect(got?.equals(payload)).toBe(true);
  });

  it('rejects with DS_ERR_CLOSED when the stream is closed while it waits, and after', async () => {
    const { stream } = await consumerPair();
    const waiting = stream.readExactly(10);
    stream.close('bye');
    await expect(waiting).rejects.toMatchObject({ code: 'DS_ERR_CLOSED' });
    await expect(stream.readExactly(1)).rejects.toBeInstanceOf(DangaSocketError);
    const it = stream.lines();
    expect(await it.next()).toEqual({ value: undefined, done: true });
  });

  it('rejects with DS_ERR_CLOSED when Reset() closes the stream', async () => {
    const { stream } = await consumerPair();
    const waiting = stream.readExactly(10);
    DangaSocket.Reset();
    await expect(waiting).rejects.toMatchObject({ code: 'DS_ERR_CLOSED' });
  });

  it('readExactly(0) resolves with an empty Buffer', async () => {
    const { stream } = await consumerPair();
    expect((await stream.readExactly(0)).length).toBe(0);
  });
});

describe('StreamSocket#readUntil', () => {
  const delim = '\r\n\r\n';
  const record = fc
    .array(fc.constantFrom('\r', '\n', 'a', 'é'), { maxLength: 12 })
    .map((cs) => cs.join(''))
    .filter((r) => Buffer.from(r + delim).indexOf(delim) === Buffer.byteLength(r));

  it('property: records cut anywhere come back whole, each with its delimiter', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(record, { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        async (records, points, bytewise) => {
          const data = Buffer.from(records.map((r) => r + delim).join(''), 'utf8');
          const { stream, client } = await consumerPair();
          const got: string[] = [];
          let failure: unknown;
          let finished = false;
          void (async () => {
            try {
              for (;;) got.push((await stream.readUntil(delim)).toString('utf8'));
            } catch (err) {
              failure = err;
            }
            finished = true;
          })();
          await feed(stream, cut(data, points, bytewise));
          client.end();
          await runUntil(() => finished, 5_000);
          expect(got).toEqual(records.map((r) => r + delim));
          expect(failure).toMatchObject({ code: 'DS_ERR_CLOSED' }); // the EOF after the last
          DangaSocket.Reset();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('closes with line_too_long past maxLength bytes without the delimiter', async () => {
    const { stream } = await consumerPair();
    const waiting = stream.readUntil(Buffer.from([0]), { maxLength: 4 }).catch((e: unknown) => e);
    await feed(stream, [Buffer.from('abcd')]);
    expect(stream.closed).toBe(false); // 4 bytes: still allowed
    await feed(stream, [Buffer.from('e')]);
    expect(await waiting).toMatchObject({ code: 'DS_ERR_CLOSED' });
    expect(stream.closeReason).toBe('line_too_long');
  });
});

describe('StreamSocket consumers: one at a time, never with an onRead', () => {
  it('a StreamSocket made without onRead is valid and reads', async () => {
    const { stream } = await consumerPair();
    expect(stream.asString()).toMatch(/^StreamSocket\(R\): open/);
  });

  it('throws DS_ERR_INVALID_ARG on a stream with an onRead option or override', async () => {
    const { stream } = await consumerPair({ onRead: (b) => b.length });
    expect(caught(() => stream.lines()).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => stream.readExactly(1)).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => stream.readUntil('\n')).code).toBe('DS_ERR_INVALID_ARG');
    class Own extends StreamSocket {
      override onRead(buffer: Buffer): number {
        return buffer.length;
      }
    }
    const pair = await tcpPair();
    pairs.push(pair);
    const own = new Own(pair.server);
    expect(caught(() => own.lines()).code).toBe('DS_ERR_INVALID_ARG');
  });

  it('throws DS_ERR_INVALID_ARG for a second consumer while one is in use, not after', async () => {
    const { stream } = await consumerPair();
    const it = stream.lines();
    expect(caught(() => stream.readExactly(1)).code).toBe('DS_ERR_INVALID_ARG');
    expect(caught(() => stream.lines()).code).toBe('DS_ERR_INVALID_ARG');
    await it.return?.();
    const first = stream.readExactly(2);
    expect(caught(() => stream.readUntil('x')).code).toBe('DS_ERR_INVALID_ARG');
    await feed(stream, [Buffer.from('ok')]);
    expect((await first).toString()).toBe('ok');
    expect(() => void stream.readExactly(1).catch(() => {})).not.toThrow();
  });

  it.each([
    ['readExactly(-1)', (s: StreamSocket) => s.readExactly(-1)],
    ['readExactly(1.5)', (s: StreamSocket) => s.readExactly(1.5)],
    ['readExactly("3")', (s: StreamSocket) => s.readExactly('3' as never)],
    ['readUntil("")', (s: StreamSocket) => s.readUntil('')],
    ['readUntil(42)', (s: StreamSocket) => s.readUntil(42 as never)],
    ['readUntil maxLength 0', (s: StreamSocket) => s.readUntil('\n', { maxLength: 0 })],
    ['lines(5)', (s: StreamSocket) => s.lines(5 as never)],
    ['lines maxLength 1.5', (s: StreamSocket) => s.lines({ maxLength: 1.5 })],
  ])('%s throws DS_ERR_INVALID_ARG', async (_name, call) => {
    const { stream } = await consumerPair();
    expect(caught(() => call(stream)).code).toBe('DS_ERR_INVALID_ARG');
  });
});
