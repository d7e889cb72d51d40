import * as os from 'node:os';
import * as vm from 'node:vm';
import { DangaSocket } from './danga-socket';
import { describe, invalidArg } from './errors';
import { loop } from './event-loop';

/**
 * POSIX signals as loop events (IO::Async::Signal). The process handler only records the
 * delivery and adds a negative-delay timer, which wakes the loop and runs every watcher at
 * the next timer pass — so callbacks run inside a loop iteration, never in between.
 */

/** A signal name without its `SIG` prefix, e.g. `'HUP'` for `'SIGHUP'`. */
export type SignalShortName = NodeJS.Signals extends infer S
  ? S extends `SIG${infer Short}`
    ? Short
    : never
  : never;

/** Called once per delivery of the signal, inside a loop iteration, with its name. */
export type SignalCallback = (signal: NodeJS.Signals) => void;

/** What `onSignal` returns. */
export interface SignalWatch {
  /** The signal watched, e.g. `'SIGUSR2'`. */
  readonly signal: NodeJS.Signals;
  /** Stop watching. Idempotent; a delivery not yet run no longer calls this watcher. */
  cancel(): void;
}

/**
 * The process object Node delivers signals to. Inside a vm context (jest runs each test file
 * in one) the global `process` is a copy whose listeners never see OS signals; the main
 * context's `process` is the real one. In plain Node both are the same object.
 */
const hostProcess: NodeJS.Process = ((): NodeJS.Process => {
  try {
    const p: unknown = vm.runInThisContext('process');
    if (typeof p === 'object' && p !== null && typeof (p as NodeJS.Process).on === 'function') {
      return p as NodeJS.Process;
    }
  } catch {
    // No main context to reach (unusual embedders): the global is all we have.
  }
  return process;
})();

interface Watcher {
  readonly cb: SignalCallback;
  active: boolean;
}

/** Signal → its watchers (insertion order) and the one process listener installed for them. */
const watched = new Map<NodeJS.Signals, { watchers: Set<Watcher>; listener: () => void }>();
const UNCATCHABLE = new Set(['SIGKILL', 'SIGSTOP']);

loop.resetHooks.push(() => {
  for (const [sig, entry] of watched) {
    for (const w of entry.watchers) w.active = false;
    hostProcess.removeListener(sig, entry.listener);
  }
  watched.clear();
});

/** Number → name (the first name of a number: SIGABRT before SIGIOT, SIGIO before SIGPOLL). */
function nameOfNumber(n: number): string | undefined {
  for (const [name, num] of Object.entries(os.constants.signals)) if (num === n) return name;
  return undefined;
}

function signalName(name: unknown): NodeJS.Signals {
  let sig: string;
  if (typeof name === 'number') {
    const found = Number.isInteger(name) ? nameOfNumber(name) : undefined;
    if (found === undefined) throw invalidArg(`onSignal: unknown signal number ${describe(name)}`);
    sig = found;
  } else if (typeof name === 'string') {
    sig = name.startsWith('SIG') ? name : `SIG${name}`;
    if (!Object.prototype.hasOwnProperty.call(os.constants.signals, sig)) {
      throw invalidArg(`onSignal: unknown signal ${JSON.stringify(name)}`);
    }
  } else {
    throw invalidArg(`onSignal expects a signal name or number, got ${describe(name)}`);
  }
  if (UNCATCHABLE.has(sig)) throw invalidArg(`onSignal: ${sig} cannot be caught`);
  return sig as NodeJS.Signals;
}

function deliver(sig: NodeJS.Signals): void {
  const entry = watched.get(sig);
  if (entry === undefined) return;
  // Snapshot now: a watcher added after this delivery is not called for it.
  const snapshot = [...entry.watchers];
  DangaSocket.AddTimer(-1, () => {
    for (const w of snapshot) {
      if (!w.active) continue;
      try {
        w.cb(sig);
      } catch (err) {
        // One failing watcher must not keep the others from their delivery.
        loop.report(err, { kind: 'timer' });
      }
    }
  });
}

/**
 * Call `cb` once per delivery of signal `name` (`'SIGHUP'`, `'HUP'` or its number, `1`),
 * inside a loop iteration. The types reject a misspelled name. Watchers of one signal run in
 * the order added. The first watcher of a signal installs the process listener (note: for
 * SIGINT/SIGTERM that replaces Node's default exit); cancelling the last removes it. `DangaSocket.Reset()` cancels every watcher. The loop must be
 * running for callbacks to run; deliveries wait for it. Node may merge signals sent in a
 * quick burst, so count on at least one call per burst.
 * @throws DangaSocketError `DS_ERR_INVALID_ARG` for an unknown or uncatchable signal
 *   (SIGKILL, SIGSTOP; also a name in `NodeJS.Signals` this platform lacks, e.g. SIGBREAK)
 *   or a non-function callback.
 */
export function onSignal(
  name: NodeJS.Signals | SignalShortName | number,
  cb: SignalCallback,
): SignalWatch {
  const sig = signalName(name);
  if (typeof cb !== 'function') {
    throw invalidArg(`onSignal expects a callback, got ${describe(cb)}`);
  }
  let entry = watched.get(sig);
  if (entry === undefined) {
    const listener = (): void => deliver(sig);
    entry = { watchers: new Set(), listener };
    watched.set(sig, entry);
    hostProcess.on(sig, listener);
  }
  const watcher: Watcher = { cb, active: true };
  entry.watchers.add(watcher);
  return {
    signal: sig,
    cancel(): void {
      if (!watcher.active) return;
      watcher.active = false;
      const current = watched.get(sig);
      if (current === undefined || !current.watchers.delete(watcher)) return;
      if (current.watchers.size === 0) {
        hostProcess.removeListener(sig, current.listener);
        watched.delete(sig);
      }
    },
  };
}
