/**
 * `-Z USER`, tcpdump's privilege drop (tcpdump.c droproot): once a command's raw sockets are open, it becomes USER
 * and USER's primary group, with no supplementary groups. The kernel clears the permitted, effective and ambient
 * capability sets when a process whose uids were all 0 sets them all non-zero (capabilities(7), "Effect of user ID
 * changes on capabilities"), so CAP_NET_RAW goes with root: the open sockets keep working, no new one can be opened.
 *
 * The account comes from /etc/passwd, read directly, so that it works in a container with no NSS modules (and no
 * getent); a user that only NSS knows (LDAP, sssd) is then asked of `getent passwd`, where there is one.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { RuntimeError, UsageError } from '../errors.js';

export interface Account {
  name: string;
  uid: number;
  gid: number;
}

/** One /etc/passwd line (name:password:uid:gid:gecos:home:shell) as an Account, or null if it is not one. */
export function parsePasswdLine(line: string): Account | null {
  const f = line.split(':');
  if (f.length < 7 || !f[0] || !/^\d+$/.test(f[2]) || !/^\d+$/.test(f[3])) return null;
  return { name: f[0], uid: Number(f[2]), gid: Number(f[3]) };
}

/** USER by name, or by number (a uid) as `id` takes it; null if neither /etc/passwd nor NSS knows it. */
export function lookupUser(user: string, passwd = '/etc/passwd'): Account | null {
  const byUid = /^\d+$/.test(user);
  let text = '';
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    /* no /etc/passwd: only NSS can answer */
  }
  for (const line of text.split('\n')) {
    const a = parsePasswdLine(line);
    if (a && (byUid ? a.uid === Number(user) : a.name === user)) return a;
  }
  if (passwd !== '/etc/passwd') return null;
  try {
    const out = execFileSync('getent', ['passwd', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 });
    return parsePasswdLine(out.split('\n')[0]);
  } catch {
    return null; // not found (exit 2), or no getent here
  }
}

/**
 * -Z USER's value, checked when the command line is parsed — before anything is opened or sent: an unknown user is
 * bad usage (exit 2); a process that is not root and not USER cannot become USER, a runtime failure (exit 1).
 */
export function resolveDropUser(user: string): Account {
  const a = lookupUser(user);
  if (!a) throw new UsageError(`bad -Z '${user}': no such user in /etc/passwd (or NSS); give an existing account, e.g. -Z nobody`);
  if (a.uid === 0) throw new UsageError(`bad -Z '${user}': that is root (uid 0), which keeps every privilege; give an unprivileged account, e.g. -Z nobody`);
  const uid = process.getuid!();
  if (uid !== 0 && process.geteuid!() !== 0) {
    if (uid !== a.uid) throw new RuntimeError(`-Z ${user}: only root can become another user (running as uid ${uid}); run with sudo, or leave -Z out`);
    // Already USER, but with capabilities (file capabilities on node, ambient ones from a service manager): those
    // go only with a switch away from uid 0, which this process cannot make.
    if (processCredentials().capPrm !== 0n) {
      throw new RuntimeError(`-Z ${user}: running as ${user} with capabilities that only a switch from root gives up; run as root with -Z ${user}, or without the capabilities`);
    }
  }
  return a;
}

/**
 * The credentials and capability sets of this process (or `pid`, or one thread of it: 'PID/task/TID'), as
 * /proc/…/status states them.
 */
export function processCredentials(pid: number | string = 'self'): { uid: number[]; gid: number[]; groups: number[]; capPrm: bigint; capEff: bigint; capAmb: bigint } {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => (new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(st) ?? [])[1]?.trim() ?? '';
  const nums = (k: string) => field(k).split(/\s+/).filter(Boolean).map(Number);
  const caps = (k: string) => BigInt('0x' + (field(k) || '0'));
  return { uid: nums('Uid'), gid: nums('Gid'), groups: nums('Groups'), capPrm: caps('CapPrm'), capEff: caps('CapEff'), capAmb: caps('CapAmb') };
}

/**
 * Become `a`: setgroups([gid]), setgid, setuid, in that order (the group calls need the privilege setuid gives
 * up). Then checks, as tcpdump does not, that it took: every uid and gid is USER's and no capability is left (a
 * process with SECBIT_KEEP_CAPS set, say, would keep them) — otherwise a RuntimeError, and the command stops.
 * Already USER with nothing to give up: nothing to do.
 */
export function dropPrivileges(a: Account): void {
  const before = processCredentials();
  if (before.uid.every((u) => u === a.uid) && before.capPrm === 0n && before.capEff === 0n) return;
  try {
    process.setgroups!([a.gid]);
    process.setgid!(a.gid);
    process.setuid!(a.uid);
  } catch (e) {
    throw new RuntimeError(`-Z ${a.name}: cannot switch to uid ${a.uid} gid ${a.gid}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const c = processCredentials();
  if (!c.uid.every((u) => u === a.uid) || !c.gid.every((g) => g === a.gid) || c.capPrm !== 0n || c.capEff !== 0n || c.capAmb !== 0n) {
    throw new RuntimeError(`-Z ${a.name}: privileges still held after the switch (Uid ${c.uid.join(' ')}, CapPrm ${c.capPrm.toString(16)}, CapEff ${c.capEff.toString(16)}); stopping`);
  }
}

/**
 * Would `a`, with only its primary group (what dropPrivileges leaves), be allowed `mode` (a mask of 4 r, 2 w, 1 x)
 * on `path` by its permission bits? ACLs and LSMs are not consulted: for a check before anything is opened.
 */
export function modeAllows(a: Account, path: string, mode: number): boolean {
  const st = statSync(path);
  const bits = st.uid === a.uid ? (st.mode >> 6) & 7 : st.gid === a.gid ? (st.mode >> 3) & 7 : st.mode & 7;
  return (bits & mode) === mode;
}

/**
 * Can `a` create, rename and remove files in `dir` (write and search), and replace `file` there? In a sticky
 * directory (/tmp) only a file's owner (or the directory's) may rename over it or remove it.
 */
export function canReplaceIn(a: Account, dir: string, file?: string): boolean {
  if (!modeAllows(a, dir, 3)) return false;
  const d = statSync(dir);
  if (!(d.mode & 0o1000) || d.uid === a.uid || file === undefined) return true;
  try {
    return statSync(file).uid === a.uid;
  } catch {
    return true; // not there yet: it will be USER's own
  }
}
