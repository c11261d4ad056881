import { DroverCommand } from '../../cli/base-command.js';

export default class DaemonWorker extends DroverCommand<typeof DaemonWorker> {
  static override summary = 'Run one worker in the foreground (as `verdi daemon worker`).';
  static override description =
    'Connects to the store and RabbitMQ of the profile, consumes its task queue and runs up to ' +
    '`daemon.worker_process_slots` processes at once, logging to stdout. On SIGTERM or SIGINT it stops taking ' +
    'work, lets running processes finish within `daemon.shutdown_grace` seconds, releases what is left to ' +
    'other workers and exits 0.';
  static override examples = ['<%= config.bin %> daemon worker', '<%= config.bin %> daemon worker -p myprofile'];
  static override enableJsonFlag = false;

  async run(): Promise<void> {
    const profile = this.resolveProfile();
    const { runWorker } = await import('../../api/worker.js');
    const code = await runWorker({ profile: profile.name });
    this.exit(code);
  }
}
