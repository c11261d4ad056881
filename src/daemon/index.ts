/**
 * The daemon: supervises a profile's workers, answers the control socket, talks to systemd.
 * See docs/daemon.md.
 *
 * @module
 */
export * from './daemon.js';
export * from './supervisor.js';
export * from './control-server.js';
export * from './dbus.js';
export * from './lock.js';
export * from './notify.js';
export * from './paths.js';
export * from './pid-file.js';
export * from './leases.js';
export * from './proc-stats.js';
