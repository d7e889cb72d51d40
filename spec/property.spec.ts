import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as fc from 'fast-check';
import { DangaSocket } from '../lib';
import { Quiet, type ServerSock, dispose, runUntil, tcpPair } from './helpers';

// Issue 4, property tests: however a byte stream is cut into writes, callbacks and reads (with
// pushbacks), the bytes arrive whole and in order, and callbacks run in order. Every stream is
// also fed whole and one byte at a time.

const sockets: ServerSock[] = [];
afterEach(() => {
  DangaSocket.Reset();
  for (const s of sockets.splice(0)) dispose(s);
});

async function pair(): Promise<{ server: ServerSock; client: net.Socket }> {
  const p = await tcpPair();
  sockets.push(p.server, p.client);
  return p;
}

type Item = { kind: 'data'; bytes: Buffer; as: 'buffer' | 'uint8' | 'latin1' } | { kind: 'cb' };

/** What to hand write(): the same bytes as a Buffer, a Uint8Array or (ASCII only) a string. */
function writeArg(item: Item & { kind: 'data' }): Buffer | Uint8Array | string {
  if (item.as === 'uint8') return new Uint8Array(item.bytes);
  if (item.as === 'latin1' && item.bytes.every((b) => b < 0x80)) return item.bytes.toString();
  return item.bytes;
}

const itemArb: fc.Arbitrary<Item> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('data' as const),
      bytes: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
      as: fc.constantFrom('buffer' as const, 'uint8' as const, 'latin1' as const),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: 'cb' as const }) },
);

/** Cut `data` at the given (sorted, deduplicated) offsets. */
function cut(data: Buffer, offsets: number[]): Buffer[] {
  const points = [...new Set(offsets.map((o) => o % (data.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(data.subarray(prev, p));
    prev = p;
  }
  out.push(data.subarray(prev));
  return out;
}

function bytesOf(items: Item[]): Buffer {
  return Buffer.concat(items.flatMap((i) => (i.kind === 'data' ? [i.bytes] : [])));
}

describe('DangaSocket#write (property, in memory through setWriterFunc)', () => {
  /**
   * The writer takes bytes according to a schedule (a count, possibly partial, or EAGAIN),
   * then everything once the schedule runs out, so every run ends.
   */
  function run(items: Item[], schedule: (number | 'EAGAIN')[], kicks: boolean[]): void {
    const s = new net.Socket();
    sockets.push(s);
    const obj = new Quiet(s);
    const sink: Buffer[] = [];
    let sunk = 0;
    let step = 0;
    obj.setWriterFunc((buf, length, offset) => {
      if (length === 0) return 0; // as syswrite: a 0-byte write always succeeds
      const r = schedule[step++] ?? length;
      if (r === 'EAGAIN') throw Object.assign(new Error('EAGAIN'), { code: 'EAGAIN' });
      const n = Math.min(r, length);
      sink.push(Buffer.from(buf.subarray(offset, offset + n)));
      sunk += n;
      return n;
    });
    let dataQueued = 0;
    let cbsQueued = 0;
    let cbsRun = 0;
    const cbOrder: number[] = [];
    const check = (returned: boolean): void => {
      // Danga's count: unwritten bytes plus one per callback not yet run.
      expect(obj.writeBufSize).toBe(dataQueued - sunk + (cbsQueued - cbsRun));
      expect(returned).toBe(obj.writeBufSize === 0);
    };
    items.forEach((item, i) => {
      if (item.kind === 'data') {
        dataQueued += item.bytes.length;
        check(obj.write(writeArg(item)));
      } else {
        const bytesBefore = dataQueued;
        cbsQueued++;
        check(
          obj.write(() => {
            // Runs once every byte queued before it is written, and not one byte later.
            expect(sunk).toBe(bytesBefore);
            cbsRun++;
            cbOrder.push(i);
          }),
        );
      }
      if (kicks[i] === true) check(obj.write(undefined));
    });
    let guard = 0;
    while (!obj.write(undefined) && guard++ < schedule.length + 10);
    check(true);
    expect(Buffer.concat(sink).equals(bytesOf(items))).toBe(true);
    expect(cbOrder).toEqual(items.flatMap((it, i) => (it.kind === 'cb' ? [i] : [])));
  }

  const scheduleArb = fc.array(fc.oneof(fc.nat(120), fc.constant('EAGAIN' as const)), {
    maxLength: 60,
  });

  it('delivers every byte in order and runs callbacks in order, however writes are cut', () => {
    fc.assert(
      fc.property(
        fc.array(itemArb, { maxLength: 40 }),
        scheduleArb,
        fc.array(fc.boolean(), { maxLength: 40 }),
        run,
      ),
      { numRuns: 300 },
    );
  });

  it('gives the same result for a stream written whole and one byte at a time', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 400 }), scheduleArb, (u, schedule) => {
        const data = Buffer.from(u);
        run([{ kind: 'data', bytes: data, as: 'buffer' }, { kind: 'cb' }], schedule, []);
        const perByte: Item[] = [...data].map((b) => ({
          kind: 'data',
          bytes: Buffer.from([b]),
          as: 'buffer',
        }));
        run([...perByte, { kind: 'cb' }], schedule, []);
      }),
      { numRuns: 100 },
    );
  });
});

describe('DangaSocket#write (property, over TCP)', () => {
  async function send(
    data: Buffer,
    pieces: Buffer[],
    cbEvery: number,
    peerPausedMs: number,
  ): Promise<void> {
    const { server, client } = await pair();
    const obj = new Quiet(server);
    const got: Buffer[] = [];
    let gotLen = 0;
    client.pause();
    client.on('data', (d: Buffer) => {
      got.push(d);
      gotLen += d.length;
    });
    setTimeout(() => client.resume(), peerPausedMs);
    const order: number[] = [];
    let expected = 0;
    pieces.forEach((p, i) => {
      obj.write(p);
      if (i % cbEvery === 0) {
        const n = expected++;
        obj.write(() => order.push(n));
      }
    });
    await runUntil(() => gotLen >= data.length && order.length === expected, 8000);
    expect(gotLen).toBe(data.length);
    expect(Buffer.concat(got).equals(data)).toBe(true);
    expect(order).toEqual([...Array(expected).keys()]);
    expect(obj.writeBufSize).toBe(0);
  }

  it('delivers any split of a stream, with callbacks in order, to the peer', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 600_000 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.integer({ min: 1, max: 8 }),
        fc.constantFrom(0, 0, 30),
        async (size, offsets, cbEvery, paused) => {
          const data = randomBytes(size);
          await send(data, cut(data, offsets), cbEvery, paused);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('delivers 4 MiB written whole to a peer that reads late', async () => {
    const data = randomBytes(4 * 1024 * 1024);
    await send(data, [data], 1, 100);
  });

  it('delivers 20,000 bytes written one byte at a time', async () => {
    const data = randomBytes(20_000);
    await send(
      data,
      [...data].map((b) => Buffer.from([b])),
      1000,
      0,
    );
  });
});

describe('DangaSocket#read with pushBackRead (property)', () => {
  interface Op {
    n: number;
    /** How many bytes of what was just read to push back (in up to two pieces). */
    back: number;
    split: number;
  }
  const opArb: fc.Arbitrary<Op> = fc.record({
    n: fc.integer({ min: 1, max: 5000 }),
    back: fc.nat(5000),
    split: fc.nat(),
  });

  /**
   * Consume through `read(op.n)`, pushing back a tail of what was read when nothing else is
   * pushed back (so the tail is the oldest unconsumed data); resolves with what was consumed.
   * Reads served from pushed-back data are checked against a model of the FIFO.
   */
  async function consume(
    data: Buffer,
    feed: 'whole' | 'bytes' | 'random',
    ops: Op[],
  ): Promise<Buffer> {
    const { server, client } = await pair();
    const consumed: Buffer[] = [];
    let eof = false;
    let step = 0;
    const model: Buffer[] = []; // pushed-back chunks not yet read again
    class Reader extends Quiet {
      override eventRead(): void {
        const op = ops[step++] ?? { n: 65536, back: 0, split: 0 };
        const b = this.read(op.n);
        if (b === null) {
          eof = true;
          this.close('eof');
          return;
        }
        expect(b.length).toBeLessThanOrEqual(op.n);
        const head = model[0];
        if (head !== undefined) {
          // Pushed-back data first, one chunk per call, split at n.
          expect(b.equals(head.subarray(0, Math.min(op.n, head.length)))).toBe(true);
          if (b.length === head.length) model.shift();
          else model[0] = head.subarray(b.length);
        }
        const back = model.length === 0 ? Math.min(op.back, b.length) : 0;
        consumed.push(Buffer.from(b.subarray(0, b.length - back)));
        if (back > 0) {
          const tail = Buffer.from(b.subarray(b.length - back));
          const at = op.split % (tail.length + 1);
          // FIFO: pieces pushed in order come back in order, before any socket data.
          for (const piece of [tail.subarray(0, at), tail.subarray(at)]) {
            if (piece.length === 0) continue;
            this.pushBackRead(piece);
            model.push(piece);
          }
        }
      }
    }
    const r = new Reader(server);
    r.watchRead(true);
    if (feed === 'whole') client.end(data);
    else if (feed === 'bytes') {
      for (const b of data) client.write(Buffer.from([b]));
      client.end();
    } else {
      void (async () => {
        for (let off = 0; off < data.length;) {
          const n = 1 + Math.floor(Math.random() * 4096);
          client.write(data.subarray(off, off + n));
          off += n;
          if (Math.random() < 0.3) await new Promise((res) => setTimeout(res, 1));
        }
        client.end();
      })();
    }
    await runUntil(() => eof, 8000, 5);
    expect(eof).toBe(true);
    return Buffer.concat(consumed);
  }

  it('yields the original bytes in order for any read sizes and pushbacks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 50_000 }),
        fc.constantFrom('whole' as const, 'bytes' as const, 'random' as const),
        fc.array(opArb, { maxLength: 60 }),
        async (size, feed, ops) => {
          const data = randomBytes(feed === 'bytes' ? Math.min(size, 3000) : size);
          expect((await consume(data, feed, ops)).equals(data)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('yields the original bytes fed whole and one byte at a time, read 1 byte at a time', async () => {
    const data = randomBytes(2000);
    const ones = Array.from({ length: 2500 }, (_v, i) => ({
      n: 1,
      back: i % 3 === 0 ? 1 : 0,
      split: 0,
    }));
    expect((await consume(data, 'whole', ones)).equals(data)).toBe(true);
    expect((await consume(data, 'bytes', ones)).equals(data)).toBe(true);
  });

  it('serves pushed-back chunks one per read, split at n, in FIFO order (in memory)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        fc.boolean(),
        fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 50 }),
        (u, offsets, perByte, sizes) => {
          const data = Buffer.from(u);
          const s = new net.Socket();
          sockets.push(s);
          const obj = new Quiet(s);
          const chunks = perByte ? [...data].map((b) => Buffer.from([b])) : cut(data, offsets);
          for (const c of chunks) obj.pushBackRead(c);
          const out: Buffer[] = [];
          let head = 0; // index of the chunk being served
          let headLeft = chunks[0]?.length ?? 0;
          for (let i = 0; head < chunks.length && i < 100_000; i++) {
            if (headLeft === 0) {
              // An empty pushed-back chunk comes back as an empty read.
              const b = obj.read(1);
              expect(b?.length).toBe(0);
              head++;
              headLeft = chunks[head]?.length ?? 0;
              continue;
            }
            const n = sizes[i % sizes.length] as number;
            const b = obj.read(n);
            expect(b).not.toBeNull();
            const len = (b as Buffer).length;
            // Never more than asked, never across two pushed-back chunks.
            expect(len).toBe(Math.min(n, headLeft));
            out.push(b as Buffer);
            headLeft -= len;
            if (headLeft === 0) {
              head++;
              headLeft = chunks[head]?.length ?? 0;
            }
          }
          expect(Buffer.concat(out).equals(data)).toBe(true);
          expect(obj.read(10)?.length).toBe(0); // then the (silent) socket: nothing yet
          obj.close();
        },
      ),
      { numRuns: 300 },
    );
  });
});
