export * from './topology.js';
export * from './connection.js';
