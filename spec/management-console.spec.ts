import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { DangaSocket, Listener, ManagementConsole } from '../lib';
import { beyondKernelBuffers } from './fill';
import { caught } from './helpers';

// An operator's view: a daemon runs on the loop in this process, and the specs talk to its
// console over TCP (and a Unix socket) exactly as `nc` or a script would.

const TOKEN = 'tok-' + randomBytes(12).toString('hex');

/** A small daemon object: echoes what it reads. */
class DemoEcho extends DangaSocket {
  constructor(sock: net.Socket) {
    super(sock);
    this.watchRead(true);
  }
  override eventRead(): void {
    const b = this.read(65536);
    if (b === null) this.close('eof');
    else if (b.length > 0) this.write(b);
  }
  override eventErr(): void {
    this.close('error');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

const sockets = new Set<net.Socket>();
let loopDone: Promise<void> | null = null;

function track(s: net.Socket): net.Socket {
  sockets.add(s);
  s.on('error', () => {});
  return s;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function connect(target: number | string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s =
      typeof target === 'number'
        ? net.connect({ host: '127.0.0.1', port: target })
        : net.connect({ path: target });
    s.once('error', reject);
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(track(s));
    });
  });
}

/** A console session as an operator's script sees it: send a line, read the reply up to ".". */
class Operator {
  private buf = '';
  private wake: (() => void) | null = null;
  ended = false;

  constructor(readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      this.wake?.();
    });
    const end = (): void => {
      this.ended = true;
      this.wake?.();
    };
    sock.on('end', end);
    sock.on('close', end);
  }

  static async open(target: number | string): Promise<Operator> {
    return new Operator(await connect(target));
  }

  send(text: string | Buffer): void {
    this.sock.write(text);
  }

  /** The next reply's body (dot-stuffing undone), without the "." terminator. */
  async reply(ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = /(^|\n)\.\n/.exec(this.buf);
      if (m !== null) {
        const end = m.index + m[0].length;
        const body = this.buf.slice(0, m.index + m[1]!.length);
        this.buf = this.buf.slice(end);
        return body
          .split('\n')
          .filter((l, i, a) => i < a.length - 1 || l !== '')
          .map((l) => (l.startsWith('..') ? l.slice(1) : l))
          .join('\n');
      }
      if (this.ended) throw new Error(`connection closed; unread: ${JSON.stringify(this.buf)}`);
      if (Date.now() > deadline) throw new Error(`no reply; got ${JSON.stringify(this.buf)}`);
      await within(
        new Promise<void>((r) => (this.wake = r)),
        Math.max(1, deadline - Date.now()),
        'reply',
      ).catch(() => {});
      this.wake = null;
    }
  }

  async command(line: string): Promise<string> {
    this.send(line + '\n');
    return this.reply();
  }

  /** Everything until the server closes the connection. */
  async rest(ms = 5000): Promise<string> {
    await within(
      new Promise<void>((r) => {
        if (this.ended) r();
        else this.sock.once('close', () => r());
      }),
      ms,
      'close',
    );
    return this.buf;
  }
}

interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** One raw HTTP exchange (the console closes after each response). */
async function http(port: number, request: string): Promise<HttpAnswer> {
  const s = await connect(port);
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  s.write(request);
  await within(new Promise((r) => s.once('close', r)), 5000, 'http response');
  const raw = Buffer.concat(chunks).toString('utf8');
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of head.slice(1)) {
    const c = l.indexOf(':');
    headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
  }
  return { status: Number(head[0]?.split(' ')[1]), headers, body: raw.slice(split + 4) };
}

function get(p: string, extra = ''): string {
  return `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`;
}

function portOf(l: Listener): number {
  const a = l.address();
  if (a === null || typeof a === 'string') throw new Error('no TCP address');
  return a.port;
}

/** A daemon: a listener of DemoEcho objects and `n` connected clients that have echoed once. */
async function daemon(n: number): Promise<{ listener: Listener; clients: net.Socket[] }> {
  const listener = await Listener.listen({ port: 0 }, (s) => new DemoEcho(s));
  const clients: net.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const c = await connect(portOf(listener));
    await echoOnce(c, `hello ${i}\n`);
    clients.push(c);
  }
  return { listener, clients };
}

async function echoOnce(c: net.Socket, text: string): Promise<void> {
  let got = '';
  await within(
    new Promise<void>((resolve) => {
      const on = (d: Buffer): void => {
        got += d.toString();
        if (got.length >= text.length) {
          c.removeListener('data', on);
          resolve();
        }
      };
      c.on('data', on);
      c.write(text);
    }),
    5000,
    'echo',
  );
}

function sessionsOf(): DangaSocket[] {
  return [...DangaSocket.DescriptorMap().values()].filter(
    (o) => o.constructor.name === 'ConsoleConnection',
  );
}

beforeEach(() => {
  loopDone = DangaSocket.EventLoop();
});

afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets.clear();
  DangaSocket.Reset();
  await loopDone;
  loopDone = null;
});

describe('ManagementConsole line protocol', () => {
  it('lists every object of the loop with sockets, one line each: id, class, asString, queue, watch, age, bytes', async () => {
    const { listener, clients } = await daemon(2);
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    const out = await op.command('sockets');
    const lines = out.split('\n');
    // One line per object of the descriptor map, nothing else (API §11).
    expect(lines).toHaveLength(DangaSocket.DescriptorMap().size);
    for (const obj of DangaSocket.DescriptorMap().values()) {
      const row = lines.find((l) => l.startsWith(`${obj.id} `));
      expect(row).toBeDefined();
      expect(row?.startsWith(`${obj.id} ${obj.constructor.name} ${obj.asString()}  wq=`)).toBe(
        true,
      );
    }
    for (const c of clients) {
      const row = lines.find((l) => l.includes(`to 127.0.0.1:${c.localPort} `));
      // id, class, asString(), write queue, watched events, age, bytes in (the 8-byte
      // greeting), out
      expect(row).toMatch(
        new RegExp(
          `^\\d+ DemoEcho DemoEcho\\(R\\): open to 127\\.0\\.0\\.1:${c.localPort}  ` +
            `wq=0 watch=R age=\\d+\\.\\d in=8 out=8$`,
        ),
      );
    }
    expect(out).toMatch(new RegExp(`^${listener.id} Listener `, 'm'));
    expect(out).toMatch(/ Listener\(R\): .* watch=R /);
    expect(out).toMatch(/ ManagementConsole .* watch=R /);
    expect(out).toMatch(/ ConsoleConnection .* watch=R /); // the operator's own session
  });

  it('show <id> tells everything about one object; a bad or unknown id is an error line', async () => {
    const { clients } = await daemon(1);
    const c = clients[0] as net.Socket;
    const obj = [...DangaSocket.DescriptorMap().values()].find((o) => o instanceof DemoEcho);
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    const out = await op.command(`show ${obj?.id}`);
    expect(out).toContain(`id: ${obj?.id}`);
    expect(out).toContain('class: DemoEcho');
    expect(out).toContain(`peer: 127.0.0.1:${c.localPort}`);
    expect(out).toContain('watch: R');
    expect(out).toContain('write_queue_bytes: 0');
    expect(out).toContain('bytes_in: 8');
    expect(out).toMatch(/age_s: \d+\.\d{3}/);
    expect(await op.command('show 1')).toBe('ERROR: no object with id 1');
    expect(await op.command('show')).toBe('ERROR: usage: show <id>');
    expect(await op.command('show abc')).toBe('ERROR: usage: show <id>');
  });

  it('profile on, traffic, profile show: the busy class appears; off keeps the data; reset clears it', async () => {
    const { clients } = await daemon(2);
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    expect(await op.command('profile')).toBe('profiling is off');
    expect(await op.command('profile on')).toBe('profiling on (data cleared)');
    expect(await op.command('profile on')).toBe('profiling already on (data kept)');
    for (let i = 0; i < 20; i++) {
      for (const c of clients) await echoOnce(c, `ping ${i}\n`);
    }
    const shown = await op.command('profile show');
    expect(shown.split('\n')[0]).toBe('profiling is on');
    const m = /^DemoEcho-read\s+[\d.]+\s+[\d.]+\s+(\d+)\s+[\d.]+$/m.exec(shown);
    expect(m).not.toBeNull();
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(40);
    expect(shown).toMatch(/^ConsoleConnection-read\s/m); // the console's own work is measured too
    expect(await op.command('profile off')).toBe('profiling off (data kept: profile show)');
    expect(await op.command('profile show')).toMatch(/^DemoEcho-read\s/m);
    expect(await op.command('profile reset')).toBe('profiling data cleared');
    expect(await op.command('profile show')).toBe(
      'profiling is off\n' +
        'key                                  user_s   system_s      calls  us_per_call\n' +
        '(no data)',
    );
    expect(await op.command('profile sideways')).toBe('ERROR: usage: profile on|off|show|reset');
  });

  it('stats counts loop iterations, objects by class, bytes and memory; timers shows pending timers', async () => {
    await daemon(3);
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    const timer = DangaSocket.AddTimer(60, () => {});
    const stats = await op.command('stats');
    expect(stats).toMatch(/^loop_iterations: [1-9]\d* \(since the console started\)$/m);
    expect(stats).toContain('objects.DemoEcho: 3');
    expect(stats).toContain('objects.ConsoleConnection: 1');
    expect(stats).toMatch(/^bytes_in: \d+ \(open sockets\)$/m);
    expect(Number(/^bytes_in: (\d+)/m.exec(stats)?.[1])).toBeGreaterThanOrEqual(3 * 8);
    expect(stats).toMatch(/^memory\.rss: \d+\.\d MiB$/m);
    expect(stats).toContain(`pid: ${process.pid}`);
    const timers = await op.command('timers');
    expect(timers).toMatch(/^pending: [1-9]/);
    expect(Number(/^next: in ([\d.]+) s$/m.exec(timers)?.[1])).toBeGreaterThan(50);
    timer.cancel();
  });

  it("runs the daemon's own commands (sync and async) in order, with their arguments", async () => {
    let slowDone = false;
    const mc = await ManagementConsole.listen(
      {},
      {
        greet: (args) => `hello ${args.join(',')}`,
        slow: () =>
          new Promise<string>((resolve) =>
            setTimeout(() => {
              slowDone = true;
              resolve('slow done');
            }, 50),
          ),
        broken: () => {
          throw new Error('disk on fire\nsecond line');
        },
        silent: () => 42 as unknown as string,
        dotted: () => '.hidden\nplain',
      },
    );
    const op = await Operator.open(portOf(mc));
    expect(await op.command('greet a b')).toBe('hello a,b');
    expect(await op.command('GREET x')).toBe('hello x'); // command names are case-insensitive
    // Pipelined: the async reply comes first, the next command waits for it.
    op.send('slow\ngreet after\n');
    expect(await op.reply()).toBe('slow done');
    expect(slowDone).toBe(true);
    expect(await op.reply()).toBe('hello after');
    expect(await op.command('broken')).toBe('ERROR: broken failed: disk on fire');
    expect(await op.command('silent')).toBe('ERROR: silent did not return a string');
    expect(await op.command('dotted')).toBe('.hidden\nplain'); // dot-stuffed on the wire
    const help = await op.command('help');
    expect(help).toMatch(/^ {2}sockets /m);
    expect(help).toMatch(/^daemon commands:\n {2}broken\n {2}dotted\n {2}greet\n/m);
  });

  it('answers unknown commands with an error that does not repeat the input, and keeps going', async () => {
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    expect(await op.command('frobnicate secret-words')).toBe('ERROR: unknown command (try "help")');
    op.send('\n\r\n   \n'); // blank lines get no reply
    expect(await op.command('profile')).toBe('profiling is off');
  });

  it('quit says bye and closes', async () => {
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    op.send('quit\nsockets\n');
    expect(await op.rest()).toBe('bye\n');
  });

  it('serves a script that sends its commands and closes its side (printf ... | nc)', async () => {
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    op.sock.end('profile\nprofile on'); // the last line has no newline
    const all = await op.rest();
    expect(all).toBe('profiling is off\n.\nprofiling on (data cleared)\n.\n');
  });

  it('parses commands split across reads, one byte at a time', async () => {
    const mc = await ManagementConsole.listen({}, { ping: () => 'pong' });
    const op = await Operator.open(portOf(mc));
    op.sock.setNoDelay(true);
    for (const ch of 'ping\n') {
      op.send(ch);
      await new Promise((r) => setTimeout(r, 15));
    }
    expect(await op.reply()).toBe('pong');
  });
});

describe('ManagementConsole faults and bad input', () => {
  it('answers binary garbage with error lines; other sessions and the daemon are unaffected', async () => {
    const { clients } = await daemon(1);
    const mc = await ManagementConsole.listen({});
    const bystander = await Operator.open(portOf(mc));
    const vandal = await Operator.open(portOf(mc));
    const garbage = randomBytes(64 * 1024);
    // Keep it free of newlines except where we put them, so the replies can be counted.
    for (let i = 0; i < garbage.length; i++) if (garbage[i] === 10) garbage[i] = 0;
    for (let i = 1000; i < garbage.length; i += 1000) garbage[i] = 10;
    vandal.send(Buffer.concat([Buffer.from([0x00, 0xff, 0xfe]), garbage, Buffer.from('\n')]));
    const replies: string[] = [];
    // 65 newlines inside, one at the end: 66 lines, each answered.
    for (let i = 0; i < 66; i++) replies.push(await vandal.reply());
    for (const r of replies)
      expect(r).toMatch(/^ERROR: (unknown command \(try "help"\)|line too long)/);
    expect(await vandal.command('profile')).toBe('profiling is off');
    expect(await bystander.command('profile')).toBe('profiling is off');
    await echoOnce(clients[0] as net.Socket, 'still echoing\n');
  });

  it('answers a 1 MB line with one error line and then reads the next command', async () => {
    const mc = await ManagementConsole.listen({});
    const op = await Operator.open(portOf(mc));
    op.send(Buffer.alloc(1024 * 1024, 'a'));
    op.send('\nprofile\n');
    expect(await op.reply()).toBe('ERROR: line too long (limit 4096 bytes)');
    expect(await op.reply()).toBe('profiling is off');
    // A line of exactly the limit is still a command (unknown, but not too long).
    expect(await op.command('x'.repeat(4096))).toBe('ERROR: unknown command (try "help")');
    expect(await op.command('x'.repeat(4097))).toBe('ERROR: line too long (limit 4096 bytes)');
  });

  it('drops a client that sends commands but never reads the replies; nobody else notices', async () => {
    const big = 'x'.repeat(256 * 1024);
    const mc = await ManagementConsole.listen({}, { big: () => big });
    const bystander = await Operator.open(portOf(mc));
    const hog = await connect(portOf(mc));
    hog.pause(); // never reads
    await within(
      (async () => {
        while (sessionsOf().length < 2) await new Promise((r) => setTimeout(r, 5));
      })(),
      5000,
      'hog session',
    );
    const hogSession = sessionsOf().find(
      (o) => o.peerAddrString() === `127.0.0.1:${hog.localPort}`,
    ) as DangaSocket;
    let maxQueue = 0;
    const watch = setInterval(() => {
      maxQueue = Math.max(maxQueue, hogSession.writeBufSize);
    }, 1);
    try {
      // More replies than this machine's kernel buffers hold, plus the 1 MiB allowance.
      const n = Math.ceil((beyondKernelBuffers() + 1024 * 1024) / big.length) + 4;
      hog.write('big\n'.repeat(n));
      expect(await within(hogSession.whenClosed(), 10000, 'hog dropped')).toBe('console_backlog');
    } finally {
      clearInterval(watch);
    }
    expect(maxQueue).toBeLessThanOrEqual(1024 * 1024 + big.length + 64);
    expect(await bystander.command('profile')).toBe('profiling is off');
  });

  it('binds a non-loopback address only with a token', () => {
    const err = caught(() => ManagementConsole.listen({ host: '0.0.0.0' }));
    expect(err.code).toBe('DS_ERR_INVALID_ARG');
    expect(err.message).toContain('without a token');
    expect(caught(() => ManagementConsole.listen({ host: '192.0.2.1', port: 0 })).code).toBe(
      'DS_ERR_INVALID_ARG',
    );
    expect(caught(() => ManagementConsole.listen({ host: 'example.com' })).code).toBe(
      'DS_ERR_INVALID_ARG',
    );
  });

  it('with a token: nothing works before auth, a wrong token is refused and closes, never echoed', async () => {
    const mc = await ManagementConsole.listen({ token: TOKEN });
    expect(mc.requiresToken).toBe(true);
    const a = await Operator.open(portOf(mc));
    expect(await a.command('sockets')).toBe('ERROR: authentication required: auth <token>');
    expect(await a.command('help')).toBe('ERROR: authentication required: auth <token>');
    const wrong = TOKEN.slice(0, -1) + (TOKEN.endsWith('0') ? '1' : '0');
    a.send(`auth ${wrong}\nsockets\n`);
    const all = await a.rest();
    expect(all).toBe('ERROR: authentication failed\n.\n');
    expect(all).not.toContain(wrong);

    const b = await Operator.open(portOf(mc));
    expect(await b.command(`auth ${TOKEN}`)).toBe('OK authenticated');
    expect(await b.command('profile')).toBe('profiling is off');
    const listing = await b.command('sockets');
    expect(listing).toMatch(/ConsoleConnection/);
    expect(listing).not.toContain(TOKEN);

    const c = await Operator.open(portOf(mc));
    c.send('auth\n');
    expect(await c.rest()).toBe('ERROR: authentication failed\n.\n');
  });

  it('with a token, /stats.json needs Authorization: Bearer <token>', async () => {
    const mc = await ManagementConsole.listen({ token: TOKEN });
    const port = portOf(mc);
    const none = await http(port, get('/stats.json'));
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer /);
    const wrong = await http(
      port,
      get('/stats.json', 'Authorization: Bearer nope-nope-nope-nope\r\n'),
    );
    expect(wrong.status).toBe(401);
    expect(wrong.body).not.toContain('nope');
    const right = await http(port, get('/stats.json', `Authorization: Bearer ${TOKEN}\r\n`));
    expect(right.status).toBe(200);
    expect(JSON.parse(right.body)).toHaveProperty('objects');
    expect(right.body).not.toContain(TOKEN);
    // The page itself carries no data, so it loads without the token and asks for it.
    const page = await http(port, get('/'));
    expect(page.status).toBe(200);
    expect(page.body).not.toContain(TOKEN);
  });

  it('checks its arguments', () => {
    const bad: [unknown, unknown][] = [
      [null, undefined],
      ['127.0.0.1', undefined],
      [{ port: -1 }, undefined],
      [{ port: 1.5 }, undefined],
      [{ host: 42 }, undefined],
      [{ path: '' }, undefined],
      [{ path: '/tmp/x.sock', port: 1 }, undefined],
      [{ token: 'short' }, undefined],
      [{ token: 'has a space in the middle of it' }, undefined],
      [{ token: 1234567890123456 }, undefined],
      [{}, 'commands'],
      [{}, { Bad: () => '' }],
      [{}, { 'has space': () => '' }],
      [{}, { sockets: () => '' }],
      [{}, { auth: () => '' }],
      [{}, { fine: 'not a function' }],
    ];
    for (const [options, commands] of bad) {
      const err = caught(() => ManagementConsole.listen(options as never, commands as never));
      expect(err.code).toBe('DS_ERR_INVALID_ARG');
    }
    const tokenErr = caught(() =>
      ManagementConsole.listen({ host: '0.0.0.0', token: 'has a space in the middle of it' }),
    );
    expect(tokenErr.message).not.toContain('middle');
  });

  it('rejects with DS_ERR_LISTEN when the port is taken', async () => {
    const mc = await ManagementConsole.listen({});
    await expect(ManagementConsole.listen({ port: portOf(mc) })).rejects.toMatchObject({
      code: 'DS_ERR_LISTEN',
    });
  });

  it('listens on a Unix socket without a token', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-console-'));
    try {
      const sockPath = path.join(dir, 'console.sock');
      const mc = await ManagementConsole.listen({ path: sockPath });
      expect(mc.address()).toBe(sockPath);
      const op = await Operator.open(sockPath);
      expect(await op.command('stats')).toMatch(/^objects: \d+$/m);
    } finally {
      DangaSocket.Reset();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('close() stops listening and ends every console session', async () => {
    const mc = await ManagementConsole.listen({});
    expect(mc).toBeInstanceOf(Listener);
    const op = await Operator.open(portOf(mc));
    expect(await op.command('profile')).toBe('profiling is off');
    mc.close('done');
    await within(op.rest(), 5000, 'session closed');
    expect(await mc.whenClosed()).toBe('done');
    expect(sessionsOf()).toHaveLength(0);
  });
});

describe('ManagementConsole HTTP', () => {
  it('serves the status page and /stats.json on the same port', async () => {
    const { clients } = await daemon(2);
    const mc = await ManagementConsole.listen({});
    const port = portOf(mc);
    const page = await http(port, get('/'));
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['connection']).toBe('close');
    expect(Number(page.headers['content-length'])).toBe(Buffer.byteLength(page.body));
    expect(page.body).toMatch(/^<!doctype html>/);
    // Self-contained: no external scripts, styles or images.
    expect(page.body).not.toMatch(/\b(src|href)="(https?:)?\/\//);
    const nonce = /<script nonce="([^"]+)">/.exec(page.body)?.[1];
    expect(page.headers['content-security-policy']).toContain(`script-src 'nonce-${nonce}'`);

    const stats = await http(port, get('/stats.json?x=1'));
    expect(stats.status).toBe(200);
    expect(stats.headers['content-type']).toBe('application/json');
    const json = JSON.parse(stats.body) as {
      objects: number;
      sockets: { id: number; class: string; description: string; bytesIn: number }[];
      profile: unknown[];
    };
    expect(json.objects).toBe(json.sockets.length);
    for (const c of clients) {
      const row = json.sockets.find((s) => s.description.endsWith(`:${c.localPort}`));
      expect(row).toMatchObject({ class: 'DemoEcho', bytesIn: 8 });
    }
    expect(json.profile).toEqual([]);
  });

  it('answers HEAD without a body, 404 elsewhere, 400 for a malformed request line', async () => {
    const mc = await ManagementConsole.listen({});
    const port = portOf(mc);
    const head = await http(port, 'HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n');
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBeGreaterThan(1000);
    expect(head.body).toBe('');
    expect((await http(port, get('/admin'))).status).toBe(404);
    expect((await http(port, 'GET /\r\n\r\n')).status).toBe(400);
    // Split in the middle of "GET " and of the head.
    const s = await connect(port);
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    const closed = new Promise((r) => s.once('close', r));
    s.setNoDelay(true);
    for (const part of ['GE', 'T /stats.j', 'son HTTP/1.1\r\nHost: 127.0.0.1\r', '\n\r\n']) {
      s.write(part);
      await new Promise((r) => setTimeout(r, 20));
    }
    await within(closed, 5000, 'split request');
    expect(Buffer.concat(chunks).toString()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  });

  it('refuses foreign Host names without a token (DNS rebinding) and never runs a POST body', async () => {
    const mc = await ManagementConsole.listen({});
    const port = portOf(mc);
    const rebound = await http(port, 'GET /stats.json HTTP/1.1\r\nHost: evil.example:80\r\n\r\n');
    expect(rebound.status).toBe(403);
    expect((await http(port, get('/').replace('127.0.0.1', 'localhost:1234'))).status).toBe(200);
    expect((await http(port, get('/').replace('127.0.0.1', '[::1]:1234'))).status).toBe(200);
    // A browser's cross-site form post, with console commands as its body.
    const post = await http(
      port,
      'POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 11\r\n\r\nprofile on\n',
    );
    expect(post.status).toBe(405);
    const op = await Operator.open(port);
    expect(await op.command('profile')).toBe('profiling is off');
  });

  it('answers an oversized request head with 431', async () => {
    const mc = await ManagementConsole.listen({});
    const res = await http(portOf(mc), `GET / HTTP/1.1\r\nX-Junk: ${'j'.repeat(10000)}\r\n\r\n`);
    expect(res.status).toBe(431);
  });
});
