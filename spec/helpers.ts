import * as net from 'node:net';
import { DangaSocket, DangaSocketError, NativeSocket } from '../lib';
import { kOwner } from '../lib/internal';
import {
  EAGAIN,
  adoptFd,
  errnoError,
  kDestroy,
  listenNative,
  nativeEpoll,
} from '../lib/native-socket';

/**
 * The server side of a pair as the process default backend makes it: a `net.Socket` on `node`,
 * a `NativeSocket` on `native` (`DANGA_BACKEND=native`), so specs that wrap it run on both.
 */
export type ServerSock = net.Socket | NativeSocket;

/** A connected TCP pair on loopback: `server` is the accepted side (paused, half-open allowed). */
export async function netTcpPair(): Promise<{
  server: net.Socket;
  client: net.Socket;
  close(): void;
}> {
  const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((resolve) => srv.once('connection', resolve));
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise<void>((resolve) => client.once('connect', resolve));
  const server = await accepted;
  srv.close();
  return {
    server,
    client,
    close() {
      server.destroy();
      client.destroy();
    },
  };
}

/** A node client connected to a native listener; `server` is the accepted NativeSocket. */
export async function nativeTcpPair(): Promise<{
  server: NativeSocket;
  client: net.Socket;
  close(): void;
}> {
  const ls = listenNative({ host: '127.0.0.1', port: 0 });
  let server: NativeSocket;
  let client: net.Socket;
  try {
    client = net.connect({ port: ls.localPort as number, host: '127.0.0.1', allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    const ep = nativeEpoll();
    const one = new Int32Array(1);
    for (;;) {
      const r = ep.accept(ls.fd, one);
      if (r > 0) break;
      if (r !== -EAGAIN) throw errnoError(r, 'accept');
      await sleep(1);
    }
    server = adoptFd(one[0] as number, false);
  } finally {
    ls[kDestroy]();
  }
  return {
    server,
    client,
    close() {
      // An open object that wraps it closes it (or Reset() does); a NativeSocket cannot be
      // destroyed under an open owner.
      dispose(server);
      client.destroy();
    },
  };
}

/**
 * A connected TCP pair on loopback for the process default backend (`DangaSocket.DefaultBackend`):
 * `server` is a paused `net.Socket` (half-open allowed) on `node`, a `NativeSocket` on `native`.
 * Specs about `net.Socket` itself use `netTcpPair()`.
 */
export async function tcpPair(): Promise<{
  server: ServerSock;
  client: net.Socket;
  close(): void;
}> {
  return DangaSocket.DefaultBackend === 'native' ? nativeTcpPair() : netTcpPair();
}

/**
 * Destroy a socket a spec made. A `NativeSocket` that an open object wraps is left to that
 * object (or `Reset()`): it cannot be destroyed under its owner.
 */
export function dispose(s: ServerSock): void {
  if (s instanceof NativeSocket) {
    const owner = s[kOwner] as { closed?: boolean } | undefined;
    if (owner !== undefined && owner.closed === false) return;
  }
  s.destroy();
}

/** Rejects `runUntil`/`advanceUntil` when the condition did not hold in time. */
export class WaitTimeout extends Error {
  override readonly name = 'WaitTimeout';
}

/** True while jest's modern fake timers are installed (their `Date` says so). */
export function isFakeTime(): boolean {
  return (Date as { isFake?: unknown }).isFake === true;
}

/**
 * Watch the delays given to the host `setTimeout` (real or fake) until `stop()`, naming each
 * one Node would overflow ('TimeoutOverflowWarning', then it fires after 1 ms). Jest's sandboxed
 * `process` never receives the real process's 'warning' events, so listening there proves
 * nothing. Call `stop()` before `jest.useRealTimers()`.
 */
export function watchTimeoutDelays(): {
  warnings(): string[];
  maxDelayMs(): number;
  stop(): void;
} {
  const spy = jest.spyOn(globalThis, 'setTimeout');
  const delays = (): number[] => spy.mock.calls.map((call) => Number(call[1] ?? 0));
  return {
    warnings: () => delays().flatMap((ms) => (ms > 2 ** 31 - 1 ? ['TimeoutOverflowWarning'] : [])),
    maxDelayMs: () => Math.max(0, ...delays()),
    stop: () => spy.mockRestore(),
  };
}

/**
 * Put the loop and the timers on fake time: jest's modern fake timers drive `Date`,
 * `performance`, `setTimeout`, `setInterval` and `setImmediate`, which the loop reads through
 * lib/internal/clock at call time. `process.nextTick` and `queueMicrotask` stay real, so
 * promises and streams still settle. Undo with `jest.useRealTimers()` after `DangaSocket.Reset()`.
 */
export function useFakeTime(nowMs?: number): void {
  const doNotFake: ('nextTick' | 'queueMicrotask')[] = ['nextTick', 'queueMicrotask'];
  jest.useFakeTimers(nowMs === undefined ? { doNotFake } : { doNotFake, now: nowMs });
}

/** End a running loop at its next iteration, its other state kept (unlike Reset()). */
function stopAfterNextIteration(loopTimeoutMs: number): void {
  DangaSocket.SetPostLoopCallback(() => false);
  DangaSocket.SetLoopTimeout(loopTimeoutMs); // wakes a loop that waits with no timeout
}

/**
 * Real time: run the loop until `done()` holds (a PLC checks after each iteration). Resolves
 * with the number of iterations; rejects with `WaitTimeout` when `maxMs` pass first, or when
 * the loop ends (e.g. `Reset()`) before the condition held. Not for fake time: see
 * `advanceUntil`.
 */
export async function runUntil(
  done: () => boolean,
  maxMs = 5000,
  loopTimeoutMs = 20,
): Promise<number> {
  if (isFakeTime()) throw new Error('runUntil runs on real time; on fake time use advanceUntil');
  let n = 0;
  let met = false;
  let expired = false;
  DangaSocket.SetLoopTimeout(loopTimeoutMs);
  DangaSocket.SetPostLoopCallback(() => {
    n++;
    if (done()) met = true;
    return !met && !expired;
  });
  const guard = setTimeout(() => {
    expired = true;
    DangaSocket.SetLoopTimeout(loopTimeoutMs); // wakes a loop that waits with no timeout
  }, maxMs);
  try {
    await DangaSocket.EventLoop();
  } finally {
    clearTimeout(guard);
  }
  if (met) return n;
  throw new WaitTimeout(
    expired
      ? `runUntil: condition still false after ${maxMs} ms (${n} loop iterations)`
      : `runUntil: the loop ended (Reset()?) before the condition held (${n} loop iterations)`,
  );
}

/**
 * Real time: run the loop for `ms`, whatever happens (a step that lets I/O and timers run
 * for a while). Resolves with the number of iterations.
 */
export async function runFor(ms: number, loopTimeoutMs = 20): Promise<number> {
  if (isFakeTime()) throw new Error('runFor runs on real time; on fake time use advanceFor');
  let n = 0;
  let expired = false;
  DangaSocket.SetLoopTimeout(loopTimeoutMs);
  DangaSocket.SetPostLoopCallback(() => {
    n++;
    return !expired;
  });
  const guard = setTimeout(() => {
    expired = true;
    DangaSocket.SetLoopTimeout(loopTimeoutMs);
  }, ms);
  try {
    await DangaSocket.EventLoop();
  } finally {
    clearTimeout(guard);
  }
  return n;
}

/** Flips `settled` once `p` settles (and keeps a rejection from going unhandled). */
function watch(p: Promise<unknown>): { settled: boolean } {
  const state = { settled: false };
  p.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

/** Steps without the clock moving before advanceUntilSettled gives up (a busy loop). */
const MAX_STEPS_AT_ONE_INSTANT = 100_000;

/**
 * Fake time (`useFakeTime()`): move the clock from one pending host timer to the next until
 * `p` settles, then settle as `p` does. Rejects with `WaitTimeout` when `maxMs` of fake time
 * pass first (it never steps past that instant), or when the clock stops moving (a busy loop).
 */
export async function advanceUntilSettled<T>(p: Promise<T>, maxMs = 5000): Promise<T> {
  if (!isFakeTime()) throw new Error('advanceUntilSettled needs fake time: call useFakeTime()');
  const state = watch(p);
  const deadline = Date.now() + maxMs;
  const bound = setTimeout(() => {}, maxMs);
  let last = Date.now();
  let still = 0;
  try {
    while (!state.settled && Date.now() < deadline) {
      await jest.advanceTimersToNextTimerAsync();
      if (Date.now() !== last) {
        last = Date.now();
        still = 0;
      } else if (++still > MAX_STEPS_AT_ONE_INSTANT) {
        throw new WaitTimeout(`still pending after ${still} steps without the clock moving`);
      }
    }
  } finally {
    clearTimeout(bound);
  }
  if (!state.settled) throw new WaitTimeout(`still pending after ${maxMs} ms of fake time`);
  return p;
}

/** Fake time: end the running loop at the current instant (its state kept, unlike Reset()). */
async function endLoop(running: Promise<void>, loopTimeoutMs: number): Promise<void> {
  const state = watch(running);
  stopAfterNextIteration(loopTimeoutMs);
  for (let i = 0; i < 3 && !state.settled; i++) await jest.advanceTimersByTimeAsync(0);
  if (!state.settled) DangaSocket.Reset(); // not seen; but never leave a loop running
  await running;
}

/**
 * Fake time (`useFakeTime()`): run the loop until `done()` holds after an iteration, moving
 * the clock from one pending host timer to the next, so it stops at the instant the condition
 * became true. Rejects with `WaitTimeout` when `maxMs` of fake time pass first. As with
 * `runUntil`, the loop timeout (default 20 ms) bounds how long a flag set by a timer waits for
 * the PLC to see it. Resolves with the number of iterations.
 */
export async function advanceUntil(
  done: () => boolean,
  maxMs = 5000,
  loopTimeoutMs = 20,
): Promise<number> {
  if (!isFakeTime()) throw new Error('advanceUntil needs fake time: call useFakeTime() first');
  let n = 0;
  let met = false;
  DangaSocket.SetLoopTimeout(loopTimeoutMs);
  DangaSocket.SetPostLoopCallback(() => {
    n++;
    if (done()) met = true;
    return !met;
  });
  const running = DangaSocket.EventLoop();
  try {
    await advanceUntilSettled(running, maxMs);
  } catch (err) {
    if (!(err instanceof WaitTimeout)) throw err;
    await endLoop(running, loopTimeoutMs);
  }
  if (met) return n;
  throw new WaitTimeout(
    `advanceUntil: condition still false when the loop ended or ${maxMs} ms of fake time ` +
      `passed (${n} loop iterations)`,
  );
}

/**
 * Fake time (`useFakeTime()`): run the loop while the clock advances by exactly `ms`, then end
 * it at that instant. Resolves with the number of iterations.
 */
export async function advanceFor(ms: number, loopTimeoutMs = 20): Promise<number> {
  if (!isFakeTime()) throw new Error('advanceFor needs fake time: call useFakeTime() first');
  let n = 0;
  DangaSocket.SetLoopTimeout(loopTimeoutMs);
  DangaSocket.SetPostLoopCallback(() => {
    n++;
    return true;
  });
  const running = DangaSocket.EventLoop();
  watch(running);
  await jest.advanceTimersByTimeAsync(ms);
  await endLoop(running, loopTimeoutMs);
  return n;
}

/**
 * Real time, loop not running: poll `cond` every few ms until it holds. Rejects with
 * `WaitTimeout` naming `what` when `maxMs` pass first.
 */
export async function waitFor(cond: () => boolean, what: string, maxMs = 5000): Promise<void> {
  const deadline = Date.now() + maxMs;
  while (!cond()) {
    if (Date.now() >= deadline) throw new WaitTimeout(`waitFor: ${what} not seen in ${maxMs} ms`);
    await sleep(5);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A free TCP port on 127.0.0.1 with nothing listening (bound then released). */
export async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** A DangaSocket that ignores every event (for tests that only need an object). */
export class Quiet extends DangaSocket {
  override eventRead(): void {}
  override eventErr(): void {}
  override eventHup(): void {}
}

/** Echo everything; close on EOF, error or hang-up. */
export class Echo extends DangaSocket {
  constructor(sock: ServerSock) {
    super(sock);
    this.watchRead(true);
  }
  override eventRead(): void {
    const buf = this.read(65536);
    if (buf === null) this.close('eof');
    else if (buf.length > 0) this.write(buf);
  }
  override eventErr(): void {
    this.close('err');
  }
  override eventHup(): void {
    this.close('hup');
  }
}

/** The DangaSocketError `fn` throws (fails the test if it throws nothing or something else). */
export function caught(fn: () => unknown): DangaSocketError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DangaSocketError) return err;
    throw err;
  }
  throw new Error('expected a DangaSocketError, nothing was thrown');
}

/** The OS descriptor of a socket. */
export function fdOf(sock: net.Socket): number {
  const handle: unknown = Reflect.get(sock, '_handle');
  const fd: unknown =
    typeof handle === 'object' && handle !== null ? Reflect.get(handle, 'fd') : undefined;
  if (typeof fd !== 'number') throw new Error('socket has no fd');
  return fd;
}
