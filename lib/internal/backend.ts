import { describe, invalidArg } from '../errors';
import { nativeEpoll, nativeEpollOrUndefined } from '../native-socket';

/**
 * Which backend new sockets get: `'node'` (a `net.Socket` emulating a descriptor) or `'native'`
 * (a descriptor owned by the addon's epoll set). The process default comes from `DANGA_BACKEND`
 * on first use; an unavailable native backend there falls back to node with one warning.
 */
export type Backend = 'node' | 'native';

let current: Backend | undefined;

function fromEnv(): Backend {
  const env = process.env.DANGA_BACKEND;
  if (env === undefined || env === '' || env === 'node') return 'node';
  if (env === 'native') {
    if (nativeEpollOrUndefined() !== undefined) return 'native';
    process.emitWarning(
      'DANGA_BACKEND=native, but the native backend is unavailable (addon not built, or not ' +
        'Linux); using the node backend',
      { code: 'DANGA_BACKEND_FALLBACK' },
    );
    return 'node';
  }
  process.emitWarning(`DANGA_BACKEND=${env} is neither node nor native; using node`, {
    code: 'DANGA_BACKEND_INVALID',
  });
  return 'node';
}

export function getDefaultBackend(): Backend {
  current ??= fromEnv();
  return current;
}

/** @throws DangaSocketError `DS_ERR_NATIVE_UNAVAILABLE` for 'native' without the addon. */
export function setDefaultBackend(b: Backend): void {
  if (b === 'native') nativeEpoll('DefaultBackend = native');
  current = b;
}

/** Validate a `backend` option (undefined allowed by callers before this). */
export function checkBackend(v: unknown, where: string): Backend {
  if (v !== 'node' && v !== 'native') {
    throw invalidArg(`${where}: backend must be 'node' or 'native', got ${describe(v)}`);
  }
  return v;
}

/**
 * The backend for one call: the explicit option, else the process default.
 * @throws DangaSocketError `DS_ERR_INVALID_ARG`; `DS_ERR_NATIVE_UNAVAILABLE` for an explicit
 *   'native' without the addon.
 */
export function pickBackend(v: unknown, where: string): Backend {
  if (v === undefined) return getDefaultBackend();
  const b = checkBackend(v, where);
  if (b === 'native') nativeEpoll(`${where}({ backend: 'native' })`);
  return b;
}
