import { Args } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import type { ReportLine } from '../../protocol/index.js';

export default class ProcessReport extends DroverCommand<typeof ProcessReport> {
  static override summary = 'Print the report log of a process (lines written with ctx.report).';
  static override examples = ['<%= config.bin %> process report 42'];
  static override args = { id: Args.integer({ required: true, min: 1, description: 'Process id.' }) };

  async run(): Promise<{ id: number; lines: ReportLine[] }> {
    const { args } = await this.parse(ProcessReport);
    const { ProcessClient } = await import('../../api/processes.js');
    const client = await ProcessClient.open(this.resolveProfile());
    try {
      const lines = await client.getReports(args.id);
      if (lines.length === 0) this.say(`No report lines for process ${args.id}.`);
      for (const l of lines) this.say(`${new Date(l.time).toISOString()}  ${l.message}`);
      return { id: args.id, lines };
    } finally {
      await client.close();
    }
  }
}
