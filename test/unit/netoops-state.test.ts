import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCpuinfo, x86VendorCode, bootIdFromUuid, archCode, formatPrintkPrefix } from '../../src/host/hostinfo.js';
import { parseRateLimit, decide, recordSent, freshState, OopsStateFile } from '../../src/tx/oopsstate.js';
import { UsageError, RuntimeError } from '../../src/errors.js';

const CPUINFO = `processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 33
model name\t: AMD Ryzen 9 5950X 16-Core Processor
stepping\t: 2

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
stepping\t: 7
`;

test('hostinfo: cpuinfo first block, vendor codes, boot id, arch', () => {
  assert.deepEqual(parseCpuinfo(CPUINFO), { vendorId: 'AuthenticAMD', family: 25, model: 33, stepping: 2 });
  assert.equal(parseCpuinfo('processor : 0\nisa : rv64\n'), null);
  assert.equal(x86VendorCode('GenuineIntel'), 0);
  assert.equal(x86VendorCode('AuthenticAMD'), 2);
  assert.equal(x86VendorCode('HygonGenuine'), 9);
  assert.equal(x86VendorCode('Whatever'), 0xff);
  assert.equal(bootIdFromUuid('6f1c1c2e-0b3a-4f6e-9d2b-1234567890ab\n'), 0x6f1c1c2e);
  assert.throws(() => bootIdFromUuid('nope'));
  assert.equal(archCode('x86_64'), 2);
  assert.equal(archCode('aarch64'), 0);
  assert.equal(formatPrintkPrefix(4, 12_345_678), '<4>[   12.345678] ');
});

test('rate limit parsing', () => {
  assert.deepEqual(parseRateLimit('3/1h'), { count: 3, periodMs: 3_600_000, text: '3/1h' });
  assert.deepEqual(parseRateLimit('10/d'), { count: 10, periodMs: 86_400_000, text: '10/d' });
  assert.equal(parseRateLimit('5/600').periodMs, 600_000);
  for (const bad of ['3', '0/1h', '3/x', '/1h', '3/0', 'a/b']) assert.throws(() => parseRateLimit(bad), UsageError, bad);
});

test('one-shot: oops disarms, soft never disarms nor is held back, rearm', () => {
  const t = 1_700_000_000_000;
  let s = freshState();
  assert.deepEqual(decide(s, { soft: false, oneShot: true, now: t }), { send: true });
  s = recordSent(s, { soft: true, oneShot: true, now: t });
  assert.equal(s.armed, true);
  s = recordSent(s, { soft: false, oneShot: true, now: t + 1 });
  assert.equal(s.armed, false);
  const d = decide(s, { soft: false, oneShot: true, now: t + 2 });
  assert.equal(d.send, false);
  assert.equal(d.send === false && d.reason, 'disarmed');
  assert.deepEqual(decide(s, { soft: true, oneShot: true, now: t + 2 }), { send: true });
});

test('rate limit: N per period, sliding', () => {
  const rate = parseRateLimit('2/10s');
  const t = 1_700_000_000_000;
  let s = freshState();
  for (const dt of [0, 1000]) {
    assert.equal(decide(s, { soft: true, oneShot: false, rate, now: t + dt }).send, true);
    s = recordSent(s, { soft: true, oneShot: false, rate, now: t + dt });
  }
  const d = decide(s, { soft: true, oneShot: false, rate, now: t + 5000 });
  assert.equal(d.send, false);
  assert.equal(d.send === false && d.retryAt, new Date(t + 10_000).toISOString());
  assert.equal(decide(s, { soft: true, oneShot: false, rate, now: t + 10_001 }).send, true);
});

test('state file: missing = armed, its directory never created, atomic write, lock excludes, stale lock taken over, corrupt refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rawpoll-state-'));
  try {
    // A missing directory is not created: a clear error naming it.
    await assert.rejects(OopsStateFile.lock(join(dir, 'sub', 'armed')), (e: Error) => e instanceof RuntimeError && e.message.includes(`no directory ${join(dir, 'sub')}`));
    assert.equal(existsSync(join(dir, 'sub')), false);
    const f = join(dir, 'armed');
    const a = await OopsStateFile.lock(f);
    assert.deepEqual(a.read(), freshState());
    await assert.rejects(OopsStateFile.lock(f, 100), RuntimeError);
    a.write({ armed: false, disarmedAt: 'x', sent: [1] });
    a.unlock();
    assert.deepEqual(JSON.parse(readFileSync(f, 'utf8')), { armed: false, disarmedAt: 'x', sent: [1] });
    writeFileSync(`${f}.lock`, '999999999\n'); // no such pid: stale
    const b = await OopsStateFile.lock(f, 1000);
    assert.equal(b.read().armed, false);
    b.unlock();
    assert.equal(existsSync(`${f}.lock`), false);
    writeFileSync(f, 'garbage');
    const c = await OopsStateFile.lock(f);
    assert.throws(() => c.read(), RuntimeError);
    c.unlock();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
