import { createHash, timingSafeEqual } from 'node:crypto';
import * as net from 'node:net';
import { DangaSocket } from './danga-socket';
import { DangaSocketError, describe, invalidArg } from './errors';
import { loop } from './event-loop';
import {
  CommandError,
  ConsoleConnection,
  hostHeaderName,
  type ConsoleHost,
} from './internal/console-connection';
import {
  profileText,
  showText,
  socketsText,
  statsJson,
  statsText,
  timersText,
} from './internal/console-report';
import { Listener } from './listener';

/** A daemon's own console command: gets the words after its name, returns the reply text. */
export type ConsoleCommand = (args: string[]) => string | Promise<string>;

/** The daemon's own commands by name (lower-case letters, digits, `-`, `_`). */
export type ConsoleCommands = Record<string, ConsoleCommand>;

/** Where the console listens, and its token. */
export interface ManagementConsoleOptions {
  /** Default `127.0.0.1`. Any non-loopback address requires `token`. */
  host?: string | undefined;
  /** Default 0 (any free port; read it back with `address()`). */
  port?: number | undefined;
  /** A Unix socket path instead of host and port (protect it with directory permissions). */
  path?: string | undefined;
  /**
   * Required for non-loopback hosts, optional otherwise: line `auth <token>`, HTTP
   * `Authorization: Bearer <token>`. 16 to 1024 printable ASCII characters, no spaces.
   */
  token?: string | undefined;
}

/** Rows of the `/stats.json` connections table; `sockets` on the line protocol lists all. */
const MAX_JSON_SOCKETS = 1000;
const MIN_TOKEN = 16;
const MAX_TOKEN = 1024;
const COMMAND_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
const BUILTINS = ['help', 'sockets', 'show', 'profile', 'timers', 'stats', 'auth', 'quit'];

const HELP = [
  'help                      this list',
  'sockets                   one line per object: id, class, asString(), wq= write-queue bytes,',
  '                          watch= watched events, age= seconds, in=/out= bytes',
  'show <id>                 everything known about one object',
  'profile on|off|show|reset per-class, per-hook CPU time (on starts afresh; off keeps the data)',
  'timers                    pending timers, the next one, the loop timeout',
  'stats                     loop iterations, objects by class, bytes in/out, memory',
  'auth <token>              authenticate (consoles that have a token)',
  'quit                      close this connection',
];

/** Loopback by name or address: the only hosts a console may bind without a token. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

function optionalString(v: unknown, name: string): string | undefined {
  if (v !== undefined && (typeof v !== 'string' || v === '')) {
    throw invalidArg(`ManagementConsole: ${name} must be a non-empty string, got ${describe(v)}`);
  }
  return v;
}

function optionalPort(v: unknown): number | undefined {
  if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535)) {
    throw invalidArg(`ManagementConsole: port must be an integer 0..65535, got ${describe(v)}`);
  }
  return v;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

interface ConsoleConfig {
  readonly listen: net.ListenOptions;
  readonly where: string;
  readonly tokenDigest: Buffer | null;
  readonly loopbackOnly: boolean;
  readonly commands: Map<string, ConsoleCommand>;
}

function checkConfig(options: unknown, commands: unknown): ConsoleConfig {
  if (typeof options !== 'object' || options === null) {
    throw invalidArg(
      `ManagementConsole.listen expects an options object, got ${describe(options)}`,
    );
  }
  const o = options as Record<string, unknown>;
  const host = optionalString(o.host, 'host');
  const port = optionalPort(o.port);
  const path = optionalString(o.path, 'path');
  if (path !== undefined && (host !== undefined || port !== undefined)) {
    throw invalidArg('ManagementConsole: give either path or host/port, not both');
  }
  // Never put the token itself into an error message.
  const token = o.token;
  if (token !== undefined && typeof token !== 'string') {
    throw invalidArg(`ManagementConsole: token must be a string, got ${typeof token}`);
  }
  if (
    token !== undefined &&
    (token.length < MIN_TOKEN || token.length > MAX_TOKEN || !/^[\x21-\x7e]+$/.test(token))
  ) {
    throw invalidArg(
      `ManagementConsole: token must be ${MIN_TOKEN} to ${MAX_TOKEN} printable ASCII characters without spaces`,
    );
  }
  const bindHost = host ?? '127.0.0.1';
  if (path === undefined && token === undefined && !isLoopbackHost(bindHost)) {
    throw invalidArg(
      `ManagementConsole: refusing to listen on non-loopback ${bindHost} without a token`,
    );
  }
  const table = new Map<string, ConsoleCommand>();
  if (commands !== undefined) {
    if (typeof commands !== 'object' || commands === null) {
      throw invalidArg(`ManagementConsole: commands must be an object, got ${describe(commands)}`);
    }
    for (const [name, fn] of Object.entries(commands)) {
      if (!COMMAND_NAME.test(name)) {
        throw invalidArg(
          `ManagementConsole: command name ${JSON.stringify(name.slice(0, 40))} must match ${String(COMMAND_NAME)}`,
        );
      }
      if (BUILTINS.includes(name)) {
        throw invalidArg(`ManagementConsole: command ${name} is built in`);
      }
      if (typeof fn !== 'function') {
        throw invalidArg(
          `ManagementConsole: command ${name} must be a function, got ${describe(fn)}`,
        );
      }
      table.set(name, fn as ConsoleCommand);
    }
  }
  const listen: net.ListenOptions =
    path !== undefined ? { path } : { host: bindHost, port: port ?? 0 };
  return {
    listen,
    where: path ?? `${bindHost}:${port ?? 0}`,
    tokenDigest: token === undefined ? null : digest(token),
    loopbackOnly: path === undefined && token === undefined,
    commands: table,
  };
}

/**
 * `Listener` without its statics: `ManagementConsole.listen` has its own signature (options and
 * commands, not an accept callback), which TypeScript would otherwise check against
 * `Listener.listen`. Instances are still `instanceof Listener`.
 */
const ListenerBase: new (...args: ConstructorParameters<typeof Listener>) => Listener = Listener;

/**
 * Perlbal's management console for any daemon on the loop: a `Listener` whose connections
 * speak a line protocol (`help`, `sockets`, `show <id>`, `profile on|off|show|reset`,
 * `timers`, `stats`, `quit`, and the daemon's own commands) and, on the same port, HTTP:
 * `GET /` is a live status page, `GET /stats.json` its data. Its connections are objects in
 * the same loop, so the console answers between other objects' events and sees them as they
 * are. Replies end with a line `.`; errors are one line `ERROR: …` and then `.`.
 */
export class ManagementConsole extends ListenerBase {
  private readonly config: ConsoleConfig;
  private readonly sessions = new Set<ConsoleConnection>();
  private iterations = 0;
  private readonly sessionHost: ConsoleHost;

  private constructor(server: net.Server, config: ConsoleConfig) {
    const host: { console?: ManagementConsole } = {};
    super(server, (sock) => {
      const c = host.console as ManagementConsole;
      if (sock instanceof net.Socket) c.sessions.add(new ConsoleConnection(sock, c.sessionHost));
    });
    host.console = this;
    this.config = config;
    this.sessionHost = {
      needsAuth: config.tokenDigest !== null,
      tokenMatches: (candidate) => this.tokenMatches(candidate),
      run: (name, args) => this.run(name, args),
      statsJson: () => statsJson(this.iterations, MAX_JSON_SOCKETS),
      hostAllowed: (hostHeader) => this.hostAllowed(hostHeader),
      forget: (conn) => {
        this.sessions.delete(conn);
      },
    };
    // Counts loop iterations from now on (a post-loop callback runs once per iteration).
    this.setPostLoopCallback(() => {
      this.iterations++;
      return true;
    });
  }

  /**
   * Listen for operators. Bad options throw synchronously.
   * @param options where to listen (default `127.0.0.1`, any port) and the token.
   * @param commands the daemon's own commands; names may not shadow built-in ones.
   * @returns the console, already listening (`address()` gives the port).
   * @throws DangaSocketError `DS_ERR_INVALID_ARG` for bad options or commands, and for a
   *   non-loopback host without `token`; the promise rejects with `DS_ERR_LISTEN` if
   *   listening fails.
   */
  static listen(
    options: ManagementConsoleOptions,
    commands?: ConsoleCommands,
  ): Promise<ManagementConsole> {
    const config = checkConfig(options, commands);
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
    return new Promise<ManagementConsole>((resolve, reject) => {
      const onError = (err: Error): void => {
        server.close();
        reject(
          new DangaSocketError('DS_ERR_LISTEN', `console listen ${config.where}: ${err.message}`, {
            cause: err,
          }),
        );
      };
      server.once('error', onError);
      server.listen(config.listen, () => {
        server.removeListener('error', onError);
        try {
          resolve(new ManagementConsole(server, config));
        } catch (err) {
          server.close();
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  }

  /** Whether connections must authenticate (the console has a token). */
  get requiresToken(): boolean {
    return this.config.tokenDigest !== null;
  }

  /** Stop listening and close every console connection. */
  override close(reason?: string): void {
    const wasOpen = !this.closed;
    super.close(reason);
    if (!wasOpen) return;
    for (const s of [...this.sessions]) s.close('console_closed');
    this.sessions.clear();
  }

  private tokenMatches(candidate: string): boolean {
    const expected = this.config.tokenDigest;
    if (expected === null) return true;
    // Equal-length digests: the comparison takes the same time whatever the candidate.
    return timingSafeEqual(digest(candidate), expected);
  }

  /** Without a token the console is loopback-only: refuse other Host names (DNS rebinding). */
  private hostAllowed(host: string | undefined): boolean {
    if (!this.config.loopbackOnly || host === undefined) return true;
    const name = hostHeaderName(host);
    return isLoopbackHost(name) || name.endsWith('.localhost');
  }

  private run(name: string, args: string[]): string | Promise<string> {
    switch (name) {
      case 'help':
        return this.help();
      case 'sockets':
        return socketsText();
      case 'show': {
        const id = args.length === 1 && /^\d+$/.test(args[0] as string) ? Number(args[0]) : NaN;
        if (Number.isNaN(id)) throw new CommandError('usage: show <id>');
        const text = showText(id);
        if (text === undefined) throw new CommandError(`no object with id ${id}`);
        return text;
      }
      case 'profile':
        return this.profile(args);
      case 'timers':
        return timersText();
      case 'stats':
        return statsText(this.iterations);
    }
    const fn = this.config.commands.get(name);
    if (fn === undefined) throw new CommandError('unknown command (try "help")');
    return fn(args);
  }

  private help(): string {
    const lines = ['commands:', ...HELP.map((l) => `  ${l}`)];
    if (this.config.commands.size > 0) {
      lines.push('daemon commands:');
      for (const name of [...this.config.commands.keys()].sort()) lines.push(`  ${name}`);
    }
    lines.push('replies end with a line "."; errors are a line "ERROR: ..."');
    return lines.join('\n');
  }

  private profile(args: string[]): string {
    const what = args.length === 0 ? 'status' : (args[0] as string).toLowerCase();
    if (args.length > 1) throw new CommandError('usage: profile on|off|show|reset');
    switch (what) {
      case 'status':
        return `profiling is ${loop.profiling ? 'on' : 'off'}`;
      case 'on':
        if (loop.profiling) return 'profiling already on (data kept)';
        DangaSocket.EnableProfiling();
        return 'profiling on (data cleared)';
      case 'off':
        DangaSocket.DisableProfiling();
        return 'profiling off (data kept: profile show)';
      case 'reset': {
        const data = DangaSocket.ProfilingData();
        for (const k of Object.keys(data)) delete data[k];
        return 'profiling data cleared';
      }
      case 'show':
        return profileText();
      default:
        throw new CommandError('usage: profile on|off|show|reset');
    }
  }
}
