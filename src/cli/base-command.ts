/**
 * Base class of every drover command: the global `-p/--profile` flag (also `DROVER_PROFILE`),
 * `--json` output, and error reporting. Commands stay thin: they parse flags, call the library
 * and print; heavy modules (store, broker) are imported lazily inside `run()` so that light
 * commands start fast.
 *
 * @module
 */
import { Command, Flags, type Interfaces } from '@oclif/core';
import { DroverError } from '../errors/index.js';
import { resolveProfile, type Profile } from '../config/index.js';

/** Flags every drover command accepts. */
export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof DroverCommand)['baseFlags'] & T['flags']>;

/** Exit code used when something the command checks is not reachable or not running. */
export const EXIT_UNREACHABLE = 3;

/** Base class of drover commands. */
export abstract class DroverCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true;

  static override baseFlags = {
    profile: Flags.string({
      char: 'p',
      env: 'DROVER_PROFILE',
      helpGroup: 'GLOBAL',
      description: 'Profile to act on (default: the default profile; env DROVER_PROFILE).',
    }),
  };

  protected flags!: BaseFlags<T>;

  public override async init(): Promise<void> {
    await super.init();
    const { flags } = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (this.ctor as typeof DroverCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    });
    this.flags = flags as BaseFlags<T>;
  }

  /**
   * The profile to act on (flag, env, or default). On first use, creates the `default` profile
   * and says so in one line on stderr.
   */
  protected resolveProfile(create = true): Profile {
    return resolveProfile(this.flags.profile, create ? { onCreate: (m) => this.logToStderr(m) } : {});
  }

  /** Prints a line unless --json was given. */
  protected say(line = ''): void {
    if (!this.jsonEnabled()) this.log(line);
  }

  protected override async catch(err: Error & { exitCode?: number; oclif?: { exit?: number } }): Promise<unknown> {
    if (err instanceof DroverError) {
      if (this.jsonEnabled()) {
        this.logJson({ error: { code: err.code, message: err.message } });
        this.exit(1);
      }
      this.logToStderr(`Error: ${err.message}`);
      this.exit(1);
    }
    return super.catch(err);
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
