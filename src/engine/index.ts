export * from './definition.js';
export * from './registry.js';
export * from './builtins.js';
export * from './runner.js';
export * from './process-groups.js';
export * from './output-log.js';
