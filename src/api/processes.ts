/**
 * The process API: submit processes, read them, and (see control.ts) control them. Used by the
 * library's users, the CLI and the tests.
 *
 * Submission follows the outbox rule: the process is committed to the store first (dispatch
 * pending), then its continue task goes to the profile's message bus. A submit returns once the
 * commit is done: that is what makes it durable. On RabbitMQ the task is then published on a
 * confirm channel and the dispatch flag cleared after the confirm, in the background (`close()`
 * waits for it); on the local bus
 * the daemon is told (a hint) and reads the pending dispatch from the store itself. A crash (or an
 * unreachable broker or daemon) after the commit loses nothing: the outbox still holds it.
 *
 * @module
 */
import fs from 'node:fs';
import {
  applySharedOptions,
  configFilePath,
  keepsSharedOptions,
  resolveProfile,
  type Profile,
} from '../config/index.js';
import { InputError, ProcessNotFoundError, StoreProfileMismatchError, errorMessage } from '../errors/index.js';
import { silentLogger, type Logger } from '../logging/index.js';
import {
  isJsonValue,
  type JsonValue,
  type ProcessRecord,
  type ReportLine,
  type StateBroadcast,
} from '../protocol/index.js';
import { openStore, storeMismatchMessage } from '../store/index.js';
import { withTimeout } from '../util/index.js';
import type { ProcessFilter, ProcessStore } from '../store/types.js';
// Types only: the bus and the registry load on first use (bus(), registry()), so that a client that
// only reads the store (`process list`, `process show`) does not load the broker and engine code.
import type { MessageBus } from '../broker/index.js';
import type { ProcessRegistry } from '../engine/index.js';

/** How long cleared dispatch flags are gathered before one transaction writes them (well under a sweep's 3 s). */
const MARK_DELAY_MS = 50;
/** Ids cleared per transaction: a long loop's flags must not hold the write lock for long. */
const MARK_CHUNK = 5000;
/**
 * Most continue tasks a client leaves unconfirmed by the broker before a submit waits for their
 * confirm (bounds the memory a fast loop of submits holds in flight).
 */
const MAX_UNCONFIRMED = 10_000;
/**
 * Longest a loop of awaited submits runs without returning to the event loop. On SQLite every
 * await of a submit is of a settled promise, so such a loop never gets there by itself, and what
 * waits for it waited for the loop's end: RabbitMQ's publishes (amqplib writes on the next turn)
 * and the broker's confirms, so no process of a loop of 10,000 started before the loop ended.
 */
const TURN_AFTER_MS = 2;

/** A listener of {@link ProcessClient.listen}. */
export interface EventListener {
  onState(msg: StateBroadcast): void;
  /** The subscription was re-established: changes in between are only in the store. */
  onGap?(): void;
  /** Only changes that reach an end (finished, excepted, killed): all a wait for the end needs. */
  terminalOnly?: boolean;
}

/** One shared subscription of a {@link ProcessClient} and who listens to it. */
interface Feed {
  subscription: Promise<(() => Promise<void>) | null> | null;
  readonly listeners: Set<EventListener>;
}

/** Where a call acts: a profile name or a resolved profile (default: the default profile). */
export interface ProfileOption {
  profile?: string | Profile;
}

/** Options of a submission. */
export interface SubmitOptions extends ProfileOption {
  label?: string;
}

/**
 * A connection to a profile's store (and, when needed, its broker) for several calls. Close it
 * when done; `close()` is safe to call twice.
 */
export class ProcessClient {
  private busConn: Promise<MessageBus | null> | null = null;
  private registryP: Promise<ProcessRegistry> | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    readonly profile: Profile,
    readonly store: ProcessStore,
    private readonly logger: Logger,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /**
   * Opens the profile's store. `env` locates the profile's runtime directory, where a local
   * profile's daemon listens (default `process.env`; the daemon's `DROVER_HOME` or
   * `XDG_RUNTIME_DIR` must match).
   */
  static async open(
    profile?: string | Profile,
    opts: { logger?: Logger; env?: NodeJS.ProcessEnv } = {},
  ): Promise<ProcessClient> {
    const env = opts.env ?? process.env;
    const p = typeof profile === 'object' ? profile : resolveProfile(profile, { env });
    // SQLite: the WAL is the daemon's to checkpoint (in a thread, off every commit's path); a submit
    // checkpoints only past the fallback size, when no daemon runs.
    const store = await openStore(p.storage, { logger: opts.logger, checkpoints: 'by-daemon' });
    // A store that records another profile (copied, or two profiles pointing at one) would take
    // submissions no worker of this profile ever runs: refuse it here too, not only in the daemon.
    // A store that records none is left for the daemon to adopt.
    let owner;
    try {
      owner = await store.storeProfile();
    } catch (err) {
      await store.close().catch(() => undefined);
      throw err;
    }
    if (owner !== null && owner.uuid.toLowerCase() !== p.uuid.toLowerCase()) {
      await store.close().catch(() => undefined);
      throw new StoreProfileMismatchError(storeMismatchMessage(p.storage, p, owner, 'to use it'));
    }
    return new ProcessClient(p, store, opts.logger ?? silentLogger, env);
  }

  /**
   * The registry of process types this profile knows (built-ins plus `processes.modules`; for a
   * PostgreSQL profile the modules are a shared option, read from its store as the workers do).
   */
  registry(): Promise<ProcessRegistry> {
    this.registryP ??= (async () => {
      let profile = this.profile;
      if (keepsSharedOptions(profile.storage)) {
        const stored = await this.store.getSharedOptions();
        profile = { ...profile, options: applySharedOptions(profile.options, stored, (m) => this.logger.warn(m)) };
      }
      const { ProcessRegistry } = await import('../engine/index.js');
      return ProcessRegistry.forProfile(profile);
    })();
    this.registryP.catch(() => {
      this.registryP = null; // a store or module that failed is tried again on the next call
    });
    return this.registryP;
  }

  /**
   * The profile's message bus, or null when it cannot be reached (RabbitMQ down; a warning is
   * logged). The local bus always opens: it reaches the daemon when one runs.
   */
  bus(): Promise<MessageBus | null> {
    this.busConn ??= import('../broker/index.js')
      .then(({ openBus }) =>
        openBus(this.profile, {
          logger: this.logger,
          env: this.env,
          connectionName: `drover client pid ${process.pid}`,
          connectTimeoutMs: Math.max(1000, this.profile.options['daemon.timeout'] * 1000),
        }),
      )
      .catch((err: unknown) => {
        this.logger.warn(`broker unreachable: ${errorMessage(err)}`);
        return null;
      });
    return this.busConn;
  }

  /**
   * The client's two subscriptions of the bus, each shared by its listeners and made on first use:
   * to every change, and to the changes that reach an end (what waits listen to).
   */
  private readonly feeds: Record<'all' | 'terminal', Feed> = {
    all: { subscription: null, listeners: new Set() },
    terminal: { subscription: null, listeners: new Set() },
  };

  /**
   * Receives every state change of the profile, or with `terminalOnly` those reaching an end (and
   * `onGap` when the subscription was re-established and may have missed some) until the returned
   * function is called. The listeners of a client share its subscriptions, kept until
   * {@link ProcessClient.close}: a wait costs nothing to set up. Resolves once the subscription is
   * in place; false when the bus cannot be reached (then only the store tells).
   */
  async listen(listener: EventListener): Promise<{ live: boolean; stop: () => void }> {
    const terminalOnly = listener.terminalOnly === true;
    const feed = this.feeds[terminalOnly ? 'terminal' : 'all'];
    feed.listeners.add(listener);
    feed.subscription ??= this.bus().then((bus) =>
      bus
        ? bus.subscribeEvents(
            (m) => {
              for (const l of feed.listeners) l.onState(m);
            },
            {
              terminalOnly,
              onGap: () => {
                for (const l of feed.listeners) l.onGap?.();
              },
            },
          )
        : null,
    );
    const live = (await feed.subscription) !== null;
    return { live, stop: () => void feed.listeners.delete(listener) };
  }

  /** Submits one process; returns its id. */
  async submit(type: string, inputs: JsonValue, opts: { label?: string } = {}): Promise<number> {
    const [id] = await this.submitMany(type, [inputs], opts);
    return id!;
  }

  /**
   * Submits processes of one type in one transaction; returns their ids once that committed. Their
   * continue tasks go to the bus after it: on RabbitMQ a confirmed publish that the submit does not
   * wait for (see {@link ProcessClient.publishInBackground}; {@link ProcessClient.close} does).
   * Unknown types and invalid inputs are rejected before anything is written.
   */
  async submitMany(type: string, inputsList: readonly JsonValue[], opts: { label?: string } = {}): Promise<number[]> {
    const registry = await this.registry();
    inputsList.forEach((inputs, i) => {
      if (!isJsonValue(inputs)) throw new InputError(`inputs #${i} of '${type}' are not valid JSON values`);
      registry.validateSubmission(type, inputs);
    });
    if (opts.label !== undefined && typeof opts.label !== 'string') throw new InputError('label must be a string');
    const busP = this.bus(); // connect while the store commits
    const ids = await this.store.createProcesses(
      inputsList.map((inputs) => ({ type, inputs, label: opts.label ?? null, parentId: null })),
    );
    const markedBy = Date.now();
    if (process.env.DROVER_FAULT === 'crash-after-commit') {
      // Fault injection for the outbox test: die between the store commit and the publish.
      process.kill(process.pid, 'SIGKILL');
    }
    const conn = await busP;
    if (conn === null) {
      this.logger.warn(
        ids.length === 1
          ? `process ${ids[0]} is stored, its dispatch pending: it runs once a worker reaches the broker`
          : `${ids.length} processes are stored, their dispatch pending: they run once a worker reaches the broker`,
      );
      return ids;
    }
    for (const id of ids) {
      conn.publishState({
        v: 1,
        kind: 'state',
        processId: id,
        type,
        state: 'created',
        paused: false,
        parentId: null,
        exitStatus: null,
        time: Date.now(),
        runs: 0,
      });
    }
    if (conn.dispatch === 'outbox') {
      await conn.publishContinue(ids); // a hint: resolves at once
      await this.turnIfDue();
      return ids;
    }
    // Returned means stored: the commit above is what makes the submission durable, and the
    // outbox flag covers the task until the broker confirmed it. So the confirm is awaited in the
    // background, gathered with those of the submits that follow (one confirm wait for all of
    // them); a submit waits only when too many tasks are unconfirmed.
    const confirmed = this.publishInBackground(conn, ids, markedBy);
    if (this.unconfirmed > MAX_UNCONFIRMED) await confirmed;
    else await this.turnIfDue();
    return ids;
  }

  /** When a turn of the event loop was last seen to pass (see {@link ProcessClient.turnIfDue}). */
  private turnSeenAt = performance.now();
  private turnWatch = false;

  /**
   * Returns to the event loop once the program has not for {@link TURN_AFTER_MS}: what a submit
   * handed to the bus then leaves within that time even in a loop that never waits by itself. A
   * program that does return to the loop pays nothing but the watch's `setImmediate`.
   */
  private async turnIfDue(): Promise<void> {
    if (!this.turnWatch) {
      this.turnWatch = true;
      setImmediate(() => {
        this.turnWatch = false;
        this.turnSeenAt = performance.now();
      });
    }
    if (performance.now() - this.turnSeenAt < TURN_AFTER_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  /** Tasks handed to {@link ProcessClient.publishInBackground} whose confirm has not come yet. */
  private unconfirmed = 0;
  private toPublish: Array<{ ids: number[]; upTo: number }> = [];
  /** The next publish (of what `toPublish` gathers); resolves once it was confirmed or failed. */
  private nextPublish: Promise<void> | null = null;
  private publishing: Promise<void> | null = null;

  /**
   * Publishes continue tasks of stored processes, one publish and confirm wait at a time: what is
   * submitted while one is under way goes out together in the next. A confirmed publish clears the
   * dispatch flags ({@link ProcessClient.markLater}); a failed one leaves them set for a worker's
   * outbox sweep. Never rejects.
   */
  private publishInBackground(conn: MessageBus, ids: number[], upTo: number): Promise<void> {
    this.toPublish.push({ ids, upTo });
    this.unconfirmed += ids.length;
    this.nextPublish ??= this.publishGathered(conn);
    return this.nextPublish;
  }

  private async publishGathered(conn: MessageBus): Promise<void> {
    // After the publish under way (always at least one await, so the caller has stored this
    // promise as nextPublish before it is cleared below).
    await this.publishing;
    const batch = this.toPublish;
    this.toPublish = [];
    this.nextPublish = null;
    const all = batch.flatMap((b) => b.ids);
    this.publishing = (async () => {
      try {
        await conn.publishContinue(all);
        for (const b of batch) this.markLater(b.ids, b.upTo);
      } catch (err) {
        this.logger.warn(
          `publishing ${all.length} task(s) failed (${errorMessage(err)}); the processes are stored and will be re-dispatched`,
        );
      } finally {
        this.unconfirmed -= all.length;
      }
    })();
    await this.publishing;
  }

  private toMark: Array<{ ids: number[]; upTo: number }> = [];
  /** Ends the gathering wait of the pending marking at once (see {@link ProcessClient.close}). */
  private markNow: (() => void) | null = null;
  private marking: Promise<void> | null = null;
  private readonly markings = new Set<Promise<void>>();

  /**
   * Clears the dispatch flags of published processes in the background: a submit waits for one
   * store transaction only. A flag left set (the program ended first) only makes a worker's sweep
   * publish the task again, which the claim drops.
   */
  private markLater(ids: number[], upTo: number): void {
    this.toMark.push({ ids, upTo });
    if (this.marking) return;
    // Gathered for a moment: a loop of submits clears its flags in a few transactions, not one each.
    // close() cuts the wait short: a program that submits and exits (the CLI) does not sit out
    // the timer.
    const run: Promise<void> = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.markNow = null;
        resolve();
      }, MARK_DELAY_MS).unref();
      this.markNow = () => {
        clearTimeout(timer);
        this.markNow = null;
        resolve();
      };
    }).then(async () => {
      const batch = this.toMark;
      this.toMark = [];
      this.marking = null;
      // Each submit's flags up to its own time (a request made after it must stay), in one
      // transaction per MARK_CHUNK ids.
      const ids = batch.flatMap((b) => b.ids);
      const upTo = batch.flatMap((b) => b.ids.map(() => b.upTo));
      for (let i = 0; i < ids.length; i += MARK_CHUNK) {
        try {
          await this.store.markDispatched(ids.slice(i, i + MARK_CHUNK), upTo.slice(i, i + MARK_CHUNK));
        } catch (err) {
          this.logger.debug(`clearing dispatch flags failed (a sweep publishes them again): ${errorMessage(err)}`);
        }
      }
    });
    this.marking = run;
    this.markings.add(run);
    void run.finally(() => this.markings.delete(run));
  }

  /** One process; throws {@link ProcessNotFoundError} when there is none. */
  async getProcess(id: number): Promise<ProcessRecord> {
    const p = await this.store.getProcess(id);
    if (!p) throw new ProcessNotFoundError(`no process with id ${id} in profile '${this.profile.name}'`);
    return p;
  }

  /** Processes matching `filter`, newest first. */
  listProcesses(filter: ProcessFilter = {}): Promise<ProcessRecord[]> {
    return this.store.listProcesses(filter);
  }

  /** The report log of a process. */
  async getReports(id: number): Promise<ReportLine[]> {
    await this.getProcess(id);
    return this.store.getReports(id);
  }

  /** Closes store and bus connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Confirms still awaited first: they are what clears the dispatch flags below. Not for ever
      // (a broker that went away): a flag left set only makes a worker's sweep publish again.
      const confirms = (async () => {
        while (this.nextPublish) await this.nextPublish;
        await this.publishing;
      })();
      const waitMs = Math.max(1000, this.profile.options['daemon.timeout'] * 1000);
      await withTimeout(confirms, waitMs, () => new Error('unconfirmed')).catch(() =>
        this.logger.warn(
          `the broker did not confirm ${this.unconfirmed} task(s) within ${waitMs / 1000} s; ` +
            'the processes are stored and a worker re-dispatches them',
        ),
      );
      this.markNow?.();
      await Promise.allSettled([...this.markings]);
      for (const feed of Object.values(this.feeds)) {
        const unsubscribe = feed.subscription ? await feed.subscription : null;
        await unsubscribe?.();
        feed.listeners.clear();
      }
      const b = this.busConn ? await this.busConn : null;
      await b?.close();
      await this.store.close();
    })();
    return this.closing;
  }
}

/**
 * How long the shared client of a profile (see {@link withClient}) stays open after its last call:
 * long enough for a loop of awaited calls to reuse it, short enough that a program whose last act
 * was a call ends at once (the timer does not keep it alive; an open RabbitMQ connection does, until
 * the timer closes it).
 */
const SHARED_IDLE_MS = 250;

interface Shared {
  client: Promise<ProcessClient>;
  busy: number;
  timer: NodeJS.Timeout | null;
}

/** The shared clients of the top-level functions, per profile (configuration file and name). */
const shared = new Map<string, Shared>();

/** Profiles the top-level functions resolved, with the configuration file's identity at the time. */
const resolvedProfiles = new Map<string, { stamp: string; profile: Profile; checkedAt: number }>();
/** How long a resolved profile is used without looking at the configuration file again. */
const PROFILE_RECHECK_MS = 200;

/**
 * `resolveProfile(name)`, read again only when the configuration file changed (a stat, at most
 * every {@link PROFILE_RECHECK_MS}, instead of reading and validating the file on every call).
 */
function currentProfile(name: string | undefined): Profile {
  const file = configFilePath();
  const key = `${file}\0${name ?? ''}\0${process.env.DROVER_PROFILE ?? ''}`;
  const now = performance.now();
  const recent = resolvedProfiles.get(key);
  if (recent && now - recent.checkedAt < PROFILE_RECHECK_MS) return recent.profile;
  let stamp = '';
  try {
    const st = fs.statSync(file);
    stamp = `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    // No file (first use creates it, or fails clearly): resolve as usual.
  }
  const hit = resolvedProfiles.get(key);
  if (hit && stamp !== '' && hit.stamp === stamp) {
    hit.checkedAt = now;
    return hit.profile;
  }
  const profile = resolveProfile(name);
  if (stamp !== '') resolvedProfiles.set(key, { stamp, profile, checkedAt: now });
  return profile;
}

/**
 * Runs `fn` with the shared client of `profile`: the top-level functions open one store (and bus)
 * connection per profile per program and reuse it, so a loop of `submit()` costs what a loop of
 * `ProcessClient.submit` does. It is closed when unused for {@link SHARED_IDLE_MS}, or by
 * {@link close}.
 *
 * @internal The top-level functions of other modules of the API (wait.ts) share these clients too.
 */
export async function withClient<T>(
  profile: string | Profile | undefined,
  fn: (c: ProcessClient) => Promise<T>,
): Promise<T> {
  const p = typeof profile === 'object' ? profile : currentProfile(profile);
  const key = `${p.configFile}\0${p.name}\0${p.uuid}`;
  let entry = shared.get(key);
  if (!entry) {
    const opened = ProcessClient.open(p);
    entry = { client: opened, busy: 0, timer: null };
    shared.set(key, entry);
    opened.catch(() => shared.delete(key));
  }
  const e = entry;
  e.busy++;
  if (e.timer) clearTimeout(e.timer);
  e.timer = null;
  try {
    return await fn(await e.client);
  } finally {
    e.busy--;
    if (e.busy === 0 && shared.get(key) === e) {
      e.timer = setTimeout(() => {
        if (e.busy > 0 || shared.get(key) !== e) return;
        shared.delete(key);
        void e.client.then((c) => c.close()).catch(() => undefined);
      }, SHARED_IDLE_MS);
      e.timer.unref();
    }
  }
}

/** Closes the connections the top-level functions keep (they also close by themselves when idle). */
export async function close(): Promise<void> {
  const all = [...shared.values()];
  shared.clear();
  for (const e of all) if (e.timer) clearTimeout(e.timer);
  await Promise.allSettled(all.map((e) => e.client.then((c) => c.close())));
}

/** Submits a process to a profile (default: the default profile); returns its id. */
export function submit(type: string, inputs: JsonValue, opts: SubmitOptions = {}): Promise<number> {
  return withClient(opts.profile, (c) => c.submit(type, inputs, { label: opts.label }));
}

/** Submits several processes of one type; returns their ids. */
export function submitMany(
  type: string,
  inputsList: readonly JsonValue[],
  opts: SubmitOptions = {},
): Promise<number[]> {
  return withClient(opts.profile, (c) => c.submitMany(type, inputsList, { label: opts.label }));
}

/** Reads one process. */
export function getProcess(id: number, opts: ProfileOption = {}): Promise<ProcessRecord> {
  return withClient(opts.profile, (c) => c.getProcess(id));
}

/** A process type as `drover process types` lists it. */
export interface ProcessTypeInfo {
  name: string;
  description: string | null;
  /** `built-in`, or the module of `processes.modules` that defines it. */
  source: string;
}

/** The process types a profile knows (built-ins and `processes.modules`), sorted by name. */
export async function listProcessTypes(profile?: string | Profile): Promise<ProcessTypeInfo[]> {
  const p = typeof profile === 'object' ? profile : resolveProfile(profile);
  // Through a client: a PostgreSQL profile's modules are in its store.
  const client = await ProcessClient.open(p);
  let registry: ProcessRegistry;
  try {
    registry = await client.registry();
  } finally {
    await client.close();
  }
  return registry
    .list()
    .map((d) => ({ name: d.name, description: d.description ?? null, source: registry.sourceOf(d.name) }));
}
