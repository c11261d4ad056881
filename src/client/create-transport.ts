import type { Profile } from '../config/index.js';
import { DaemonException } from '../errors/index.js';
import { clientDaemonPaths } from './paths.js';
import { SocketTransport } from './socket-transport.js';
import type { Transport, TransportKind } from './transport.js';

/** Creates the transport `kind` for `profile`. */
export function createTransport(
  kind: TransportKind,
  profile: Profile,
  env: NodeJS.ProcessEnv = process.env,
): Transport {
  switch (kind) {
    case 'socket':
      return new SocketTransport(clientDaemonPaths(profile.name, env).socket, profile.name);
    case 'dbus':
      // Seam for the D-Bus transport (src/client/dbus-transport.ts), which mirrors the socket protocol.
      throw new DaemonException(`the D-Bus transport is not available in this version; use transport 'socket'`);
    default:
      throw new DaemonException(`unknown transport ${JSON.stringify(kind)}; use 'socket' or 'dbus'`);
  }
}
