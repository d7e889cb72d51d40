import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as net from 'node:net';
import { DangaSocketError } from '../errors';
import { requireNative } from '../native';

/**
 * Listening with `SO_REUSEPORT`, so several processes (or listeners) can bind one port and the
 * kernel spreads new connections over them. Node ≥ 22.12 has `reusePort` in
 * `server.listen()`; Node 20 sets socket options only after bind, too late, so there the addon
 * makes the socket (socket, SO_REUSEPORT, bind) and Node takes it over with `listen({ fd })`.
 */

/** The addon's half (src/reuse_port.cc). */
interface ReusePortBinding {
  bindReusePort(ip: string, port: number): number;
}

/** True if this Node's `server.listen()` takes `reusePort` (22.12+, 23.1+). */
export function nodeHasReusePort(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 12);
}

/**
 * The addon function Node 20 needs, or throw before anything is created.
 * @throws DangaSocketError `DS_ERR_NATIVE_UNAVAILABLE` when the addon (or a build of it with
 *   `bindReusePort`) is missing.
 */
function reusePortBinding(): ReusePortBinding {
  const feature = `reusePort on Node ${process.versions.node} (built into Node from 22.12)`;
  const b: unknown = requireNative(feature);
  const fn: unknown = Reflect.get(b as object, 'bindReusePort');
  if (typeof fn !== 'function') {
    throw new DangaSocketError(
      'DS_ERR_NATIVE_UNAVAILABLE',
      `${feature} needs an addon built with bindReusePort; rebuild it with \`npm rebuild danga-socket\``,
    );
  }
  return b as ReusePortBinding;
}

/** Check, at call time, that `reusePort` can work on this Node. */
export function checkReusePort(): void {
  if (!nodeHasReusePort()) reusePortBinding();
}

/**
 * `server.listen(args, onListening)`, with `SO_REUSEPORT` set before bind when `reusePort`.
 * Failures (resolution, bind) are emitted as the server's `'error'`, as `listen()`'s own are.
 */
export function listenWith(
  server: net.Server,
  args: net.ListenOptions,
  reusePort: boolean,
  onListening: () => void,
): void {
  if (!reusePort) {
    server.listen(args, onListening);
    return;
  }
  if (nodeHasReusePort()) {
    // Not in @types/node 20's ListenOptions; Node 22.12+ reads it.
    server.listen({ ...args, reusePort: true } as net.ListenOptions, onListening);
    return;
  }
  const binding = reusePortBinding();
  const host = args.host ?? '127.0.0.1';
  const withIp = (ip: string): void => {
    let fd: number;
    try {
      fd = binding.bindReusePort(ip, args.port ?? 0);
    } catch (err) {
      server.emit('error', err);
      return;
    }
    try {
      server.listen(
        args.backlog === undefined ? { fd } : { fd, backlog: args.backlog },
        onListening,
      );
    } catch (err) {
      fs.closeSync(fd);
      server.emit('error', err);
    }
  };
  if (net.isIP(host) !== 0) {
    withIp(host);
    return;
  }
  // As net.Server does for a name: the first address the resolver gives.
  dns.lookup(host, (err, address) => {
    if (err !== null) server.emit('error', err);
    else withIp(address);
  });
}
