/** The daemon's entry point, for `drover daemon start --foreground` (loaded lazily by the command). */
export { runDaemon } from '../daemon/index.js';
