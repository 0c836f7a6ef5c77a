/**
 * The trial server's line protocol (rx/serve.ts), with no sockets: framing, request validation (every refusal names
 * the bad value and what is valid), reply encoding, the token check, and the --serve address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeError, encodeReply, LineSplitter, LineTooLongError, MAX_EXPECT, parseRequest, ProtocolError, tokenMatches,
} from '../../src/rx/serve.js';
import { parseServeAddress } from '../../src/cli/sink.js';
import { UsageError } from '../../src/errors.js';

/** parseRequest must refuse `line`: the ProtocolError's id and a message matching `re`. */
function refused(line: string | Buffer, re: RegExp, id: number | string | null = null): void {
  assert.throws(() => parseRequest(line), (e: unknown) => {
    assert.ok(e instanceof ProtocolError, `expected a ProtocolError, got ${e}`);
    assert.equal(e.id, id);
    assert.match(e.message, re);
    return true;
  });
}

test('LineSplitter: lines across chunks, CRLF, blank lines, and a partial line kept for the next chunk', () => {
  const s = new LineSplitter(64);
  assert.deepEqual(s.push(Buffer.from('{"a":1}\n{"b"')).map(String), ['{"a":1}']);
  assert.deepEqual(s.push(Buffer.from(':2}\r\n\n\n{"c":3}\n')).map(String), ['{"b":2}', '{"c":3}']);
  assert.deepEqual(s.push(Buffer.from('x')).map(String), []);
  assert.deepEqual(s.push(Buffer.from('\n')).map(String), ['x']);
});

test('LineSplitter: exactly the limit passes; one byte more, in one chunk or many, is LineTooLongError', () => {
  const s = new LineSplitter(10);
  assert.deepEqual(s.push(Buffer.from('0123456789\r\n')).map(String), ['0123456789']);
  assert.throws(() => new LineSplitter(10).push(Buffer.from('0123456789A\n')), LineTooLongError);
  const t = new LineSplitter(10);
  t.push(Buffer.from('01234'));
  t.push(Buffer.from('56789'));
  assert.throws(() => t.push(Buffer.from('AB')), LineTooLongError); // no newline yet: refused before it arrives
  // A megabyte without a newline is refused at the first chunk past the limit, never buffered whole.
  const u = new LineSplitter(64 * 1024);
  assert.throws(() => u.push(Buffer.alloc(1 << 20, 0x61)), (e: unknown) => e instanceof LineTooLongError && /65536 bytes/.test(e.message));
});

test('parseRequest: each op in its documented form', () => {
  assert.deepEqual(parseRequest('{"op":"hello","id":1,"version":1}'), { op: 'hello', id: 1, version: 1 });
  assert.deepEqual(parseRequest('{"op":"hello","id":"h","version":1,"token":"t0k"}'), { op: 'hello', id: 'h', version: 1, token: 't0k' });
  assert.deepEqual(parseRequest(Buffer.from('{"op":"open","id":2,"port":9}')), { op: 'open', id: 2, port: 9 });
  assert.deepEqual(parseRequest('{"op":"open","id":2,"port":65535,"expect":4294967295,"midStream":true,"timestamp":"hw"}'),
    { op: 'open', id: 2, port: 65535, expect: MAX_EXPECT, midStream: true, timestamp: 'hw' });
  assert.deepEqual(parseRequest('{"op":"open","id":2,"port":9,"expect":null,"midStream":null}'), { op: 'open', id: 2, port: 9 });
  assert.deepEqual(parseRequest('{"op":"status","id":3,"trial":1}'), { op: 'status', id: 3, trial: 1 });
  assert.deepEqual(parseRequest('{"id":4,"trial":12,"op":"close"}'), { op: 'close', id: 4, trial: 12 });
  assert.deepEqual(parseRequest('{"op":"bye"}'), { op: 'bye', id: null });
  assert.deepEqual(parseRequest('{"op":"bye","id":5}'), { op: 'bye', id: 5 });
});

test('parseRequest: not JSON, not an object, not UTF-8, nested too deep', () => {
  refused('garbage', /^bad JSON \(.*\): send one JSON object per line/);
  refused('{"op":"hello"', /^bad JSON/);
  refused('[1,2]', /expected a JSON object .*, got an array/);
  refused('42', /got a number/);
  refused('null', /got null/);
  refused('"open"', /got a string/);
  refused(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /not UTF-8/);
  refused('['.repeat(60000) + ']'.repeat(60000), /^bad JSON|expected a JSON object/);
  refused('{"a":'.repeat(20000) + '1' + '}'.repeat(20000), /^bad JSON|no op/);
});

test('parseRequest: ids, ops and fields it does not take', () => {
  refused('{"op":"status","id":1.5,"trial":1}', /^bad id 1\.5 \(a number\): expected an integer or a string of at most 64/);
  refused(`{"op":"status","id":"${'x'.repeat(65)}","trial":1}`, /^bad id .*\(a string\)/);
  refused('{"op":"status","id":{},"trial":1}', /^bad id \{\} \(an object\)/);
  refused('{"op":"status","id":1e300,"trial":1}', /^bad id 1e\+300/);
  refused('{"op":"status","trial":1}', /^no id in status: every request but bye carries an "id"/);
  refused('{"id":7}', /^no op: expected "op" one of hello, open, status, close, bye/, 7);
  refused('{"op":"frob","id":7}', /^unknown op "frob": expected one of hello, open, status, close, bye/, 7);
  refused('{"op":3,"id":7}', /^unknown op 3/, 7);
  refused('{"op":"open","id":7,"port":9,"expected":100}', /^unknown field "expected" in open: it takes op, id, port, expect, midStream, timestamp/, 7);
  refused('{"op":"open","id":7,"port":9,"__proto__":{"x":1}}', /^unknown field "__proto__" in open/, 7);
});

test('parseRequest: wrong types, huge numbers and out-of-range values name the value and the valid range', () => {
  refused('{"op":"open","id":1}', /^no port in open: expected "port", the UDP port to count, 1-65535/, 1);
  refused('{"op":"open","id":1,"port":0}', /^bad port 0 in open: expected an integer 1-65535$/, 1);
  refused('{"op":"open","id":1,"port":70000}', /^bad port 70000 in open: expected an integer 1-65535$/, 1);
  refused('{"op":"open","id":1,"port":-9}', /^bad port -9 in open/, 1);
  refused('{"op":"open","id":1,"port":9.5}', /^bad port 9\.5 in open/, 1);
  refused('{"op":"open","id":1,"port":"9"}', /^bad port "9" \(a string\) in open: expected an integer 1-65535$/, 1);
  refused('{"op":"open","id":1,"port":1e999}', /^bad port Infinity \(a number out of range\) in open/, 1);
  refused('{"op":"open","id":1,"port":[9]}', /^bad port \[9\] \(an array\) in open/, 1);
  refused('{"op":"open","id":1,"port":9,"expect":0}', /^bad expect 0 in open: expected an integer 1-4294967295$/, 1);
  refused('{"op":"open","id":1,"port":9,"expect":4294967296}', /^bad expect 4294967296 in open/, 1);
  refused('{"op":"open","id":1,"port":9,"midStream":"yes"}', /^bad midStream "yes" in open: expected true or false$/, 1);
  refused('{"op":"open","id":1,"port":9,"timestamp":"ptp"}', /^bad timestamp "ptp" in open: expected one of kernel, hw, user$/, 1);
  refused('{"op":"status","id":1}', /^no trial in status: expected "trial"/, 1);
  refused('{"op":"close","id":1,"trial":0}', /^bad trial 0 in close: expected an integer 1-9007199254740991$/, 1);
  refused('{"op":"close","id":1,"trial":99999999999999999999}', /^bad trial 100000000000000000000 in close/, 1);
  refused('{"op":"hello","id":1}', /^no version in hello: expected "version":1/, 1);
  refused('{"op":"hello","id":1,"version":"1"}', /^bad version "1" \(a string\) in hello/, 1);
  refused('{"op":"hello","id":1,"version":1,"token":42}', /^bad token \(a number\): expected a string of at most 1024/, 1);
  refused(`{"op":"hello","id":1,"version":1,"token":"${'t'.repeat(1025)}"}`, /^bad token \(a string of 1025 characters\)/, 1);
});

test('encodeReply / encodeError: one line each, id and ok first, a body cannot forge them', () => {
  assert.equal(encodeReply(3, { trial: 1, port: 9 }), '{"id":3,"ok":true,"trial":1,"port":9}\n');
  assert.equal(encodeReply('x', { ok: false, id: 9, a: 1 }), '{"id":"x","ok":true,"a":1}\n');
  assert.equal(encodeError(null, 'bad "JSON"\nhere'), '{"id":null,"ok":false,"error":"bad \\"JSON\\"\\nhere"}\n');
  assert.deepEqual(JSON.parse(encodeError(4, 'bad token')), { id: 4, ok: false, error: 'bad token' });
});

test('tokenMatches: equal strings only; a missing or differently long token is simply wrong', () => {
  assert.equal(tokenMatches('s3cret', 's3cret'), true);
  assert.equal(tokenMatches('s3cre', 's3cret'), false);
  assert.equal(tokenMatches('s3cret!', 's3cret'), false);
  assert.equal(tokenMatches(undefined, 's3cret'), false);
  assert.equal(tokenMatches('é', 'é'), true);
});

test('--serve [IP:]PORT: every address, one address, IPv6 in brackets; typos named', () => {
  assert.deepEqual(parseServeAddress('5201'), { host: undefined, port: 5201 });
  assert.deepEqual(parseServeAddress('10.0.0.2:5201'), { host: '10.0.0.2', port: 5201 });
  assert.deepEqual(parseServeAddress('[::1]:0'), { host: '::1', port: 0 });
  for (const bad of ['', 'x', '10.0.0.2', '10.0.0.2:', '10.0.0:5201', '::1:5201', '10.0.0.2:65536', '300.0.0.1:5', 'host:5201']) {
    assert.throws(() => parseServeAddress(bad), (e: unknown) => e instanceof UsageError && e.message.startsWith(`bad --serve '${bad}': expected PORT`), bad);
  }
});
