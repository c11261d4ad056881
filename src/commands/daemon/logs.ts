import fs from 'node:fs';
import { Flags } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';

/** Result of `drover daemon logs --json`. */
export interface DaemonLogsResult {
  file: string;
  lines: string[];
}

export default class DaemonLogs extends DroverCommand<typeof DaemonLogs> {
  static override summary = "Show the daemon's log file (worker output included, prefixed by worker id and pid).";
  static override description =
    'Prints the last lines of the log file of the profile; with --follow keeps printing new lines until ' +
    'interrupted, or for at most --timeout seconds. Works whether or not the daemon is running. Under systemd the ' +
    'same lines are also in the journal.';
  static override examples = [
    '<%= config.bin %> daemon logs',
    '<%= config.bin %> daemon logs -n 200',
    '<%= config.bin %> daemon logs -f',
    '<%= config.bin %> daemon logs -f -t 30',
  ];
  static override flags = {
    follow: Flags.boolean({ char: 'f', description: 'Keep printing lines as they are written.' }),
    lines: Flags.integer({ char: 'n', min: 0, default: 50, description: 'Number of last lines to print.' }),
    timeout: timeoutFlag('With --follow: stop following after this many seconds.'),
  };

  async run(): Promise<DaemonLogsResult> {
    const profile = this.resolveProfile(false);
    const { clientDaemonPaths } = await import('../../client/paths.js');
    const { readLastLines, fileSize } = await import('../../client/log-file.js');
    const file = clientDaemonPaths(profile.name).logFile;
    const offset = fileSize(file);
    const lines = readLastLines(file, this.flags.lines);
    if (!fs.existsSync(file)) this.notice(`No log file yet at ${file}.`);
    for (const line of lines) this.say(line);
    if (this.flags.follow && !this.jsonEnabled()) await this.follow(file, offset, this.flags.timeout);
    return { file, lines };
  }

  /**
   * Prints what is appended to `file` from `offset` on, until the process is interrupted or, with
   * `timeout`, that many seconds have passed.
   */
  private async follow(file: string, offset: number, timeout: number | undefined): Promise<void> {
    let pos = offset;
    let partial = '';
    const until = timeout === undefined ? Infinity : Date.now() + timeout * 1000;
    for (;;) {
      const size = (() => {
        try {
          return fs.statSync(file).size;
        } catch {
          return 0;
        }
      })();
      if (size < pos) pos = 0; // truncated or replaced: start over
      if (size > pos) {
        const fd = fs.openSync(file, 'r');
        try {
          const buf = Buffer.alloc(Math.min(size - pos, 1024 * 1024));
          const n = fs.readSync(fd, buf, 0, buf.length, pos);
          pos += n;
          const text = partial + buf.subarray(0, n).toString('utf8');
          const parts = text.split('\n');
          partial = parts.pop() ?? '';
          for (const line of parts) this.log(line);
        } finally {
          fs.closeSync(fd);
        }
      }
      const wait = Math.min(250, until - Date.now());
      if (wait <= 0) return;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
