import type { Profile } from '../config/index.js';
import { DaemonException } from '../errors/index.js';
import { DBusTransport } from './dbus-transport.js';
import { clientDaemonPaths } from './paths.js';
import { SocketTransport } from './socket-transport.js';
import type { Transport, TransportKind } from './transport.js';

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
      return new DBusTransport(profile.name, env);
    default:
      throw new DaemonException(`unknown transport ${JSON.stringify(kind)}; use 'socket' or 'dbus'`);
  }
}
