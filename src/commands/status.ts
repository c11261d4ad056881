import { DroverCommand, EXIT_UNREACHABLE, timeoutFlag } from '../cli/base-command.js';
import type { ProfileStatus } from '../api/status.js';

/** Result of `drover status --json`. */
export type StatusResult = ProfileStatus;

export default class Status extends DroverCommand<typeof Status> {
  static override summary =
    'Show the configuration file, the profile, and whether its store, broker and daemon are up.';
  static override description =
    'Checks the store and the broker of the profile (-p, DROVER_PROFILE, or the default profile) in parallel, ' +
    'each for at most --timeout (default daemon.timeout) seconds. Exits with 3 when the store or the broker is not reachable, ' +
    'or when the store belongs to another profile (WRONG STORE: its daemon and workers refuse to consume from it). ' +
    'On first use (no configuration file) it creates the profile `default` (SQLite store, the local bus) ' +
    'and says so.';
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status -p demo --json'];
  static override flags = {
    timeout: timeoutFlag('Seconds to wait for the store, the broker and the daemon (default: daemon.timeout).'),
  };

  async run(): Promise<StatusResult> {
    const profile = this.resolveProfile();
    // Imported here: oclif loads every command file to list them, and this module pulls in the
    // store drivers and amqplib, which other commands should not pay for.
    const { getStatus } = await import('../api/status.js');
    const t = this.flags.timeout;
    const s = await getStatus(profile, t === undefined ? {} : { timeoutMs: Math.round(t * 1000) });
    const up = (ok: boolean): string => (ok ? 'reachable' : 'UNREACHABLE').padEnd(11);
    const storeVersion = s.store.reachable
      ? ` (schema version ${s.store.schemaVersion}, ${s.store.serverVersion})` +
        (s.store.profileMismatch !== null ? `: ${s.store.profileMismatch}` : '')
      : ` (${s.store.error})`;
    const storeWord = s.store.profileMismatch !== null ? 'WRONG STORE'.padEnd(11) : up(s.store.reachable);
    const b = s.broker;
    const brokerLine =
      b.kind === 'local'
        ? `local        the daemon carries tasks (no broker server)`
        : `${up(b.reachable)}  ${b.host}:${b.port} vhost ${b.vhost}` +
          (b.reachable
            ? ` (${b.product ?? 'AMQP server'} ${b.serverVersion ?? 'of unknown version'})`
            : ` (${b.error})`);
    const rows: Array<[string, string]> = [
      ['Config file', s.configFile],
      ['Profile', `${s.profile} (${s.uuid})`],
      ['Store', `${storeWord}  ${s.store.location}${storeVersion}`],
      ['Broker', brokerLine],
      ['Daemon', s.daemon.summary],
    ];
    for (const [k, v] of rows) this.say(`${(k + ':').padEnd(13)}${v}`);
    if (!s.ok) {
      // Exit at once: a connection attempt that outlived its timeout must not keep the CLI waiting.
      if (this.jsonEnabled()) this.logJson(s);
      this.exit(EXIT_UNREACHABLE);
    }
    return s;
  }
}
