/**
 * Danga::Socket timers: a binary heap ordered by (fire time, insertion sequence), so equal
 * fire times run in the order they were added. Cancelled timers stay in the heap until they
 * reach its head, where they are dropped without waking the loop.
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

/** @internal min-heap of timers. */
export class TimerQueue {
  private heap: Timer[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  add(fireTime: number, cb: (now: number) => void): Timer {
    const t = new Timer(fireTime, cb, this.nextSeq++);
    const h = this.heap;
    let i = h.length;
    h.push(t);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent] as Timer;
      if (!before(t, p)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = t;
    return t;
  }

  /** The earliest live timer, dropping cancelled ones from the head. */
  peek(): Timer | undefined {
    let head = this.heap[0];
    while (head !== undefined && head.cb === null) {
      this.pop();
      head = this.heap[0];
    }
    return head;
  }

  pop(): Timer | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    // Sift the last element down from the root.
    const n = h.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      let c = l;
      if (r < n && before(h[r] as Timer, h[l] as Timer)) c = r;
      const child = h[c] as Timer;
      if (!before(child, last)) break;
      h[i] = child;
      i = c;
    }
    h[i] = last;
    return top;
  }

  clear(): void {
    this.heap.length = 0;
  }
}
