/**
 * Two kinds of failure, matching the exit codes our users' tools use:
 * UsageError (exit 2) — the command line or input is wrong; nothing was sent.
 * RuntimeError (exit 1) — the request was fine but the world said no (no ARP reply, no permission, link down).
 * The message is one line that names the bad value and, where it can, what would be valid.
 * The codecs in wire/ have their own errors (WireError, AddressError) and know nothing of these; the CLI maps them
 * (cli/main.ts exitCodeFor).
 */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }

}

export class RuntimeError extends Error {
  readonly exitCode = 1;
  constructor(message: string) {
    super(message);
    this.name = 'RuntimeError';
  }
}

/** The link is down (administratively, or no carrier): a sender may wait for it, queue, or count what it could not send. */
export class LinkDownError extends RuntimeError {
  readonly code = 'ENETDOWN';
  constructor(readonly iface: string) {
    super(`link ${iface} is down`);
    this.name = 'LinkDownError';
  }
}

/** The interface was deleted (or replaced by another of the same name): nothing will bring this one back. */
export class LinkGoneError extends RuntimeError {
  readonly code = 'ENXIO';
  constructor(readonly iface: string) {
    super(`interface ${iface} disappeared`);
    this.name = 'LinkGoneError';
  }
}
