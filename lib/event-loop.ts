import { createSlotMap } from './internal/slot-map';
import type { DangaSocket } from './danga-socket';
import { DangaSocketError } from './errors';
import {
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
  kCandidate,
  kEvents,
  kFinish,
  kHandle,
  kPushback,
  kResetClose,
  kWatchingRead,
} from './internal';
import {
  MAX_TIMER_MS,
  afterIo,
  cancelAfterIo,
  type AfterIoHandle,
  cancelTimer,
  holdProcess,
  nowSeconds,
  releaseProcess,
  startTimer,
  type TimerHandle,
} from './internal/clock';
import { setAfterReady } from './native-socket';
import { TimerQueue } from './timer';

export { nowSeconds };

/**
 * The process-wide loop state and one iteration (reference §3):
 * timers → collect ready events → dispatch → pushback → deferred closes → post-loop callbacks.
 * Readiness is level-triggered: an object stays a candidate while its condition holds.
 */

/** Called for a raw descriptor in `OtherFds` with the event mask (1 IN, 4 OUT, 8 ERR, 16 HUP). */
export type OtherFdCallback = (mask: number) => void;

/** A post-loop callback; the first falsy return (Perl truthiness) ends `EventLoop()`. */
export type PostLoopCallback = (
  descriptorMap: Map<number, DangaSocket>,
  otherFds: ReadonlyMap<number, OtherFdCallback>,
) => unknown;

/** Where an error reported to the error handler came from. */
export interface ErrorContext {
  readonly kind:
    | 'eventRead'
    | 'eventWrite'
    | 'eventErr'
    | 'eventHup'
    | 'timer'
    | 'postLoopCallback'
    | 'otherFd'
    | 'accept'
    /** A TLS handshake failed; the connection's object (if any) was closed with `'tls_error'`. */
    | 'tls'
    /** A PROXY protocol header failed; that connection was closed before any object had it. */
    | 'proxy_protocol';
  /** The object whose hook threw (closed with reason `handler_error`), if any. */
  readonly object?: DangaSocket;
}

export type ErrorHandler = (err: unknown, context: ErrorContext) => void;

/** Profiling rows: `[userSeconds, systemSeconds, calls]`. */
export type ProfilingRow = [number, number, number];

/** Backend for raw descriptors (the addon's uv_poll), installed by `OtherFds`. */
export interface OtherFdWatcher {
  close(): void;
}

const MAX_EVENTS = 1000;
const HOOK_KINDS = ['eventRead', 'eventWrite', 'eventErr', 'eventHup'] as const;
const PROFILE_SUFFIX = ['-read', '-write', '-err', '-hup'] as const;

/** Perl truthiness: undef, '', '0', 0 and false are false. */
export function perlTrue(v: unknown): boolean {
  return !(v === undefined || v === null || v === false || v === 0 || v === '' || v === '0');
}

export function defaultErrorHandler(err: unknown, context: ErrorContext): void {
  // Duck-typed: errors from other realms fail `instanceof Error`.
  const e =
    typeof err === 'object' && err !== null ? (err as { message?: unknown; stack?: unknown }) : {};
  const message = typeof e.message === 'string' ? e.message : String(err);
  const lines = [`ERROR: ${context.kind} threw: ${message}`];
  if (context.object !== undefined) {
    lines.push(`\t${context.object.constructor.name} = ${context.object.asString()}`);
  }
  if (typeof e.stack === 'string') {
    for (const frame of e.stack.split('\n').slice(1)) lines.push(`\t${frame.trim()}`);
  }
  process.stderr.write(lines.join('\n') + '\n');
}

function invokeHook(obj: DangaSocket, which: 0 | 1 | 2 | 3): void {
  if (which === 0) obj.eventRead();
  else if (which === 1) obj.eventWrite();
  else if (which === 2) obj.eventErr();
  else obj.eventHup();
}

/** The descriptor map's storage, typed as what it is (`loop.map` is this object). */
const descriptors = createSlotMap<DangaSocket>();

class Loop {
  /** The descriptor map: a `Map` (see SlotMap for why its values are kept apart). */
  readonly map: Map<number, DangaSocket> = descriptors;
  readonly otherFds = new Map<number, OtherFdCallback>();
  readonly otherWatchers = new Map<number, OtherFdWatcher>();
  /** Raw descriptors reported ready since the last collect: fd → mask. */
  readonly otherReady = new Map<number, number>();
  /**
   * Objects whose readiness may have changed, in the order they were told (each object once:
   * its kCandidate flag). An array, not a Set: no hash-table entry per ready object.
   */
  candidates: (DangaSocket | undefined)[] = [];
  /** Candidates in use: `candidates[0, candLen)`; the rest hold undefined (no length writes). */
  candLen = 0;
  readonly pushbackSet = new Set<DangaSocket>();
  readonly plcMap = new Map<DangaSocket, PostLoopCallback>();
  readonly timers = new TimerQueue();
  readonly profile: Record<string, ProfilingRow> = {};
  /** Deferred closes: objects and their handles (null for stolen sockets: forget only). */
  closeObjs: DangaSocket[] = [];
  closeHandles: ({ destroy(): void } | null)[] = [];
  globalPlc: PostLoopCallback | null = null;
  loopTimeout = -1;
  profiling = false;
  errorHandler: ErrorHandler = defaultErrorHandler;
  /** Run at the end of reset(): helpers with their own state (timers, signals) register here. */
  readonly resetHooks: (() => void)[] = [];

  running = false;
  /** An error handler's rethrow while no loop ran: the next run() rejects with it. */
  private pendingFatal: { err: unknown } | null = null;
  private generation = 0;
  private resolveRun: (() => void) | null = null;
  private rejectRun: ((err: unknown) => void) | null = null;
  private waiting = false;
  /** The pending `afterWait` call of a wake-up, until it runs. */
  private wakeCall: AfterIoHandle | null = null;
  private waitTimer: TimerHandle | null = null;
  private waitDeadline = Infinity;
  /** The current wait ends because of a timer (not the loop timeout). */
  private timerDriven = false;
  /** When the current wait began (epoch seconds), for the loop timeout. */
  private waitStart = 0;
  private keepAlive: TimerHandle | null = null;
  private evObjs: DangaSocket[] = [];
  private evMasks: number[] = [];
  private evOther: number[] = [];
  private evCount = 0;
  /** The running loop's AbortSignal, if any; its abort ends the loop after this iteration. */
  private abortSignal: AbortSignal | null = null;
  private stopRequested = false;
  private readonly onAbort = (): void => {
    this.stopRequested = true;
    this.wake();
  };

  run(signal?: AbortSignal): Promise<void> {
    if (this.running) {
      return Promise.reject(
        new DangaSocketError('DS_ERR_LOOP_RUNNING', 'EventLoop() is already running'),
      );
    }
    if (this.pendingFatal !== null) {
      const { err } = this.pendingFatal;
      this.pendingFatal = null;
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    if (signal?.aborted === true) return Promise.resolve();
    this.stopRequested = false;
    if (signal !== undefined) {
      this.abortSignal = signal;
      signal.addEventListener('abort', this.onAbort, { once: true });
    }
    return new Promise<void>((resolve, reject) => {
      this.running = true;
      this.resolveRun = resolve;
      this.rejectRun = reject;
      // Danga blocks forever with nothing to do; keep Node alive likewise while we run.
      this.keepAlive = holdProcess();
      afterIo(this.iterate, ++this.generation);
    });
  }

  /** End the running loop: resolve (err undefined) or reject its promise. */
  stop(err?: unknown, failed = false): void {
    if (!this.running) return;
    this.running = false;
    this.generation++;
    this.waiting = false;
    if (this.wakeCall !== null) cancelAfterIo(this.wakeCall);
    this.wakeCall = null;
    this.stopRequested = false;
    this.abortSignal?.removeEventListener('abort', this.onAbort);
    this.abortSignal = null;
    if (this.waitTimer !== null) cancelTimer(this.waitTimer);
    this.waitTimer = null;
    if (this.keepAlive !== null) releaseProcess(this.keepAlive);
    this.keepAlive = null;
    const resolve = this.resolveRun;
    const reject = this.rejectRun;
    this.resolveRun = this.rejectRun = null;
    if (failed) reject?.(err);
    else resolve?.();
  }

  /** A descriptor's readiness may have changed. */
  markReady(obj: DangaSocket): void {
    if (!obj[kCandidate]) {
      obj[kCandidate] = true;
      this.candidates[this.candLen++] = obj;
    }
    if (this.waiting) this.wake();
  }

  /** A raw descriptor in OtherFds reported events. */
  markOtherReady(fd: number, mask: number): void {
    this.otherReady.set(fd, (this.otherReady.get(fd) ?? 0) | mask);
    if (this.waiting) this.wake();
  }

  /** Something changed from outside an iteration (e.g. a close): run an iteration. */
  wake(): void {
    if (!this.waiting) return;
    this.waiting = false;
    if (this.waitTimer !== null) {
      cancelTimer(this.waitTimer);
      this.waitTimer = null;
    }
    // In the check phase: every I/O callback of this poll phase lands first (batching).
    this.wakeCall = afterIo(this.afterWait, this.generation);
  }

  /**
   * The native backend's readiness (every ready descriptor of the epoll set, in one call) has
   * just woken the waiting loop: run the iteration now, inside that call, instead of a libuv
   * turn later. The iteration sees the same events either way; this saves a turn per wake-up.
   */
  runWokenIteration(): void {
    const call = this.wakeCall;
    if (call === null) return;
    cancelAfterIo(call);
    this.afterWait(this.generation);
  }

  /** A timer was added while waiting: wait no longer than its delay. */
  timerAdded(fireTime: number): void {
    if (!this.waiting || fireTime >= this.waitDeadline) return;
    if (this.waitTimer !== null) cancelTimer(this.waitTimer);
    const ms = Math.max(0, Math.floor((fireTime - nowSeconds()) * 1000) + 1);
    this.timerDriven = true;
    this.armWait(ms);
  }

  private armWait(ms: number): void {
    this.waitDeadline = nowSeconds() + ms / 1000;
    this.waitTimer = startTimer(this.onWaitTimeout, Math.min(ms, MAX_TIMER_MS), this.generation);
  }

  private readonly iterate = (gen: number): void => {
    if (gen !== this.generation) return;
    // Aborted between iterations: the last one has ended. Closes made since (outside the
    // loop, before the abort) still belong to it: they are really closed, not left pending.
    if (this.stopRequested) {
      this.reapClosed();
      this.stop();
      return;
    }
    const timeout = this.runTimers(gen);
    if (gen !== this.generation) return;
    this.collect();
    // A pending close (made by a timer, a PLC, or outside the loop) is work: don't wait for
    // the next event before really closing it (Danga would block in epoll_wait here). Nor does
    // an abort (e.g. from a timer): this iteration ends without waiting.
    if (this.evCount === 0 && timeout !== 0 && this.closeObjs.length === 0 && !this.stopRequested) {
      this.waiting = true;
      this.waitDeadline = Infinity;
      this.waitStart = nowSeconds();
      if (timeout > 0) this.armWait(timeout);
      return;
    }
    this.finishIteration(gen);
  };

  private readonly afterWait = (gen: number): void => {
    if (gen !== this.generation) return;
    this.wakeCall = null;
    this.collect();
    this.finishIteration(gen);
  };

  private readonly onWaitTimeout = (gen: number): void => {
    if (gen !== this.generation || !this.waiting) return;
    this.waitTimer = null;
    if (this.timerDriven && this.keepWaiting()) return;
    this.waiting = false;
    this.waitTimer = null;
    this.collect();
    this.finishIteration(gen);
  };

  /**
   * A timer-driven wait ended but no timer is due: the timer was cancelled (or Node's timer
   * fired early by its cached clock). Wait on for the next live timer or the loop timeout.
   */
  private keepWaiting(): boolean {
    const now = nowSeconds();
    const head = this.timers.peek();
    if (head !== undefined && head.fireTime <= now) return false;
    let ms = head === undefined ? Infinity : Math.floor((head.fireTime - now) * 1000) + 1;
    this.timerDriven = head !== undefined;
    if (this.loopTimeout >= 0) {
      const rest = Math.ceil((this.waitStart - now) * 1000 + this.loopTimeout);
      if (rest <= 0) return false;
      if (rest <= ms) {
        ms = rest;
        this.timerDriven = false;
      }
    }
    this.waitDeadline = Infinity;
    if (ms !== Infinity) this.armWait(ms);
    return true;
  }

  private finishIteration(gen: number): void {
    this.dispatch(gen);
    if (gen !== this.generation) return;
    const keep = this.postEventLoop(gen);
    if (!keep || this.stopRequested) {
      if (gen === this.generation) this.stop();
      return;
    }
    if (gen === this.generation) afterIo(this.iterate, gen);
  }

  /** Run due timers; returns the poll timeout in ms (-1 = none), as Danga's RunTimers. */
  private runTimers(gen: number): number {
    const timers = this.timers;
    let head = timers.peek();
    if (head === undefined) {
      this.timerDriven = false;
      return this.loopTimeout;
    }
    const now = nowSeconds();
    // A timer added by a timer of this pass at this same instant (a frozen or coarse clock)
    // has a delay >= 0: it waits for a later pass. Only a negative delay runs in this one.
    const firstAdded = timers.nextSeq;
    let ran = false;
    while (
      head !== undefined &&
      (head.fireTime < now || (head.fireTime === now && head.seq < firstAdded))
    ) {
      timers.pop();
      const cb = head.cb;
      head.cb = null;
      if (cb !== null) {
        ran = true;
        try {
          cb(now);
        } catch (err) {
          this.report(err, { kind: 'timer' });
        }
        if (gen !== this.generation) return 0;
      }
      head = timers.peek();
    }
    if (head === undefined) {
      this.timerDriven = false;
      return this.loopTimeout;
    }
    // Danga computes the wait from the pass's stale snapshot, so a slow callback lengthens it
    // by its own duration (a timer added 100 ms ahead after 200 ms of work waits 300 ms). We
    // read the clock again when a callback ran: the wait ends when the head is due.
    const ms = ran
      ? Math.max(0, Math.floor((head.fireTime - nowSeconds()) * 1000) + 1)
      : Math.floor((head.fireTime - now) * 1000) + 1;
    this.timerDriven = this.loopTimeout < 0 || ms < this.loopTimeout;
    return this.timerDriven ? ms : this.loopTimeout;
  }

  /** Snapshot the ready events: (object, mask) pairs in readiness order, then raw fds. */
  private collect(): void {
    let n = 0;
    const objs = this.evObjs;
    const masks = this.evMasks;
    const c = this.candidates;
    const len = this.candLen;
    let w = 0;
    for (let i = 0; i < len; i++) {
      const obj = c[i] as DangaSocket;
      if (!obj[kCandidate]) continue; // dropped by a close
      const m = obj.closed ? 0 : obj[kEvents]();
      if (m === 0) {
        obj[kCandidate] = false;
        continue;
      }
      objs[n] = obj;
      masks[n] = m;
      c[w++] = obj;
      if (++n >= MAX_EVENTS) {
        // epoll rotates level-triggered entries: the reported ones go to the back, behind
        // the candidates not looked at yet.
        w = 0;
        for (let j = i + 1; j < len; j++) {
          const o = c[j] as DangaSocket;
          if (o[kCandidate]) c[w++] = o;
        }
        for (let k = 0; k < n; k++) c[w++] = objs[k];
        break;
      }
    }
    // Dropped candidates' slots are cleared, not cut off: a length write is a runtime call.
    for (let j = w; j < len; j++) c[j] = undefined;
    this.candLen = w;
    this.evCount = n;
    const other = this.evOther;
    if (other.length !== 0) other.length = 0;
    if (this.otherReady.size > 0) {
      for (const [fd, mask] of this.otherReady) other.push(fd, mask);
      this.otherReady.clear();
    }
  }

  private dispatch(gen: number): void {
    const n = this.evCount;
    const objs = this.evObjs;
    const masks = this.evMasks;
    for (let i = 0; i < n; i++) {
      const obj = objs[i] as DangaSocket;
      const m = masks[i] as number;
      objs[i] = undefined as unknown as DangaSocket; // don't pin closed objects
      // The snapshot counts, not the current interest; only `closed` suppresses a call.
      if (m & POLLIN && !obj.closed) this.callHook(obj, 0);
      if (m & POLLOUT && !obj.closed) this.callHook(obj, 1);
      if (m & POLLERR && !obj.closed) this.callHook(obj, 2);
      if (m & POLLHUP && !obj.closed) this.callHook(obj, 3);
      if (gen !== this.generation) return;
    }
    const other = this.evOther;
    for (let i = 0; i < other.length; i += 2) {
      const fd = other[i] as number;
      const cb = this.otherFds.get(fd);
      if (cb === undefined) continue;
      try {
        cb(other[i + 1] as number);
      } catch (err) {
        this.report(err, { kind: 'otherFd' });
      }
      if (gen !== this.generation) return;
    }
  }

  /** Call one hook; a throw closes that object and is reported. Profiled behind one check. */
  private callHook(obj: DangaSocket, which: 0 | 1 | 2 | 3): void {
    if (this.profiling) {
      this.callProfiled(obj, which);
      return;
    }
    try {
      invokeHook(obj, which);
    } catch (err) {
      this.hookFailed(obj, err, HOOK_KINDS[which]);
    }
  }

  private callProfiled(obj: DangaSocket, which: 0 | 1 | 2 | 3): void {
    const key = obj.constructor.name + PROFILE_SUFFIX[which];
    const start = process.cpuUsage();
    try {
      invokeHook(obj, which);
    } catch (err) {
      this.hookFailed(obj, err, HOOK_KINDS[which]);
    } finally {
      const used = process.cpuUsage(start);
      const row = (this.profile[key] ??= [0, 0, 0]);
      row[0] += used.user / 1e6;
      row[1] += used.system / 1e6;
      row[2] += 1;
    }
  }

  /** A hook threw: close that object (reason handler_error), report, keep the loop going. */
  hookFailed(obj: DangaSocket, err: unknown, kind: ErrorContext['kind']): void {
    try {
      obj.close('handler_error');
    } catch (closeErr) {
      obj[kResetClose]('handler_error', false);
      this.report(closeErr, { kind, object: obj });
    }
    if (!obj.closed) obj[kResetClose]('handler_error', false);
    this.report(err, { kind, object: obj });
  }

  /** Hand an error to the error handler; if that throws, the EventLoop promise rejects. */
  report(err: unknown, context: ErrorContext): void {
    try {
      this.errorHandler(err, context);
    } catch (fatal) {
      // Outside a running loop (an accept error between runs) there is no promise to
      // reject yet: the next EventLoop() rejects with it instead of an uncaught exception.
      if (this.running) this.stop(fatal, true);
      else this.pendingFatal ??= { err: fatal };
    }
  }

  /** Pushback, deferred closes, post-loop callbacks. Returns keep-running. */
  private postEventLoop(gen: number): boolean {
    const pb = this.pushbackSet;
    let again = pb.size > 0;
    while (again) {
      again = false;
      for (const obj of [...pb]) {
        if (!pb.has(obj)) continue;
        if (obj[kPushback].length === 0) {
          pb.delete(obj);
          continue;
        }
        if (obj.closed || !obj[kWatchingRead]) continue;
        try {
          obj.eventRead();
        } catch (err) {
          this.hookFailed(obj, err, 'eventRead');
        }
        if (gen !== this.generation) return false;
        again = true;
      }
    }
    this.reapClosed();
    let keep = true;
    if (this.plcMap.size > 0) {
      for (const [obj, cb] of this.plcMap) {
        try {
          keep = perlTrue(cb(this.map, this.otherFds));
        } catch (err) {
          this.hookFailed(obj, err, 'postLoopCallback');
        }
        if (gen !== this.generation) return false;
        if (!keep) return false;
      }
    }
    const global = this.globalPlc;
    if (global !== null) {
      try {
        keep = perlTrue(global(this.map, this.otherFds));
      } catch (err) {
        this.report(err, { kind: 'postLoopCallback' });
      }
    }
    return keep;
  }

  /** Really close what was closed during the iteration, and forget stolen sockets. */
  reapClosed(): void {
    if (this.closeObjs.length === 0) return;
    const objs = this.closeObjs;
    const handles = this.closeHandles;
    this.closeObjs = [];
    this.closeHandles = [];
    for (let i = 0; i < objs.length; i++) {
      const obj = objs[i] as DangaSocket;
      const h = handles[i];
      if (h !== null && h !== undefined) h.destroy();
      descriptors.deleteEntry(obj.id, obj);
      obj[kFinish](h === null ? 'stolen' : obj.closeReason);
    }
  }

  /** Enter a new object in the descriptor map (its id is new: no entry has it). */
  register(obj: DangaSocket): void {
    descriptors.add(obj.id, obj);
  }

  /** Schedule the end-of-iteration close of `obj` (handle null: steal, forget only). */
  deferClose(obj: DangaSocket, handle: { destroy(): void } | null): void {
    this.closeObjs.push(obj);
    this.closeHandles.push(handle);
    obj[kCandidate] = false;
    if (this.pushbackSet.size > 0) this.pushbackSet.delete(obj);
    if (this.plcMap.size > 0) this.plcMap.delete(obj);
    if (this.waiting) this.wake();
  }

  /** Handles waiting for their deferred close. */
  pendingCloseHandles(): unknown[] {
    const out: unknown[] = [];
    for (let i = 0; i < this.closeObjs.length; i++) {
      if (this.closeHandles[i] !== null) out.push((this.closeObjs[i] as DangaSocket)[kHandle]);
    }
    return out;
  }

  reset(): void {
    this.pendingFatal = null;
    const wasRunning = this.running;
    for (const obj of [...this.map.values()]) obj[kResetClose]('reset', true);
    for (let i = 0; i < this.closeObjs.length; i++) {
      this.closeHandles[i]?.destroy();
      (this.closeObjs[i] as DangaSocket)[kFinish]('reset');
    }
    this.closeObjs = [];
    this.closeHandles = [];
    this.map.clear();
    for (let i = 0; i < this.candLen; i++) (this.candidates[i] as DangaSocket)[kCandidate] = false;
    this.candidates = [];
    this.candLen = 0;
    this.pushbackSet.clear();
    this.plcMap.clear();
    for (const w of this.otherWatchers.values()) w.close();
    this.otherWatchers.clear();
    this.otherFds.clear();
    this.otherReady.clear();
    this.timers.clear();
    for (const k of Object.keys(this.profile)) delete this.profile[k];
    this.globalPlc = null;
    this.loopTimeout = -1;
    this.profiling = false;
    this.errorHandler = defaultErrorHandler;
    this.evObjs = [];
    this.evMasks = [];
    this.evCount = 0;
    for (const hook of this.resetHooks) hook();
    if (wasRunning) this.stop();
  }
}

/** The one loop of the process. */
export const loop = new Loop();
setAfterReady(() => loop.runWokenIteration());

export { POLLIN, POLLOUT, POLLERR, POLLHUP };
