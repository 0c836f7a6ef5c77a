/**
 * A strict RFC 5424 §6 parser for the tests, written from the ABNF (not from rawpoll's formatter):
 *   SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]
 *   HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID; PRI = "<" 1*3DIGIT ">"; VERSION "1"
 *   TIMESTAMP = NILVALUE / FULL-DATE "T" FULL-TIME (TIME-SECFRAC 1*6DIGIT, TIME-OFFSET "Z" / +-hh:mm)
 *   HOSTNAME 1*255, APP-NAME 1*48, PROCID 1*128, MSGID 1*32 PRINTUSASCII (%d33-126), each or NILVALUE "-"
 *   SD-ELEMENT = "[" SD-ID *(SP SD-PARAM) "]"; SD-NAME = 1*32 PRINTUSASCII except '=', SP, ']', '"'
 *   PARAM-VALUE: UTF-8 with '"', '\' and ']' escaped by '\'
 */
import assert from 'node:assert/strict';

const P = '[\\x21-\\x7e]';
const SDNAME = '[!#-<>-\\\\^-~]{1,32}';   // %d33, %d35-60, %d62-92, %d94-126: no '"' (34), '=' (61), ']' (93)
const VALUE = '(?:[^"\\\\\\]]|\\\\["\\\\\\]])*';
const ELEMENT = `\\[${SDNAME}(?: ${SDNAME}="${VALUE}")*\\]`;
export const RFC5424 = new RegExp(
  `^<(\\d{1,3})>1 (-|\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(?:\\.\\d{1,6})?(?:Z|[+-]\\d{2}:\\d{2})) (${P}{1,255}) (${P}{1,48}) (${P}{1,128}) (${P}{1,32}) (-|(?:${ELEMENT})+)(?: ([\\s\\S]*))?$`);

export interface Syslog5424 {
  pri: number; time: string; host: string; app: string; procid: string; msgid: string;
  /** SD-ID -> PARAM-NAME -> value, unescaped. */
  sd: Record<string, Record<string, string>>;
  msg: string;
}

/** Parses one message or fails the test, quoting it. */
export function parse5424(b: Buffer | string): Syslog5424 {
  const s = typeof b === 'string' ? b : b.toString('utf8');
  const m = RFC5424.exec(s);
  assert.ok(m, `not RFC 5424: ${JSON.stringify(s.slice(0, 300))}`);
  const pri = Number(m[1]);
  assert.ok(pri <= 191, `PRI ${pri} > 191`);
  const sd: Syslog5424['sd'] = {};
  if (m[7] !== '-') {
    for (const el of m[7].matchAll(new RegExp(ELEMENT, 'g'))) {
      const id = /^\[([^ \]]+)/.exec(el[0])![1];
      sd[id] = {};
      for (const p of el[0].matchAll(new RegExp(` (${SDNAME})="(${VALUE})"`, 'g'))) sd[id][p[1]] = p[2].replace(/\\(["\\\]])/g, '$1');
    }
  }
  return { pri, time: m[2], host: m[3], app: m[4], procid: m[5], msgid: m[6], sd, msg: m[8] ?? '' };
}
