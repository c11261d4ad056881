export * from './json.js';
export * from './process.js';
export * from './broker.js';
export * from './bus.js';
export * from './ipc.js';
export * from './control.js';
export * from './dbus-names.js';
