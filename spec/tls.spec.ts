import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { DangaSocket } from '../lib';
import { runUntil } from './helpers';

afterEach(() => DangaSocket.Reset());

class Echo extends DangaSocket {
  override eventRead(): void {
    const b = this.read(1 << 20);
    if (b === null) {
      this.write(() => this.close('eof'));
      this.watchRead(false);
      return;
    }
    if (b.length > 0) this.write(b);
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

describe('DangaSocket over TLS', () => {
  let dir = '';
  let key: Buffer;
  let cert: Buffer;
  beforeAll(() => {
    // A throwaway self-signed certificate, made here so no key material is committed.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-tls-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        path.join(dir, 'k.pem'),
        '-out',
        path.join(dir, 'c.pem'),
      ],
      { stdio: 'ignore' },
    );
    key = fs.readFileSync(path.join(dir, 'k.pem'));
    cert = fs.readFileSync(path.join(dir, 'c.pem'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('echoes 3 MB through a wrapped TLS socket, with a half-close, byte for byte', async () => {
    const srv = tls.createServer({ key, cert, allowHalfOpen: true }, (s) => {
      new Echo(s).watchRead(true);
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
    const payload = Buffer.alloc(3_000_000);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 131) & 0xff;
    const chunks: Buffer[] = [];
    let ended = false;
    c.on('secureConnect', () => c.end(payload));
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('end', () => (ended = true));
    await runUntil(() => ended, 15000);
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    c.destroy();
    DangaSocket.Reset();
    await new Promise<void>((r) => srv.close(() => r()));
  });
});
