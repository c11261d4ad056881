import { Args, Flags } from '@oclif/core';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { BrokerError } from '../../errors/index.js';

export default class ProcessWatch extends DroverCommand<typeof ProcessWatch> {
  static override summary = 'Print state changes of processes live (all, or one and its children).';
  static override description =
    'Prints one line per state change as workers broadcast them. With an id, follows that process and its ' +
    'children and exits when it terminates. With --json, prints one JSON object per line.';
  static override examples = ['<%= config.bin %> process watch', '<%= config.bin %> process watch 42'];
  static override args = { id: Args.integer({ min: 1, description: 'Process to follow.' }) };
  static override flags = {
    timeout: timeoutFlag('Stop after this many seconds.'),
  };
  static override enableJsonFlag = false;
  static override baseFlags = {
    ...DroverCommand.baseFlags,
    json: Flags.boolean({ description: 'One JSON object per line.' }),
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(ProcessWatch);
    const { ProcessClient } = await import('../../api/processes.js');
    const { isTerminal } = await import('../../protocol/index.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const bus = await client.bus();
      if (!bus) throw new BrokerError(`cannot reach the broker at ${client.profile.broker.displayUrl}`);
      const root = args.id;
      const family = new Set<number>(root === undefined ? [] : [root]);
      let finish: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (finish = resolve));
      const unsubscribe = await bus.subscribeEvents((m) => {
        if (root !== undefined) {
          if (m.parentId !== null && family.has(m.parentId)) family.add(m.processId);
          if (!family.has(m.processId)) return;
        }
        if (flags.json) this.log(JSON.stringify(m));
        else
          this.log(
            `${new Date(m.time).toISOString()}  ${String(m.processId).padStart(6)}  ${m.type.padEnd(24)} ${m.state}` +
              (m.paused ? ' (paused)' : '') +
              (m.exitStatus !== null ? ` [${m.exitStatus}]` : ''),
          );
        if (root !== undefined && m.processId === root && isTerminal(m.state)) finish();
      });
      this.logToStderr(
        root === undefined ? 'Watching all processes (Ctrl-C to stop).' : `Watching process ${root} and its children.`,
      );
      if (root !== undefined) {
        // The process may have ended before we subscribed: the store check closes that gap.
        const p = await client.getProcess(root);
        if (isTerminal(p.state)) {
          if (flags.json) this.log(JSON.stringify({ processId: p.id, state: p.state, exitStatus: p.exitStatus }));
          else this.log(`process ${p.id} already ${p.state}`);
          finish();
        }
      }
      const stop = (): void => finish();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      if (flags.timeout !== undefined) setTimeout(stop, flags.timeout * 1000).unref();
      await done;
      await unsubscribe();
    } finally {
      await client.close();
    }
  }
}
