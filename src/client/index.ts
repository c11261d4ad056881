/**
 * The daemon client: {@link DaemonClient} and {@link getDaemonClient}. Light on purpose: no store,
 * no broker, so `drover daemon status` starts and answers fast.
 *
 * @module
 */
export * from './daemon-client.js';
export * from './transport.js';
export * from './create-transport.js';
export * from './socket-transport.js';
export * from './service-manager.js';
export * from './paths.js';
export * from './log-file.js';
export * from './format.js';
