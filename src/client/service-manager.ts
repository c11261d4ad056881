/**
 * Seam for service-manager delegation: when the profile's daemon is installed as a systemd user
 * unit or a launchd agent, the client starts, stops and restarts it through `systemctl --user` /
 * `launchctl` so the OS stays its supervisor. The service integration provides the lookup; until
 * then no unit is ever found and the client starts the daemon itself.
 *
 * @module
 */
import type { Profile } from '../config/index.js';

/** Options passed to a service manager. */
export interface ServiceManagerCallOptions {
  /** Seconds the caller is willing to wait. */
  timeout: number;
}

/** A service manager supervising the daemon of one profile. */
export interface ServiceManager {
  readonly kind: 'systemd' | 'launchd';
  start(options: ServiceManagerCallOptions): Promise<void>;
  stop(options: ServiceManagerCallOptions): Promise<void>;
  restart(options: ServiceManagerCallOptions): Promise<void>;
}

/** Finds the service manager supervising `profile`'s daemon, or null when none is installed. */
export type ServiceManagerLookup = (profile: Profile, env: NodeJS.ProcessEnv) => ServiceManager | null;

/** The default lookup: no unit is installed (filled in by the service integration). */
export const findServiceManager: ServiceManagerLookup = () => null;
