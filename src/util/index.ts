export * from './deferred.js';
export * from './backoff.js';
export * from './fs.js';
export * from './proc.js';
