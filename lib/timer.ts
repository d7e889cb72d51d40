/**
 * Danga::Socket timers, ordered by (fire time, insertion sequence), so equal fire times run in
 * the order they were added. Cancelled timers stay queued until they reach the head, where
 * they are dropped without waking the loop.
 */

/** A timer returned by `DangaSocket.AddTimer`. */
export class Timer {
  /** @internal insertion sequence, the tie-breaker for equal fire times */
  readonly seq: number;
  /** @internal */
  cb: ((now: number) => void) | null;

  /**
   * @param fireTime epoch seconds (float) at which the timer fires
   * @internal created by `DangaSocket.AddTimer` only
   */
  constructor(
    readonly fireTime: number,
    cb: (now: number) => void,
    seq: number,
  ) {
    this.cb = cb;
    this.seq = seq;
  }

  /** Cancel the timer. Idempotent; harmless after it fired. */
  cancel(): void {
    this.cb = null;
  }

  /** True until the timer fires or is cancelled. */
  get isPending(): boolean {
    return this.cb !== null;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.fireTime < b.fireTime || (a.fireTime === b.fireTime && a.seq < b.seq);
}

function byFireTime(a: Timer, b: Timer): number {
  return a.fireTime - b.fireTime || a.seq - b.seq;
}

/** The timers of one millisecond, consumed from `head`; sorted lazily when out of order. */
class Bucket {
  list: Timer[] = [];
  head = 0;
  sorted = true;
}

/**
 * @internal Timers bucketed by millisecond, with a min-heap of the bucket keys: adding is O(1)
 * plus O(log buckets) for a new millisecond, and firing touches each timer once (a binary
 * heap of 10^6 timers spent most of its time in cache misses). Order within a bucket is
 * (fire time, insertion sequence), restored by one sort when additions arrived out of order.
 * A millisecond with one timer (most of them, when delays are spread wide) maps straight to
 * that timer: no bucket and no list to allocate, fill and drop.
 */
export class TimerQueue {
  private readonly buckets = new Map<number, Bucket | Timer>();
  private keys: number[] = [];
  private seq = 0;
  private count = 0;
  /**
   * Keys count milliseconds from the first timer's: small integers (V8 Smis) hash and compare
   * faster than epoch milliseconds (about 1.8e12, boxed doubles).
   */
  private base = 0;
  private based = false;

  /** Timers queued, cancelled ones included until they are dropped. */
  get size(): number {
    return this.count;
  }

  /** The sequence number the next `add` gets: timers added from now on have one >= this. */
  get nextSeq(): number {
    return this.seq;
  }

  add(fireTime: number, cb: (now: number) => void): Timer {
    const t = new Timer(fireTime, cb, this.seq++);
    let key = Math.floor(fireTime * 1000);
    // A safe integer only: an absurd first delay (1e300 s) must not become the base that
    // rounds every later millisecond into one bucket.
    if (!this.based && Number.isSafeInteger(key)) {
      this.base = key;
      this.based = true;
    }
    key -= this.base;
    const found = this.buckets.get(key);
    this.count++;
    if (found === undefined) {
      this.buckets.set(key, t);
      this.pushKey(key);
      return t;
    }
    let b: Bucket;
    if (found instanceof Timer) {
      b = new Bucket();
      b.list.push(found);
      this.buckets.set(key, b);
    } else {
      b = found;
    }
    if (b.sorted && b.list.length > b.head) {
      const last = b.list[b.list.length - 1] as Timer;
      if (before(t, last)) b.sorted = false;
    }
    b.list.push(t);
    return t;
  }

  /** The earliest live timer, dropping cancelled ones from the head. */
  peek(): Timer | undefined {
    for (;;) {
      const key = this.keys[0];
      if (key === undefined) return undefined;
      const b = this.buckets.get(key) as Bucket | Timer;
      if (b instanceof Timer) {
        if (b.cb !== null) return b;
        this.count--;
      } else {
        if (!b.sorted) {
          b.list = b.list.slice(b.head).sort(byFireTime);
          b.head = 0;
          b.sorted = true;
        }
        while (b.head < b.list.length) {
          const t = b.list[b.head] as Timer;
          if (t.cb !== null) return t;
          b.head++;
          this.count--;
        }
      }
      this.buckets.delete(key);
      this.popKey();
    }
  }

  /** Remove and return the earliest live timer. */
  pop(): Timer | undefined {
    const t = this.peek();
    if (t === undefined) return undefined;
    const key = this.keys[0] as number;
    const b = this.buckets.get(key) as Bucket | Timer;
    if (b instanceof Timer) {
      this.buckets.delete(key);
      this.popKey();
    } else {
      b.list[b.head++] = undefined as unknown as Timer; // don't pin fired timers
    }
    this.count--;
    return t;
  }

  clear(): void {
    this.based = false;
    this.buckets.clear();
    this.keys = [];
    this.count = 0;
  }

  private pushKey(key: number): void {
    const h = this.keys;
    let i = h.length;
    h.push(key);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as number;
      if (p <= key) break;
      h[i] = p;
      i = parent;
    }
    h[i] = key;
  }

  private popKey(): void {
    const h = this.keys;
    const last = h.pop();
    if (last === undefined || h.length === 0) return;
    const n = h.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && (h[r] as number) < (h[l] as number)) c = r;
      const child = h[c] as number;
      if (child >= last) break;
      h[i] = child;
      i = c;
    }
    h[i] = last;
  }
}
