import * as fc from 'fast-check';
import {
  ProxyHeaderParser,
  V1_MAX_BYTES,
  V2_MAX_BYTES,
  type ProxyParseResult,
} from '../lib/internal/proxy-protocol';

const V2_SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: command (0 LOCAL, 1 PROXY), family byte, address block, then `extra` bytes. */
function v2(cmd: number, fam: number, addr: Buffer, extra: Buffer = Buffer.alloc(0)): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(addr.length + extra.length);
  return Buffer.concat([V2_SIG, Buffer.from([0x20 | cmd, fam]), len, addr, extra]);
}

function v2Tcp4(
  src: number[],
  dst: number[],
  sport: number,
  dport: number,
  extra?: Buffer,
): Buffer {
  const a = Buffer.alloc(12);
  Buffer.from(src).copy(a, 0);
  Buffer.from(dst).copy(a, 4);
  a.writeUInt16BE(sport, 8);
  a.writeUInt16BE(dport, 10);
  return v2(1, 0x11, a, extra);
}

function v2Tcp6(src: Buffer, dst: Buffer, sport: number, dport: number, extra?: Buffer): Buffer {
  const a = Buffer.alloc(36);
  src.copy(a, 0);
  dst.copy(a, 16);
  a.writeUInt16BE(sport, 32);
  a.writeUInt16BE(dport, 34);
  return v2(1, 0x21, a, extra);
}

/** A TLV (type, 16-bit length, value), as HAProxy appends after the addresses. */
function tlv(type: number, value: Buffer): Buffer {
  const h = Buffer.from([type, 0, 0]);
  h.writeUInt16BE(value.length, 1);
  return Buffer.concat([h, value]);
}

/** Feed `chunks` to a fresh parser; the final result and the payload bytes after the header. */
function feed(
  chunks: readonly Buffer[],
  optional = false,
): { result: ProxyParseResult; payload: Buffer } {
  const p = new ProxyHeaderParser(optional);
  let result: ProxyParseResult = { state: 'more' };
  const after: Buffer[] = [];
  for (const c of chunks) {
    if (result.state === 'more') {
      result = p.push(c);
      if (result.state === 'done' || result.state === 'none') after.push(result.rest);
    } else {
      after.push(c);
    }
  }
  return { result, payload: Buffer.concat(after) };
}

function oneByteAtATime(b: Buffer): Buffer[] {
  return Array.from(b, (x) => Buffer.from([x]));
}

/** `b` cut at the given offsets (sorted, clamped). */
function splitAt(b: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.min(c, b.length)))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(b.subarray(prev, p));
    prev = p;
  }
  out.push(b.subarray(prev));
  return out;
}

function done(r: ProxyParseResult) {
  if (r.state !== 'done') throw new Error(`expected done, got ${JSON.stringify(r)}`);
  return r.header;
}

function reason(r: ProxyParseResult): string {
  if (r.state !== 'error') throw new Error(`expected error, got ${JSON.stringify(r)}`);
  return r.reason;
}

describe('ProxyHeaderParser', () => {
  describe('version 1', () => {
    it('parses a TCP4 line and hands back the payload after it', () => {
      const { result, payload } = feed([
        Buffer.from('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n'),
      ]);
      expect(done(result)).toEqual({
        version: 1,
        command: 'proxy',
        source: { address: '192.168.0.1', port: 56324, family: 'IPv4' },
        destination: { address: '192.168.0.11', port: 443, family: 'IPv4' },
        length: 47,
      });
      expect(payload.toString()).toBe('GET / HTTP/1.1\r\n');
    });

    it('parses a TCP6 line and reports the address as Node does (RFC 5952)', () => {
      const line = 'PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::1 65535 0\r\n';
      const h = done(feed([Buffer.from(line)]).result);
      expect(h.source).toEqual({ address: '2001:db8::1', port: 65535, family: 'IPv6' });
      expect(h.destination).toEqual({ address: '::1', port: 0, family: 'IPv6' });
    });

    it('accepts UNKNOWN, short or with ignored fields, as a local connection', () => {
      expect(done(feed([Buffer.from('PROXY UNKNOWN\r\n')]).result)).toEqual({
        version: 1,
        command: 'local',
        length: 15,
      });
      const ff = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
      const worst = `PROXY UNKNOWN ${ff} ${ff} 65535 65535\r\n`;
      expect(worst.length).toBe(V1_MAX_BYTES);
      expect(done(feed([Buffer.from(worst)]).result).command).toBe('local');
    });

    it.each([
      ['a line longer than 107 bytes', `PROXY UNKNOWN ${'x'.repeat(120)}\r\n`, /longer than 107/],
      ['LF without CR', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n', /LF without CR/],
      ['CR without LF', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n', /CR without LF/],
      ['an unknown protocol', 'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', /TCP4, TCP6 or UNKNOWN/],
      ['a leading zero in an address', 'PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', /address/],
      ['an address over 255', 'PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n', /address/],
      ['an IPv6 address in a TCP4 line', 'PROXY TCP4 ::1 ::1 1 2\r\n', /address/],
      ['a zone id', 'PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /address/],
      ['a port over 65535', 'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n', /port/],
      ['a leading zero in a port', 'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', /port/],
      ['two spaces', 'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n', /6 fields/],
      ['a missing port', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /6 fields/],
      ['"PROXY" without its space', 'PROXY\r\n', /does not start/],
    ])('rejects %s', (_name, text, why) => {
      expect(reason(feed([Buffer.from(text)]).result)).toMatch(why);
      expect(reason(feed(oneByteAtATime(Buffer.from(text))).result)).toMatch(why);
    });

    it('fails at byte 108 of a line with no CRLF, without waiting for more', () => {
      const p = new ProxyHeaderParser(false);
      expect(p.push(Buffer.from('PROXY ' + 'x'.repeat(V1_MAX_BYTES - 6))).state).toBe('more');
      expect(reason(p.push(Buffer.from('x')))).toMatch(/longer than 107/);
    });
  });

  describe('version 2', () => {
    it('parses TCP over IPv4 and skips TLVs', () => {
      const extra = Buffer.concat([tlv(0x04, Buffer.alloc(5)), tlv(0x05, Buffer.from('id'))]);
      const hdr = v2Tcp4([10, 0, 0, 1], [10, 0, 0, 2], 40000, 7777, extra);
      const { result, payload } = feed([Buffer.concat([hdr, Buffer.from('payload')])]);
      expect(done(result)).toEqual({
        version: 2,
        command: 'proxy',
        source: { address: '10.0.0.1', port: 40000, family: 'IPv4' },
        destination: { address: '10.0.0.2', port: 7777, family: 'IPv4' },
        length: hdr.length,
      });
      expect(payload.toString()).toBe('payload');
    });

    it('parses TCP over IPv6, including a v4-mapped address', () => {
      const mapped = Buffer.from('00000000000000000000ffff7f000002', 'hex');
      const one = Buffer.alloc(16);
      one[15] = 1;
      const h = done(feed([v2Tcp6(mapped, one, 1, 2)]).result);
      expect(h.source).toEqual({ address: '::ffff:127.0.0.2', port: 1, family: 'IPv6' });
      expect(h.destination).toEqual({ address: '::1', port: 2, family: 'IPv6' });
    });

    it('keeps the real peer for LOCAL (whatever its family and length) and for UNSPEC, UDP, UNIX', () => {
      expect(done(feed([v2(0, 0x00, Buffer.alloc(0))]).result)).toEqual({
        version: 2,
        command: 'local',
        length: 16,
      });
      // LOCAL with an address block: the block is skipped, never read.
      expect(done(feed([v2(0, 0x11, Buffer.alloc(12, 0xff))]).result).source).toBeUndefined();
      for (const fam of [0x00, 0x12, 0x22, 0x31, 0x32]) {
        const h = done(feed([v2(1, fam, Buffer.alloc(fam >> 4 === 3 ? 216 : 36))]).result);
        expect(h.command).toBe('proxy');
        expect(h.source).toBeUndefined();
      }
    });

    it('takes a header of exactly 64 KiB and rejects one byte more as soon as its length is known', () => {
      const max = v2(1, 0x11, Buffer.alloc(V2_MAX_BYTES - 16));
      expect(done(feed([max]).result).length).toBe(V2_MAX_BYTES);
      const over = v2(1, 0x11, Buffer.alloc(V2_MAX_BYTES - 15));
      expect(reason(feed([over.subarray(0, 16)]).result)).toMatch(/exceeds 65536/);
    });

    it.each([
      ['version 1 in the version nibble', Buffer.concat([V2_SIG, Buffer.from('1111000c', 'hex')])],
      ['an unknown command', Buffer.concat([V2_SIG, Buffer.from('2211000c', 'hex')])],
      ['an unknown family', Buffer.concat([V2_SIG, Buffer.from('2141000c', 'hex')])],
      ['an unknown protocol', Buffer.concat([V2_SIG, Buffer.from('2113000c', 'hex')])],
      ['a TCP4 block that is too short', v2(1, 0x11, Buffer.alloc(4))],
      ['a TCP6 block that is too short', v2(1, 0x21, Buffer.alloc(12))],
    ])('rejects %s', (_name, bytes) => {
      expect(feed([bytes]).result.state).toBe('error');
      expect(feed(oneByteAtATime(bytes)).result.state).toBe('error');
    });
  });

  describe('missing, truncated and optional headers', () => {
    it('required: fails on the first byte that cannot start a header', () => {
      const p = new ProxyHeaderParser(false);
      expect(reason(p.push(Buffer.from('G')))).toMatch(/does not start/);
      // Single use: the result stays.
      expect(p.push(Buffer.from('PROXY')).state).toBe('error');
    });

    it('optional: bytes that cannot start a header are all payload, held-back prefix included', () => {
      for (const text of ['GET / HTTP/1.0\r\n', 'PROXIMA', '\r\n\r\nhello', 'PROXY\r\n']) {
        const whole = feed([Buffer.from(text)], true);
        expect(whole.result.state).toBe('none');
        expect(whole.payload.toString()).toBe(text);
        const bytes = feed(oneByteAtATime(Buffer.from(text)), true);
        expect(bytes.result.state).toBe('none');
        expect(bytes.payload.toString()).toBe(text);
      }
    });

    it('optional: a connection that starts with a header still gets it parsed', () => {
      const { result, payload } = feed([Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nhi')], true);
      expect(done(result).source?.address).toBe('1.2.3.4');
      expect(payload.toString()).toBe('hi');
    });

    it('reports a truncated header at EOF; committed only after a whole signature', () => {
      const p = new ProxyHeaderParser(true);
      p.push(Buffer.from('PROX'));
      expect(p.committed).toBe(false);
      p.push(Buffer.from('Y TCP4 1.2'));
      expect(p.committed).toBe(true);
      expect(reason(p.end())).toMatch(/ended inside/);
      expect(new ProxyHeaderParser(true).end().state).toBe('none');
      expect(new ProxyHeaderParser(false).end().state).toBe('error');
    });
  });

  describe('properties', () => {
    const byte = fc.integer({ min: 0, max: 255 });
    const port = fc.integer({ min: 0, max: 65535 });
    const v4 = fc.tuple(byte, byte, byte, byte);
    const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => Buffer.from(a));
    const payload = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));
    const tlvs = fc
      .array(
        fc.tuple(byte, fc.uint8Array({ maxLength: 40 })).map(([t, v]) => tlv(t, Buffer.from(v))),
        { maxLength: 4 },
      )
      .map((l) => Buffer.concat(l));
    const v6Text = (b: Buffer): string =>
      Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':');

    /** A valid header of either version, with the address it must report. */
    const header = fc.oneof(
      fc.tuple(v4, v4, port, port).map(([s, d, sp, dp]) => ({
        bytes: Buffer.from(`PROXY TCP4 ${s.join('.')} ${d.join('.')} ${sp} ${dp}\r\n`),
        source: s.join('.'),
        port: sp,
      })),
      fc.tuple(v6, v6, port, port).map(([s, d, sp, dp]) => ({
        bytes: Buffer.from(`PROXY TCP6 ${v6Text(s)} ${v6Text(d)} ${sp} ${dp}\r\n`),
        // The same address through v2 must come out the same: one canonical text.
        source: done(feed([v2Tcp6(s, d, sp, dp)]).result).source?.address,
        port: sp,
      })),
      fc.tuple(v4, v4, port, port, tlvs).map(([s, d, sp, dp, x]) => ({
        bytes: v2Tcp4(s, d, sp, dp, x),
        source: s.join('.'),
        port: sp,
      })),
      fc.tuple(v6, v6, port, port, tlvs).map(([s, d, sp, dp, x]) => ({
        bytes: v2Tcp6(s, d, sp, dp, x),
        source: done(feed([v2Tcp6(s, d, sp, dp)]).result).source?.address,
        port: sp,
      })),
    );

    it('gives the same header and payload whole, split anywhere, and one byte at a time', () => {
      fc.assert(
        fc.property(
          header,
          payload,
          fc.array(fc.nat(400), { maxLength: 6 }),
          fc.boolean(),
          (h, body, cuts, optional) => {
            const all = Buffer.concat([h.bytes, body]);
            const whole = feed([all], optional);
            const w = done(whole.result);
            expect(w.source?.address).toBe(h.source);
            expect(w.source?.port).toBe(h.port);
            expect(w.length).toBe(h.bytes.length);
            expect(whole.payload.equals(body)).toBe(true);
            for (const chunks of [splitAt(all, cuts), oneByteAtATime(all)]) {
              const r = feed(chunks, optional);
              expect(done(r.result)).toEqual(w);
              expect(r.payload.equals(body)).toBe(true);
            }
          },
        ),
        { numRuns: 300 },
      );
    });

    it('never throws on garbage, alone or after a signature, and splitting changes nothing', () => {
      const prefix = fc.constantFrom(
        Buffer.alloc(0),
        Buffer.from('PRO'),
        V2_SIG.subarray(0, 5),
        Buffer.from('PROXY '),
        Buffer.from('PROXY TCP4 '),
        V2_SIG,
        Buffer.concat([V2_SIG, Buffer.from([0x21, 0x11])]),
      );
      fc.assert(
        fc.property(
          prefix,
          fc.uint8Array({ maxLength: 200 }),
          fc.array(fc.nat(250), { maxLength: 5 }),
          fc.boolean(),
          (pre, junk, cuts, optional) => {
            const all = Buffer.concat([pre, Buffer.from(junk)]);
            const whole = feed([all], optional);
            expect(['more', 'done', 'none', 'error']).toContain(whole.result.state);
            // "No header" hands over every byte, in order.
            if (whole.result.state === 'none') expect(whole.payload.equals(all)).toBe(true);
            for (const chunks of [splitAt(all, cuts), oneByteAtATime(all)]) {
              const r = feed(chunks, optional);
              expect(r.result).toEqual(whole.result.state === 'error' ? whole.result : r.result);
              expect(r.result.state).toBe(whole.result.state);
              if (r.result.state !== 'error' && r.result.state !== 'more') {
                expect(r.payload.equals(whole.payload)).toBe(true);
              }
            }
          },
        ),
        { numRuns: 500 },
      );
    });

    it('required mode rejects any first byte other than P or CR at once', () => {
      fc.assert(
        fc.property(
          byte.filter((b) => b !== 0x50 && b !== 0x0d),
          (b) => new ProxyHeaderParser(false).push(Buffer.from([b])).state === 'error',
        ),
      );
    });
  });
});
