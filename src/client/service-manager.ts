/**
 * Seam for service-manager delegation: when the profile's daemon is installed as a systemd user
 * unit or a launchd agent, the client starts, stops and restarts it through `systemctl --user` /
 * `launchctl` so the OS stays its supervisor. src/service/ provides the lookup
 * (`findInstalledServiceManager`); see {@link findServiceManager} for who passes it in.
 *
 * @module
 */
import type { Profile } from '../config/config.js';

/** Options passed to a service manager. */
export interface ServiceManagerCallOptions {
  /** Seconds the caller is willing to wait. */
  timeout: number;
}

/** A service manager supervising the daemon of one profile. */
export interface ServiceManager {
  readonly kind: 'systemd' | 'launchd';
  /** The unit (`drover@<escaped>.service`) or launchd label, for messages. */
  readonly unit?: string;
  start(options: ServiceManagerCallOptions): Promise<void>;
  stop(options: ServiceManagerCallOptions): Promise<void>;
  restart(options: ServiceManagerCallOptions): Promise<void>;
}

/** Finds the service manager supervising `profile`'s daemon, or null when none is installed. */
export type ServiceManagerLookup = (profile: Profile, env: NodeJS.ProcessEnv) => ServiceManager | null;

/**
 * The lookup a bare client uses: none (the client starts the daemon itself). The client may not
 * import src/service/ (see scripts/check-imports.mjs), so the real lookup,
 * `findInstalledServiceManager` of src/service/supervisor.ts, is passed in by those that may: the
 * public API (`DaemonClient` and `getDaemonClient` of src/index.ts) and the `drover daemon`
 * commands. A client built directly from src/client/ with no `serviceManager` never delegates.
 */
export const findServiceManager: ServiceManagerLookup = () => null;
