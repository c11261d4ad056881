import type { Profile } from '../config/config.js';
import { DaemonException } from '../errors/index.js';
import type { ControlMethod, ControlParams, ControlResults } from '../protocol/control.js';
import { clientDaemonPaths } from './paths.js';
import { SocketTransport } from './socket-transport.js';
import type { Transport, TransportKind } from './transport.js';

/**
 * The D-Bus transport, loaded on its first request: a client that talks over the socket (the
 * CLI's `daemon status`, for one) never loads the D-Bus code at all.
 */
class LazyDBusTransport implements Transport {
  readonly kind = 'dbus' as const;
  private inner: Promise<Transport> | null = null;

  constructor(
    private readonly profileName: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  async request<M extends ControlMethod>(
    method: M,
    params: ControlParams[M],
    timeoutMs: number,
  ): Promise<ControlResults[M]> {
    this.inner ??= import('./dbus-transport.js').then((m) => new m.DBusTransport(this.profileName, this.env));
    return (await this.inner).request(method, params, timeoutMs);
  }
}

/**
 * Creates the transport `kind` for `profile`: `socket` (the daemon's Unix socket, always there) or
 * `dbus` (its object on the session bus `env` points at).
 */
export function createTransport(
  kind: TransportKind,
  profile: Profile,
  env: NodeJS.ProcessEnv = process.env,
): Transport {
  switch (kind) {
    case 'socket':
      return new SocketTransport(clientDaemonPaths(profile.name, env).socket, profile.name);
    case 'dbus':
      // The daemon's object on the user's session bus; dbus-next is loaded on the first request.
      return new LazyDBusTransport(profile.name, env);
    default:
      throw new DaemonException(`unknown transport ${JSON.stringify(kind)}; use 'socket' or 'dbus'`);
  }
}
