/**
 * The service layer: renders and installs the systemd user unit and the launchd agent that let
 * the operating system supervise a profile's daemon. Pure renderers plus thin installers.
 *
 * @module
 */
export * from './escape.js';
export * from './unit-paths.js';
export * from './package-root.js';
export * from './runner.js';
export * from './systemd.js';
export * from './systemd-install.js';
export * from './launchd.js';
export * from './launchd-install.js';
export * from './supervisor.js';
export * from './format.js';
