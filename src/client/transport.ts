/**
 * How a {@link DaemonClient} reaches its daemon. Every transport carries the same control
 * protocol (protocol/control): the Unix socket now, D-Bus next.
 *
 * @module
 */
import type { ControlMethod, ControlParams, ControlResults } from '../protocol/control.js';

/** Names of the transports. */
export type TransportKind = 'socket' | 'dbus';

/**
 * A way to send one control request to the daemon.
 *
 * Contract: resolve with the validated result; reject with `DaemonNotRunningException` at once
 * when there is no daemon to talk to, `DaemonTimeoutException` when it did not answer within
 * `timeoutMs`, and `DaemonException` for anything else (including an error reply).
 */
export interface Transport {
  readonly kind: TransportKind;
  request<M extends ControlMethod>(method: M, params: ControlParams[M], timeoutMs: number): Promise<ControlResults[M]>;
}
