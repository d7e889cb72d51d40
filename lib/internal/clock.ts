/**
 * The clock and scheduler of the loop and the timers: every reading of time and every
 * host timer they use goes through here.
 *
 * Each function looks its global up when called, never at module load: fake timers installed
 * later (jest's modern timers, @sinonjs/fake-timers) replace `performance`, `Date`,
 * `setTimeout`, `setImmediate` and `setInterval` on the global object, and the loop then runs
 * on their clock, deterministically. Arguments are fixed (no rest parameters), so a call
 * allocates nothing beyond what the host timer itself does.
 */

/** The longest delay a host timer takes (2^31−1 ms); longer ones fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A pending host timer, for `cancelTimer` and `releaseProcess`. */
export type TimerHandle = ReturnType<typeof setTimeout>;

// `performance.timeOrigin` is fixed per `performance` object: read once per object (a getter
// with argument checks, on the accept path of every connection), again when fakes replace it.
let originOf: typeof performance | null = null;
let origin = 0;

/** Epoch seconds (float, sub-millisecond), from the monotonic clock: timers and waits. */
export function nowSeconds(): number {
  const perf = performance;
  if (perf !== originOf) {
    origin = perf.timeOrigin;
    originOf = perf;
  }
  return (origin + perf.now()) / 1000;
}

/** Wall-clock epoch milliseconds (`Date.now()`, may jump): for instants the user names. */
export function wallClockMs(): number {
  return Date.now();
}

/** Call `fn(arg)` after `ms` milliseconds (the caller keeps `ms` <= `MAX_TIMER_MS`). */
export function startTimer<A>(fn: (arg: A) => void, ms: number, arg: A): TimerHandle {
  return setTimeout(fn, ms, arg);
}

/** Cancel a timer from `startTimer`. */
export function cancelTimer(handle: TimerHandle): void {
  clearTimeout(handle);
}

/** A pending `afterIo` call, for `cancelAfterIo`. */
export type AfterIoHandle = ReturnType<typeof setImmediate>;

/** Call `fn(arg)` in this turn's check phase, after the I/O callbacks of its poll phase. */
export function afterIo<A>(fn: (arg: A) => void, arg: A): AfterIoHandle {
  return setImmediate(fn, arg);
}

/** Cancel a call from `afterIo` that has not run yet. */
export function cancelAfterIo(handle: AfterIoHandle): void {
  clearImmediate(handle);
}

function noop(): void {}

/** Keep the process alive, doing nothing, until `releaseProcess(handle)`. */
export function holdProcess(): TimerHandle {
  return setInterval(noop, MAX_TIMER_MS);
}

/** Undo `holdProcess`. */
export function releaseProcess(handle: TimerHandle): void {
  clearInterval(handle);
}
