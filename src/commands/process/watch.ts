import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { InputError } from '../../errors/index.js';
import type { StateBroadcast } from '../../protocol/index.js';

export default class ProcessWatch extends DroverCommand<typeof ProcessWatch> {
  static override summary = 'Print the state of processes, then every change live (all, or some and their children).';
  static override description =
    'Prints the current state of each watched process first (from the store), then one line per change as it ' +
    'happens, pause and play included, in order per process (a late broadcast older than what was printed is ' +
    'dropped). With ids, follows those processes and their children and exits when every one of them has ' +
    'terminated; without, follows every process of the profile (the active ones are printed first) until ' +
    'Ctrl-C or --timeout. With --json, prints the same as one JSON object per line.';
  static override examples = [
    '<%= config.bin %> process watch',
    '<%= config.bin %> process watch 42',
    '<%= config.bin %> process watch 42 43 --json',
  ];
  static override strict = false;
  static override args = { ids: Args.integer({ min: 1, description: 'Processes to follow.' }) };
  static override flags = {
    timeout: timeoutFlag('Stop after this many seconds.'),
  };
  static override enableJsonFlag = false;
  static override baseFlags = {
    ...DroverCommand.baseFlags,
    json: Flags.boolean({ description: 'One JSON object per line.' }),
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(ProcessWatch);
    const ids = (argv as string[]).map((a) => {
      const n = Number(a);
      if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`invalid process id ${JSON.stringify(a)}`);
      return n;
    });
    const { ProcessClient } = await import('../../api/processes.js');
    const { watchProcesses } = await import('../../api/watch.js');
    const client = await ProcessClient.open(this.resolveProfile());
    const stopping = new AbortController();
    const stop = (): void => stopping.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const timer = flags.timeout !== undefined ? setTimeout(stop, flags.timeout * 1000) : undefined;
    timer?.unref();
    const line = (m: StateBroadcast): void => {
      if (flags.json) this.log(JSON.stringify(m));
      else
        this.log(
          `${new Date(m.time).toISOString()}  ${String(m.processId).padStart(6)}  ${m.type.padEnd(24)} ${m.state}` +
            (m.paused ? ' (paused)' : '') +
            (m.exitStatus !== null ? ` [${m.exitStatus}]` : ''),
        );
    };
    try {
      await watchProcesses(client, {
        ids,
        onLine: line,
        signal: stopping.signal,
        onReady: () =>
          this.logToStderr(
            ids.length === 0
              ? 'Watching all processes (Ctrl-C to stop).'
              : `Watching ${ids.length === 1 ? `process ${ids[0]}` : `processes ${ids.join(', ')}`} and their children.`,
          ),
      });
    } finally {
      clearTimeout(timer);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await client.close();
    }
  }
}
