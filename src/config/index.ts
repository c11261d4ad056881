export * from './config.js';
export * from './options.js';
export * from './paths.js';
export * from './profile-name.js';
export * from './json-position.js';
export * from './profile-view.js';
export * from './profile-data.js';
export * from './module-spec.js';
