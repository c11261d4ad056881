/**
 * Base class of every drover command: the global `-p/--profile` flag (also `DROVER_PROFILE`),
 * `--json` output, confirmation prompts, spinners, and error reporting. Commands stay thin: they
 * parse flags, call the library and print; heavy modules (store, broker) are imported only by the
 * commands that need them, so that light commands start fast.
 *
 * Errors are printed as one line `Error: <message>` on stderr (with `--json`: an
 * `{"error": {"code", "message"}}` object on stdout). Exit codes follow the table of
 * cli/exit-codes.ts (0 done, 1 failed, 2 usage, 3 unreachable or not running, 4 already running,
 * 5 timed out).
 *
 * @module
 */
import readline from 'node:readline/promises';
import { Command, Errors, Flags, ux, type Interfaces } from './oclif.js';
import { DaemonNotRunningException } from '../errors/index.js';
import { Config, configFilePath, resolveProfile, type OptionEntry, type Profile } from '../config/index.js';
import { resolveScope, type ConfigScope } from './config-scope.js';
import { EXIT, EXIT_UNREACHABLE, EXIT_USAGE } from './exit-codes.js';
import { MAX_COLORIZED_JSON, errorReport, jsonText, writeOut } from './output.js';
import { parseTimeoutSeconds } from './timeout.js';
import type { FastFlags } from './fast-flags.js';

export { EXIT, EXIT_UNREACHABLE, EXIT_USAGE } from './exit-codes.js';

/** Flags every drover command accepts. */
export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<
  (typeof DroverCommand)['baseFlags'] & T['flags']
>;

/** Arguments of a drover command. */
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>;

/**
 * The `-t/--timeout` flag: seconds, fractions allowed (the one unit of every timeout), positive and
 * at most a day.
 */
export function timeoutFlag(description: string) {
  return Flags.custom<number>({
    char: 't',
    description,
    helpValue: '<seconds>',
    parse: async (input: string) => {
      const n = parseTimeoutSeconds(input);
      if (n === null) {
        throw new Errors.CLIError(`--timeout must be a positive number of seconds (at most a day), got '${input}'`, {
          exit: EXIT_USAGE,
        });
      }
      return n;
    },
  })();
}

/** The `-a/--all` flag, with what "all" means for the command. */
export function allFlag(description: string) {
  return Flags.boolean({ char: 'a', description });
}

type FlagChar = Parameters<typeof Flags.boolean>[0] extends infer O
  ? O extends { char?: infer C }
    ? C
    : never
  : never;

/** The flags a string flag excludes, as oclif takes them. */
function exclusive(f: { exclusive?: readonly string[] }): string[] | undefined {
  return f.exclusive === undefined ? undefined : [...f.exclusive];
}

/** The oclif flags of a flag declaration shared with a fast path (cli/fast-flags.ts). */
export function oclifFlags(spec: FastFlags): Interfaces.FlagInput {
  const out: Interfaces.FlagInput = {};
  for (const [name, f] of Object.entries(spec)) {
    const char = f.char as FlagChar;
    switch (f.kind) {
      case 'boolean':
        out[name] = Flags.boolean({ char, description: f.description });
        break;
      case 'string':
        out[name] = f.options
          ? f.multiple
            ? Flags.option({ char, description: f.description, options: f.options, multiple: true })()
            : Flags.option({ char, description: f.description, options: f.options })()
          : f.multiple
            ? Flags.string({ char, description: f.description, multiple: true, exclusive: exclusive(f) })
            : Flags.string({ char, description: f.description, exclusive: exclusive(f) });
        break;
      case 'integer':
        out[name] = Flags.integer({ char, description: f.description, min: f.min });
        break;
      case 'timeout':
        out[name] = timeoutFlag(f.description);
        break;
    }
  }
  return out;
}

/** Seconds after which a spinner also shows how long it has been waiting. */
const SHOW_ELAPSED_AFTER_S = 3;

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

  /**
   * A profile's option entries with the values its store holds for shared options (PostgreSQL
   * profiles; see api/shared-options.ts). A store that cannot be reached gives a warning on
   * stderr and the file's values.
   */
  protected async optionEntries(config: Config, profile: string | null): Promise<OptionEntry[]> {
    const entries = config.describeOptions(profile ?? undefined);
    if (profile === null) return entries;
    const p = config.getProfile(profile);
    const { withStoredOptions } = await import('../api/shared-options.js');
    const r = await withStoredOptions(p, entries);
    if (r.problem !== null) this.notice(`Warning: ${r.problem}; showing this host's values`);
    return r.entries;
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
   * Prints JSON on stdout. Colorized (oclif's colorizer) only on a terminal and when small: the
   * colorizer cannot handle the largest values Drover allows (a 16 MiB output string overflows
   * its regexp), and a pipe wants plain JSON anyway.
   */
  public override logJson(json: unknown): void {
    const text = jsonText(json);
    if (process.stdout.isTTY && text.length <= MAX_COLORIZED_JSON) super.logJson(json);
    else writeOut(process.stdout, text);
  }

  /**
   * Runs `fn` with a spinner on stderr saying what it waits for (oclif's `ux.action`), and the time
   * it has waited once that is long. Only on a terminal and without --json: a script or a JSON
   * consumer gets no spinner.
   */
  protected async withSpinner<R>(what: string, fn: () => Promise<R>): Promise<R> {
    if (this.jsonEnabled() || !process.stderr.isTTY) return fn();
    const started = Date.now();
    ux.action.start(what, undefined, { stdout: false });
    const timer = setInterval(() => {
      const s = Math.round((Date.now() - started) / 1000);
      if (s >= SHOW_ELAPSED_AFTER_S) ux.action.status = `${s}s`;
    }, 1000);
    timer.unref();
    try {
      const r = await fn();
      const s = (Date.now() - started) / 1000;
      ux.action.stop(s >= SHOW_ELAPSED_AFTER_S ? `done (${s.toFixed(1)}s)` : 'done');
      return r;
    } catch (err) {
      ux.action.stop('failed');
      throw err;
    } finally {
      clearInterval(timer);
    }
  }

  /**
   * `drover daemon incr|decr N`: asks the running daemon to add or remove (drain) N workers and
   * prints the new count; exits 3 when the daemon is not running.
   */
  protected async changeWorkers(
    direction: 'increase' | 'decrease',
    n: number,
    timeout: number | undefined,
  ): Promise<{ profile: string; numberOfWorkers: number }> {
    const profile = this.resolveProfile(false);
    const { DaemonClient } = await import('../client/daemon-client.js');
    const client = new DaemonClient(profile);
    let count: number;
    try {
      count =
        direction === 'increase'
          ? await client.increaseWorkers(n, { timeout })
          : await client.decreaseWorkers(n, { timeout });
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
    const report = errorReport(err);
    const message = report.message;
    let { code, exit } = report;
    if (err instanceof Errors.CLIError) {
      // Parse errors (unknown flag, missing argument, bad option value).
      code = 'USAGE';
      exit = (err.oclif?.exit ?? EXIT_USAGE) as typeof exit;
    } else if (code === 'INTERNAL' && process.env.DEBUG) {
      this.logToStderr(err.stack ?? String(err));
    }
    if (this.jsonEnabled()) this.logJson({ error: { code, message } });
    else this.logToStderr(`Error: ${message}`);
    return this.exit(exit === EXIT.OK ? EXIT.FAILED : exit);
  }
}

export { formatTable, formatValue } from './format.js';
