/**
 * Installs and uninstalls a profile's systemd user service: the shared template
 * `drover@.service`, the profile's drop-in, `systemctl --user daemon-reload`, and optionally
 * `enable`, `start` and `loginctl enable-linger`.
 *
 * The template is shared by every profile of the user (all of them run the same node and CLI),
 * so uninstalling one profile removes its drop-in and disables its instance, but removes the
 * template only when no other profile's instance still uses it: none is installed (has a
 * drop-in), enabled (has a `*.wants/` link) or running. Otherwise uninstalling `a` would leave an
 * enabled `b` pointing at a missing unit that silently no longer starts at login.
 *
 * @module
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ServiceError } from '../errors/index.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { SYSTEMD_TEMPLATE_UNIT, profileOfInstanceUnit, systemdInstanceUnit } from './escape.js';
import {
  execRunner,
  runStep,
  shellCommand,
  type CommandRecord,
  type CommandRunner,
  type FileAction,
  type ServiceActionResult,
} from './runner.js';
import { parseUnitPaths, renderSystemdDropIn, renderSystemdUnit, type SystemdUnitOptions } from './systemd.js';
import { systemdUnitFiles, systemdUserUnitDir } from './unit-paths.js';

export { SYSTEMD_DROP_IN_NAME, systemdUnitFiles, systemdUserUnitDir, type SystemdUnitFiles } from './unit-paths.js';

/** The systemctl and loginctl programs: options, else `DROVER_SYSTEMCTL`/`DROVER_LOGINCTL`, else PATH. */
function tools(opts: { systemctl?: string; loginctl?: string; env?: NodeJS.ProcessEnv }): {
  systemctl: string;
  loginctl: string;
} {
  const env = opts.env ?? process.env;
  return {
    systemctl: opts.systemctl ?? (env.DROVER_SYSTEMCTL || 'systemctl'),
    loginctl: opts.loginctl ?? (env.DROVER_LOGINCTL || 'loginctl'),
  };
}

const MANAGER_UP = new Set(['running', 'degraded', 'starting', 'initializing', 'maintenance']);

/** Whether a systemd user manager answers, and what `is-system-running` said. */
export interface SystemdManagerState {
  available: boolean;
  /** `is-system-running` output (`running`, `degraded`, `offline`, ...) or why it could not run. */
  state: string;
}

/**
 * Checks for a systemd user manager: `systemctl --user is-system-running` answers with a live
 * state, or the manager's private socket `$XDG_RUNTIME_DIR/systemd/private` exists.
 */
export async function systemdUserManagerState(
  opts: { run?: CommandRunner; env?: NodeJS.ProcessEnv; systemctl?: string } = {},
): Promise<SystemdManagerState> {
  const env = opts.env ?? process.env;
  const run = opts.run ?? execRunner(env);
  const r = await run(tools(opts).systemctl, ['--user', 'is-system-running']);
  if (r.status === 127) return { available: false, state: 'systemctl not found' };
  const state = r.stdout.trim() || r.stderr.trim().split('\n')[0] || `exit code ${r.status}`;
  if (MANAGER_UP.has(state)) return { available: true, state };
  const priv = env.XDG_RUNTIME_DIR ? path.join(env.XDG_RUNTIME_DIR, 'systemd', 'private') : null;
  if (priv !== null && fs.existsSync(priv)) return { available: true, state };
  return { available: false, state };
}

/** The ServiceError raised when no systemd user manager answers. */
export function noSystemdManagerError(state: string, env: NodeJS.ProcessEnv = process.env): ServiceError {
  return new ServiceError(
    `no systemd user manager is reachable (\`systemctl --user is-system-running\` says '${state}', ` +
      `XDG_RUNTIME_DIR=${env.XDG_RUNTIME_DIR ? env.XDG_RUNTIME_DIR : '(unset)'}). Log in through a real session ` +
      `(ssh or a console login, not \`su\`/\`sudo\`), or run \`drover daemon start\` without a service manager.`,
  );
}

/**
 * Profiles other than `profile` whose instance of the template is installed (has a drop-in),
 * enabled (has a link in a `*.wants/` or `*.requires/` directory) or, when `run` is given,
 * active in the user manager.
 */
export async function otherSystemdInstances(
  profile: string,
  opts: { env?: NodeJS.ProcessEnv; run?: CommandRunner; systemctl?: string } = {},
): Promise<string[]> {
  const env = opts.env ?? process.env;
  const mine = systemdInstanceUnit(profile);
  const units = new Set<string>();
  const dir = systemdUserUnitDir(env);
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    // No unit directory: nothing installed by files.
  }
  for (const e of entries) {
    if (e.name.endsWith('.service.d') && e.name.startsWith('drover@')) units.add(e.name.slice(0, -2));
    if (e.isDirectory() && /\.(wants|requires)$/.test(e.name)) {
      let links: string[] = [];
      try {
        links = fs.readdirSync(path.join(dir, e.name));
      } catch {
        continue;
      }
      for (const l of links) if (l.startsWith('drover@')) units.add(l);
    }
  }
  if (opts.run) {
    const r = await opts.run(tools(opts).systemctl, [
      '--user',
      'list-units',
      '--all',
      '--plain',
      '--no-legend',
      '--full',
      'drover@*.service',
    ]);
    if (r.status === 0) {
      for (const line of r.stdout.split('\n')) {
        const cols = line
          .replace(/^[^\w@]+/, '')
          .trim()
          .split(/\s+/);
        if (cols.length >= 3 && /^(active|activating|deactivating|reloading|refreshing)$/.test(cols[2]!)) {
          units.add(cols[0]!);
        }
      }
    }
  }
  const out = new Set<string>();
  for (const u of units) {
    if (u === mine || u === SYSTEMD_TEMPLATE_UNIT) continue;
    const p = profileOfInstanceUnit(u);
    if (p !== null && p !== '') out.add(p);
  }
  return [...out].sort();
}

/** Options of {@link installSystemdService}. */
export interface SystemdInstallOptions {
  profile: string;
  /** What the template runs (paths, DROVER_HOME, timeouts). */
  unit: SystemdUnitOptions;
  /** `systemctl --user enable` the instance (start at login). */
  enable?: boolean;
  /** `systemctl --user start` the instance now. */
  now?: boolean;
  /** `loginctl enable-linger USER` (start at boot, keep running after logout). */
  linger?: boolean;
  /** Render and plan only; write and run nothing. */
  dryRun?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Runs the commands; default {@link execRunner}. */
  run?: CommandRunner;
  /** systemctl program (default env DROVER_SYSTEMCTL, else `systemctl`). */
  systemctl?: string;
  /** loginctl program (default env DROVER_LOGINCTL, else `loginctl`). */
  loginctl?: string;
  /** User for `enable-linger` (default the current user). */
  user?: string;
}

function readIfExists(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * Installs the profile's service: writes the template (mode 0644, atomically) and the drop-in,
 * reloads the user manager, then enables, starts and enables lingering as asked. Checks for a
 * user manager before writing anything.
 * @throws ServiceError when no user manager answers or a command fails; InputError on bad paths.
 */
export async function installSystemdService(opts: SystemdInstallOptions): Promise<ServiceActionResult> {
  const env = opts.env ?? process.env;
  const run = opts.run ?? execRunner(env);
  const { systemctl, loginctl } = tools(opts);
  const files = systemdUnitFiles(opts.profile, env);
  // Render first: a bad path or number fails here, before anything is touched.
  const unitText = renderSystemdUnit(opts.unit);
  const dropInText = renderSystemdDropIn({
    profile: opts.profile,
    shutdownGraceSeconds: opts.unit.shutdownGraceSeconds,
    stopMarginSeconds: opts.unit.stopMarginSeconds,
    droverVersion: opts.unit.droverVersion,
  });
  const warnings: string[] = [];
  const previous = readIfExists(files.template);
  if (previous !== null && previous !== unitText) {
    const others = await otherSystemdInstances(opts.profile, { env });
    let changed = true;
    try {
      const a = parseUnitPaths(previous);
      const b = parseUnitPaths(unitText);
      changed = a.nodePath !== b.nodePath || a.cliPath !== b.cliPath || a.droverHome !== b.droverHome;
    } catch {
      // An unreadable old template is simply replaced.
    }
    if (changed && others.length > 0) {
      warnings.push(
        `${files.template} is shared by all profiles; profiles ${others.map((p) => `'${p}'`).join(', ')} ` +
          `will also run the new node/CLI/DROVER_HOME from their next start`,
      );
    }
  }
  if (opts.unit.cliPath.includes(`${path.sep}_npx${path.sep}`)) {
    warnings.push(
      `the CLI ${opts.unit.cliPath} is in npx's temporary cache, which npm may clean at any time; ` +
        'install drover (globally or in a project) and run `drover daemon install` from there',
    );
  }

  const user = opts.user ?? (env.USER || os.userInfo().username);
  const plan: string[][] = [[systemctl, '--user', 'daemon-reload']];
  if (opts.enable) plan.push([systemctl, '--user', 'enable', files.unit]);
  if (opts.now) plan.push([systemctl, '--user', 'start', files.unit]);
  if (opts.linger) plan.push([loginctl, 'enable-linger', user]);

  const result: ServiceActionResult = {
    init: 'systemd',
    action: 'install',
    profile: opts.profile,
    unit: files.unit,
    dryRun: opts.dryRun === true,
    files: [
      { path: files.template, action: 'write', content: unitText, reason: 'template unit shared by all profiles' },
      { path: files.dropIn, action: 'write', content: dropInText, reason: `drop-in of profile '${opts.profile}'` },
    ],
    commands: plan.map((argv) => ({ argv })),
    manualCommands: plan.map(shellCommand),
    warnings,
    notes: [],
  };
  const status = `systemctl --user status ${shellCommand([files.unit])}`;
  if (!opts.now) result.notes.push(`start it with: systemctl --user start ${shellCommand([files.unit])}`);
  if (!opts.enable) result.notes.push(`start it at login with: systemctl --user enable ${shellCommand([files.unit])}`);
  if (!opts.linger) result.notes.push(`start it at boot (without a login) with: loginctl enable-linger ${user}`);
  result.notes.push(`check it with: ${status}; logs: journalctl --user -u ${shellCommand([files.unit])}`);
  if (opts.dryRun) return result;

  const manager = await systemdUserManagerState({ run, env, systemctl });
  if (!manager.available) throw noSystemdManagerError(manager.state, env);

  fs.mkdirSync(files.dropInDir, { recursive: true, mode: 0o755 });
  // A unit holds no secret, and systemd wants to read it: 0644 like any unit file.
  writeFileAtomicSync(files.template, unitText, 0o644);
  writeFileAtomicSync(files.dropIn, dropInText, 0o644);

  const log: CommandRecord[] = [];
  result.commands = log;
  for (const argv of plan) {
    const hint =
      argv[2] === 'start' ? `see \`${status}\` and \`journalctl --user -u ${shellCommand([files.unit])}\`` : undefined;
    await runStep(run, log, argv, undefined, hint);
  }
  return result;
}

/** Options of {@link uninstallSystemdService}. */
export interface SystemdUninstallOptions {
  profile: string;
  dryRun?: boolean;
  env?: NodeJS.ProcessEnv;
  run?: CommandRunner;
  systemctl?: string;
}

function instanceLinks(dir: string, unit: string): string[] {
  const out: string[] = [];
  let entries: fs.Dirent[] = [];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory() || !/\.(wants|requires)$/.test(e.name)) continue;
    const link = path.join(dir, e.name, unit);
    try {
      fs.lstatSync(link);
      out.push(link);
    } catch {
      // Not linked from this target.
    }
  }
  return out;
}

/**
 * Uninstalls the profile's service: stops and disables the instance, removes its drop-in,
 * removes the shared template when no other profile's instance uses it, and reloads the user
 * manager. Succeeds when nothing is installed. Without a reachable user manager only the files
 * are removed (with a warning).
 */
export async function uninstallSystemdService(opts: SystemdUninstallOptions): Promise<ServiceActionResult> {
  const env = opts.env ?? process.env;
  const run = opts.run ?? execRunner(env);
  const { systemctl } = tools(opts);
  const files = systemdUnitFiles(opts.profile, env);
  const manager = await systemdUserManagerState({ run, env, systemctl });
  const others = await otherSystemdInstances(opts.profile, {
    env,
    run: manager.available ? run : undefined,
    systemctl,
  });
  const templateExists = fs.existsSync(files.template);
  const dropInExists = fs.existsSync(files.dropInDir);
  const links = instanceLinks(files.dir, files.unit);

  const fileActions: FileAction[] = [];
  const warnings: string[] = [];
  if (dropInExists)
    fileActions.push({ path: files.dropInDir, action: 'remove', reason: `drop-in of profile '${opts.profile}'` });
  if (templateExists) {
    if (others.length === 0) {
      fileActions.push({ path: files.template, action: 'remove', reason: 'no other profile uses the template' });
    } else {
      fileActions.push({
        path: files.template,
        action: 'keep',
        reason: `still used by profile${others.length > 1 ? 's' : ''} ${others.map((p) => `'${p}'`).join(', ')}`,
      });
    }
  }
  // Without the template, `systemctl disable` cannot resolve the instance: remove its links by hand.
  const manualLinks = templateExists && manager.available ? [] : links;
  for (const l of manualLinks) fileActions.push({ path: l, action: 'remove', reason: 'enablement link' });
  const changesFiles = fileActions.some((f) => f.action === 'remove');

  const before: string[][] = [];
  const after: string[][] = [];
  if (manager.available) {
    before.push([systemctl, '--user', 'stop', files.unit]);
    if (templateExists) before.push([systemctl, '--user', 'disable', files.unit]);
    if (changesFiles) after.push([systemctl, '--user', 'daemon-reload']);
    after.push([systemctl, '--user', 'reset-failed', files.unit]);
  } else {
    warnings.push(`${noSystemdManagerError(manager.state, env).message} Only the files were removed.`);
  }
  const manual = [
    ...before.map(shellCommand),
    ...fileActions.filter((f) => f.action === 'remove').map((f) => shellCommand(['rm', '-rf', f.path])),
    ...after.map(shellCommand),
  ];
  const result: ServiceActionResult = {
    init: 'systemd',
    action: 'uninstall',
    profile: opts.profile,
    unit: files.unit,
    dryRun: opts.dryRun === true,
    files: fileActions,
    commands: [...before, ...after].map((argv) => ({ argv })),
    manualCommands: manual,
    warnings,
    notes: [],
  };
  if (!templateExists && !dropInExists && links.length === 0) {
    result.notes.push(`nothing was installed for profile '${opts.profile}' (${files.dir})`);
  }
  if (opts.dryRun) return result;

  const log: CommandRecord[] = [];
  result.commands = log;
  // "not loaded" (exit 5): the unit is unknown to the manager, so there is nothing to stop.
  const notLoaded = (r: { status: number }): string | null => (r.status === 5 ? 'not loaded' : null);
  for (const argv of before) await runStep(run, log, argv, argv[2] === 'stop' ? notLoaded : undefined);
  for (const f of fileActions) {
    if (f.action === 'remove') fs.rmSync(f.path, { recursive: true, force: true });
  }
  for (const argv of after) {
    await runStep(run, log, argv, argv[2] === 'reset-failed' ? () => 'nothing to reset' : undefined);
  }
  return result;
}
