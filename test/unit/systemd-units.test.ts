/**
 * contrib/systemd's units, checked by systemd's own tools (systemd-analyze), offline: this machine's PID 1 need not be
 * systemd. `verify` loads each unit the way PID 1 would and checks that ExecStart's binary is there and executable,
 * so it runs against a scratch root (--root) holding the system's own units (sysinit.target and the rest a service
 * is ordered after by default) and a stand-in /usr/local/bin/rawpoll, the path the units name. `security` scores
 * the sandbox: the score must stay below MAX_EXPOSURE, and every setting it still counts against us must be one this
 * file justifies (a new one fails the test until it is fixed or justified here).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/lab.js';

const UNITS = ['rawpoll-collect.service', 'rawpoll-netdump-server.service'];
const DIR = join(ROOT, 'contrib', 'systemd');
const SYSTEM_UNITS = '/usr/lib/systemd/system';

/**
 * systemd rates 1.0-4.9 "OK", below 1.0 "SAFE". What is left for a network receiver (JUSTIFIED below) adds up to
 * 1.6 with systemd 252's weights; 2.0 leaves room for a weight changing between systemd versions, while losing the
 * capability bounding set (3.3) or the system-call filter (3.0) lands well above it. The score alone misses some
 * regressions (without DynamicUser= it is 1.9; NoNewPrivileges= and ProtectSystem= are implied by DynamicUser= as
 * far as the score goes): the unjustified-items check and the settings test catch those.
 */
const MAX_EXPOSURE = 2.0;

/** What `systemd-analyze security` still marks ✗, and why each stays. */
const JUSTIFIED: Record<string, string> = {
  'PrivateNetwork=': 'a receiver takes UDP from the host network: that is its job',
  'RestrictAddressFamilies=~AF_(INET|INET6)': 'the receive sockets, and the link-state ioctls',
  'RestrictAddressFamilies=~AF_NETLINK': 'the interface list (getifaddrs) for the link-state report',
  'RestrictAddressFamilies=~AF_UNIX': 'the journal',
  'IPAddressDeny=': 'crash reports and dumps come from any host; an allow list is site policy (add a drop-in)',
  'AmbientCapabilities=': 'CAP_NET_BIND_SERVICE, for a port below 1024 if one is configured',
  'CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)': 'the same CAP_NET_BIND_SERVICE',
  'PrivateUsers=': 'a capability inside a private user namespace would not count for binding a host port',
  'MemoryDenyWriteExecute=': "V8's JIT needs writable-then-executable pages",
  'RootDirectory=/RootImage=': 'node and rawpoll live in the host file system (read-only: ProtectSystem=strict)',
  'SystemCallFilter=~@resources': 'node raises its open-file limit (setrlimit) at start; the addon pins threads',
  'DeviceAllow=': 'ProtectClock= itself adds char-rtc:r',
  'UMask=': 'dumps are group-readable (0027) for the operators group; no world access',
};

function analyze(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('systemd-analyze', args, { encoding: 'utf8' });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    // Not a skip: without the tool nothing here is checked, and a green run would claim it was.
    assert.fail('systemd-analyze is not installed: install the systemd package (scripts/bootstrap does) to check contrib/systemd');
  }
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A scratch root: the system's units, ours in /etc/systemd/system, and executables at the units' ExecStart and ExecReload paths. */
const root = mkdtempSync(join(tmpdir(), 'rawpoll-units-'));
after(() => rmSync(root, { recursive: true, force: true }));
mkdirSync(join(root, 'usr', 'lib', 'systemd'), { recursive: true });
cpSync(SYSTEM_UNITS, join(root, 'usr', 'lib', 'systemd', 'system'), { recursive: true, verbatimSymlinks: true });
mkdirSync(join(root, 'etc', 'systemd', 'system'), { recursive: true });
mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true });
writeFileSync(join(root, 'usr', 'local', 'bin', 'rawpoll'), '#!/bin/sh\n');
chmodSync(join(root, 'usr', 'local', 'bin', 'rawpoll'), 0o755);
// ExecReload's /bin/kill: the system's own, as on the host the units are installed on.
mkdirSync(join(root, 'bin'), { recursive: true });
copyFileSync('/bin/kill', join(root, 'bin', 'kill'));
chmodSync(join(root, 'bin', 'kill'), 0o755);
for (const u of UNITS) copyFileSync(join(DIR, u), join(root, 'etc', 'systemd', 'system', u));

for (const unit of UNITS) {
  test(`${unit}: systemd-analyze verify passes with no warnings`, () => {
    const r = analyze(['verify', '--man=no', `--root=${root}`, unit]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings');
    assert.equal(r.stdout.trim(), '');
  });

  test(`${unit}: the sandbox the brief asks for is there`, () => {
    const text = readFileSync(join(DIR, unit), 'utf8');
    const has = (line: string) => assert.ok(text.split('\n').includes(line), `${unit} lacks ${line}`);
    has('DynamicUser=yes');
    has('AmbientCapabilities=CAP_NET_BIND_SERVICE');
    has('CapabilityBoundingSet=CAP_NET_BIND_SERVICE');
    has('NoNewPrivileges=yes');
    has('ProtectSystem=strict');
    has('Restart=on-failure');
    has('RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK');
    has('SystemCallFilter=@system-service');
    assert.match(text, /^StateDirectory=rawpoll\/\S+$/m);
    assert.match(text, /^ExecStart=\/usr\/local\/bin\/rawpoll /m);
    // Reload is SIGHUP, which both daemons take without ending (collect reopens its logs; test/integration/collect-rotate).
    has('ExecReload=/bin/kill -HUP $MAINPID');
    assert.doesNotMatch(text, /^MemoryDenyWriteExecute=/m);
  });

  test(`${unit}: systemd-analyze security exposure below ${MAX_EXPOSURE}, every remaining item justified`, () => {
    const r = analyze(['security', '--offline=yes', `--root=${root}`, '--no-pager', unit]);
    assert.equal(r.code, 0, r.stderr);
    const m = /Overall exposure level for \S+: (\d+\.\d+) (\S+)/.exec(r.stdout);
    assert.ok(m, `no score line in:\n${r.stdout}`);
    const score = Number(m[1]);
    process.stdout.write(`# ${m[0]}\n`);
    assert.ok(score < MAX_EXPOSURE, `exposure ${score} is not below ${MAX_EXPOSURE}:\n${r.stdout}`);
    const failing = r.stdout.split('\n').filter((l) => l.startsWith('✗')).map((l) => l.slice(1).trim().split(/\s+/)[0]);
    const unjustified = failing.filter((name) => !(name in JUSTIFIED));
    assert.deepEqual(unjustified, [], `settings systemd-analyze counts against ${unit} that no one justified`);
  });
}
