import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import type { ProcessState, ReportLine } from '../../protocol/index.js';

/** How often `--follow` looks at the log file, the report log and the process's state. */
const FOLLOW_POLL_MS = 250;

export default class ProcessLogs extends DroverCommand<typeof ProcessLogs> {
  static override summary =
    'Print the output of a process (a core.shell command: its stdout and stderr), then its report lines.';
  static override description =
    "Prints the process's output log: what a core.shell command wrote to stdout and stderr, interleaved as it " +
    "came, streamed to a file per process under the profile's log directory while it runs (on the host of the " +
    'worker that ran it; at most the last 2 × processes.log_max_bytes are kept: the rotated file first, then the ' +
    'current one). Then the report lines (ctx.report), each as "[report <time>] <message>". With --follow, ' +
    'prints the output and the report lines as they come, in that order, while the process runs, and exits ' +
    'when it has ended (created, running or waiting processes are followed; paused ones too). With --json, ' +
    'prints one object {id, state, output, reports} at the end.';
  static override examples = ['<%= config.bin %> process logs 42', '<%= config.bin %> process logs 42 -f'];
  static override args = { id: Args.integer({ required: true, min: 1, description: 'Process id.' }) };
  static override flags = {
    follow: Flags.boolean({ char: 'f', description: 'Keep printing output and report lines until the process ends.' }),
    timeout: timeoutFlag('With --follow: stop after this many seconds.'),
  };

  async run(): Promise<{ id: number; state: ProcessState; output: string; reports: ReportLine[] }> {
    const { args, flags } = await this.parse(ProcessLogs);
    const { ProcessClient } = await import('../../api/processes.js');
    const { isTerminal } = await import('../../protocol/index.js');
    const { processLogPaths } = await import('../../config/index.js');
    const { LogFollower, readWholeFile } = await import('../../client/process-log.js');
    const profile = this.resolveProfile();
    const client = await ProcessClient.open(profile);
    const json = this.jsonEnabled();
    const collected: Buffer[] = [];
    let lastByte = 0x0a; // what stdout saw last: a report line starts on a line of its own
    let printed = false;
    const out = (b: Buffer): void => {
      if (b.length === 0) return;
      printed = true;
      if (json) collected.push(b);
      else process.stdout.write(b);
      lastByte = b[b.length - 1]!;
    };
    const reports: ReportLine[] = [];
    const showReports = (lines: readonly ReportLine[]): void => {
      for (const l of lines.slice(reports.length)) {
        reports.push(l);
        printed = true;
        if (json) continue;
        if (lastByte !== 0x0a) out(Buffer.from('\n'));
        this.log(`[report ${new Date(Number(l.time)).toISOString()}] ${l.message}`);
      }
    };
    try {
      let p = await client.getProcess(args.id);
      const [rotated, current] = processLogPaths(profile.name, args.id);
      out(readWholeFile(rotated));
      const follower = new LogFollower(current);
      try {
        if (flags.follow) {
          let stop = false;
          const onSignal = (): void => void (stop = true);
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          const deadline = flags.timeout === undefined ? Infinity : Date.now() + flags.timeout * 1000;
          try {
            // The state is read before the file: once it is terminal, one more read has everything.
            while (!isTerminal(p.state) && !stop && Date.now() < deadline) {
              out(follower.read());
              showReports(await client.store.getReports(args.id));
              await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
              p = await client.getProcess(args.id);
            }
          } finally {
            process.removeListener('SIGINT', onSignal);
            process.removeListener('SIGTERM', onSignal);
          }
        }
        out(follower.read());
      } finally {
        follower.close();
      }
      showReports(await client.store.getReports(args.id));
      if (!json && lastByte !== 0x0a) out(Buffer.from('\n'));
      const output = Buffer.concat(collected).toString('utf8');
      if (!json && !printed) {
        this.logToStderr(`No output on this host and no report lines for process ${args.id}.`);
      }
      return { id: args.id, state: p.state, output, reports };
    } finally {
      await client.close();
    }
  }
}
