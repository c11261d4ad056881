/**
 * The shared options of a PostgreSQL profile, which live in its store so that every host's daemon
 * uses the same slots, lease, modules and back-off (`OptionSpec.scope`): what `drover config
 * set|unset|get|list` read and write for them. Daemons and workers read them at their start.
 *
 * @module
 */
import { keepsSharedOptions, type OptionEntry, type OptionValue, type Profile } from '../config/index.js';
import { StoreUnavailableError, errorMessage } from '../errors/index.js';
import type { JsonValue } from '../protocol/index.js';
import { openStore } from '../store/index.js';
import type { ProcessStore } from '../store/types.js';

/** How long a config command waits for the store. */
const STORE_WAIT_MS = 10_000;

async function withStore<T>(profile: Profile, fn: (s: ProcessStore) => Promise<T>): Promise<T> {
  const work = (async () => {
    const s = await openStore(profile.storage);
    try {
      return await fn(s);
    } finally {
      await s.close();
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new StoreUnavailableError(`the store did not answer within ${STORE_WAIT_MS / 1000} s`)),
          STORE_WAIT_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    work.catch(() => undefined);
  }
}

/** True when `key` of `profile` lives in its store (a shared option of a PostgreSQL profile). */
export function isStoredOption(profile: Profile, spec: { scope: string }): boolean {
  return keepsSharedOptions(profile.storage) && spec.scope === 'shared';
}

/** Writes a shared option to the profile's store (`undefined` removes it; false when it was not there). */
export async function writeSharedOption(
  profile: Profile,
  key: string,
  value: OptionValue | undefined,
): Promise<boolean> {
  return withStore(profile, (s) => s.setSharedOption(key, value as JsonValue | undefined));
}

/**
 * `entries` (a profile's options from its file) with the values its store holds for shared
 * options, marked `source: 'store'`. When the store cannot be reached, the entries unchanged and
 * the reason, for the caller to warn with.
 */
export async function withStoredOptions(
  profile: Profile,
  entries: OptionEntry[],
): Promise<{ entries: OptionEntry[]; problem: string | null }> {
  if (!keepsSharedOptions(profile.storage)) return { entries, problem: null };
  let stored: Record<string, JsonValue>;
  try {
    stored = await withStore(profile, (s) => s.getSharedOptions());
  } catch (err) {
    return { entries, problem: `the shared options could not be read from the profile's store: ${errorMessage(err)}` };
  }
  return {
    entries: entries.map((e) =>
      e.scope === 'shared' && Object.hasOwn(stored, e.name)
        ? { ...e, value: stored[e.name] as OptionValue, source: 'store' as const }
        : e,
    ),
    problem: null,
  };
}
