/**
 * Datagrams that arrive while their link is down (README, "When the link goes down"): up to `limit` wait here, in
 * order, and go out when the link is back; past the limit the oldest are dropped and counted — a log stream's newest
 * lines, the ones around the outage, matter most. Nothing leaves it uncounted.
 */
import { LinkDownError } from '../errors.js';

export class LinkQueue {
  readonly limit: number;
  private items: Buffer[] = [];
  private head = 0;
  /** Datagrams that waited here at some point. */
  queuedTotal = 0;
  /** Datagrams dropped because the queue was full (the oldest go first). */
  dropped = 0;

  constructor(limit: number) {
    if (!(Number.isInteger(limit) && limit >= 0)) throw new RangeError(`LinkQueue limit must be an integer >= 0, got ${limit}`);
    this.limit = limit;
  }

  get length(): number {
    return this.items.length - this.head;
  }

  /** Keeps a copy of `d` (the caller's buffer may be reused). */
  push(d: Uint8Array): void {
    this.queuedTotal++;
    if (this.limit === 0) {
      this.dropped++;
      return;
    }
    if (this.length >= this.limit) {
      this.head++;
      this.dropped++;
    }
    this.items.push(Buffer.from(d));
    if (this.head > 1024 && this.head * 2 > this.items.length) this.compact();
  }

  /**
   * Hands the waiting datagrams to `send` in order until the queue is empty (true) or `send` throws LinkDownError
   * (false: the link went down again; the rest keep waiting). Any other error propagates.
   */
  flush(send: (d: Buffer) => void): boolean {
    while (this.length > 0) {
      try {
        send(this.items[this.head]);
      } catch (e) {
        if (e instanceof LinkDownError) return false;
        throw e;
      }
      this.head++;
    }
    this.items = [];
    this.head = 0;
    return true;
  }

  /** Empties the queue, returning how many were still waiting (the caller reports them as not sent). */
  discard(): number {
    const n = this.length;
    this.items = [];
    this.head = 0;
    return n;
  }

  private compact(): void {
    this.items = this.items.slice(this.head);
    this.head = 0;
  }
}
