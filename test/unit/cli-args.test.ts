/**
 * The number grammar of the command line (cli/common.ts): which fields take hex, the ranges the messages name, DSCP
 * names, ranges LO-HI. Every refusal is a UsageError (exit 2) whose one line names the value and what is valid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors.js';
import { COUNT_MAX, countArg, dscpByName, intArg, parseDscpArg, rangeArg, senderOptionsFromFlags } from '../../src/cli/common.js';
import { formatIpv4, parseIpv4 } from '../../src/wire/addr.js';

function usage(fn: () => unknown, message: string | RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UsageError, `not a UsageError: ${e}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
}

test('intArg: decimal by default; 0x hex only where asked, and then the range is said in hex too', () => {
  assert.equal(intArg('184', '--tos', 0, 255), 184);
  assert.equal(intArg(' 7 ', '--x', 0, 9), 7);
  assert.equal(intArg(undefined, '--x', 0, 9), undefined);
  assert.equal(intArg('0xb8', '--tos', 0, 255, { hex: true }), 0xb8);
  assert.equal(intArg('0XFF', '--tos', 0, 255, { hex: true }), 255);
  usage(() => intArg('0xb8', '--ttl', 0, 255), "bad --ttl '0xb8': expected an integer 0-255");
  usage(() => intArg('0x100', '--tos', 0, 255, { hex: true }), "bad --tos '0x100': expected an integer 0-255 or 0x00-0xff");
  usage(() => intArg('0x', '--tos', 0, 255, { hex: true }), "bad --tos '0x': expected an integer 0-255 or 0x00-0xff");
  usage(() => intArg('1.5', '--x', 0, 9), "bad --x '1.5': expected an integer 0-9");
  usage(() => intArg('', '--x', 0, 9), "bad --x '': expected an integer 0-9");
  usage(() => intArg('1e3', '--x', 0, 10000), "bad --x '1e3': expected an integer 0-10000");
  usage(() => intArg('-1', '--x', 0, 9), "bad --x '-1': expected an integer 0-9");
  usage(() => intArg('5', '--size', 60, 65553, { note: 'bytes' }), "bad --size '5': expected an integer 60-65553 (bytes)");
  // Digits past 2^53 are not silently rounded into range.
  usage(() => intArg('9007199254740993', '--count', 0, Number.MAX_SAFE_INTEGER), /^bad --count '9007199254740993': expected an integer 0-9007199254740991$/);
  usage(() => intArg('100000000000000000000', '--count', 0, Number.MAX_SAFE_INTEGER), /expected an integer 0-9007199254740991/);
});

test('countArg: 1 to 2^31 - 1, and the message says so (not 1-2147483648)', () => {
  assert.equal(COUNT_MAX, 2147483647);
  assert.equal(countArg('2147483647'), 2147483647);
  usage(() => countArg('2147483648'), "bad --count '2147483648': expected an integer 1-2147483647");
  usage(() => countArg('0', '-c'), "bad -c '0': expected an integer 1-2147483647");
});

test('senderOptionsFromFlags: --tos and --ip-id take hex, --ttl does not; --size is left to the sender, which knows the MTU', () => {
  assert.equal(senderOptionsFromFlags({ tos: '0xb8' }).tos, 0xb8);
  assert.equal(senderOptionsFromFlags({ tos: '184' }).tos, 184);
  assert.equal(senderOptionsFromFlags({ ipId: '0x1234' }).ipId, 0x1234);
  usage(() => senderOptionsFromFlags({ tos: '0x1b8' }), "bad --tos '0x1b8': expected an integer 0-255 or 0x00-0xff");
  usage(() => senderOptionsFromFlags({ ttl: '0x40' }), "bad --ttl '0x40': expected an integer 0-255");
  usage(() => senderOptionsFromFlags({ ipId: '0x10000' }), "bad --ip-id '0x10000': expected an integer 0-65535 or 0x0000-0xffff");
  // --size: a number here; its range needs the link's MTU (the sender says 60-1514 for MTU 1500: send.test.ts).
  assert.equal(senderOptionsFromFlags({ size: '99999' }).frameSize, 99999);
  usage(() => senderOptionsFromFlags({ size: '1e3' }), "bad --size '1e3': expected a frame size in bytes without FCS, 60 to MTU+14");
});

test('--dscp NAME|N: the RFC code points, as the TOS byte (DSCP << 2); --tos and --dscp together are refused', () => {
  // The values iptables' DSCP target and Wireshark print for these names.
  const expected: Record<string, number> = {
    CS0: 0, CS1: 8, CS2: 16, CS3: 24, CS4: 32, CS5: 40, CS6: 48, CS7: 56,
    AF11: 10, AF12: 12, AF13: 14, AF21: 18, AF22: 20, AF23: 22, AF31: 26, AF32: 28, AF33: 30, AF41: 34, AF42: 36, AF43: 38,
    EF: 46, VA: 44, LE: 1, BE: 0,
  };
  for (const [name, dscp] of Object.entries(expected)) {
    assert.equal(dscpByName(name), dscp, name);
    assert.equal(dscpByName(name.toLowerCase()), dscp, name.toLowerCase());
  }
  assert.equal(dscpByName('AF44'), undefined);
  assert.equal(dscpByName('CS8'), undefined);
  assert.equal(parseDscpArg('EF'), 0xb8); // the TOS byte ping -Q 0xb8 sets
  assert.equal(parseDscpArg('46'), 0xb8);
  assert.equal(parseDscpArg('0x2e'), 0xb8);
  assert.equal(parseDscpArg('af41'), 0x88);
  assert.equal(senderOptionsFromFlags({ dscp: 'EF' }).tos, 0xb8);
  usage(() => parseDscpArg('64'), "bad --dscp '64': expected an integer 0-63 or 0x00-0x3f");
  usage(() => parseDscpArg('AF44'), /^bad --dscp 'AF44': expected a name \(EF, AF11-AF43, CS0-CS7, LE, VA, BE\) or a number 0-63 or 0x00-0x3f$/);
  usage(() => senderOptionsFromFlags({ dscp: 'EF', tos: '0' }), '--tos 0 and --dscp EF both set the TOS byte: choose one (--dscp N is --tos N*4)');
});

test('rangeArg: a reversed range names the range given and its right order; bounds as the user writes them', () => {
  assert.deepEqual(rangeArg('9', '--sport', 0, 65535), [9, 9]);
  assert.deepEqual(rangeArg('10000-10015', '--sport', 0, 65535), [10000, 10015]);
  usage(() => rangeArg('10015-10000', '--sport', 0, 65535),
    "bad --sport '10015-10000': the range runs backwards (10015 > 10000); write it low-high: 10000-10015");
  usage(() => rangeArg('1-70000', '--sport', 0, 65535), "bad --sport '1-70000': expected N or LO-HI with values 0-65535");
  usage(() => rangeArg('1-2-3', '--sport', 0, 65535), "bad --sport '1-2-3': expected N or LO-HI with values 0-65535");
  usage(() => rangeArg('1-', '--sport', 0, 65535), "bad --sport '1-': expected N or LO-HI with values 0-65535");
  const ip = (x: string) => parseIpv4(x, '--src-ip');
  assert.deepEqual(rangeArg('10.0.0.1-10.0.0.9', '--src-ip', 0, 0xffffffff, ip, formatIpv4), [ip('10.0.0.1'), ip('10.0.0.9')]);
  usage(() => rangeArg('10.0.0.9-10.0.0.1', '--src-ip', 0, 0xffffffff, ip, formatIpv4),
    "bad --src-ip '10.0.0.9-10.0.0.1': the range runs backwards (10.0.0.9 > 10.0.0.1); write it low-high: 10.0.0.1-10.0.0.9");
  usage(() => rangeArg('10.0.0.1-10.0.0', '--src-ip', 0, 0xffffffff, ip, formatIpv4),
    "bad --src-ip '10.0.0.1-10.0.0': expected N or LO-HI with values 0.0.0.0-255.255.255.255");
  // A value the parser takes but the command bounds: named with the bounds.
  usage(() => rangeArg('5-20', '--flows', 1, 16, Number), "bad --flows '5-20': 20 is outside 1-16");
});
