/**
 * `PersistentConnection`: keep one connection to a server alive, reconnecting after a randomised
 * delay, with the exact state machine, events and deduplication of Jane Street Async's
 * `Persistent_connection`.
 */
import { DangaSocketError, describe, errnoOf, invalidArg } from './errors';

/** What a connection must offer. A `DangaSocket` qualifies as it is. */
export interface Connectable {
  /** Start closing; may return a promise (awaited) or anything else (ignored). */
  close(): unknown;
  /** Resolves once the connection is really closed, however that happened. */
  whenClosed(): Promise<unknown>;
}

/**
 * The events, in the order a cycle produces them. `failed_to_connect` and `obtained_address`
 * are suppressed when equal to the previous one of the same kind within the current cycle.
 */
export type PersistentConnectionEvent<Conn, Address> =
  | { readonly type: 'attempting_to_connect' }
  | { readonly type: 'obtained_address'; readonly address: Address }
  | { readonly type: 'failed_to_connect'; readonly error: unknown }
  | { readonly type: 'connected'; readonly connection: Conn }
  | { readonly type: 'disconnected' };

/**
 * Time source. Inject one in tests to drive retries deterministically.
 * `sleep` resolves after `ms`; when `signal` aborts first it should resolve early (or at least
 * release its timer): the caller ignores a sleep whose signal aborted.
 */
export interface Clock {
  /** Current time in milliseconds (any origin, but monotonic). */
  now(): number;
  /** Resolve after `ms` milliseconds. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Passed to `connect` with each attempt. */
export interface ConnectContext {
  /** 0 on the first attempt, +1 after each failed attempt, back to 0 after a success. */
  readonly consecutiveUnsuccessfulAttempts: number;
  /** Aborted when `close()` is called; pass it on to abandon an attempt in flight. */
  readonly signal: AbortSignal;
}

/** Options of {@link PersistentConnection}. */
export interface PersistentConnectionOptions<Conn, Address> {
  /** Name used in messages. */
  readonly serverName: string;
  /** Asked again before every attempt; a throw or rejection counts as a failed attempt. */
  readonly getAddress: () => Address | Promise<Address>;
  /** Open a connection; a throw or rejection counts as a failed attempt. */
  readonly connect: (address: Address, context: ConnectContext) => Conn | Promise<Conn>;
  /** Called for every event and **awaited** before the state machine moves on. */
  readonly onEvent?:
    ((event: PersistentConnectionEvent<Conn, Address>) => void | Promise<void>) | undefined;
  /**
   * Base retry delay in ms, asked once per attempt (default 10 000); randomised ±30 %. A
   * function that throws or returns anything but a finite number >= 0 gets the default.
   */
  readonly retryDelayMs?: (() => number) | number | undefined;
  /** Uniform [0, 1) source for the randomisation, or `'none'` for exact delays. Default `Math.random`. */
  readonly random?: (() => number) | 'none' | undefined;
  /** Time source; default real timers. */
  readonly clock?: Clock | undefined;
  /** Equality for `obtained_address` dedup; default structural equality. */
  readonly addressEqual?: ((a: Address, b: Address) => boolean) | undefined;
  /** Equality for `failed_to_connect` dedup; default same class, message and `code`. */
  readonly errorEqual?: ((a: unknown, b: unknown) => boolean) | undefined;
  /** Receives exceptions thrown (or rejections returned) by `onEvent`; default: stderr. */
  readonly onHandlerError?:
    ((error: unknown, event: PersistentConnectionEvent<Conn, Address>) => void) | undefined;
}

/** Outcome of {@link PersistentConnection.connectedOrFailedToConnect}. */
export type ConnectOutcome<Conn> =
  | { readonly ok: true; readonly connection: Conn }
  | { readonly ok: false; readonly error: unknown };

const DEFAULT_RETRY_DELAY_MS = 10_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Real timers; `now()` is monotonic (`performance.now()`). */
export const realClock: Clock = {
  now: () => performance.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted === true) {
        resolve();
        return;
      }
      let timer: NodeJS.Timeout;
      const finish = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      // setTimeout cannot wait more than 2^31-1 ms; longer sleeps are chained.
      const arm = (left: number): void => {
        timer = setTimeout(
          () => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : finish()),
          Math.min(Math.max(left, 0), MAX_TIMER_MS),
        );
      };
      arm(ms);
      signal?.addEventListener('abort', finish, { once: true });
    });
  },
};

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolveFn: (value: T) => void = () => {};
  const promise = new Promise<T>((resolve) => {
    resolveFn = resolve;
  });
  const d: Deferred<T> = {
    promise,
    settled: false,
    resolve(value: T) {
      if (d.settled) return;
      d.settled = true;
      resolveFn(value);
    },
  };
  return d;
}

type SlotValue<Conn> =
  { readonly kind: 'ok'; readonly conn: Conn } | { readonly kind: 'close_started' };

/** The one-shot `conn` slot of the reference, replaced after each connection ends. */
interface Slot<Conn> {
  readonly value: Deferred<SlotValue<Conn>>;
  /** Resolves when the loop installs the next slot. */
  readonly replaced: Deferred<void>;
}

function newSlot<Conn>(): Slot<Conn> {
  return { value: deferred(), replaced: deferred() };
}

/** What the loop knows about the connection it handed out. */
interface Live<Conn> {
  readonly conn: Conn;
  connectedHandled: boolean;
  readonly disconnecting: Deferred<void>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (isRecord(value) || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/** Structural equality for plain data (addresses); `Object.is` for everything else. */
function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (!isRecord(a) || !isRecord(b)) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => Object.prototype.hasOwnProperty.call(b, k) && deepEqual(a[k], b[k]));
}

function defaultErrorEqual(a: unknown, b: unknown): boolean {
  if (a instanceof Error && b instanceof Error) {
    return (
      a.constructor === b.constructor &&
      a.name === b.name &&
      a.message === b.message &&
      errnoOf(a) === errnoOf(b)
    );
  }
  return deepEqual(a, b);
}

function optionalFn<F>(value: unknown, what: string): F | undefined {
  return value === undefined ? undefined : requiredFn<F>(value, what);
}

function requiredFn<F>(value: unknown, what: string): F {
  if (typeof value !== 'function')
    throw invalidArg(`${what} must be a function, got ${describe(value)}`);
  return value as F;
}

/**
 * Keeps a connection to one server alive. The state machine runs by itself from construction
 * (the first `attempting_to_connect` event is delivered before the constructor returns):
 *
 * 1. `attempting_to_connect` (once per reconnection cycle, not per attempt);
 * 2. per attempt: arm the retry deadline, `getAddress()`, `obtained_address` (unless equal to the
 *    previous address of this cycle), `connect(address)`; on failure `failed_to_connect`
 *    (unless equal to the previous error of this cycle), wait for the deadline or `close()`, retry;
 * 3. `connected`, then wait for the connection's `whenClosed()`, then `disconnected`;
 * 4. wait for the deadline armed before the successful attempt (so a long-lived connection that
 *    drops is retried at once), then back to 1.
 *
 * Every `onEvent` call is awaited before the machine moves on; `disconnected` is delivered only
 * after the `connected` handler finished. Nothing is closed internally when the peer goes away.
 */
export class PersistentConnection<Conn extends Connectable, Address> {
  /** The name given at construction. */
  readonly serverName: string;
  /** Resolves when the first `close()` has finished. */
  readonly closeFinished: Promise<void>;

  private readonly getAddressFn: () => Address | Promise<Address>;
  private readonly connectFn: (address: Address, context: ConnectContext) => Conn | Promise<Conn>;
  private readonly onEventFn:
    ((event: PersistentConnectionEvent<Conn, Address>) => void | Promise<void>) | undefined;
  private readonly retryDelayFn: () => number;
  private readonly randomFn: (() => number) | undefined;
  private readonly clock: Clock;
  private readonly addressEqual: (a: Address, b: Address) => boolean;
  private readonly errorEqual: (a: unknown, b: unknown) => boolean;
  private readonly onHandlerError: (
    error: unknown,
    event: PersistentConnectionEvent<Conn, Address>,
  ) => void;

  private slot: Slot<Conn> = newSlot();
  private nextResult = deferred<ConnectOutcome<Conn>>();
  private readonly closeStarted = deferred<void>();
  private readonly closeDone = deferred<void>();
  private readonly closeController = new AbortController();
  private readonly closedConns = new WeakSet<object>();
  private live: Live<Conn> | undefined;
  private attemptInFlight = false;
  private failures = 0;

  /**
   * @param options - see {@link PersistentConnectionOptions}.
   * @throws `DS_ERR_INVALID_ARG` for a missing `serverName`, `getAddress` or `connect`, a
   *   non-function callback, a negative or non-finite `retryDelayMs`, or a malformed `clock`.
   */
  constructor(options: PersistentConnectionOptions<Conn, Address>) {
    if (!isRecord(options)) throw invalidArg(`options must be an object, got ${describe(options)}`);
    const o = options as unknown as Record<string, unknown>;
    if (typeof o.serverName !== 'string') {
      throw invalidArg(`serverName must be a string, got ${describe(o.serverName)}`);
    }
    this.serverName = o.serverName;
    this.getAddressFn = requiredFn(o.getAddress, 'getAddress');
    this.connectFn = requiredFn(o.connect, 'connect');
    this.onEventFn = optionalFn(o.onEvent, 'onEvent');
    this.addressEqual = optionalFn(o.addressEqual, 'addressEqual') ?? deepEqual;
    this.errorEqual = optionalFn(o.errorEqual, 'errorEqual') ?? defaultErrorEqual;
    this.onHandlerError =
      optionalFn<(error: unknown, event: PersistentConnectionEvent<Conn, Address>) => void>(
        o.onHandlerError,
        'onHandlerError',
      ) ??
      ((error: unknown, event: PersistentConnectionEvent<Conn, Address>) => {
        const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
        process.stderr.write(
          `PersistentConnection(${this.serverName}): onEvent threw on ${event.type}: ${detail}\n`,
        );
      });

    const delay = o.retryDelayMs;
    if (typeof delay === 'number') {
      if (!Number.isFinite(delay) || delay < 0) {
        throw invalidArg(`retryDelayMs must be a finite number >= 0, got ${describe(delay)}`);
      }
      this.retryDelayFn = () => delay;
    } else {
      this.retryDelayFn =
        optionalFn<() => number>(delay, 'retryDelayMs') ?? (() => DEFAULT_RETRY_DELAY_MS);
    }
    if (o.random === 'none') this.randomFn = undefined;
    else this.randomFn = optionalFn<() => number>(o.random, 'random') ?? Math.random;

    const clock = o.clock ?? realClock;
    if (!isRecord(clock) || typeof clock.now !== 'function' || typeof clock.sleep !== 'function') {
      throw invalidArg(
        `clock must have now() and sleep(ms, signal) methods, got ${describe(clock)}`,
      );
    }
    this.clock = clock as unknown as Clock;

    this.closeFinished = this.closeDone.promise;
    // Starts synchronously: the first event is delivered before the constructor returns.
    void this.run().catch((err: unknown) => {
      process.stderr.write(
        `PersistentConnection(${this.serverName}): internal error: ${String(err)}\n`,
      );
    });
  }

  /** True once `close()` has been called. */
  get isClosed(): boolean {
    return this.closeStarted.settled;
  }

  /**
   * The connection handed out by the last `connected` event, while the loop still holds it.
   * Can be a connection that is already closing (between its end and the loop noticing).
   */
  get currentConnection(): Conn | undefined {
    const found = this.peekSlot();
    return found?.kind === 'ok' ? found.conn : undefined;
  }

  /**
   * The first usable connection from now on: at once if connected and not closed; otherwise
   * after the next successful attempt.
   *
   * **Never resolves once `close()` has been called** (Async parity), unless an attempt that was
   * in flight when `close()` was called succeeds; that connection is then handed out and closed.
   * Shutdown code should use {@link connection} instead.
   */
  connected(): Promise<Conn> {
    return this.waitForConnection().then((r) => (r === undefined ? never<Conn>() : r));
  }

  /** Like {@link connected}, but resolves `{ closed: true }` once closed instead of never. */
  async connection(): Promise<{ readonly connection: Conn } | { readonly closed: true }> {
    const conn = await this.waitForConnection();
    return conn === undefined ? { closed: true } : { connection: conn };
  }

  /**
   * The outcome of the next attempt, **every** attempt (not deduplicated), or the live connection
   * at once. After `close()`: `{ ok: false, error }` with a `DS_ERR_CLOSED` error.
   */
  connectedOrFailedToConnect(): Promise<ConnectOutcome<Conn>> {
    const current = this.peekSlot();
    if (current?.kind === 'ok' && !this.isConnClosed(current.conn)) {
      return Promise.resolve({ ok: true, connection: current.conn });
    }
    const closedError = (): ConnectOutcome<Conn> => ({
      ok: false,
      error: new DangaSocketError(
        'DS_ERR_CLOSED',
        `persistent connection to ${this.serverName} closed`,
      ),
    });
    if (this.isClosed) return Promise.resolve(closedError());
    return Promise.race([this.nextResult.promise, this.closeStarted.promise.then(closedError)]);
  }

  /**
   * Stop reconnecting and close the current connection, if any. Idempotent: every call returns
   * the same `closeFinished`. `isClosed` is true at once.
   *
   * Resolves when the connection's `close()` and `whenClosed()` have finished and the
   * `disconnected` event has been delivered (unless the `connected` handler is itself still
   * running, which would deadlock). When not connected it resolves as soon as the loop notices:
   * at once while waiting to retry, or when the attempt in flight ends. If that attempt succeeds,
   * the connection is still reported (`connected`, then `disconnected`) and closed.
   */
  close(): Promise<void> {
    if (this.closeStarted.settled) return this.closeFinished;
    this.closeStarted.resolve();
    this.closeController.abort(
      new DangaSocketError('DS_ERR_CLOSED', `persistent connection to ${this.serverName} closed`),
    );
    const slot = this.slot;
    // Between attempts (retry wait, or inside an onEvent handler) nothing can win any more, so
    // the slot is closed now; waiting for the loop could deadlock a handler that awaits close().
    if (!slot.value.settled && !this.attemptInFlight) slot.value.resolve({ kind: 'close_started' });
    void slot.value.promise.then(async (value) => {
      if (value.kind === 'ok') await this.closeConnection(value.conn);
      this.closeDone.resolve();
    });
    return this.closeFinished;
  }

  // -------------------------------------------------------------------------------------------

  private peekSlot(): SlotValue<Conn> | undefined {
    return this.slotValues.get(this.slot);
  }

  // Deferreds hide their value; keep the filled value beside the slot for synchronous reads.
  private readonly slotValues = new WeakMap<Slot<Conn>, SlotValue<Conn>>();

  private fillSlot(value: SlotValue<Conn>): void {
    if (this.slot.value.settled) return;
    this.slotValues.set(this.slot, value);
    this.slot.value.resolve(value);
  }

  private replaceSlot(): void {
    const old = this.slot;
    this.slot = newSlot();
    old.replaced.resolve();
  }

  private isConnClosed(conn: Conn): boolean {
    if (this.closedConns.has(conn)) return true;
    const c = conn as unknown as Record<string, unknown>;
    if (c.closed === true) return true;
    if (typeof c.isClosed === 'function') return (c.isClosed as () => unknown).call(conn) === true;
    return c.isClosed === true;
  }

  private async waitForConnection(): Promise<Conn | undefined> {
    for (;;) {
      const slot = this.slot;
      const value = await slot.value.promise;
      if (value.kind === 'close_started') return undefined;
      if (!this.isConnClosed(value.conn)) return value.conn;
      // Don't hand out a dead connection: wait for it to finish closing and the loop to move on.
      await this.whenClosed(value.conn);
      await slot.replaced.promise;
    }
  }

  private async whenClosed(conn: Conn): Promise<void> {
    try {
      await conn.whenClosed();
    } catch {
      // A connection whose whenClosed() rejects is just as closed.
    }
    this.closedConns.add(conn);
  }

  private async closeConnection(conn: Conn): Promise<void> {
    try {
      await conn.close();
    } catch {
      // Closing is best effort; whenClosed() below is what we wait for.
    }
    await this.whenClosed(conn);
    const live = this.live;
    if (live !== undefined && live.conn === conn && live.connectedHandled) {
      await live.disconnecting.promise;
    }
  }

  private async emit(event: PersistentConnectionEvent<Conn, Address>): Promise<void> {
    const handler = this.onEventFn;
    if (handler === undefined) return;
    try {
      const result = handler(event);
      if (isThenable(result)) await result;
    } catch (err) {
      // A failing handler is reported and counts as done; it must not stop the state machine.
      try {
        this.onHandlerError(err, event);
      } catch {
        // Nothing sensible is left to do with an error from the error handler.
      }
    }
  }

  /** Randomised delay: span ± span·0.3·U[0,1), the sign chosen by a fair coin (Async's rule). */
  private retryDelay(): number {
    let span: number;
    try {
      span = this.retryDelayFn();
    } catch {
      span = Number.NaN;
    }
    if (typeof span !== 'number' || !Number.isFinite(span) || span < 0)
      span = DEFAULT_RETRY_DELAY_MS;
    const random = this.randomFn;
    if (random === undefined) return span;
    const unit = (): number => {
      const r = random();
      return typeof r === 'number' && r >= 0 && r < 1 ? r : 0;
    };
    const distance = span * 0.3 * unit();
    return unit() < 0.5 ? span + distance : span - distance;
  }

  /** Wait until `deadline` (clock ms) or `close()`, whichever comes first. */
  private async waitUntil(deadline: number, maxMs: number): Promise<void> {
    if (this.closeStarted.settled) return;
    const left = Math.min(deadline - this.clock.now(), maxMs);
    if (!(left > 0)) return;
    const sleep = Promise.resolve()
      .then(() => this.clock.sleep(left, this.closeController.signal))
      .catch(() => undefined);
    await Promise.race([sleep, this.closeStarted.promise]);
  }

  private async run(): Promise<void> {
    for (;;) {
      await this.emit({ type: 'attempting_to_connect' });
      const cycle = await this.attemptCycle();
      if (cycle === undefined) return;
      const { live, deadline, delay } = cycle;
      const conn = live.conn;
      await this.emit({ type: 'connected', connection: conn });
      live.connectedHandled = true;
      await this.whenClosed(conn);
      this.replaceSlot();
      live.disconnecting.resolve();
      await this.emit({ type: 'disconnected' });
      this.live = undefined;
      await this.waitUntil(deadline, delay);
      if (this.closeStarted.settled) {
        this.fillSlot({ kind: 'close_started' });
        return;
      }
    }
  }

  /** Attempts until one succeeds (its connection and retry deadline) or close (undefined). */
  private async attemptCycle(): Promise<
    { live: Live<Conn>; deadline: number; delay: number } | undefined
  > {
    let previousAddress: { readonly value: Address } | undefined;
    let previousError: { readonly value: unknown } | undefined;
    for (;;) {
      if (this.closeStarted.settled) {
        this.fillSlot({ kind: 'close_started' });
        return undefined;
      }
      // The retry deadline is armed before the attempt: the delay runs from its start.
      const delay = this.retryDelay();
      const deadline = this.clock.now() + delay;
      let outcome: ConnectOutcome<Conn>;
      try {
        this.attemptInFlight = true;
        const address = await this.getAddressFn();
        this.attemptInFlight = false;
        const same =
          previousAddress !== undefined && this.addressEqual(previousAddress.value, address);
        previousAddress = { value: address };
        if (!same) await this.emit({ type: 'obtained_address', address });
        if (this.slot.value.settled) return undefined; // closed from inside that handler
        this.attemptInFlight = true;
        const conn = await this.connectFn(address, {
          consecutiveUnsuccessfulAttempts: this.failures,
          signal: this.closeController.signal,
        });
        if (
          !isRecord(conn) ||
          typeof conn.close !== 'function' ||
          typeof conn.whenClosed !== 'function'
        ) {
          if (isRecord(conn) && typeof conn.close === 'function')
            (conn as { close(): unknown }).close();
          throw invalidArg(
            `connect() must resolve with an object with close() and whenClosed(), got ${describe(conn)}`,
          );
        }
        outcome = { ok: true, connection: conn };
      } catch (error) {
        outcome = { ok: false, error };
      } finally {
        this.attemptInFlight = false;
      }
      const published = this.nextResult;
      this.nextResult = deferred();
      published.resolve(outcome);

      if (outcome.ok) {
        this.failures = 0;
        const conn = outcome.connection;
        void this.whenClosed(conn);
        const live: Live<Conn> = { conn, connectedHandled: false, disconnecting: deferred() };
        this.live = live;
        this.fillSlot({ kind: 'ok', conn });
        return { live, deadline, delay };
      }
      this.failures += 1;
      const same =
        previousError !== undefined && this.errorEqual(previousError.value, outcome.error);
      previousError = { value: outcome.error };
      if (!same) await this.emit({ type: 'failed_to_connect', error: outcome.error });
      await this.waitUntil(deadline, delay);
    }
  }
}
