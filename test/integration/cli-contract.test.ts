/**
 * The command-line contract every command keeps (README, "Exit codes"; issue 13): `--version`, one exit-code table for
 * all commands, one line naming the bad value, and never a stack trace.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, must, rawpoll, ROOT, sh, twoHosts, type TwoHostLab } from '../helpers/lab.js';

const labs: Lab[] = [];
after(() => {
  for (const l of labs) l.destroy();
});
function hosts(o: Parameters<typeof twoHosts>[0] = {}): TwoHostLab {
  const h = twoHosts(o);
  labs.push(h.lab);
  return h;
}

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
