export * from './config.js';
export * from './options.js';
export * from './paths.js';
export * from './profile-name.js';
