/**
 * Renders the launchd LaunchAgent of a profile from `plist/drover.plist`, and parses an installed
 * one back (to find the node and CLI paths it runs). Pure: nothing is run or written.
 *
 * Every value is XML-escaped (`&`, `<`, `>`, quotes); control characters are refused (XML 1.0
 * cannot carry most of them).
 *
 * @module
 */
import fs from 'node:fs';
import { InputError, ServiceError } from '../errors/index.js';
import { validateProfileName } from '../config/profile-name.js';
import { droverPackage, packageFile } from './package-root.js';
import { checkUnitPath, fillTemplate } from './systemd.js';
import { launchdLabel } from './unit-paths.js';

export { LAUNCHD_LABEL_PREFIX, launchdLabel } from './unit-paths.js';
/** Default ThrottleInterval: launchd waits this long between restarts. */
export const DEFAULT_THROTTLE_INTERVAL = 10;
/** PATH given to the daemon when none is given: launchd's own default plus /usr/local/bin. */
export const DEFAULT_LAUNCHD_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';

/** Options of {@link renderLaunchdPlist}. */
export interface LaunchdPlistOptions {
  profile: string;
  /** Default {@link launchdLabel}(profile). */
  label?: string;
  nodePath: string;
  cliPath: string;
  droverHome?: string | null;
  /** Directory of the daemon's stdout/stderr files (absolute; created by the installer). */
  logDir: string;
  /** ExitTimeOut: seconds between SIGTERM and SIGKILL (shutdown grace plus a margin). */
  exitTimeOut: number;
  /** ThrottleInterval; default {@link DEFAULT_THROTTLE_INTERVAL}. */
  throttleInterval?: number;
  /** PATH for the daemon; default `<dir of node>:` + {@link DEFAULT_LAUNCHD_PATH}. */
  path?: string;
  /** Further environment variables. */
  environment?: Readonly<Record<string, string>>;
  droverVersion?: string;
  /** Template text; default the package's `plist/drover.plist`. */
  template?: string;
}

// eslint-disable-next-line no-control-regex
const XML_INVALID = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/** Escapes text for XML character data and attribute values. */
export function xmlEscape(text: string): string {
  if (XML_INVALID.test(text)) throw new InputError(`${JSON.stringify(text)} contains a character XML cannot hold`);
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

/** Reverses {@link xmlEscape} (and numeric character references). */
export function xmlUnescape(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_m, e: string) => {
    switch (e) {
      case 'amp':
        return '&';
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default:
        return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
    }
  });
}

function checkInt(what: string, v: number, min: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > 86400) {
    throw new InputError(`${what} must be a number of seconds from ${min} to 86400, got ${JSON.stringify(v)}`);
  }
  return Math.ceil(v);
}

let templateCache: string | undefined;

/** The text of the package's `plist/drover.plist` template. */
export function loadPlistTemplate(): string {
  if (templateCache === undefined) {
    const file = packageFile('plist', 'drover.plist');
    try {
      templateCache = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ServiceError(`cannot read the plist template ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  return templateCache;
}

/** File names of the daemon's stdout and stderr under the log directory. */
export function launchdLogFiles(logDir: string): { stdout: string; stderr: string } {
  return { stdout: `${logDir}/daemon.stdout.log`, stderr: `${logDir}/daemon.stderr.log` };
}

/** Renders a profile's LaunchAgent plist. @throws InputError on a bad path, label or number. */
export function renderLaunchdPlist(opts: LaunchdPlistOptions): string {
  validateProfileName(opts.profile);
  const label = opts.label ?? launchdLabel(opts.profile);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(label))
    throw new InputError(`launchd label ${JSON.stringify(label)} is not valid`);
  checkUnitPath('node path', opts.nodePath);
  checkUnitPath('CLI path', opts.cliPath);
  checkUnitPath('log directory', opts.logDir);
  const env: Array<[string, string]> = [];
  if (opts.droverHome != null && opts.droverHome !== '') {
    checkUnitPath('DROVER_HOME', opts.droverHome);
    env.push(['DROVER_HOME', opts.droverHome]);
  }
  const nodeDir = opts.nodePath.slice(0, opts.nodePath.lastIndexOf('/')) || '/';
  env.push(['PATH', opts.path ?? `${nodeDir}:${DEFAULT_LAUNCHD_PATH}`]);
  for (const [k, v] of Object.entries(opts.environment ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw new InputError(`environment variable name ${JSON.stringify(k)} is not valid`);
    if (k === 'DROVER_HOME' || k === 'PATH') throw new InputError(`set ${k} with its own option`);
    env.push([k, v]);
  }
  const logs = launchdLogFiles(opts.logDir);
  return fillTemplate(opts.template ?? loadPlistTemplate(), {
    // XML comments may not contain "--"; a version never does, but be safe.
    DROVER_VERSION: xmlEscape(opts.droverVersion ?? droverPackage().version).replace(/--/g, '- -'),
    LABEL: xmlEscape(label),
    NODE_PATH: xmlEscape(opts.nodePath),
    CLI_PATH: xmlEscape(opts.cliPath),
    PROFILE: xmlEscape(opts.profile),
    EXIT_TIMEOUT: String(checkInt('ExitTimeOut', opts.exitTimeOut, 1)),
    THROTTLE_INTERVAL: String(checkInt('ThrottleInterval', opts.throttleInterval ?? DEFAULT_THROTTLE_INTERVAL, 1)),
    STDOUT_PATH: xmlEscape(logs.stdout),
    STDERR_PATH: xmlEscape(logs.stderr),
    ENVIRONMENT: env.map(([k, v]) => `    <key>${xmlEscape(k)}</key>\n    <string>${xmlEscape(v)}</string>`).join('\n'),
  });
}

/** What an installed LaunchAgent runs. */
export interface PlistPaths {
  label: string | null;
  nodePath: string;
  cliPath: string;
  droverHome: string | null;
}

function stringsIn(xml: string): string[] {
  return [...xml.matchAll(/<string>([\s\S]*?)<\/string>|<string\/>/g)].map((m) => xmlUnescape(m[1] ?? ''));
}

/**
 * Finds the node and CLI paths (and DROVER_HOME, Label) of a drover plist. A small reader for the
 * plists drover writes (no dependency on a full plist parser at run time).
 * @throws ServiceError when there is no ProgramArguments array with at least two strings.
 */
export function parsePlistPaths(xml: string, where = 'plist'): PlistPaths {
  const args = /<key>ProgramArguments<\/key>\s*<array>([\s\S]*?)<\/array>/.exec(xml);
  const argv = args ? stringsIn(args[1]!) : [];
  if (argv.length < 2) throw new ServiceError(`${where}: no ProgramArguments with node and the CLI`);
  const label = /<key>Label<\/key>\s*<string>([\s\S]*?)<\/string>/.exec(xml);
  let droverHome: string | null = null;
  const envDict = /<key>EnvironmentVariables<\/key>\s*<dict>([\s\S]*?)<\/dict>/.exec(xml);
  if (envDict) {
    for (const m of envDict[1]!.matchAll(/<key>([\s\S]*?)<\/key>\s*<string>([\s\S]*?)<\/string>/g)) {
      if (xmlUnescape(m[1]!) === 'DROVER_HOME') droverHome = xmlUnescape(m[2]!);
    }
  }
  return { label: label ? xmlUnescape(label[1]!) : null, nodePath: argv[0]!, cliPath: argv[1]!, droverHome };
}
