/**
 * Drover's public library API.
 *
 * @module
 */
export * from './errors/index.js';
export type { JsonValue, JsonObject, ProcessRecord, ProcessState, ReportLine } from './protocol/index.js';
export { PROCESS_STATES, TERMINAL_STATES, ACTIVE_STATES, isTerminal } from './protocol/index.js';
export { defineProcess, ExitCode, ProcessRegistry } from './engine/index.js';
export type { ProcessDefinition, RunContext, ChildResult } from './engine/index.js';
export { resolveProfile, Config, OPTION_SPECS } from './config/index.js';
export type { Profile, Options } from './config/index.js';
export { ProcessClient, submit, submitMany, getProcess } from './api/processes.js';
export type { SubmitOptions, ProfileOption } from './api/processes.js';
export { killProcesses, pauseProcesses, playProcesses, waitForProcesses } from './api/control.js';
export type { ControlReply, ControlOutcome, ControlOptions } from './api/control.js';
