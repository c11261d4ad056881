export { runWorker, newWorkerId } from '../worker/main.js';
