import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ts from 'typescript';
import {
  DangaSocket,
  Listener,
  ManagementConsole,
  PeriodicTimer,
  PersistentConnection,
  StreamSocket,
  connect,
} from '../lib';

// Compile-only specs of the shipped declarations (API §10, "Types"). Small programs import
// `danga-socket` the way a consuming project does (package.json `exports` → dist/lib/*.d.ts)
// and are type-checked, with the .d.ts themselves, under a consumer's strictest settings:
// `strict`, `exactOptionalPropertyTypes`, `skipLibCheck: false`, `lib: ES2020`, only
// `@types/node`. One Program checks everything.
//
// The negative checks use `// @ts-expect-error TSnnnn`. TypeScript reports an unused directive
// (TS2578), so "zero diagnostics" fails when a mistake stops being an error; and the same file
// with the directives blanked out must fail with exactly the named codes on exactly those
// lines, so each directive catches the mistake it is about, not some other error.

const ROOT = path.resolve(__dirname, '..');
const DIST_LIB = path.join(ROOT, 'dist', 'lib');

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p, ext));
    else if (entry.name.endsWith(ext)) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** `npm test` builds first (pretest); a lone `npx jest spec/types.spec.ts` may find dist stale. */
function ensureBuilt(): void {
  const index = path.join(DIST_LIB, 'index.d.ts');
  const built = fs.existsSync(index) ? newestMtime(DIST_LIB, '.d.ts') : 0;
  if (built >= newestMtime(path.join(ROOT, 'lib'), '.ts')) return;
  try {
    execFileSync(
      process.execPath,
      [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      { cwd: ROOT, stdio: 'pipe', encoding: 'utf8' },
    );
  } catch (err) {
    const out = (err as { stdout?: unknown }).stdout;
    throw new Error(`npm run build failed:\n${String(out)}`, { cause: err });
  }
}

/** The shipped declarations whose source still exists (dist is never cleaned of old files). */
function shippedDeclarations(dir = DIST_LIB): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...shippedDeclarations(p));
    else if (entry.name.endsWith('.d.ts')) {
      const source = path
        .join(ROOT, path.relative(path.join(ROOT, 'dist'), p))
        .replace(/\.d\.ts$/, '.ts');
      if (fs.existsSync(source)) out.push(p);
    }
  }
  return out;
}

const HEADER = `
import * as net from 'node:net';
import {
  AbsoluteTimer,
  connect,
  connectDanga,
  CountdownTimer,
  DangaSocket,
  DangaSocketError,
  Listener,
  ManagementConsole,
  onSignal,
  PeriodicTimer,
  PersistentConnection,
  SocketAlarm,
  StreamSocket,
  type ConnectDangaOptions,
  type ConnectOptions,
  type EventLoopOptions,
  type ListenOptions,
  type ManagementConsoleOptions,
  type PersistentConnectionOptions,
  type SignalWatch,
  type SocketAlarmOptions,
  type StreamSocketOptions,
} from 'danga-socket';

declare const sock: net.Socket;
declare const maybeNumber: number | undefined;
declare const maybeString: string | undefined;
declare const maybeBool: boolean | undefined;
declare const maybeSignal: AbortSignal | undefined;

export class Echo extends DangaSocket {
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
export const echo = new Echo(sock);
`;

/** What must compile. */
const ACCEPT = `${HEADER}
// eventWrite has a default; subclasses of the library's concrete classes need nothing more.
export class Lines extends StreamSocket {}
export class Accepting extends Listener {}

export const written: boolean[] = [
  echo.write('text'),
  echo.write(Buffer.from('bytes')),
  echo.write(new Uint8Array(1)),
  echo.write(() => echo.close('done')),
  echo.write(undefined),
  echo.write(),
];

// Signals by name, by name without SIG, and by number; the callback gets the name.
export const watches: SignalWatch[] = [
  onSignal('SIGTERM', (sig: NodeJS.Signals) => void sig),
  onSignal('HUP', () => {}),
  onSignal(15, () => {}),
];

// Every optional field takes an explicit undefined (exactOptionalPropertyTypes).
const connectOptions: ConnectOptions = {
  host: maybeString,
  port: 7000,
  service: undefined,
  addrs: undefined,
  addr: undefined,
  path: undefined,
  peer: undefined,
  family: undefined,
  localHost: maybeString,
  localPort: maybeNumber,
  lookup: undefined,
  signal: maybeSignal,
  timeoutMs: maybeNumber,
  attemptTimeoutMs: maybeNumber,
  resolveTimeoutMs: maybeNumber,
  happyEyeballs: maybeBool,
  happyEyeballsDelayMs: maybeNumber,
  onConnected: undefined,
  backend: undefined,
  onConnectError: undefined,
  onResolveError: undefined,
  onFail: undefined,
  tls: undefined,
};
export const connected: Promise<net.Socket> = connect({ host: 'localhost', port: 80, timeoutMs: maybeNumber });
export const viaAddr: Promise<net.Socket> = connect({ addr: { host: '::1', port: 80, family: undefined } });
const dangaOptions: ConnectDangaOptions = { port: 7000, host: maybeString, timeoutMs: maybeNumber };
export const dialed: Promise<Echo> = connectDanga(Echo, dangaOptions);

const listenOptions: ListenOptions = {
  port: maybeNumber,
  host: maybeString,
  path: undefined,
  backlog: maybeNumber,
  tls: undefined,
  reusePort: maybeBool,
  proxyProtocol: undefined,
  proxyHeaderTimeoutMs: maybeNumber,
  backend: undefined,
};
export const listening: Promise<Listener> = Listener.listen(listenOptions, (s) => new Echo(s));

const streamOptions: StreamSocketOptions = {
  onRead: undefined,
  onReadEof: undefined,
  onReadError: undefined,
  onWriteError: undefined,
  onReadHighWatermark: undefined,
  onReadLowWatermark: undefined,
  onWriteHighWatermark: undefined,
  onWritable: undefined,
  onOutgoingEmpty: undefined,
  readLen: maybeNumber,
  readHighWatermark: maybeNumber,
  readLowWatermark: maybeNumber,
  writeHighWatermark: maybeNumber,
  writeLowWatermark: maybeNumber,
  closeOnReadEof: maybeBool,
};
export const stream = new StreamSocket(sock, streamOptions);

export const periodic = new PeriodicTimer({
  intervalS: 1,
  onTick: () => {},
  reschedule: undefined,
  firstIntervalS: maybeNumber,
});
export const countdown = new CountdownTimer({ delayS: 1, onExpire: () => {} });
export const absolute = new AbsoluteTimer({ time: Date.now() / 1000, onExpire: () => {} });

const alarmOptions: SocketAlarmOptions = { socket: sock, events: maybeNumber, actions: undefined };
export const alarm = new SocketAlarm(alarmOptions);

const consoleOptions: ManagementConsoleOptions = {
  host: maybeString,
  port: maybeNumber,
  path: undefined,
  token: maybeString,
};
export const console_: Promise<ManagementConsole> = ManagementConsole.listen(consoleOptions);

const persistentOptions: PersistentConnectionOptions<Echo, ConnectDangaOptions> = {
  serverName: 'upstream',
  getAddress: () => dangaOptions,
  connect: (options, context) => connectDanga(Echo, { ...options, signal: context.signal }),
  onEvent: undefined,
  retryDelayMs: maybeNumber,
  random: undefined,
  clock: undefined,
  addressEqual: undefined,
  errorEqual: undefined,
  onHandlerError: undefined,
};
export const persistent = new PersistentConnection(persistentOptions);

const loopOptions: EventLoopOptions = { signal: maybeSignal };
export const looped: Promise<void> = DangaSocket.EventLoop(loopOptions);

// The error's cause is typed without ES2022's lib.
declare const err: DangaSocketError;
export const cause: unknown = err.cause;
`;

/** What must not compile: each directive names the error code it expects on the next line. */
const REJECT = `${HEADER}
// @ts-expect-error TS2654 eventErr and eventHup are abstract
export class OnlyRead extends DangaSocket {
  override eventRead(): void {}
}

// @ts-expect-error TS2515 eventHup is abstract
export class NoHup extends DangaSocket {
  override eventRead(): void {}
  override eventErr(): void {}
}

// @ts-expect-error TS2511 DangaSocket itself is abstract
export const base = new DangaSocket(sock);

// @ts-expect-error TS2345 a misspelled signal name
onSignal('SIGINTT', () => {});

// @ts-expect-error TS2345 a misspelled short name
onSignal('INTT', () => {});

// @ts-expect-error TS2769 a wrong option type (connect is overloaded)
void connect({ host: 'localhost', port: 80, timeoutMs: '5000' });

// @ts-expect-error TS2322 a wrong option type
export const badStream = new StreamSocket(sock, { readLen: '4096' });

// @ts-expect-error TS2322 a wrong option type
void Listener.listen({ port: '7000' }, (s) => new Echo(s));

// @ts-expect-error TS2322 a wrong option type
export const badTimer = new PeriodicTimer({ intervalS: 1, onTick: () => {}, reschedule: 'soft' });

// @ts-expect-error TS2345 write takes bytes, a string or a callback
echo.write(42);
`;

/** The control: a directive over correct code must be reported, or the negatives prove nothing. */
const CONTROL = `${HEADER}
// @ts-expect-error TS2578 (nothing wrong below)
echo.write('fine');
`;

const DIRECTIVE = /^\s*\/\/ @ts-expect-error (TS\d+)/;

interface Found {
  file: string;
  line: number; // 1-based
  code: string;
  text: string;
}

function describeAll(found: readonly Found[]): string {
  return found.map((d) => `${d.file}:${d.line} ${d.code} ${d.text}`).join('\n');
}

describe('the shipped type declarations', () => {
  let tmp = '';
  let found: Found[] = [];
  let files: Record<string, string> = {};

  beforeAll(() => {
    ensureBuilt();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'danga-types-'));
    // A consuming project: node_modules/danga-socket is this package.
    fs.mkdirSync(path.join(tmp, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(tmp, 'node_modules', 'danga-socket'), 'dir');
    files = {
      'accept.ts': ACCEPT,
      'reject.ts': REJECT,
      // The same lines with the directives blanked out (line numbers unchanged).
      'reject-bare.ts': REJECT.split('\n')
        .map((l) => (DIRECTIVE.test(l) ? '//' : l))
        .join('\n'),
      'control.ts': CONTROL,
    };
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(tmp, name), text);

    const { options, errors } = ts.convertCompilerOptionsFromJson(
      {
        strict: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: false,
        lib: ['ES2020'],
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        target: 'ES2020',
        module: 'node16',
        moduleResolution: 'node16',
        noEmit: true,
      },
      tmp,
    );
    expect(errors).toEqual([]);
    const roots = [...Object.keys(files).map((f) => path.join(tmp, f)), ...shippedDeclarations()];
    const program = ts.createProgram(roots, options);
    // Our files only: @types/node is the consumer's, and checking all of it doubles the time.
    const ours = roots.flatMap((r) => {
      const sf = program.getSourceFile(r);
      if (sf === undefined) throw new Error(`not in the program: ${r}`);
      return [...program.getSyntacticDiagnostics(sf), ...program.getSemanticDiagnostics(sf)];
    });
    const all = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...ours];
    found = all.map((d) => {
      const file = d.file === undefined ? '(global)' : d.file.fileName;
      const line =
        d.file === undefined || d.start === undefined
          ? 0
          : d.file.getLineAndCharacterOfPosition(d.start).line + 1;
      return {
        file: file.startsWith(tmp) ? path.basename(file) : path.relative(ROOT, file),
        line,
        code: `TS${d.code}`,
        text: ts.flattenDiagnosticMessageText(d.messageText, ' '),
      };
    });
  }, 300_000);

  afterAll(() => {
    if (tmp !== '') fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('resolves the package through its exports to dist/lib', () => {
    // A wrong resolution would surface as TS2307 in accept.ts; this only names the cause.
    expect(found.filter((d) => d.code === 'TS2307')).toEqual([]);
  });

  it('has no error outside the deliberately failing snippets (the .d.ts under ES2020 included)', () => {
    const unexpected = found.filter((d) => d.file !== 'reject-bare.ts' && d.file !== 'control.ts');
    expect(describeAll(unexpected)).toBe('');
  });

  it('reports an unused @ts-expect-error, so each negative check can fail', () => {
    const control = found.filter((d) => d.file === 'control.ts');
    const line = CONTROL.split('\n').findIndex((l) => DIRECTIVE.test(l)) + 1;
    expect(control.map((d) => `${d.line} ${d.code}`)).toEqual([`${line} TS2578`]);
  });

  it('rejects each mistake with the error its directive names, on that line only', () => {
    const expected: string[] = [];
    (files['reject.ts'] ?? '').split('\n').forEach((l, i) => {
      const m = DIRECTIVE.exec(l);
      if (m !== null) expected.push(`${i + 2} ${m[1]}`);
    });
    expect(expected.length).toBeGreaterThanOrEqual(10);
    const bare = found.filter((d) => d.file === 'reject-bare.ts');
    const got = [...new Set(bare.map((d) => `${d.line} ${d.code}`))];
    expect({ got: got.sort(), all: describeAll(bare) }).toEqual({
      got: expected.sort(),
      all: expect.any(String),
    });
  });
});

describe('an explicit undefined option behaves like an absent one (run time)', () => {
  afterEach(() => DangaSocket.Reset());

  it('in listen, connect, StreamSocket, the timers, PersistentConnection, the console and EventLoop', async () => {
    const listener = await Listener.listen(
      {
        host: '127.0.0.1',
        port: 0,
        path: undefined,
        backlog: undefined,
        tls: undefined,
        reusePort: undefined,
        proxyProtocol: undefined,
        proxyHeaderTimeoutMs: undefined,
        backend: undefined,
      },
      (s) => void s.destroy(),
    );
    const { port } = listener.address() as net.AddressInfo;
    const sock = await connect({
      host: '127.0.0.1',
      port,
      service: undefined,
      family: undefined,
      localHost: undefined,
      localPort: undefined,
      lookup: undefined,
      signal: undefined,
      timeoutMs: undefined,
      attemptTimeoutMs: undefined,
      resolveTimeoutMs: undefined,
      happyEyeballs: undefined,
      happyEyeballsDelayMs: undefined,
      onConnected: undefined,
      backend: undefined,
      onConnectError: undefined,
      onResolveError: undefined,
      onFail: undefined,
      tls: undefined,
    });
    const stream = new StreamSocket(sock, {
      onRead: () => 0,
      onReadEof: undefined,
      onReadError: undefined,
      onWriteError: undefined,
      onReadHighWatermark: undefined,
      onReadLowWatermark: undefined,
      onWriteHighWatermark: undefined,
      onWritable: undefined,
      onOutgoingEmpty: undefined,
      readLen: undefined,
      readHighWatermark: undefined,
      readLowWatermark: undefined,
      writeHighWatermark: undefined,
      writeLowWatermark: undefined,
      closeOnReadEof: undefined,
    });
    expect(stream.closed).toBe(false);

    const periodic = new PeriodicTimer({
      intervalS: 1,
      onTick: () => {},
      reschedule: undefined,
      firstIntervalS: undefined,
    });
    expect([periodic.reschedule, periodic.firstIntervalS]).toEqual(['hard', undefined]);

    const pc = new PersistentConnection<{ close(): void; whenClosed(): Promise<void> }, string>({
      serverName: 'upstream',
      getAddress: () => 'nowhere',
      connect: () => new Promise(() => {}),
      onEvent: undefined,
      retryDelayMs: undefined,
      random: undefined,
      clock: undefined,
      addressEqual: undefined,
      errorEqual: undefined,
      onHandlerError: undefined,
    });
    await pc.close();

    const mc = await ManagementConsole.listen({
      host: undefined,
      port: undefined,
      path: undefined,
      token: undefined,
    });
    expect((mc.address() as net.AddressInfo).address).toBe('127.0.0.1');
    mc.close();

    DangaSocket.SetPostLoopCallback(() => false);
    await DangaSocket.EventLoop({ signal: undefined });
  });
});
