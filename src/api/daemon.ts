/** The daemon's entry point, for `drover daemon start --foreground` (loaded lazily by the command). */
export { runDaemon } from '../daemon/index.js';
export { requestedNotifyMethod, sdNotifyAddonProblem, systemdNotifyProgram } from '../daemon/notify.js';
