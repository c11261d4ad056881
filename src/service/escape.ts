/**
 * systemd's escaping of instance names, exactly as `systemd-escape STRING` (no `--path`) does it:
 * `/` becomes `-`, a leading `.` becomes `\x2e`, and every byte of the UTF-8 encoding outside
 * `[A-Za-z0-9:_.]` becomes `\xNN` (lowercase hex), so a `-` in a profile name becomes `\x2d`.
 * Unescaping reverses it (`systemd-escape -u`).
 *
 * Why it matters: `systemctl --user enable drover@my-profile.service` would run the instance
 * `my/profile` (`%I` unescapes `-` to `/`), so every profile name goes through {@link systemdEscape}
 * before it becomes part of a unit name.
 *
 * @module
 */
import { ServiceError } from '../errors/index.js';

const SAFE = /^[A-Za-z0-9:_.]$/;

function hex(byte: number): string {
  return '\\x' + byte.toString(16).padStart(2, '0');
}

/** Escapes `text` like `systemd-escape -- TEXT`. */
export function systemdEscape(text: string): string {
  let out = '';
  const bytes = Buffer.from(text, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    const ch = String.fromCharCode(b);
    if (ch === '/') out += '-';
    else if (i === 0 && ch === '.') out += hex(b);
    else if (b < 0x80 && SAFE.test(ch)) out += ch;
    else out += hex(b);
  }
  return out;
}

/**
 * Reverses {@link systemdEscape} like `systemd-escape -u`: `-` becomes `/`, `\xNN` the byte NN.
 * @throws ServiceError when `escaped` holds a malformed `\x` sequence or bytes that are not UTF-8.
 */
export function systemdUnescape(escaped: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    const ch = escaped[i]!;
    if (ch === '-') {
      bytes.push(0x2f);
    } else if (ch === '\\') {
      const m = /^\\x([0-9a-fA-F]{2})/.exec(escaped.slice(i));
      if (!m) throw new ServiceError(`cannot unescape ${JSON.stringify(escaped)}: bad escape at position ${i}`);
      bytes.push(parseInt(m[1]!, 16));
      i += 3;
    } else {
      bytes.push(...Buffer.from(ch, 'utf8'));
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch (err) {
    throw new ServiceError(`cannot unescape ${JSON.stringify(escaped)}: the bytes are not UTF-8`, { cause: err });
  }
}

/** Name of the systemd template unit every profile shares. */
export const SYSTEMD_TEMPLATE_UNIT = 'drover@.service';

/** Name of a profile's instance of the template: `drover@<escaped profile>.service`. */
export function systemdInstanceUnit(profile: string): string {
  return `drover@${systemdEscape(profile)}.service`;
}

/**
 * The profile of an instance unit name (`drover@my\x2dp.service` → `my-p`), or `null` when `unit`
 * is not an instance of the drover template.
 */
export function profileOfInstanceUnit(unit: string): string | null {
  const m = /^drover@(.+)\.service$/.exec(unit);
  if (!m) return null;
  try {
    return systemdUnescape(m[1]!);
  } catch {
    return null;
  }
}
