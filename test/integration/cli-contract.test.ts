/**
 * The command-line contract every command keeps (README, "Exit codes"; issue 13): `--version`, one exit-code table for
 * all commands, one line naming the bad value, and never a stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labsForThisFile, must, rawpoll, ROOT, rxPackets, sh, waitFor, type RunResult } from '../helpers/lab.js';

const { tmp, hosts } = labsForThisFile('rawpoll-cli-contract-');

/** Runs rawpoll outside any namespace: only for what touches no interface at all (--version, --help). */
function local(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = sh('env', [...Object.entries(env).map(([k, v]) => `${k}=${v}`), process.execPath, join(ROOT, 'bin', 'rawpoll.js'), ...args]);
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

const PKG_VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

test('--version and -V print the package version alone, exit 0', () => {
  for (const flag of ['--version', '-V']) {
    const r = local([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${PKG_VERSION}\n`);
    assert.equal(r.stderr, '');
  }
  assert.match(local(['--help']).stdout, /-V, --version/);
});

test('--version --json adds libpcap\'s version (as pcap_lib_version says it) and whether the native addon loaded', () => {
  const r = local(['--version', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.version, PKG_VERSION);
  assert.equal(j.node, process.versions.node);
  assert.deepEqual(j.addon, { loaded: true, error: null });
  // The installed libpcap's own words, e.g. "libpcap version 1.10.3 (with TPACKET_V3)".
  assert.match(j.libpcap, /^libpcap version \d+\.\d+/);
  // -V and --json in either order.
  assert.deepEqual(JSON.parse(local(['--json', '-V']).stdout), j);
});

test('--version --json without the addon: loaded false, the reason, libpcap null, still exit 0', () => {
  const r = local(['-V', '--json'], { RAWPOLL_NATIVE: '/nonexistent/rawpoll_native.node' });
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.version, PKG_VERSION);
  assert.equal(j.libpcap, null);
  assert.equal(j.addon.loaded, false);
  assert.match(j.addon.error, /not built \(no \/nonexistent\/rawpoll_native\.node\)/);
});

test('arp -i IF on a DOWN interface: "interface IF is down", exit 1, as every sending command', () => {
  const h = hosts();
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'down']);
  const arp = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB, '--retries', '1', '--timeout', '100']);
  assert.equal(arp.code, 1, arp.stderr);
  assert.equal(arp.stderr, `rawpoll: interface ${h.ifA} is down; bring it up with: ip link set ${h.ifA} up\n`);
  // The same words and code as send's.
  const send = rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--retries', '1', '--timeout', '100']);
  assert.equal(send.code, 1, send.stderr);
  assert.equal(send.stderr, arp.stderr);
});

test('arp -i IF whose peer is down (no carrier): says so, exit 1 — not "has no IPv4 address"', () => {
  const h = hosts();
  must('ip', ['-n', h.b, 'link', 'set', h.ifB, 'down']);
  const r = rawpoll(h.a, ['arp', '-i', h.ifA, h.ipB, '--retries', '1', '--timeout', '100']);
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr, `rawpoll: interface ${h.ifA} has no carrier (cable, switch port or veth peer down); nothing can be sent on it now\n`);
});

// ---- The exit-code table (README, "Exit codes"), walked through every command ----

const COMMANDS = ['arp', 'send', 'netconsole', 'oops', 'collect', 'netdump', 'netdump-server', 'blast', 'sink', 'rfc2544'];

/** A Node or commander stack frame: "    at fn (file:line:col)". */
const STACK = /^\s+at .+:\d+:\d+\)?$/m;

/** Exit `code`, stderr exactly one line `rawpoll: …` matching `re`, no stack trace. */
function oneLine(r: RunResult, code: number, re: RegExp, label: string): void {
  assert.doesNotMatch(r.stderr, STACK, `${label}: a stack trace\n${r.stderr}`);
  assert.equal(r.code, code, `${label}: exit ${r.code}, wanted ${code}\n${r.stderr}`);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, `${label}: one line, got\n${r.stderr}`);
  assert.match(lines[0], /^rawpoll: /, label);
  assert.match(lines[0], re, label);
}

test('exit 2, one line naming the bad value, nothing on the wire: a usage error in each of the ten commands', () => {
  const h = hosts();
  const dir = mkdtempSync(join(tmp, 'dir-'));
  const log = join(tmp, 'log.txt');
  writeFileSync(log, 'a log line\n');
  const to = `${h.ipB}:9`;
  const cases: Record<string, [string[], RegExp]> = {
    arp: [['arp', '-i', h.ifA, '10.0.0.300'], /^rawpoll: bad target IP '10\.0\.0\.300': expected a dotted-quad IPv4 address/],
    send: [['send', '-i', h.ifA, '--to', to, '--data', 'x', '--tos', '0x1b8'], /^rawpoll: bad --tos '0x1b8': expected an integer 0-255 or 0x00-0xff$/],
    netconsole: [['netconsole', '-i', h.ifA, '--to', h.ipB, '--ttl', '256'], /^rawpoll: bad --ttl '256': expected an integer 0-255$/],
    oops: [['oops', '-i', h.ifA, '--to', h.ipB, '--log', log, '--retransmit', '0'], /^rawpoll: bad --retransmit '0': expected an integer 1-100$/],
    collect: [['collect', '--dir', dir, '--netconsole', '70000'], /^rawpoll: bad --netconsole '70000': expected an integer 0-65535$/],
    netdump: [['netdump', '-i', h.ifA, '--server', h.ipB, '--file', log, '--window', '99999999'], /^rawpoll: bad --window '99999999': expected an integer 0-65536$/],
    'netdump-server': [['netdump-server', '--dir', dir, '--timeout', '0'], /^rawpoll: bad --timeout '0': expected an integer 1-86400$/],
    blast: [['blast', '-i', h.ifA, '--to', to, '--rate', 'fast'], /^rawpoll: bad --rate 'fast': expected frames\/s like/],
    sink: [['sink', '--port', '9000', '--count', '0'], /^rawpoll: bad --count '0': expected an integer 1-/],
    rfc2544: [['rfc2544', 'throughput', '-i', h.ifA, '--to', to, '--control', `${h.ipB}:5201`, '--repeat', '0'], /^rawpoll: bad --repeat '0': expected an integer 1-100000$/],
  };
  assert.deepEqual(Object.keys(cases).sort(), [...COMMANDS].sort());
  const before = rxPackets(h.b, h.ifB);
  for (const [cmd, [args, re]] of Object.entries(cases)) oneLine(rawpoll(h.a, args), 2, re, cmd);
  assert.equal(rxPackets(h.b, h.ifB), before, 'a usage error put frames on the wire (ARP included)');
});

test('exit 2 from commander too (an unknown option, a missing argument): named, no stack trace', () => {
  const h = hosts();
  for (const cmd of COMMANDS) {
    const r = rawpoll(h.a, [cmd, '--no-such-flag']);
    assert.equal(r.code, 2, `${cmd}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, STACK, cmd);
    // commander checks required options and arguments first: it names whichever is wrong.
    assert.match(r.stderr.split('\n')[0], /^error: (unknown option '--no-such-flag'|required option '.+' not specified|missing required argument '.+')$/, cmd);
  }
  const r = rawpoll(h.a, ['nosuchcommand']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^error: unknown command 'nosuchcommand'/);
});

test('no such interface (-i): UsageError, exit 2, in every command that takes -i', () => {
  const h = hosts();
  const dir = mkdtempSync(join(tmp, 'dir-'));
  const log = join(tmp, 'log.txt');
  writeFileSync(log, 'a log line\n');
  const to = `${h.ipB}:9`;
  const cases: Record<string, string[]> = {
    arp: ['arp', '-i', 'nosuch0', h.ipB],
    send: ['send', '-i', 'nosuch0', '--to', to, '--data', 'x'],
    netconsole: ['netconsole', '-i', 'nosuch0', '--to', h.ipB],
    oops: ['oops', '-i', 'nosuch0', '--to', h.ipB, '--log', log],
    collect: ['collect', '--dir', dir, '--netconsole', '0', '-i', 'nosuch0'],
    netdump: ['netdump', '-i', 'nosuch0', '--server', h.ipB, '--file', log],
    'netdump-server': ['netdump-server', '--dir', dir, '--port', '0', '-i', 'nosuch0'],
    blast: ['blast', '-i', 'nosuch0', '--to', to, '--count', '1'],
    sink: ['sink', '--port', '9000', '--capture', '-i', 'nosuch0', '--count', '1'],
    rfc2544: ['rfc2544', 'throughput', '-i', 'nosuch0', '--to', to, '--control', `${h.ipB}:5201`, '--sizes', '64'],
  };
  assert.deepEqual(Object.keys(cases).sort(), [...COMMANDS].sort());
  for (const [cmd, args] of Object.entries(cases)) oneLine(rawpoll(h.a, args), 2, /'nosuch0'/, cmd);
});

test('exit 1, one line: a runtime failure (RuntimeError) in each of the ten commands', async (t) => {
  const h = hosts();
  const dir = mkdtempSync(join(tmp, 'dir-'));
  const log = join(tmp, 'log.txt');
  writeFileSync(log, 'a log line\n');
  // Ports in use (EADDRINUSE) for the receivers: another socket holds them.
  const held = [6666, 20023, 9000];
  h.lab.spawn(h.a, ['python3', '-c', 'import socket, time\nss = []\nfor p in (' + held.join(',') + ',):\n' +
    '  s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", p)); ss.append(s)\ntime.sleep(60)']);
  const bound = () => held.every((p) => must('ip', ['netns', 'exec', h.a, 'ss', '-Huln', `sport = :${p}`]).trim() !== '');
  assert.ok(await waitFor(bound, 5000), 'the port holder did not bind');

  // Link up: the receivers' port in use (RuntimeError from rx/collect.ts, rx/netdumpd.ts, rx/engine.ts), and
  // rfc2544's control channel refused (ControlError, a RuntimeError).
  oneLine(rawpoll(h.a, ['collect', '--dir', dir, '--netconsole', '6666']), 1, /^rawpoll: cannot listen on UDP 0\.0\.0\.0:6666 for netconsole: EADDRINUSE/, 'collect');
  oneLine(rawpoll(h.a, ['sink', '--port', '9000', '--count', '1']), 1, /^rawpoll: UDP 0\.0\.0\.0:9000 is already in use/, 'sink');
  oneLine(rawpoll(h.a, ['rfc2544', 'throughput', '-i', h.ifA, '--to', `${h.ipB}:9`, '--control', `${h.ipB}:5201`, '--sizes', '64', '--trial', '1']),
    1, new RegExp(`^rawpoll: cannot reach the sink's control channel at ${h.ipB}:5201: `), 'rfc2544');
  const nds = rawpoll(h.a, ['netdump-server', '--dir', dir, '--port', '20023']);
  assert.equal(nds.code, 1, nds.stderr);
  assert.doesNotMatch(nds.stderr, STACK);
  assert.match(nds.stderr, /^rawpoll: cannot listen on UDP 0\.0\.0\.0:20023: EADDRINUSE/m);
  await t.test('netdump-server says a bind failure once (issue 13: it printed it twice)', () => {
    oneLine(nds, 1, /^rawpoll: cannot listen on UDP 0\.0\.0\.0:20023: EADDRINUSE/, 'netdump-server');
    assert.doesNotMatch(nds.stdout, /EADDRINUSE/, 'said again on stdout');
  });

  // Link down: every command that sends says so in the same words (RuntimeError from tx/sender.ts; arp's from
  // cli/common.ts requireLinkUsable).
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'down']);
  const down = new RegExp(`^rawpoll: interface ${h.ifA} is down; bring it up with: ip link set ${h.ifA} up$`);
  const to = `${h.ipB}:9`;
  const senders: Record<string, string[]> = {
    arp: ['arp', '-i', h.ifA, h.ipB],
    send: ['send', '-i', h.ifA, '--to', to, '--data', 'x'],
    netconsole: ['netconsole', '-i', h.ifA, '--to', h.ipB],
    oops: ['oops', '-i', h.ifA, '--to', h.ipB, '--log', log],
    netdump: ['netdump', '-i', h.ifA, '--server', h.ipB, '--file', log],
    blast: ['blast', '-i', h.ifA, '--to', to, '--count', '1'],
  };
  for (const [cmd, args] of Object.entries(senders)) oneLine(rawpoll(h.a, args, ''), 1, down, cmd);
  // sink --capture on a down link: the same words (rx/engine.ts maps the capture's ENETDOWN to them).
  oneLine(rawpoll(h.a, ['sink', '--port', '9001', '--capture', '-i', h.ifA, '--count', '1']), 1, down, 'sink --capture');
});

test('oops --one-shot in a directory that is not there: exit 2 naming it, nothing created (it used to mkdir -p)', () => {
  const state = join(tmp, 'no', 'such', 'armed');
  const r = local(['oops', '--one-shot', state, '--rearm']);
  oneLine({ ...r, out: Buffer.from(r.stdout) }, 2, new RegExp(`^rawpoll: bad --one-shot '${state}': no directory ${join(tmp, 'no', 'such')} \\(rawpoll does not create it\\)$`), 'oops');
  assert.ok(!existsSync(join(tmp, 'no')));
  const log = join(tmp, 'missing.log');
  oneLine({ ...local(['oops', '--to', '10.0.0.9', '--log', log]), out: Buffer.alloc(0) }, 2, new RegExp(`^rawpoll: bad --log '${log}': no such file or directory$`), 'oops --log');
});

test('send --size out of range names the real range, 60 to MTU+14 of this link (not 1-65535); nothing on the wire', () => {
  const h = hosts();
  must('ip', ['-n', h.a, 'link', 'set', h.ifA, 'mtu', '1400']);
  const before = rxPackets(h.b, h.ifB);
  for (const size of ['99999', '59', '1415']) {
    oneLine(rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--size', size]), 2,
      new RegExp(`^rawpoll: bad frame size '${size}': expected 60-1414 bytes \\(60 is the Ethernet minimum; the maximum is MTU 1400 \\+ headers\\)$`), `--size ${size}`);
  }
  oneLine(rawpoll(h.a, ['send', '-i', h.ifA, '--to', `${h.ipB}:9`, '--data', 'x', '--size', '1k']), 2,
    /^rawpoll: bad --size '1k': expected a frame size in bytes without FCS, 60 to MTU\+14$/, '--size 1k');
  assert.equal(rxPackets(h.b, h.ifB), before);
});

// Cases the table decides that a command's own file once answered otherwise (issue 13): they now use cli/common.ts's
// helpers (checkInputFile, countArg, rangeArg) or the table's classes.
const OFFLINE = ['--dst-mac', '02:00:00:00:00:02', '--src-mac', '02:00:00:00:00:01', '--from', '10.0.0.1'];

test('the table, where commands once differed', async (t) => {
  const d = mkdtempSync(join(tmp, 'todo-'));
  const file = join(d, 'plain');
  writeFileSync(file, '');
  const pcap = join(d, 'out.pcap');
  await t.test('send --file missing: 2, as oops --log and netdump --file', () => {
    oneLine({ ...local(['send', '--to', '10.0.0.2:9', '--file', join(d, 'nope'), ...OFFLINE, '-w', pcap]), out: Buffer.alloc(0) }, 2, /^rawpoll: bad --file '/, 'send');
  });
  await t.test('collect/netdump-server --dir that is a file: 2 (the wrong kind), as netconsole --follow DIR', () => {
    oneLine({ ...local(['collect', '--dir', file, '--netconsole', '0']), out: Buffer.alloc(0) }, 2, /--dir/, 'collect');
    oneLine({ ...local(['netdump-server', '--dir', file, '--port', '0']), out: Buffer.alloc(0) }, 2, /--dir/, 'netdump-server');
  });
  await t.test('send/netconsole --count names 1-2147483647', () => {
    oneLine({ ...local(['send', '--to', '10.0.0.2:9', '--data', 'x', ...OFFLINE, '-w', pcap, '-c', '0']), out: Buffer.alloc(0) }, 2,
      /^rawpoll: bad --count '0': expected an integer 1-2147483647$/, 'send');
  });
  await t.test('blast --src-ip reversed: names the range given', () => {
    oneLine({ ...local(['blast', '--to', '10.0.0.2:9', ...OFFLINE, '--src-ip', '10.0.0.9-10.0.0.1', '--count', '1', '-w', pcap]), out: Buffer.alloc(0) }, 2,
      /^rawpoll: bad --src-ip '10\.0\.0\.9-10\.0\.0\.1': the range runs backwards/, 'blast');
  });
  assert.ok(!existsSync(pcap), 'a refused command wrote its pcap');
});
