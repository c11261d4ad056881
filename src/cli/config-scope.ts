/**
 * Where `drover config` commands read and write option values: globally (`--global`) or for one
 * profile (`-p NAME`, else DROVER_PROFILE, else the default profile), as `verdi config` does.
 *
 * @module
 */
import { Flags } from './oclif.js';
import { InputError } from '../errors/index.js';
import type { Config } from '../config/index.js';

/** The `--global` flag of the config commands. */
export const globalFlag = Flags.boolean({
  char: 'g',
  description: 'Act on the global values (which apply to every profile that does not override them).',
});

/** A scope of option values. */
export type ConfigScope = { kind: 'global' } | { kind: 'profile'; name: string };

/**
 * Works out the scope. `profileFlag` is the -p value (or DROVER_PROFILE); `profileGiven` says
 * whether -p was typed on the command line, which together with --global is an error (an env
 * DROVER_PROFILE is simply overruled by --global). With `create`, first use (no config file)
 * adds the `default` profile to `config` in memory and returns the notice to print after saving.
 */
export function resolveScope(
  config: Config,
  opts: { global: boolean; profileFlag: string | undefined; profileGiven: boolean; create: boolean },
): { scope: ConfigScope; created: string | null } {
  if (opts.global) {
    if (opts.profileGiven) throw new InputError('--global and -p/--profile cannot be combined');
    return { scope: { kind: 'global' }, created: null };
  }
  const created = opts.create ? config.createFirstProfile(opts.profileFlag) : null;
  return { scope: { kind: 'profile', name: config.currentProfileName(opts.profileFlag) }, created };
}

/** Describes a scope for messages: `profile 'demo'` or `global`. */
export function describeScope(scope: ConfigScope): string {
  return scope.kind === 'global' ? 'the global configuration' : `profile '${scope.name}'`;
}
