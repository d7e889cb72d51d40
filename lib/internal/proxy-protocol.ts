import * as net from 'node:net';

/**
 * An incremental parser of the PROXY protocol header, versions 1 (text) and 2 (binary), as
 * HAProxy's doc/proxy-protocol.txt defines them. Pure: bytes in, a result out, no I/O. Feed
 * it the first bytes of a connection in any pieces; it copies only header bytes, so the
 * payload after the header is always a view of the last chunk (or, for "no header", all the
 * bytes it was given, in order).
 */

/** The longest v1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses). */
export const V1_MAX_BYTES = 107;
/** The largest v2 header accepted: 16 fixed bytes plus the address block and TLVs. */
export const V2_MAX_BYTES = 64 * 1024;

const V1_SIG = Buffer.from('PROXY ', 'latin1');
const V2_SIG = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V2_FIXED = 16;
/** Valid v2 family/protocol bytes: UNSPEC, TCP4, UDP4, TCP6, UDP6, UNIX stream, UNIX dgram. */
const V2_FAMILIES = new Set([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32]);

/** One end of the original connection, as the proxy reported it. */
export interface ProxyAddress {
  readonly address: string;
  readonly port: number;
  readonly family: 'IPv4' | 'IPv6';
}

/** A complete, valid header. */
export interface ProxyHeader {
  readonly version: 1 | 2;
  /**
   * `'proxy'`: relayed for a client, `source` is that client (absent for families we do not
   * map to an IP peer: v2 UNSPEC, UDP, UNIX). `'local'`: the proxy's own connection (a v2
   * LOCAL command, a v1 `UNKNOWN` line): the real peer stays the peer.
   */
  readonly command: 'proxy' | 'local';
  readonly source?: ProxyAddress;
  readonly destination?: ProxyAddress;
  /** Header bytes consumed. */
  readonly length: number;
}

export type ProxyParseResult =
  /** Need more bytes. */
  | { readonly state: 'more' }
  /** Header complete; `rest` is the payload that followed it in the last chunk. */
  | { readonly state: 'done'; readonly header: ProxyHeader; readonly rest: Buffer }
  /** Optional mode only: the connection does not start with a header; `rest` is every byte. */
  | { readonly state: 'none'; readonly rest: Buffer }
  /** Missing, malformed, oversized or truncated header. */
  | { readonly state: 'error'; readonly reason: string };

const MORE: ProxyParseResult = { state: 'more' };
const EMPTY = Buffer.alloc(0);

/**
 * Parse one connection's header. `optional`: bytes that cannot begin a header mean "no
 * header" instead of an error. Single use: after a final result (`done`, `none`, `error`),
 * `push` and `end` return that result again.
 */
export class ProxyHeaderParser {
  private buf = Buffer.allocUnsafe(V1_MAX_BYTES + 1);
  private filled = 0;
  /** 0 unknown yet, 1 or 2 once a whole signature matched. */
  private version: 0 | 1 | 2 = 0;
  /** v2: the whole header's size, once the fixed part is in. */
  private v2Total = 0;
  private final: ProxyParseResult | null = null;

  constructor(readonly optional: boolean) {}

  /** True once a whole v1 or v2 signature has arrived: from then on, only a header will do. */
  get committed(): boolean {
    return this.version !== 0;
  }

  /** Bytes taken so far (all of them are header bytes, or signature candidates). */
  get bytesSeen(): number {
    return this.filled;
  }

  /** Feed the next bytes of the connection. Never throws. */
  push(chunk: Buffer): ProxyParseResult {
    if (this.final !== null) return this.final;
    let off = 0;
    if (this.version === 0) {
      off = this.matchSignature(chunk);
      if (this.final !== null) return this.final;
      if (this.version === 0) return MORE;
    }
    return this.version === 1 ? this.pushV1(chunk, off) : this.pushV2(chunk, off);
  }

  /** The connection ended (EOF) before a final result: a truncated header. */
  end(): ProxyParseResult {
    if (this.final !== null) return this.final;
    if (this.optional && this.filled === 0) return this.finish({ state: 'none', rest: EMPTY });
    return this.fail(`connection ended inside the PROXY header (${this.filled} bytes)`);
  }

  private finish(r: ProxyParseResult): ProxyParseResult {
    this.final = r;
    return r;
  }

  private fail(reason: string): ProxyParseResult {
    return this.finish({ state: 'error', reason });
  }

  /** Copy bytes while they still match a signature; returns the offset in `chunk` after them. */
  private matchSignature(chunk: Buffer): number {
    let i = 0;
    while (i < chunk.length && this.version === 0) {
      const b = chunk[i] as number;
      const at = this.filled;
      const first = at === 0 ? b : (this.buf[0] as number);
      const sig = first === V2_SIG[0] ? V2_SIG : V1_SIG;
      if (sig[at] !== b) {
        if (this.optional) {
          // Bytes held back from earlier chunks come first; this chunk's are still in it.
          const earlier = this.buf.subarray(0, this.filled - i);
          const rest = earlier.length === 0 ? chunk : Buffer.concat([earlier, chunk]);
          this.finish({ state: 'none', rest });
        } else {
          this.fail('the connection does not start with a PROXY protocol header');
        }
        return i;
      }
      this.buf[this.filled++] = b;
      i++;
      if (this.filled === sig.length) this.version = sig === V1_SIG ? 1 : 2;
    }
    return i;
  }

  private pushV1(chunk: Buffer, from: number): ProxyParseResult {
    for (let i = from; i < chunk.length; i++) {
      const b = chunk[i] as number;
      const prev = this.buf[this.filled - 1];
      if (this.filled >= V1_MAX_BYTES) {
        return this.fail(`PROXY v1 line longer than ${V1_MAX_BYTES} bytes`);
      }
      this.buf[this.filled++] = b;
      if (prev === 0x0d && b !== 0x0a) return this.fail('PROXY v1 line has a CR without LF');
      if (b === 0x0a) {
        if (prev !== 0x0d) return this.fail('PROXY v1 line ends in LF without CR');
        const line = this.buf.toString('latin1', 0, this.filled - 2);
        const header = parseV1Line(line, this.filled);
        if (typeof header === 'string') return this.fail(header);
        return this.finish({ state: 'done', header, rest: chunk.subarray(i + 1) });
      }
    }
    return MORE;
  }

  private pushV2(chunk: Buffer, from: number): ProxyParseResult {
    let i = from;
    if (this.filled < V2_FIXED) {
      const take = Math.min(V2_FIXED - this.filled, chunk.length - i);
      chunk.copy(this.buf, this.filled, i, i + take);
      this.filled += take;
      i += take;
      if (this.filled < V2_FIXED) return MORE;
      const verCmd = this.buf[12] as number;
      if (verCmd >> 4 !== 2) return this.fail(`PROXY v2 version ${verCmd >> 4} is not 2`);
      if ((verCmd & 0x0f) > 1) return this.fail(`PROXY v2 command ${verCmd & 0x0f} is unknown`);
      const fam = this.buf[13] as number;
      if (!V2_FAMILIES.has(fam)) return this.fail(`PROXY v2 family/protocol 0x${hex(fam)}`);
      this.v2Total = V2_FIXED + this.buf.readUInt16BE(14);
      if (this.v2Total > V2_MAX_BYTES) {
        return this.fail(`PROXY v2 header of ${this.v2Total} bytes exceeds ${V2_MAX_BYTES}`);
      }
      const whole = Buffer.allocUnsafe(this.v2Total);
      this.buf.copy(whole, 0, 0, V2_FIXED);
      this.buf = whole;
    }
    const take = Math.min(this.v2Total - this.filled, chunk.length - i);
    chunk.copy(this.buf, this.filled, i, i + take);
    this.filled += take;
    i += take;
    if (this.filled < this.v2Total) return MORE;
    const header = parseV2(this.buf);
    if (typeof header === 'string') return this.fail(header);
    return this.finish({ state: 'done', header, rest: chunk.subarray(i) });
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const PORT = /^(0|[1-9]\d{0,4})$/;

/** Canonical text of an IPv6 address (RFC 5952, as Node reports peers), or undefined. */
function canonicalV6(text: string): string | undefined {
  // Hex digits, colons, and dots for an embedded IPv4 tail; no zone ids.
  if (!/^[0-9A-Fa-f:.]+$/.test(text) || !net.isIPv6(text)) return undefined;
  return new net.SocketAddress({ address: text, family: 'ipv6' }).address;
}

/** A v1 line without its CRLF, or the reason it is invalid. */
function parseV1Line(line: string, length: number): ProxyHeader | string {
  const parts = line.split(' ');
  const proto = parts[1];
  // "UNKNOWN": the receiver ignores the rest of the line and keeps the real peer.
  if (proto === 'UNKNOWN') return { version: 1, command: 'local', length };
  if (proto !== 'TCP4' && proto !== 'TCP6') {
    return `PROXY v1 protocol ${JSON.stringify(proto ?? '')} is not TCP4, TCP6 or UNKNOWN`;
  }
  if (parts.length !== 6) return 'PROXY v1 line does not have exactly 6 fields';
  const [, , src = '', dst = '', sport = '', dport = ''] = parts;
  const family = proto === 'TCP4' ? 'IPv4' : 'IPv6';
  const ip = (t: string): string | undefined =>
    family === 'IPv4' ? (IPV4.test(t) ? t : undefined) : canonicalV6(t);
  const port = (t: string): number | undefined =>
    PORT.test(t) && Number(t) <= 65535 ? Number(t) : undefined;
  const s = ip(src);
  const d = ip(dst);
  const sp = port(sport);
  const dp = port(dport);
  if (s === undefined || d === undefined) return `PROXY v1 ${proto} address is invalid`;
  if (sp === undefined || dp === undefined) return 'PROXY v1 port is invalid';
  return {
    version: 1,
    command: 'proxy',
    source: { address: s, port: sp, family },
    destination: { address: d, port: dp, family },
    length,
  };
}

function v6At(b: Buffer, off: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(off + i).toString(16));
  return new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** A whole v2 header (fixed part already checked), or the reason it is invalid. */
function parseV2(b: Buffer): ProxyHeader | string {
  const length = b.length;
  if (((b[12] as number) & 0x0f) === 0) return { version: 2, command: 'local', length };
  const fam = b[13] as number;
  const len = length - V2_FIXED;
  if (fam === 0x11) {
    if (len < 12) return `PROXY v2 TCP4 address block of ${len} bytes (12 needed)`;
    const a = (off: number): string =>
      `${b[off] as number}.${b[off + 1] as number}.${b[off + 2] as number}.${b[off + 3] as number}`;
    return {
      version: 2,
      command: 'proxy',
      source: { address: a(16), port: b.readUInt16BE(24), family: 'IPv4' },
      destination: { address: a(20), port: b.readUInt16BE(26), family: 'IPv4' },
      length,
    };
  }
  if (fam === 0x21) {
    if (len < 36) return `PROXY v2 TCP6 address block of ${len} bytes (36 needed)`;
    return {
      version: 2,
      command: 'proxy',
      source: { address: v6At(b, 16), port: b.readUInt16BE(48), family: 'IPv6' },
      destination: { address: v6At(b, 32), port: b.readUInt16BE(50), family: 'IPv6' },
      length,
    };
  }
  // UNSPEC, UDP and UNIX: nothing that names a TCP peer; fall back to the real one.
  return { version: 2, command: 'proxy', length };
}
