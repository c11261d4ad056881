/**
 * The parts of @oclif/core that drover's commands, hooks and bin/drover.js use, from one place.
 * `npm run build` (scripts/bundle-fast-paths.mjs) replaces the compiled file with an esbuild bundle
 * of @oclif/core: one module to load instead of about 110 (its own files and its dependencies),
 * which takes a third off the start of every command that goes through oclif. Everything in the
 * CLI must import oclif from here, never from '@oclif/core' itself: a second copy of oclif in the
 * process would have its own classes (an `instanceof Errors.CLIError` across the two fails).
 *
 * @module
 */
export { Args, Command, Errors, Flags, execute, toConfiguredId, ux } from '@oclif/core';
export type { Hook, Interfaces } from '@oclif/core';
