/**
 * Where a profile's systemd unit or launchd agent lives, and whether one is there: pure paths and
 * one look at the disk. This is all `drover daemon status` loads of the service layer unless a
 * unit or plist exists (then it loads supervisor.ts to check it).
 *
 * @module
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateProfileName } from '../config/profile-name.js';
import { SYSTEMD_TEMPLATE_UNIT, systemdInstanceUnit } from './escape.js';

/** Name of the per-profile drop-in file inside `drover@<escaped>.service.d/`. */
export const SYSTEMD_DROP_IN_NAME = 'drover.conf';

/** Prefix of every drover LaunchAgent label; the profile name follows. */
export const LAUNCHD_LABEL_PREFIX = 'org.drover.daemon.';

/** Where the user's own units live: `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`). */
export function systemdUserUnitDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.resolve(base, 'systemd', 'user');
}

/** The files and unit name of a profile's systemd service. */
export interface SystemdUnitFiles {
  /** The unit directory. */
  dir: string;
  /** The shared template, `<dir>/drover@.service`. */
  template: string;
  /** The instance unit, `drover@<escaped>.service`. */
  unit: string;
  /** The profile's drop-in directory and file. */
  dropInDir: string;
  dropIn: string;
}

/** The unit files of `profile` (the name is validated). */
export function systemdUnitFiles(profile: string, env: NodeJS.ProcessEnv = process.env): SystemdUnitFiles {
  validateProfileName(profile);
  const dir = systemdUserUnitDir(env);
  const unit = systemdInstanceUnit(profile);
  const dropInDir = path.join(dir, `${unit}.d`);
  return {
    dir,
    template: path.join(dir, SYSTEMD_TEMPLATE_UNIT),
    unit,
    dropInDir,
    dropIn: path.join(dropInDir, SYSTEMD_DROP_IN_NAME),
  };
}

/** Label of a profile's LaunchAgent: `org.drover.daemon.<profile>` (profile names are label-safe). */
export function launchdLabel(profile: string): string {
  return LAUNCHD_LABEL_PREFIX + validateProfileName(profile);
}

/** `~/Library/LaunchAgents`. */
export function launchAgentsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.HOME || os.homedir(), 'Library', 'LaunchAgents');
}

/** Path of a profile's plist: `~/Library/LaunchAgents/org.drover.daemon.<profile>.plist`. */
export function launchdPlistPath(profile: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(launchAgentsDir(env), `${launchdLabel(profile)}.plist`);
}

/**
 * True when a unit template (systemd, Linux) or the profile's plist (launchd, macOS) exists: only
 * then can the profile be installed, and only then is the rest of the service layer worth loading.
 */
export function unitFileExists(
  profile: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): boolean {
  if (platform === 'linux') return fs.existsSync(systemdUnitFiles(profile, env).template);
  if (platform === 'darwin') return fs.existsSync(launchdPlistPath(profile, env));
  return false;
}
