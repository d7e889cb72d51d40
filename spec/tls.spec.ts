import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { DangaSocket, DangaSocketError, Listener, connect, type ErrorContext } from '../lib';
import { runUntil } from './helpers';

afterEach(() => DangaSocket.Reset());

/** Echo with flow control: stop reading while more than 1 MiB waits to be written. */
class Echo extends DangaSocket {
  static readonly all: Echo[] = [];
  constructor(sock: net.Socket) {
    super(sock);
    Echo.all.push(this);
    this.watchRead(true);
  }
  override eventRead(): void {
    const b = this.read(1 << 20);
    if (b === null) {
      this.watchRead(false);
      this.write(() => this.close('eof'));
      return;
    }
    if (b.length > 0 && !this.write(b) && this.writeBufSize > 1 << 20) this.watchRead(false);
  }
  override eventWrite(): void {
    super.eventWrite();
    if (this.writeBufSize < 256 * 1024 && !this.closed) this.watchRead(true);
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

/** Writes what it is told, never reads. */
class Sink extends DangaSocket {
  override eventRead(): void {}
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed) & 0xff;
  return b;
}

function collectErrors(): { err: unknown; ctx: ErrorContext }[] {
  const seen: { err: unknown; ctx: ErrorContext }[] = [];
  DangaSocket.setErrorHandler((err, ctx) => seen.push({ err, ctx }));
  return seen;
}

/** Run the loop (our listener's side of the handshake) until `p` settles. */
async function settle<T>(p: Promise<T>): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await runUntil(() => done, 10000);
  return p;
}

function portOf(l: Listener): number {
  return (l.address() as net.AddressInfo).port;
}

/** A Node TLS client that sends `payload`, half-closes, and collects the echo until EOF. */
function echoClient(
  port: number,
  payload: Buffer,
  extra: tls.ConnectionOptions = {},
): { done: () => boolean; got: () => Buffer; sock: tls.TLSSocket } {
  const chunks: Buffer[] = [];
  let ended = false;
  const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...extra });
  c.on('secureConnect', () => c.end(payload));
  c.on('data', (d: Buffer) => chunks.push(d));
  c.on('end', () => (ended = true));
  c.on('error', () => (ended = true));
  return { done: () => ended, got: () => Buffer.concat(chunks), sock: c };
}

const haveOpenssl = ((): boolean => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!haveOpenssl) {
  // CI installs Debian's openssl; without it these specs cannot make a certificate at all.
  throw new Error('spec/tls.spec.ts needs the openssl command (apt-get install -y openssl)');
}

describe('TLS', () => {
  let dir = '';
  let key: Buffer;
  let cert: Buffer;
  let certPath = '';
  beforeAll(() => {
    // A throwaway self-signed certificate (ECDSA: quick handshakes), made here so no key
    // material is committed.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-tls-'));
    certPath = path.join(dir, 'c.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout',
        path.join(dir, 'k.pem'),
        '-out',
        certPath,
      ],
      { stdio: 'ignore' },
    );
    key = fs.readFileSync(path.join(dir, 'k.pem'));
    cert = fs.readFileSync(certPath);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  beforeEach(() => {
    Echo.all.length = 0;
  });

  it('echoes 3 MB through a wrapped TLS socket, with a half-close, byte for byte', async () => {
    const srv = tls.createServer({ key, cert, allowHalfOpen: true }, (s) => {
      new Echo(s);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const payload = pattern(3_000_000, 0);
    const c = echoClient(port, payload);
    await runUntil(c.done, 15000);
    expect(c.got().equals(payload)).toBe(true);
    c.sock.destroy();
    DangaSocket.Reset();
    await new Promise<void>((r) => srv.close(() => r()));
  });

  describe('Listener.listen({ tls })', () => {
    it('hands onAccept a server TLSSocket with the handshake in progress', async () => {
      const accepted: net.Socket[] = [];
      const l = await Listener.listen({ tls: { key, cert } }, (s) => {
        accepted.push(s);
        new Echo(s);
      });
      const c = echoClient(portOf(l), Buffer.from('hello'));
      await runUntil(c.done, 10000);
      expect(c.got().toString()).toBe('hello');
      expect(accepted).toHaveLength(1);
      const s = accepted[0] as tls.TLSSocket;
      expect(s).toBeInstanceOf(tls.TLSSocket);
      expect(s.encrypted).toBe(true);
      c.sock.destroy();
    });

    it('echoes 10 MB both ways with a Node tls client, then closes after its half-close', async () => {
      const l = await Listener.listen({ tls: { key, cert } }, (s) => new Echo(s));
      const payload = pattern(10 * 1024 * 1024, 7);
      const c = echoClient(portOf(l), payload);
      await runUntil(c.done, 30000);
      const got = c.got();
      expect(got.length).toBe(payload.length);
      expect(got.equals(payload)).toBe(true);
      await runUntil(() => Echo.all.every((e) => e.closed), 5000);
      expect(Echo.all.map((e) => e.closeReason)).toEqual(['eof']);
      c.sock.destroy();
    });

    it('echoes 10 MB both ways with openssl s_client (SNI and ALPN given), closing on its close_notify', async () => {
      const accepted: tls.TLSSocket[] = [];
      const l = await Listener.listen(
        { tls: { key, cert, ALPNProtocols: ['danga/1', 'h2'] } },
        (s) => {
          accepted.push(s as tls.TLSSocket);
          new Echo(s);
        },
      );
      const payload = pattern(10 * 1024 * 1024, 3);
      const child = spawn(
        'openssl',
        [
          's_client',
          '-connect',
          `127.0.0.1:${portOf(l)}`,
          '-servername',
          'echo.test',
          '-alpn',
          'danga/1',
          '-quiet',
          '-no_ign_eof',
        ],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const out: Buffer[] = [];
      let outLen = 0;
      let exited: number | null | undefined;
      child.stdout.on('data', (d: Buffer) => {
        out.push(d);
        outLen += d.length;
        // Everything is back: closing stdin makes s_client send close_notify (our EOF).
        if (outLen >= payload.length) child.stdin.end();
      });
      child.stderr.resume();
      child.on('exit', (code) => (exited = code));
      child.stdin.write(payload);
      await runUntil(() => exited !== undefined, 30000);
      expect(exited).toBe(0);
      expect(Buffer.concat(out).equals(payload)).toBe(true);
      await runUntil(() => Echo.all.every((e) => e.closed), 5000);
      expect(Echo.all.map((e) => e.closeReason)).toEqual(['eof']);
      expect(accepted[0]?.servername).toBe('echo.test');
      expect(accepted[0]?.alpnProtocol).toBe('danga/1');
    });

    it('shows openssl s_client the negotiated ALPN protocol', async () => {
      const l = await Listener.listen(
        { tls: { key, cert, ALPNProtocols: ['danga/1'] } },
        (s) => new Echo(s),
      );
      let stdout = '';
      let exited: number | null | undefined;
      const child = spawn(
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${portOf(l)}`, '-alpn', 'danga/1', '-no_ign_eof'],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.resume();
      child.on('exit', (code) => (exited = code));
      child.stdin.end();
      await runUntil(() => exited !== undefined, 15000);
      expect(stdout).toContain('ALPN protocol: danga/1');
    });

    it('a failed handshake closes only that connection (tls_error, reported as kind tls); the listener keeps accepting', async () => {
      const errors = collectErrors();
      const l = await Listener.listen(
        { tls: { key, cert, minVersion: 'TLSv1.3' } },
        (s) => new Echo(s),
      );
      const port = portOf(l);
      // A healthy connection, open across the failures.
      const healthy = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      const fromHealthy: Buffer[] = [];
      healthy.on('data', (d: Buffer) => fromHealthy.push(d));
      healthy.on('error', () => {});
      await runUntil(() => Echo.all.length === 1, 10000);
      // 1: plaintext where a ClientHello belongs.
      const plain = net.connect({ port, host: '127.0.0.1' }, () =>
        plain.write('GET / HTTP/1.0\r\n\r\n'),
      );
      plain.on('error', () => {});
      plain.resume();
      await runUntil(() => Echo.all.length === 2 && (Echo.all[1]?.closed ?? false), 10000);
      // 2: openssl s_client offering only TLS 1.2 to a TLS 1.3-only server.
      let exited: number | null | undefined;
      const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2'], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      child.on('exit', (code) => (exited = code));
      await runUntil(
        () => exited !== undefined && Echo.all.length === 3 && (Echo.all[2]?.closed ?? false),
        15000,
      );
      expect(exited).not.toBe(0);
      expect(Echo.all.slice(1).map((e) => e.closeReason)).toEqual(['tls_error', 'tls_error']);
      expect(errors.map((e) => e.ctx.kind)).toEqual(['tls', 'tls']);
      expect(errors[0]?.ctx.object).toBe(Echo.all[1]);
      expect(errors[1]?.ctx.object).toBe(Echo.all[2]);
      expect(errors[0]?.err).toMatchObject({ code: 'ERR_SSL_HTTP_REQUEST' });
      // The healthy connection and the listener are untouched.
      expect(Echo.all[0]?.closed).toBe(false);
      expect(l.closed).toBe(false);
      healthy.write('still here');
      await runUntil(() => Buffer.concat(fromHealthy).toString() === 'still here', 10000);
      expect(Buffer.concat(fromHealthy).toString()).toBe('still here');
      const after = echoClient(port, Buffer.from('next'));
      await runUntil(after.done, 10000);
      expect(after.got().toString()).toBe('next');
      healthy.destroy();
      after.sock.destroy();
      plain.destroy();
    });

    it('a handshake that never starts fails after tls.handshakeTimeout with tls_error', async () => {
      const errors = collectErrors();
      const l = await Listener.listen(
        { tls: { key, cert, handshakeTimeout: 300 } },
        (s) => new Echo(s),
      );
      const silent = net.connect({ port: portOf(l), host: '127.0.0.1' });
      silent.on('error', () => {});
      await runUntil(() => Echo.all[0]?.closed ?? false, 10000);
      expect(Echo.all[0]?.closeReason).toBe('tls_error');
      expect(errors[0]?.ctx.kind).toBe('tls');
      expect((errors[0]?.err as { code?: string }).code).toBe('ERR_TLS_HANDSHAKE_TIMEOUT');
      silent.destroy();
    });

    it('a client certificate that fails verification is refused (requestCert)', async () => {
      const errors = collectErrors();
      const l = await Listener.listen(
        { tls: { key, cert, requestCert: true, ca: [] } },
        (s) => new Echo(s),
      );
      const c = echoClient(portOf(l), Buffer.from('x'), { key, cert });
      await runUntil(() => c.done() && (Echo.all[0]?.closed ?? false), 10000);
      expect(c.got().length).toBe(0);
      expect(Echo.all[0]?.closeReason).toBe('tls_error');
      expect(errors[0]?.ctx.kind).toBe('tls');
      c.sock.destroy();
    });

    it('a peer that does not read grows writeBufSize while Node buffers stay bounded', async () => {
      let sink: Sink | undefined;
      let tlsSock: tls.TLSSocket | undefined;
      const l = await Listener.listen({ tls: { key, cert } }, (s) => {
        tlsSock = s as tls.TLSSocket;
        sink = new Sink(s);
      });
      const c = tls.connect({ port: portOf(l), host: '127.0.0.1', rejectUnauthorized: false });
      c.pause(); // never reads
      let secure = false;
      c.on('secureConnect', () => (secure = true));
      await runUntil(() => secure && sink !== undefined, 10000);
      const s = sink as Sink;
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const total = 64 * 1024 * 1024; // far beyond any socket buffer
      for (let sent = 0; sent < total; sent += chunk.length) s.write(chunk);
      // Give the kernel and Node every chance to take what they will.
      let iterations = 0;
      await runUntil(() => ++iterations > 50, 3000);
      const nodeBuffered = (tlsSock as tls.TLSSocket).writableLength;
      expect(nodeBuffered).toBeLessThanOrEqual(1024 * 1024);
      // What neither the kernel nor Node holds is ours, counted in writeBufSize.
      expect(s.writeBufSize).toBeGreaterThan(total - 16 * 1024 * 1024);
      expect(s.closed).toBe(false);
      c.destroy();
    });

    it('serves 1,000 concurrent TLS connections', async () => {
      const l = await Listener.listen({ tls: { key, cert } }, (s) => new Echo(s));
      const N = 1000;
      const port = portOf(l);
      // The clients run in a child process: both cores share the handshakes.
      const script = `
        const tls = require('node:tls');
        const N = ${N};
        let open = 0, echoed = 0;
        const socks = [];
        for (let i = 0; i < N; i++) {
          const c = tls.connect({ port: ${port}, host: '127.0.0.1', rejectUnauthorized: false });
          socks.push(c);
          let got = '';
          c.on('secureConnect', () => { open++; c.write('conn ' + i); });
          c.on('data', (d) => {
            got += d;
            if (got === 'conn ' + i && ++echoed === N) process.stdout.write('all ' + N + '\\n');
          });
          c.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(3); });
        }
        process.stdin.on('data', () => { for (const c of socks) c.end(); });
        process.stdin.on('end', () => process.exit(0));
      `;
      const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      let exited: number | null | undefined;
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.on('exit', (code) => (exited = code));
      await runUntil(() => out.includes(`all ${N}`) || exited !== undefined, 30000);
      expect(out).toContain(`all ${N}`);
      // Every connection is open at once on our side.
      expect(Echo.all.filter((e) => !e.closed)).toHaveLength(N);
      child.stdin.write('end');
      await runUntil(() => Echo.all.every((e) => e.closed), 20000);
      expect(Echo.all.every((e) => e.closeReason === 'eof')).toBe(true);
      child.stdin.end();
      await runUntil(() => exited !== undefined, 10000);
      expect(exited).toBe(0);
    });
  });

  describe('new Listener(tls.Server)', () => {
    it('hands out TLS sockets, never the plaintext one, and reports failed handshakes', async () => {
      const errors = collectErrors();
      const srv = tls.createServer({ key, cert, allowHalfOpen: true, pauseOnConnect: true });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      const accepted: net.Socket[] = [];
      const l = new Listener(srv, (s) => {
        accepted.push(s);
        new Echo(s);
      });
      const payload = pattern(1024 * 1024, 9);
      const c = echoClient(portOf(l), payload);
      await runUntil(c.done, 15000);
      expect(c.got().equals(payload)).toBe(true);
      expect(accepted).toHaveLength(1);
      expect(accepted[0]).toBeInstanceOf(tls.TLSSocket);
      const plain = net.connect({ port: portOf(l), host: '127.0.0.1' }, () =>
        plain.write('GET / HTTP/1.0\r\n\r\n'),
      );
      plain.on('error', () => {});
      plain.resume();
      await runUntil(() => errors.length > 0, 10000);
      expect(errors[0]?.ctx).toEqual({ kind: 'tls', object: l });
      expect(accepted).toHaveLength(1);
      c.sock.destroy();
      plain.destroy();
    });
  });

  describe('connect({ tls })', () => {
    it('resolves a connected TLSSocket after the handshake; SNI and ALPN pass through both ways', async () => {
      const seen: tls.TLSSocket[] = [];
      const snis: string[] = [];
      const ctx = tls.createSecureContext({ key, cert });
      const l = await Listener.listen(
        {
          tls: {
            key,
            cert,
            ALPNProtocols: ['danga/1', 'h2'],
            SNICallback: (name, cb) => {
              snis.push(name);
              cb(null, ctx);
            },
          },
        },
        (s) => {
          seen.push(s as tls.TLSSocket);
          new Echo(s);
        },
      );
      let fromCallback: net.Socket | undefined;
      const sock = (await settle(
        connect({
          peer: l,
          tls: { ca: cert, servername: 'localhost', ALPNProtocols: ['danga/1'] },
          onConnected: (s) => (fromCallback = s),
        }),
      )) as tls.TLSSocket;
      expect(sock).toBeInstanceOf(tls.TLSSocket);
      expect(fromCallback).toBe(sock);
      expect(sock.authorized).toBe(true);
      expect(sock.alpnProtocol).toBe('danga/1');
      const got: Buffer[] = [];
      class Reader extends Sink {
        override eventRead(): void {
          const b = this.read(65536);
          if (b === null) this.close('eof');
          else got.push(b);
        }
      }
      const r = new Reader(sock);
      r.watchRead(true);
      r.write('ping');
      await runUntil(() => Buffer.concat(got).toString() === 'ping', 10000);
      expect(Buffer.concat(got).toString()).toBe('ping');
      expect(snis).toEqual(['localhost']);
      expect(seen[0]?.servername).toBe('localhost');
      expect(seen[0]?.alpnProtocol).toBe('danga/1');
    });

    it('verifies a host name by default and sends it as SNI', async () => {
      const seen: tls.TLSSocket[] = [];
      const l = await Listener.listen({ tls: { key, cert } }, (s) => {
        seen.push(s as tls.TLSSocket);
        new Echo(s);
      });
      const sock = (await settle(
        connect({
          host: 'localhost',
          port: portOf(l),
          lookup: (_name, _opts, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]),
          tls: { ca: cert },
        }),
      )) as tls.TLSSocket;
      expect(sock.authorized).toBe(true);
      await runUntil(() => seen[0]?.servername === 'localhost', 5000);
      expect(seen[0]?.servername).toBe('localhost');
      sock.destroy();
    });

    it('rejects with DS_ERR_TLS (cause: the TLS error) when the handshake fails, and calls onConnectError', async () => {
      const l = await Listener.listen({ tls: { key, cert } }, (s) => new Echo(s));
      collectErrors();
      const viaCallback: DangaSocketError[] = [];
      // Self-signed and no `ca`: the default verification refuses it.
      const p = connect({ peer: l, tls: {}, onConnectError: (e) => viaCallback.push(e) });
      let err: unknown;
      p.catch((e: unknown) => (err = e));
      await runUntil(() => err !== undefined, 10000);
      expect(err).toBeInstanceOf(DangaSocketError);
      expect((err as DangaSocketError).code).toBe('DS_ERR_TLS');
      expect((err as Error).cause).toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
      expect(viaCallback).toEqual([err]);
    });

    it('rejects tls options it cannot use', () => {
      expect(() => connect({ port: 1, host: '127.0.0.1', tls: 5 as never })).toThrow(
        expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
      );
      expect(() =>
        connect({ port: 1, host: '127.0.0.1', tls: { socket: new net.Socket() } }),
      ).toThrow(expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }));
      expect(() => Listener.listen({ tls: { key: 'not a key', cert } }, () => {})).toThrow(
        expect.objectContaining({ code: 'DS_ERR_INVALID_ARG' }),
      );
    });
  });
});
