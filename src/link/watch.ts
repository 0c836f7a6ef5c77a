/**
 * Link state, as every long-running command needs it (README, "When the link goes down"): is the interface there,
 * administratively up, and has it a carrier? Read with SIOCGIFFLAGS in this process's network namespace through
 * the addon, polled on a timer (a few syscalls per poll), so it sees `ip link set IF down`, a peer or carrier going
 * away, and the interface being deleted — the last for good, even if one of the same name comes back (a new ifindex).
 */
import { EventEmitter } from 'node:events';
import { loadAddon } from './addon.js';

export type LinkStatus = 'up' | 'down' | 'gone';

export interface LinkDownEvent {
  iface: string;
  /** Date.now() when the outage was seen. */
  at: number;
}

export interface LinkUpEvent extends LinkDownEvent {
  /** How long the link was down, in ms. */
  downMs: number;
}

/** The status of IF right now; `index` pins it to one interface (a later one of the same name is another). */
export function linkStatus(iface: string, index?: number): { status: LinkStatus; index: number } {
  const s = loadAddon().linkState(iface);
  if (s.index === 0 || (index !== undefined && index !== 0 && s.index !== index)) return { status: 'gone', index: s.index };
  return { status: s.up && s.carrier ? 'up' : 'down', index: s.index };
}

/**
 * Emits 'down' (LinkDownEvent), 'up' (LinkUpEvent) and once 'gone' ({iface, at}) for one interface. Its timer does not
 * keep the process alive. check() reads the state at once (a send that failed with ENETDOWN calls it).
 */
export class LinkWatch extends EventEmitter {
  readonly iface: string;
  readonly index: number;
  status: LinkStatus;
  /** Date.now() of the current outage's start (status 'down'), else null. */
  downSince: number | null = null;
  outages = 0;
  downMsTotal = 0;
  private timer: NodeJS.Timeout | null;

  constructor(iface: string, pollMs = 100) {
    super();
    this.iface = iface;
    const s = linkStatus(iface);
    this.index = s.index;
    this.status = s.status;
    if (this.status === 'down') this.downSince = Date.now();
    this.timer = this.status === 'gone' ? null : setInterval(() => this.check(), pollMs);
    this.timer?.unref();
  }

  /** Reads the state now and emits what changed; returns the status. */
  check(): LinkStatus {
    if (this.status === 'gone') return 'gone';
    const s = linkStatus(this.iface, this.index).status;
    if (s === this.status) return s;
    const at = Date.now();
    const was = this.status;
    this.status = s;
    if (s === 'gone') {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      if (this.downSince !== null) this.downMsTotal += at - this.downSince;
      this.emit('gone', { iface: this.iface, at });
    } else if (s === 'down') {
      this.downSince = at;
      this.outages++;
      this.emit('down', { iface: this.iface, at } satisfies LinkDownEvent);
    } else if (was === 'down') {
      const downMs = at - (this.downSince ?? at);
      this.downMsTotal += downMs;
      this.downSince = null;
      this.emit('up', { iface: this.iface, at, downMs } satisfies LinkUpEvent);
    }
    return s;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.removeAllListeners();
  }
}
