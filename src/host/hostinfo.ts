// Facts read from the running host (/proc, /sys, /dev/kmsg) for the report formats in src/proto, kept out of proto/
// so that proto/ stays pure codecs without I/O.
import { readFileSync, openSync, readSync, closeSync, constants as fsc } from 'node:fs';
import * as os from 'node:os';
import { parseKmsgRecord } from '../proto/kmsg.js';
import { NETOOPS_ARCH_X86, NETOOPS_ARCH_OTHER } from '../proto/netoops.js';

/**
 * The machine specifics a netoops report carries, read from the running host: kernel release (uname -r), boot id,
 * seconds since boot (dump_id), CPU vendor/family/model/stepping (/proc/cpuinfo) and SMBIOS board/firmware strings
 * (/sys/class/dmi/id). The parsers are pure (tested with fixed text); the read* functions do the file I/O.
 * (This file does read /proc and /sys, unlike the rest of src/proto: it is the one place that knows those paths.)
 */

export interface CpuId {
  vendorId: string;
  family: number;
  model: number;
  stepping: number;
}

export interface HostInfo {
  kernelRelease: string;
  machine: string;
  /** netoops arch code: 2 on x86/x86-64, 0 (no arch data) elsewhere. */
  arch: number;
  cpu: (CpuId & { vendor: number }) | null;
  bootIdUuid: string | null;
  /** First 32 bits of the boot id UUID (the patch's boot_id is a u32 that user space supplied). */
  bootId: number;
  uptimeSec: number;
  board: string | null;
  firmware: string | null;
}

/**
 * Linux X86_VENDOR_* numbers (arch/x86/include/asm/processor.h), keyed by the CPUID vendor string that
 * /proc/cpuinfo prints as vendor_id. Unknown: 0xff (X86_VENDOR_UNKNOWN).
 */
const X86_VENDORS: Record<string, number> = {
  GenuineIntel: 0,
  CyrixInstead: 1,
  AuthenticAMD: 2,
  UMC: 3,
  CentaurHauls: 5,
  GenuineTMx86: 7,
  TransmetaCPU: 7,
  'Geode by NSC': 8,
  HygonGenuine: 9,
  Shanghai: 10,
  'Vortex86 SoC': 11,
};

export function x86VendorCode(vendorId: string): number {
  return X86_VENDORS[vendorId.trim()] ?? 0xff;
}

/** The first processor block of /proc/cpuinfo (x86 layout: vendor_id, cpu family, model, stepping). */
export function parseCpuinfo(text: string): CpuId | null {
  const block = text.split(/\n\s*\n/)[0] ?? '';
  const get = (k: string) => {
    const m = new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm').exec(block);
    return m ? m[1].trim() : undefined;
  };
  const vendorId = get('vendor_id');
  const family = get('cpu family');
  const model = get('model');
  const stepping = get('stepping');
  if (vendorId === undefined || family === undefined || model === undefined) return null;
  const num = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : 0);
  return { vendorId, family: num(family), model: num(model), stepping: num(stepping) };
}

/** `6f1c1c2e-…` -> 0x6f1c1c2e. Throws on anything that is not a UUID. */
export function bootIdFromUuid(uuid: string): number {
  const m = /^([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.exec(uuid.trim());
  if (!m) throw new Error(`not a boot id UUID: '${uuid.trim()}'`);
  return parseInt(m[1], 16) >>> 0;
}

/** netoops arch code for a Node/uname machine name. */
export function archCode(machine: string): number {
  return /^(x86_64|i[3-6]86|x64|ia32)$/.test(machine) ? NETOOPS_ARCH_X86 : NETOOPS_ARCH_OTHER;
}

function readTrim(path: string): string | null {
  try {
    const s = readFileSync(path, 'latin1').trim();
    return s === '' ? null : s;
  } catch {
    return null;
  }
}

export function readHostInfo(root = ''): HostInfo {
  const machine = os.machine();
  const arch = archCode(machine);
  let cpu: HostInfo['cpu'] = null;
  if (arch === NETOOPS_ARCH_X86) {
    const c = parseCpuinfo(readTrim(`${root}/proc/cpuinfo`) ?? '');
    if (c) cpu = { ...c, vendor: x86VendorCode(c.vendorId) };
  }
  const uuid = readTrim(`${root}/proc/sys/kernel/random/boot_id`);
  let bootId = 0;
  try {
    if (uuid) bootId = bootIdFromUuid(uuid);
  } catch { /* keep 0 */ }
  const uptime = Number((readTrim(`${root}/proc/uptime`) ?? '').split(/\s+/)[0]);
  return {
    kernelRelease: os.release(),
    machine,
    arch,
    cpu,
    bootIdUuid: uuid,
    bootId,
    uptimeSec: Number.isFinite(uptime) ? Math.floor(uptime) : Math.floor(os.uptime()),
    board: readTrim(`${root}/sys/class/dmi/id/board_name`),
    firmware: readTrim(`${root}/sys/class/dmi/id/bios_version`),
  };
}

/**
 * The kernel log as it is now, in the classic printk-buffer form netoops dumped: `<level>[secs.usecs] text\n`.
 * /dev/kmsg is opened non-blocking and read record by record until EAGAIN (the end); EPIPE means the ring buffer
 * overwrote records we had not read yet: they are counted as lost and reading goes on.
 */
export function readKmsgSnapshot(path = '/dev/kmsg', maxBytes = 4 << 20): { log: Buffer; records: number; lost: number } {
  const fd = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
  const buf = Buffer.alloc(8192); // a kmsg record is at most ~1 KiB text + dictionary; read() returns one per call
  const parts: Buffer[] = [];
  let bytes = 0;
  let records = 0;
  let lost = 0;
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') break;
        if (code === 'EPIPE') {
          lost++;
          continue;
        }
        throw err;
      }
      if (n === 0) break;
      const r = parseKmsgRecord(Buffer.from(buf.subarray(0, n)));
      if (!r) continue;
      records++;
      const line = Buffer.concat([Buffer.from(formatPrintkPrefix(r.level, r.usec), 'latin1'), r.text, Buffer.from('\n')]);
      parts.push(line);
      bytes += line.length;
      // Keep the newest maxBytes: the tail of the log matters most (netoops sends it first for the same reason).
      while (bytes > maxBytes && parts.length > 1) bytes -= parts.shift()!.length;
    }
  } finally {
    closeSync(fd);
  }
  return { log: Buffer.concat(parts), records, lost };
}

/** `<4>[   12.345678] ` as printk's log buffer had it. */
export function formatPrintkPrefix(level: number, usec: number): string {
  const sec = Math.floor(usec / 1e6);
  const frac = String(usec % 1e6).padStart(6, '0');
  return `<${level}>[${String(sec).padStart(5, ' ')}.${frac}] `;
}

/** The CPU this process last ran on (field 39 of /proc/self/stat): netconsole sysdata's cpu=, raw_smp_processor_id(). */
export function currentCpu(): number {
  try {
    const s = readFileSync('/proc/self/stat', 'latin1');
    return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[36]) || 0;
  } catch {
    return 0;
  }
}

/** This process's name (/proc/self/comm): netconsole sysdata's taskname=, the kernel's current->comm. */
export function taskName(): string {
  try {
    return readFileSync('/proc/self/comm', 'utf8').trim();
  } catch {
    return 'rawpoll';
  }
}
