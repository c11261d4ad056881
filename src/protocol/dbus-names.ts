/**
 * D-Bus names of a profile's daemon, shared by the daemon (which exports them) and the client (which
 * calls them): the bus name, object path and interface, the methods with their signatures, the
 * error names, and where the user's session bus is.
 *
 * Profile names may hold `-` and `.` and start with a digit; none of that may stand in a bus name
 * element or an object path element as-is. One escaping, {@link busLabelEscape} (systemd's
 * `bus_label_escape`), makes a label valid in both: every byte outside `[A-Za-z0-9]` becomes `_xx`
 * (two lowercase hex digits), and so does a leading digit. It is injective (`_` itself is escaped),
 * so two profiles never share a name.
 *
 * ```text
 * profile      my-profile.v2
 * bus name     org.drover.Daemon.my_2dprofile_2ev2
 * object path  /org/drover/Daemon/my_2dprofile_2ev2
 * interface    org.drover.Daemon1
 * ```
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ControlMethod } from './control.js';

/** The interface the daemon exports (versioned: an incompatible change gets `Daemon2`). */
export const DBUS_INTERFACE = 'org.drover.Daemon1';
/** Prefix of every daemon's well-known bus name; the escaped profile name follows. */
export const DBUS_NAME_PREFIX = 'org.drover.Daemon';
/** Prefix of every daemon's object path; the escaped profile name follows. */
export const DBUS_PATH_PREFIX = '/org/drover/Daemon';
/** Prefix of the error names the daemon replies with; the error code in CamelCase follows. */
export const DBUS_ERROR_PREFIX = 'org.drover.Error';

/** Errors of the bus itself that mean nobody owns the daemon's name: the daemon is not running. */
export const DBUS_NO_OWNER_ERRORS: readonly string[] = [
  'org.freedesktop.DBus.Error.ServiceUnknown',
  'org.freedesktop.DBus.Error.NameHasNoOwner',
];

/**
 * Signature of the `Workers` property: one struct per worker slot,
 * `(id, state, pid, running, slots, restarts)`; `pid` is 0 while the slot waits to be revived and
 * `slots` is 0 before the worker's first report. The full record is the `WorkerInfo` method's.
 */
export const DBUS_WORKERS_SIGNATURE = 'a(ssuuuu)';

/** How each control method is called over D-Bus. */
export interface DBusMethodSpec {
  /** Member name on {@link DBUS_INTERFACE}. */
  member: string;
  inSignature: string;
  outSignature: string;
}

/**
 * The methods, mirroring the control protocol. Structured results are JSON strings of exactly what
 * the socket returns as `result`; counts are plain integers.
 */
export const DBUS_METHODS: { readonly [M in ControlMethod]: DBusMethodSpec } = {
  status: { member: 'Status', inSignature: '', outSignature: 's' },
  daemonInfo: { member: 'DaemonInfo', inSignature: '', outSignature: 's' },
  workerInfo: { member: 'WorkerInfo', inSignature: '', outSignature: 's' },
  increaseWorkers: { member: 'IncreaseWorkers', inSignature: 'u', outSignature: 'u' },
  decreaseWorkers: { member: 'DecreaseWorkers', inSignature: 'u', outSignature: 'u' },
  restartWorkers: { member: 'RestartWorkers', inSignature: '', outSignature: 'uu' },
  stop: { member: 'Stop', inSignature: '', outSignature: '' },
};

const HEX = '0123456789abcdef';

/**
 * Escapes `s` into a label valid as a bus name element and as an object path element (systemd's
 * `bus_label_escape`): bytes outside `[A-Za-z0-9]`, and a leading digit, become `_xx`; the empty
 * string becomes `_`. Works on the UTF-8 bytes, so any string has a label.
 */
export function busLabelEscape(s: string): string {
  if (s === '') return '_';
  let out = '';
  const bytes = Buffer.from(s, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const alpha = (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a);
    const digit = b >= 0x30 && b <= 0x39;
    if (alpha || (digit && i > 0)) out += String.fromCharCode(b);
    else out += '_' + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/**
 * Reverses {@link busLabelEscape}. Returns null for a label that escaping could not have produced.
 */
export function busLabelUnescape(label: string): string | null {
  if (label === '_') return '';
  const bytes: number[] = [];
  for (let i = 0; i < label.length;) {
    const c = label[i]!;
    if (c === '_') {
      const hex = label.slice(i + 1, i + 3);
      if (!/^[0-9a-f]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else if (/[A-Za-z0-9]/.test(c)) {
      bytes.push(c.charCodeAt(0));
      i += 1;
    } else {
      return null;
    }
  }
  const text = Buffer.from(bytes).toString('utf8');
  return busLabelEscape(text) === label ? text : null;
}

/** The well-known bus name the daemon of `profileName` owns on the session bus. */
export function daemonBusName(profileName: string): string {
  return `${DBUS_NAME_PREFIX}.${busLabelEscape(profileName)}`;
}

/** The object path the daemon of `profileName` exports {@link DBUS_INTERFACE} at. */
export function daemonObjectPath(profileName: string): string {
  return `${DBUS_PATH_PREFIX}/${busLabelEscape(profileName)}`;
}

/**
 * The D-Bus error name for a control error code: `PARAMS_INVALID` → `org.drover.Error.ParamsInvalid`.
 * A code that does not look like `UPPER_SNAKE` maps to `InternalError` (never an invalid name).
 */
export function dbusErrorName(code: string): string {
  if (!/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/.test(code)) return `${DBUS_ERROR_PREFIX}.InternalError`;
  const camel = code
    .split('_')
    .map((w) => w[0] + w.slice(1).toLowerCase())
    .join('');
  return `${DBUS_ERROR_PREFIX}.${camel}`;
}

/**
 * The control error code of a D-Bus error name made by {@link dbusErrorName}
 * (`org.drover.Error.ParamsInvalid` → `PARAMS_INVALID`), or null for any other error name.
 */
export function controlCodeOfDBusError(name: string): string | null {
  const prefix = `${DBUS_ERROR_PREFIX}.`;
  if (!name.startsWith(prefix)) return null;
  const camel = name.slice(prefix.length);
  if (!/^[A-Z][a-z0-9]*([A-Z][a-z0-9]*)*$/.test(camel)) return null;
  return camel.replace(/(?!^)([A-Z])/g, '_$1').toUpperCase();
}

/** Where the session bus was found. */
export interface SessionBusAddress {
  /** An address dbus-next can connect to without its optional `usocket` module: `unix:path=...` or `tcp:...`. */
  address: string;
  /** What the user would recognise: the original address, or the socket path. */
  shown: string;
  /** `DBUS_SESSION_BUS_ADDRESS` or `XDG_RUNTIME_DIR`. */
  source: 'DBUS_SESSION_BUS_ADDRESS' | 'XDG_RUNTIME_DIR';
}

/** Decodes the `%xx` escapes of a D-Bus address value. */
function unescapeAddressValue(v: string): string {
  return v.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** True when `p` exists and is a socket. */
function isSocket(p: string): boolean {
  try {
    return fs.statSync(p).isSocket();
  } catch {
    return false;
  }
}

/** dbus-next splits addresses on `;`, `:`, `,` and `=` without unescaping: such a value cannot be passed. */
const UNPASSABLE = /[;:,=]/;

/**
 * Turns one entry of a D-Bus address list into an address dbus-next can use, or null when it
 * cannot: `unix:abstract=` (that needs the optional native `usocket`), `unixexec`, `launchd`,
 * `nonce-tcp`, or a value with characters dbus-next cannot parse.
 */
export function connectableBusAddress(entry: string): string | null {
  const colon = entry.indexOf(':');
  if (colon <= 0) return null;
  const family = entry.slice(0, colon);
  const params = new Map<string, string>();
  for (const part of entry.slice(colon + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    params.set(part.slice(0, eq), unescapeAddressValue(part.slice(eq + 1)));
  }
  if (family === 'unix') {
    const p = params.get('path');
    if (p !== undefined && p !== '' && !UNPASSABLE.test(p)) return `unix:path=${p}`;
    // `abstract=` needs dbus-next's optional native `usocket` (Node 20 cannot connect to abstract sockets).
    return null;
  }
  if (family === 'tcp') {
    const host = params.get('host') ?? 'localhost';
    const port = params.get('port');
    if (port === undefined || !/^\d+$/.test(port) || UNPASSABLE.test(host)) return null;
    return `tcp:host=${host},port=${port}`;
  }
  return null;
}

/**
 * The user's session bus: `DBUS_SESSION_BUS_ADDRESS` when set (its first entry Drover can use),
 * else `$XDG_RUNTIME_DIR/bus` when that socket exists (systemd's per-user bus), else null (a
 * headless box: no session bus). Never the system bus.
 */
export function sessionBusAddress(
  env: NodeJS.ProcessEnv = process.env,
  socketExists: (p: string) => boolean = isSocket,
): SessionBusAddress | null {
  const fromEnv = env.DBUS_SESSION_BUS_ADDRESS;
  if (fromEnv !== undefined && fromEnv.trim() !== '') {
    for (const entry of fromEnv.split(';')) {
      const address = connectableBusAddress(entry.trim());
      if (address !== null) return { address, shown: fromEnv, source: 'DBUS_SESSION_BUS_ADDRESS' };
    }
    return null;
  }
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime && path.isAbsolute(runtime)) {
    const p = path.join(runtime, 'bus');
    if (socketExists(p) && !UNPASSABLE.test(p))
      return { address: `unix:path=${p}`, shown: p, source: 'XDG_RUNTIME_DIR' };
  }
  return null;
}
