import { Command, CommanderError } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError, RuntimeError } from '../errors.js';
import { WireError } from '../wire/error.js';

/**
 * Every subcommand lives in its own module under src/cli/ and exports `register(program)`.
 * Add one line here to wire a new subcommand in. Only the module of the command being run is loaded (a blast or
 * send starts ~0.1 s sooner); `rawpoll --help` and unknown commands load them all.
 */
type Register = (program: Command) => void;
const COMMANDS: Record<string, () => Promise<{ register: Register }>> = {
  arp: () => import('./arp.js'),
  ndp: () => import('./ndp.js'),
  send: () => import('./send.js'),
  netconsole: () => import('./netconsole.js'),
  oops: () => import('./oops.js'),
  collect: () => import('./collect.js'),
  netdump: () => import('./netdump.js'),
  'netdump-server': () => import('./netdump-server.js'),
  blast: () => import('./blast.js'),
  sink: () => import('./sink.js'),
  rfc2544: () => import('./rfc2544.js'),
};

export async function main(argv: string[]): Promise<void> {
  // `rawpoll … | head`: a closed pipe ends the program quietly, as it does for tcpdump, not with a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  installFatalHandlers();
  // `--version [--json]` alone is answered before commander: a program-level --json would take the subcommands' own.
  const rest = argv.slice(2);
  if (rest.some((a) => a === '-V' || a === '--version') && rest.every((a) => a === '-V' || a === '--version' || a === '--json')) {
    await printVersion(rest.includes('--json'));
    return;
  }
  const program = new Command();
  program
    .name('rawpoll')
    .description('Userland netpoll: hand-built Ethernet/IPv4/UDP frames put straight on a NIC through libpcap,\n' +
      'with its own ARP — no kernel IP stack, routing table or neighbour cache in the way.')
    .version(packageVersion(), '-V, --version', "print rawpoll's version (with --json: also libpcap's, and whether the native addon loaded)")
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    // Our help texts are laid out by hand at up to ~120 columns; don't re-wrap them at 80 when stdout is not a TTY.
    .configureHelp({ helpWidth: Math.max(process.stdout.columns ?? 0, 120) });
  const name = argv[2];
  const wanted = name !== undefined && Object.hasOwn(COMMANDS, name) ? [COMMANDS[name]] : Object.values(COMMANDS);
  for (const load of wanted) (await load()).register(program);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = exitCodeFor(err);
  }
}

/**
 * An error thrown outside a command's action (in a timer, an event handler, a stream callback) is still one line and
 * exit 1, as exitCodeFor does for the action's own: Node would otherwise print a stack trace (README, "Exit codes").
 */
export function installFatalHandlers(): void {
  const fatal = (err: unknown) => {
    process.exitCode = exitCodeFor(err);
    process.exit();
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}

/** package.json's version: from src/cli (tsx) or dist/src/cli (compiled), the first ancestor that has it. */
export function packageVersion(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../..', '../../..']) {
    const p = resolve(here, up, 'package.json');
    if (!existsSync(p)) continue;
    const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'rawpoll' && pkg.version) return pkg.version;
  }
  return 'unknown';
}

/**
 * `rawpoll -V`: the version alone (as commander, npm, node print it). `--json` adds what a bug report needs and the
 * version alone does not say: the libpcap the addon is linked with, and whether the addon loaded at all (and why not).
 */
async function printVersion(json: boolean): Promise<void> {
  const version = packageVersion();
  if (!json) {
    process.stdout.write(version + '\n');
    return;
  }
  const { tryLoadAddon, addonLoadError } = await import('../link/addon.js');
  const addon = tryLoadAddon();
  let libpcap: string | null = null;
  try {
    libpcap = addon ? addon.pcapLibVersion() : null;
  } catch {
    libpcap = null; // an addon built before pcapLibVersion existed
  }
  process.stdout.write(JSON.stringify({
    version, node: process.versions.node, libpcap,
    addon: { loaded: addon !== null, error: addon ? null : addonLoadError() },
  }) + '\n');
}

/** Map any failure to tcpdump-style exit codes: 2 = bad usage, 1 = runtime failure. Never a stack trace. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // commander already printed its message (or the help text, whose exit code is 0).
    return err.exitCode === 0 ? 0 : 2;
  }
  if (err instanceof WireError) {
    // A codec refused what it was given (an address in a flag, a MAC, bytes from a file): the input is wrong.
    process.stderr.write(`rawpoll: ${err.message}\n`);
    return 2;
  }
  if (err instanceof UsageError || err instanceof RuntimeError) {
    process.stderr.write(`rawpoll: ${err.message}\n`);
    return err.exitCode;
  }
  const e = err as NodeJS.ErrnoException;
  process.stderr.write(`rawpoll: ${e && e.message ? e.message : String(err)}\n`);
  if (process.env.RAWPOLL_DEBUG && e && e.stack) process.stderr.write(e.stack + '\n');
  return 1;
}
