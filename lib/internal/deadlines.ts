/**
 * Per-object deadlines on the loop's timers: `closeAfterFlush` and `setIdleTimeout`.
 *
 * The idle check is lazy so the read and write paths never read the clock: they only bump
 * `obj[kActivity]`. A timer every quarter of the idle period compares the count; the object
 * closes once a whole period passed since the last check that saw it change. So the close comes
 * between `seconds` and 1.25 × `seconds` after the last byte, never earlier.
 */
import type { DangaSocket } from '../danga-socket';
import { loop, nowSeconds } from '../event-loop';
import type { Timer } from '../timer';

/** Bumped by every read that returned bytes and every write the kernel took bytes from. */
export const kActivity = Symbol('activity');

/** Checks per idle period: the close may come up to 1/IDLE_STEPS of the period late. */
const IDLE_STEPS = 4;
/** Float slack when comparing elapsed seconds (timers never fire early by more). */
const EPSILON_S = 1e-6;

/** `DangaSocket.AddTimer` without its argument checks (ours are checked by the callers). */
function addTimer(seconds: number, cb: (now: number) => void): Timer {
  const fireTime = nowSeconds() + seconds;
  const t = loop.timers.add(fireTime, cb);
  loop.timerAdded(fireTime);
  return t;
}

export class Deadlines {
  private flushTimer: Timer | null = null;
  private flushDeadline = Infinity;
  private flushing = false;
  private idleTimer: Timer | null = null;
  private idleS = 0;
  private seen = 0;
  private lastSeenS = 0;

  constructor(private readonly obj: DangaSocket) {
    // Release the timers (and with them this object) as soon as the socket is really closed.
    void obj.whenClosed().then(() => this.cancel());
  }

  closeAfterFlush(timeoutS: number): void {
    const obj = this.obj;
    obj.watchRead(false);
    const deadline = nowSeconds() + timeoutS;
    if (!this.flushing) {
      this.flushing = true;
      obj.write(this.flushed); // runs at once on an empty queue
      if (obj.closed) return;
    } else if (deadline >= this.flushDeadline) {
      return; // an earlier deadline stands
    }
    this.flushTimer?.cancel();
    this.flushDeadline = deadline;
    this.flushTimer = addTimer(timeoutS, this.flushTimedOut);
  }

  setIdleTimeout(seconds: number | null): void {
    this.idleTimer?.cancel();
    this.idleTimer = null;
    if (seconds === null) return;
    this.idleS = seconds;
    this.seen = this.obj[kActivity];
    this.lastSeenS = nowSeconds();
    this.idleTimer = addTimer(seconds / IDLE_STEPS, this.idleCheck);
  }

  private cancel(): void {
    this.flushTimer?.cancel();
    this.flushTimer = null;
    this.idleTimer?.cancel();
    this.idleTimer = null;
  }

  private readonly flushed = (): void => {
    this.flushTimer?.cancel();
    this.flushTimer = null;
    this.obj.close('flushed');
  };

  private readonly flushTimedOut = (): void => {
    this.flushTimer = null;
    if (!this.obj.closed) this.obj.close('flush_timeout');
  };

  private readonly idleCheck = (now: number): void => {
    this.idleTimer = null;
    const obj = this.obj;
    if (obj.closed) return;
    const count = obj[kActivity];
    if (count !== this.seen) {
      this.seen = count;
      this.lastSeenS = now;
    } else if (now - this.lastSeenS >= this.idleS - EPSILON_S) {
      obj.close('idle_timeout');
      return;
    }
    const left = this.lastSeenS + this.idleS - now;
    this.idleTimer = addTimer(Math.max(0, Math.min(this.idleS / IDLE_STEPS, left)), this.idleCheck);
  };
}
