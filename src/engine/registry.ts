/**
 * The registry of process types: built-ins plus the modules listed in the profile option
 * `processes.modules`. Workers and submitters load the same registry, so an unknown type is
 * rejected at submit instead of failing later in a worker.
 *
 * A module may export definitions made with `defineProcess` as named exports, as its default
 * export, or as an array in its default export.
 *
 * @module
 */
import { pathToFileURL } from 'node:url';
import { InputError, UnknownProcessTypeError, errorMessage } from '../errors/index.js';
import { INPUT_LIMITS, checkJsonValue, type JsonValue } from '../protocol/index.js';
import type { ProcessDefinition } from './definition.js';
import type { Options } from '../config/index.js';
import { BUILTIN_PROCESSES } from './builtins.js';
import { resolveModuleFile } from './module-resolution.js';

function isDefinition(v: unknown): v is ProcessDefinition {
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { name?: unknown }).name === 'string' &&
    typeof (v as { run?: unknown }).run === 'function'
  );
}

/** Process types by name. */
/** The source of the types that come with Drover. */
export const BUILTIN_SOURCE = 'built-in';

export class ProcessRegistry {
  private readonly defs = new Map<string, ProcessDefinition>();
  /** Where each type comes from: {@link BUILTIN_SOURCE}, or the module (as listed, and its file). */
  private readonly sources = new Map<string, string>();

  /** A registry holding the built-in types (`core.*`). */
  static withBuiltins(): ProcessRegistry {
    const r = new ProcessRegistry();
    for (const d of BUILTIN_PROCESSES) r.register(d, BUILTIN_SOURCE);
    return r;
  }

  /** The registry of a profile: built-ins plus its `processes.modules`, resolved from `processes.modules_root`. */
  static forProfile(profile: {
    options: Pick<Options, 'processes.modules' | 'processes.modules_root'>;
  }): Promise<ProcessRegistry> {
    return ProcessRegistry.load(profile.options['processes.modules'], {
      modulesRoot: profile.options['processes.modules_root'],
    });
  }

  /**
   * Built-ins plus the types of `modules` (the option `processes.modules`: absolute paths or
   * package names). Package names resolve only from `modulesRoot` (the option
   * `processes.modules_root`): without one they are refused.
   */
  static async load(modules: readonly string[], opts: { modulesRoot?: string | null } = {}): Promise<ProcessRegistry> {
    const r = ProcessRegistry.withBuiltins();
    for (const m of modules) await r.loadModule(m, opts.modulesRoot || null);
    return r;
  }

  /** Registers a definition; a second definition of the same name is an error. */
  register(def: ProcessDefinition, source = 'registered by the program'): void {
    if (this.defs.has(def.name) && this.defs.get(def.name) !== def) {
      throw new InputError(
        `process type '${def.name}' is defined twice (${this.sources.get(def.name)}, and ${source})`,
      );
    }
    this.defs.set(def.name, def);
    if (!this.sources.has(def.name)) this.sources.set(def.name, source);
  }

  /** Where a type comes from: `built-in`, or the module that defines it (as listed, and its file). */
  sourceOf(name: string): string {
    this.get(name);
    return this.sources.get(name)!;
  }

  /**
   * Imports a module and registers every definition it exports.
   * @param modulesRoot - the directory package names resolve from (its `node_modules`), or null.
   */
  async loadModule(spec: string, modulesRoot: string | null = null): Promise<number> {
    const file = resolveModuleFile(spec, modulesRoot);
    const url = pathToFileURL(file).href;
    let mod: Record<string, unknown>;
    try {
      mod = (await import(url)) as Record<string, unknown>;
    } catch (err) {
      throw new InputError(`cannot load process module '${spec}': ${errorMessage(err)}`, { cause: err });
    }
    let n = 0;
    const candidates: unknown[] = [];
    for (const [key, value] of Object.entries(mod)) {
      if (key === 'default' && Array.isArray(value)) candidates.push(...(value as unknown[]));
      else candidates.push(value);
    }
    for (const c of candidates) {
      if (isDefinition(c)) {
        this.register(c, spec === file ? `module ${file}` : `module ${spec} (${file})`);
        n++;
      }
    }
    if (n === 0) throw new InputError(`process module '${spec}' exports no process definitions`);
    return n;
  }

  /** The definition of `name`, or throws {@link UnknownProcessTypeError}. */
  get(name: string): ProcessDefinition {
    const d = this.defs.get(name);
    if (!d) {
      throw new UnknownProcessTypeError(
        `unknown process type '${name}'; known types: ${[...this.defs.keys()].sort().join(', ')}`,
      );
    }
    return d;
  }

  has(name: string): boolean {
    return this.defs.has(name);
  }

  /** All definitions, sorted by name. */
  list(): ProcessDefinition[] {
    return [...this.defs.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Checks type and inputs of a submission: the inputs' depth and size limits first (so a type's
   * own `validateInputs` never sees a value deep enough to overflow a recursive check), then the
   * type's `validateInputs`.
   * @throws UnknownProcessTypeError, JsonLimitError or InputError saying what is wrong.
   */
  validateSubmission(type: string, inputs: JsonValue): void {
    const def = this.get(type);
    checkJsonValue(inputs, `inputs of '${type}'`, INPUT_LIMITS);
    const problem = def.validateInputs?.(inputs) ?? null;
    if (problem !== null) throw new InputError(`invalid inputs for '${type}': ${problem}`);
  }
}
