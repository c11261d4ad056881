/**
 * Profile names: the one rule for what a profile may be called.
 *
 * @module
 */
import { ProfileError } from '../errors/index.js';

/** Longest allowed profile name. */
export const MAX_PROFILE_NAME_LENGTH = 64;
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/**
 * Checks a profile name: letters, digits, `_`, `-` and `.`, not starting with `.` or `-`, at most
 * 64 characters, not containing `..`, and not `__proto__`. Profile names become directory names, systemd instance
 * names and D-Bus name parts, so anything else is rejected.
 * @throws ProfileError naming the offending name and the rule it breaks.
 */
export function validateProfileName(name: string): string {
  const shown = JSON.stringify(name);
  if (name === '') throw new ProfileError('invalid profile name "": a profile name must not be empty');
  if (name.length > MAX_PROFILE_NAME_LENGTH) {
    throw new ProfileError(
      `invalid profile name ${shown}: at most ${MAX_PROFILE_NAME_LENGTH} characters allowed, got ${name.length}`,
    );
  }
  if (name.startsWith('.') || name.startsWith('-')) {
    throw new ProfileError(`invalid profile name ${shown}: must not start with '.' or '-'`);
  }
  if (!NAME_RE.test(name)) {
    const bad = [...name].find((c) => !/[A-Za-z0-9_.-]/.test(c)) ?? '?';
    throw new ProfileError(
      `invalid profile name ${shown}: character ${JSON.stringify(bad)} not allowed (use letters, digits, '_', '-', '.')`,
    );
  }
  if (name.includes('..')) throw new ProfileError(`invalid profile name ${shown}: must not contain '..'`);
  // Profiles are keys of a JSON object; this one would replace the object's prototype in JavaScript.
  if (name === '__proto__') throw new ProfileError(`invalid profile name ${shown}: the name is reserved`);
  return name;
}
