/**
 * IO::Async-style timers on the Danga loop: `PeriodicTimer`, `CountdownTimer`,
 * `AbsoluteTimer`. All are built on `DangaSocket.AddTimer`, so they fire inside loop
 * iterations (timer pass) and only while `EventLoop()` runs; `DangaSocket.Reset()` stops them.
 */
import { DangaSocket, type Timer } from './danga-socket';
import { describe, invalidArg } from './errors';
import { loop } from './event-loop';
import { nowSeconds, wallClockMs } from './internal/clock';

/**
 * How a `PeriodicTimer` picks its next tick after a late one (IO::Async::Timer::Periodic):
 * - `'hard'`: previous *scheduled* time + interval; missed ticks are caught up back-to-back.
 * - `'skip'`: the next grid point (previous scheduled + k × interval) after the tick returned.
 * - `'drift'`: the time the tick returned + interval.
 */
export type RescheduleMode = 'hard' | 'skip' | 'drift';

/** Options of `new PeriodicTimer(...)`. */
export interface PeriodicTimerOptions {
  /** Seconds between ticks (fractional, > 0). */
  intervalS: number;
  /** Called on each tick, inside a loop iteration, with the timer pass's epoch seconds. */
  onTick: (now: number) => void;
  /** Default `'hard'`. */
  reschedule?: RescheduleMode | undefined;
  /** Seconds from `start()` to the first tick (fractional, >= 0); default `intervalS`. */
  firstIntervalS?: number | undefined;
}

const MODES: readonly string[] = ['hard', 'skip', 'drift'];
// Guards against float noise in (now - scheduled) / interval, e.g. 0.3 / 0.1 = 2.9999999999999996.
const GRID_EPSILON = 1e-9;

let resetGen = 0;
loop.resetHooks.push(() => {
  resetGen++;
});

function checkSeconds(name: string, v: unknown, min: number, strict: boolean): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (strict ? v <= min : v < min)) {
    throw invalidArg(
      `${name} must be a finite number of seconds ${strict ? '>' : '>='} ${min}, got ${describe(v)}`,
    );
  }
  return v;
}

function checkOptions(name: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null) {
    throw invalidArg(`${name} expects an options object, got ${describe(v)}`);
  }
  return v as Record<string, unknown>;
}

function checkFunction<T>(name: string, v: unknown): T {
  if (typeof v !== 'function') throw invalidArg(`${name} must be a function, got ${describe(v)}`);
  return v as T;
}

/**
 * A repeating timer on the Danga loop (IO::Async::Timer::Periodic). Ticks run inside loop
 * iterations (a timer pass), so the loop must be running for them to fire.
 *
 * Call order: `start()` schedules the first tick at start + `firstIntervalS` (default
 * `intervalS`; even 0 fires on a later pass, never inside `start()`); after each `onTick` the
 * next tick is scheduled per `reschedule` unless the tick stopped or restarted the timer. A
 * throwing `onTick` is still rescheduled; the error goes to the loop's error handler.
 * Catch-up ticks in `'hard'` mode run one per loop pass, so I/O is never starved.
 */
export class PeriodicTimer {
  /** Seconds between ticks. */
  readonly intervalS: number;
  /** Seconds from `start()` to the first tick, if set. */
  readonly firstIntervalS: number | undefined;
  /** How late ticks are rescheduled. */
  readonly reschedule: RescheduleMode;
  private readonly onTick: (now: number) => void;
  private timer: Timer | null = null;
  private running = false;
  /** Epoch seconds the pending tick is scheduled for (the grid point, not the fire time). */
  private scheduledS = 0;
  /** Bumped by start()/stop(): a tick that sees another value must not reschedule. */
  private epoch = 0;
  private gen = -1;

  /** @throws DangaSocketError `DS_ERR_INVALID_ARG` for a bad option. */
  constructor(options: PeriodicTimerOptions) {
    const o = checkOptions('PeriodicTimer', options);
    this.intervalS = checkSeconds('PeriodicTimer intervalS', o.intervalS, 0, true);
    this.firstIntervalS =
      o.firstIntervalS === undefined
        ? undefined
        : checkSeconds('PeriodicTimer firstIntervalS', o.firstIntervalS, 0, false);
    if (o.reschedule !== undefined && !MODES.includes(o.reschedule as string)) {
      throw invalidArg(
        `PeriodicTimer reschedule must be 'hard', 'skip' or 'drift', got ${describe(o.reschedule)}`,
      );
    }
    this.reschedule = (o.reschedule as RescheduleMode | undefined) ?? 'hard';
    this.onTick = checkFunction('PeriodicTimer onTick', o.onTick);
  }

  /** True from `start()` until `stop()` (or `DangaSocket.Reset()`). */
  get isRunning(): boolean {
    return this.running && this.gen === resetGen;
  }

  /**
   * Schedule the first tick. Does nothing while running (IO::Async throws); inside `onTick`,
   * `stop(); start()` restarts the schedule from now.
   */
  start(): void {
    if (this.isRunning) return;
    this.epoch++;
    this.gen = resetGen;
    this.running = true;
    const delayS = this.firstIntervalS ?? this.intervalS;
    this.scheduledS = nowSeconds() + delayS;
    this.timer = DangaSocket.AddTimer(delayS, this.fire);
  }

  /** Cancel the pending tick. Idempotent; inside `onTick` it prevents the reschedule. */
  stop(): void {
    this.epoch++;
    this.running = false;
    this.timer?.cancel();
    this.timer = null;
  }

  private readonly fire = (now: number): void => {
    this.timer = null;
    const epoch = this.epoch;
    const scheduled = this.scheduledS;
    try {
      this.onTick(now);
    } finally {
      if (this.epoch === epoch && this.isRunning) this.scheduleAfter(scheduled);
    }
  };

  private scheduleAfter(scheduled: number): void {
    const interval = this.intervalS;
    let next: number;
    if (this.reschedule === 'hard') {
      next = scheduled + interval;
    } else if (this.reschedule === 'skip') {
      // max(1, …): an exactly-on-time return must not refire at once (IO::Async bug).
      const steps = Math.ceil((nowSeconds() - scheduled) / interval - GRID_EPSILON);
      next = scheduled + interval * Math.max(1, steps);
    } else {
      next = nowSeconds() + interval;
    }
    this.scheduledS = next;
    // Never a negative delay: that would run in this same timer pass, and a tick slower than
    // the interval would then keep the pass going forever.
    this.timer = DangaSocket.AddTimer(Math.max(0, next - nowSeconds()), this.fire);
  }
}

/** Options of `new CountdownTimer(...)`. */
export interface CountdownTimerOptions {
  /** Seconds from `start()` (or `reset()`) to expiry (fractional, >= 0; 0 = next loop pass). */
  delayS: number;
  /** Called once per start, inside a loop iteration, with the timer pass's epoch seconds. */
  onExpire: (now: number) => void;
}

/**
 * A one-shot timer that can be restarted (IO::Async::Timer::Countdown): the watchdog.
 *
 * Call order: `start()` arms it (clears `isExpired`); after `delayS` it stops, sets
 * `isExpired`, then calls `onExpire` — which may `start()` it again for a fixed delay after
 * completion. `reset()` while running restarts the full delay from now.
 */
export class CountdownTimer {
  /** Seconds from start to expiry. */
  readonly delayS: number;
  private readonly onExpire: (now: number) => void;
  private timer: Timer | null = null;
  private running = false;
  private expired = false;
  private gen = -1;

  /** @throws DangaSocketError `DS_ERR_INVALID_ARG` for a bad option. */
  constructor(options: CountdownTimerOptions) {
    const o = checkOptions('CountdownTimer', options);
    this.delayS = checkSeconds('CountdownTimer delayS', o.delayS, 0, false);
    this.onExpire = checkFunction('CountdownTimer onExpire', o.onExpire);
  }

  /** True from `start()` until expiry, `stop()` or `DangaSocket.Reset()`. */
  get isRunning(): boolean {
    return this.running && this.gen === resetGen;
  }

  /** True once it expired; cleared by the next `start()`. */
  get isExpired(): boolean {
    return this.expired;
  }

  /** Arm the timer for `delayS` from now. Does nothing while running (IO::Async throws). */
  start(): void {
    if (this.isRunning) return;
    this.expired = false;
    this.arm();
  }

  /** Disarm. Idempotent; `isExpired` is unchanged. */
  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = null;
  }

  /** If running, restart the full delay from now; otherwise do nothing. */
  reset(): void {
    if (!this.isRunning) return;
    this.timer?.cancel();
    this.arm();
  }

  private arm(): void {
    this.running = true;
    this.gen = resetGen;
    this.timer = DangaSocket.AddTimer(this.delayS, this.fire);
  }

  private readonly fire = (now: number): void => {
    this.timer = null;
    this.running = false;
    this.expired = true;
    this.onExpire(now);
  };
}

/** Options of `new AbsoluteTimer(...)`. */
export interface AbsoluteTimerOptions {
  /** When to fire, in epoch seconds (fractional; wall clock, as `Date.now() / 1000`). */
  time: number;
  /** Called once per start, inside a loop iteration, with the timer pass's epoch seconds. */
  onExpire: (now: number) => void;
}

/** Long waits are re-checked against the wall clock this often (it may jump or drift). */
const WALL_CLOCK_RECHECK_S = 60;

/**
 * A timer that fires at a wall-clock instant (IO::Async::Timer::Absolute).
 *
 * Call order: `start()` arms it; at `time` it stops and calls `onExpire`. A time in the past
 * fires on the next loop pass. Waits longer than 60 s are taken in 60 s steps, each re-checked
 * against `Date.now()`, so it never fires early (also past 2^31−1 ms) and follows clock jumps.
 */
export class AbsoluteTimer {
  private timeS: number;
  private readonly onExpire: (now: number) => void;
  private timer: Timer | null = null;
  private running = false;
  private gen = -1;

  /** @throws DangaSocketError `DS_ERR_INVALID_ARG` for a bad option. */
  constructor(options: AbsoluteTimerOptions) {
    const o = checkOptions('AbsoluteTimer', options);
    this.timeS = checkSeconds('AbsoluteTimer time', o.time, -Infinity, false);
    this.onExpire = checkFunction('AbsoluteTimer onExpire', o.onExpire);
  }

  /** The instant to fire at, in epoch seconds. Setting it while running re-arms the timer. */
  get time(): number {
    return this.timeS;
  }

  set time(epochS: number) {
    this.timeS = checkSeconds('AbsoluteTimer time', epochS, -Infinity, false);
    if (this.isRunning) {
      this.timer?.cancel();
      this.arm();
    }
  }

  /** True from `start()` until it fires, `stop()` or `DangaSocket.Reset()`. */
  get isRunning(): boolean {
    return this.running && this.gen === resetGen;
  }

  /** Arm the timer. Does nothing while running. */
  start(): void {
    if (this.isRunning) return;
    this.running = true;
    this.gen = resetGen;
    this.arm();
  }

  /** Disarm. Idempotent. */
  stop(): void {
    this.running = false;
    this.timer?.cancel();
    this.timer = null;
  }

  private arm(): void {
    const leftS = this.timeS - wallClockMs() / 1000;
    this.timer = DangaSocket.AddTimer(
      Math.min(Math.max(0, leftS), WALL_CLOCK_RECHECK_S),
      this.fire,
    );
  }

  private readonly fire = (now: number): void => {
    this.timer = null;
    if (wallClockMs() / 1000 < this.timeS) {
      this.arm();
      return;
    }
    this.running = false;
    this.onExpire(now);
  };
}
