/**
 * Drover's public library API.
 *
 * @module
 */
import { DaemonClient as BareDaemonClient, type DaemonClientOptions } from './client/index.js';
import { resolveProfile, type Profile } from './config/index.js';
import { findInstalledServiceManager } from './service/supervisor.js';
import { getClusterStatus, type ClusterDaemon } from './api/cluster.js';

export * from './errors/index.js';
export type { JsonValue, JsonObject, ProcessRecord, ProcessState, ReportLine } from './protocol/index.js';
export { PROCESS_STATES, TERMINAL_STATES, ACTIVE_STATES, isTerminal } from './protocol/index.js';
export { INPUT_LIMITS, RESULT_LIMITS, MAX_JSON_DEPTH, type JsonLimits } from './protocol/index.js';
export { defineProcess, ExitCode, ProcessRegistry } from './engine/index.js';
export type { ProcessDefinition, RunContext, ChildResult, OutputLog } from './engine/index.js';
export { resolveProfile, Config, OPTION_SPECS } from './config/index.js';
export type { Profile, Options } from './config/index.js';
export { ProcessClient, submit, submitMany, getProcess, close, listProcessTypes } from './api/processes.js';
export type { SubmitOptions, ProfileOption, ProcessTypeInfo } from './api/processes.js';
export { killProcesses, pauseProcesses, playProcesses, waitForProcesses } from './api/control.js';
export { waitFor, verdictOf } from './api/wait.js';
export { getClusterStatus } from './api/cluster.js';
export type { ClusterDaemon } from './api/cluster.js';
export type { WaitOptions, ProcessVerdict } from './api/wait.js';
export type { ControlReply, ControlOutcome, ControlOptions } from './api/control.js';

// The daemon client. The public DaemonClient delegates start/stop/restart to the profile's
// installed systemd unit or launchd agent by default (src/client/ may not import src/service/, so
// the lookup is wired in here, where both may be imported).

/**
 * Controls the daemon of one profile (see src/client/daemon-client.ts). Unless `options.serviceManager`
 * says otherwise, `startDaemon`, `stopDaemon` and `restartDaemon` go through `systemctl --user` (or
 * `launchctl`) when the profile's unit is installed for this DROVER_HOME and the running daemon, if
 * any, is the unit's; otherwise the client starts and stops the daemon itself.
 */
export class DaemonClient extends BareDaemonClient {
  constructor(profile: Profile, options: DaemonClientOptions = {}) {
    super(profile, { ...options, serviceManager: options.serviceManager ?? findInstalledServiceManager });
  }

  /**
   * Every daemon of the profile on every host, with its workers, from the registry in the
   * profile's store (stale ones marked); `drover daemon status --cluster` shows the same.
   */
  getClusterStatus(): Promise<ClusterDaemon[]> {
    return getClusterStatus(this.profile);
  }
}

/**
 * A {@link DaemonClient} for `profileName`, else `DROVER_PROFILE`, else the default profile
 * (AiiDA's `get_daemon_client`), delegating to the installed unit as {@link DaemonClient} does.
 */
export function getDaemonClient(profileName?: string, options: DaemonClientOptions = {}): DaemonClient {
  return new DaemonClient(resolveProfile(profileName, { env: options.env }), options);
}

export { DEFAULT_START_TIMEOUT } from './client/index.js';
export type {
  DaemonClientOptions,
  CallOptions,
  StartDaemonOptions,
  StopDaemonOptions,
  RestartDaemonOptions,
  ServiceManager,
  ServiceManagerLookup,
  ServiceManagerCallOptions,
  TransportKind,
} from './client/index.js';
export type {
  DaemonStatus,
  DaemonInfo,
  DaemonState,
  DaemonSupervisor,
  OutboxBacklog,
  WorkerInfo,
} from './protocol/index.js';
export { findInstalledServiceManager, checkInstalledUnit } from './service/supervisor.js';
export type { InstalledUnitCheck, SupervisorHandle } from './service/supervisor.js';
