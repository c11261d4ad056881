/**
 * Base class of every drover command: the global `-p/--profile` flag (also `DROVER_PROFILE`),
 * `--json` output, confirmation prompts, and error reporting. Commands stay thin: they parse
 * flags, call the library and print; heavy modules (store, broker) are imported only by the
 * commands that need them, so that light commands start fast.
 *
 * Errors are printed as one line `Error: <message>` on stderr (with `--json`: an
 * `{"error": {"code", "message"}}` object on stdout). Exit codes: 0 success, 1 error, 2 usage
 * error (unknown flag, missing argument), 3 ({@link EXIT_UNREACHABLE}) something checked is not
 * reachable or not running.
 *
 * @module
 */
import readline from 'node:readline/promises';
import { Command, Errors, Flags, type Interfaces } from '@oclif/core';
import { DaemonNotRunningException, DroverError, errorMessage } from '../errors/index.js';
import { Config, configFilePath, resolveProfile, type Profile } from '../config/index.js';
import { resolveScope, type ConfigScope } from './config-scope.js';

/** Flags every drover command accepts. */
export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof DroverCommand)['baseFlags'] & T['flags']
>;

/** Arguments of a drover command. */
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>;

/** Exit code used when something the command checks is not reachable or not running. */
export const EXIT_UNREACHABLE = 3;

/** Exit code of usage errors (unknown flag, missing argument), as oclif uses it. */
export const EXIT_USAGE = 2;

/** Base class of drover commands. */
export abstract class DroverCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    profile: Flags.string({
      char: 'p',
      env: 'DROVER_PROFILE',
      helpGroup: 'GLOBAL',
      description: 'Profile to act on (default: the default profile).',
    }),
  };

  protected flags!: BaseFlags<T>;
  protected args!: BaseArgs<T>;
  /** Flags given on the command line (not from the environment or defaults). */
  private explicitFlags = new Set<string>();

  public override async init(): Promise<void> {
    await super.init();
    const { flags, args, raw } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as typeof DroverCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    });
    this.flags = flags as BaseFlags<T>;
    this.args = args as BaseArgs<T>;
    for (const token of raw) if (token.type === 'flag') this.explicitFlags.add(token.flag);
  }

  /** True when `name` was given on the command line (an env var such as DROVER_PROFILE does not count). */
  protected flagGiven(name: string): boolean {
    return this.explicitFlags.has(name);
  }

  /**
   * The scope a `drover config` command acts on (`--global`, else the current profile), with the
   * profile's name (null for global) and, on first use, the notice for the profile created in
   * `config` (the caller saves, then prints it).
   */
  protected configScope(
    config: Config,
    global: boolean,
  ): { scope: ConfigScope; profile: string | null; created: string | null } {
    const { scope, created } = resolveScope(config, {
      global,
      profileFlag: this.flags.profile,
      profileGiven: this.flagGiven('profile'),
      create: true,
    });
    return { scope, created, profile: scope.kind === 'profile' ? scope.name : null };
  }

  /** Loads the configuration file (never creates or rewrites it). */
  protected loadConfig(): Config {
    return Config.load(configFilePath());
  }

  /**
   * The profile to act on (flag, env, or default). On first use (no configuration file), creates
   * it (`default` unless one was named) and says so in one line on stderr.
   */
  protected resolveProfile(create = true): Profile {
    return resolveProfile(this.flags.profile, create ? { onCreate: (m) => this.notice(m) } : {});
  }

  /** Prints a line unless --json was given. */
  protected say(line = ''): void {
    if (!this.jsonEnabled()) this.log(line);
  }

  /** Prints a one-line notice on stderr (also with --json, whose stdout stays pure JSON). */
  protected notice(line: string): void {
    // Not this.logToStderr: oclif silences it under --json, and a notice that a profile was
    // created must reach the user either way.
    process.stderr.write(line + '\n');
  }

  /** True when a person can answer a question (stdin and stderr are terminals). */
  protected interactive(): boolean {
    return Boolean(process.stdin.isTTY && process.stderr.isTTY);
  }

  /** Asks a yes/no question on the terminal; only `y`/`yes` is yes. Call only when {@link interactive}. */
  protected async confirm(question: string): Promise<boolean> {
    const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
    try {
      const answer = await rl.question(`${question} [y/N] `);
      return /^y(es)?$/i.test(answer.trim());
    } finally {
      rl.close();
    }
  }

  /**
   * `drover daemon incr|decr N`: asks the running daemon to add or remove (drain) N workers and
   * prints the new count; exits 3 when the daemon is not running.
   */
  protected async changeWorkers(
    direction: 'increase' | 'decrease',
    n: number,
  ): Promise<{ profile: string; numberOfWorkers: number }> {
    const profile = this.resolveProfile(false);
    const { DaemonClient } = await import('../client/index.js');
    const client = new DaemonClient(profile);
    let count: number;
    try {
      count = direction === 'increase' ? await client.increaseWorkers(n) : await client.decreaseWorkers(n);
    } catch (err) {
      if (!(err instanceof DaemonNotRunningException)) throw err;
      this.notice(`The daemon of profile '${profile.name}' is not running.`);
      return this.exit(EXIT_UNREACHABLE);
    }
    this.say(`The daemon of profile '${profile.name}' now has ${count} worker${count === 1 ? '' : 's'}.`);
    return { profile: profile.name, numberOfWorkers: count };
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    // this.exit() and oclif's own exits pass through untouched.
    if (err instanceof Errors.ExitError) throw err;
    let code: string;
    let exit: number;
    if (err instanceof DroverError) {
      code = err.code;
      exit = 1;
    } else if (err instanceof Errors.CLIError) {
      // Parse errors (unknown flag, missing argument, bad option value).
      code = 'USAGE';
      exit = err.oclif?.exit ?? EXIT_USAGE;
    } else {
      code = 'INTERNAL';
      exit = 1;
      if (process.env.DEBUG) this.logToStderr(err.stack ?? String(err));
    }
    const message = errorMessage(err).trim();
    if (this.jsonEnabled()) this.logJson({ error: { code, message } });
    else this.logToStderr(`Error: ${message}`);
    return this.exit(exit);
  }
}

/** Formats rows as an aligned text table. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * Formats an option value for display: strings as they are, everything else as JSON (which
 * `drover config set` accepts back).
 */
export function formatValue(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}
