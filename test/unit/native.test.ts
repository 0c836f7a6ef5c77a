import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RuntimeError, UsageError } from '../../src/errors.js';

test('native loader: a clear RuntimeError naming the build command when the addon is missing', async () => {
  process.env.RAWPOLL_NATIVE = '/nonexistent/rawpoll_native.node';
  const m = await import('../../src/link/native.js');
  assert.equal(m.nativeAvailable(), false);
  assert.equal(m.defaultEngine(), 'pcap');
  assert.throws(() => m.loadNative(), (e: unknown) => e instanceof RuntimeError && /npm run build:native/.test(e.message) && /--engine pcap/.test(e.message));
  assert.throws(() => m.NativeLink.open('lo'), RuntimeError);
  delete process.env.RAWPOLL_NATIVE;
});

test('parseEngine: pcap | native, anything else is a usage error naming both', async () => {
  const { parseEngine } = await import('../../src/link/native.js');
  assert.equal(parseEngine('pcap'), 'pcap');
  assert.equal(parseEngine('native'), 'native');
  assert.throws(() => parseEngine('dpdk'), (e: unknown) => e instanceof UsageError && /bad --engine 'dpdk'.*pcap.*native/.test(e.message));
});
