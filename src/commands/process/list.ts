import { DroverCommand, oclifFlags } from '../../cli/base-command.js';
import {
  PROCESS_LIST_FLAGS,
  collectProcessList,
  renderProcessList,
  type ProcessListFlags,
  type ProcessListResult,
} from '../../cli/process-list.js';

export type { ProcessListResult, ProcessListRow } from '../../cli/process-list.js';

// bin/drover.js answers `drover process list` itself, without loading oclif, whenever its flags
// are the ones below; this command runs for the rest (--help, a flag error) and from oclif's API.
export default class ProcessList extends DroverCommand<typeof ProcessList> {
  static override summary = 'List processes (by default the active ones: created, running, waiting).';
  static override description =
    'The last line shows the slot usage, as AiiDA does: active processes against workers × slots per worker ' +
    '(`daemon.worker_process_slots`), with a warning above 90%.';
  static override examples = [
    '<%= config.bin %> process list',
    '<%= config.bin %> process list --all --limit 20',
    '<%= config.bin %> process list --state finished --state excepted --past-days 1',
    '<%= config.bin %> process list --type core.shell --json',
  ];
  static override flags = oclifFlags(PROCESS_LIST_FLAGS);

  async run(): Promise<ProcessListResult> {
    const result = await collectProcessList(this.resolveProfile(), this.flags as unknown as ProcessListFlags);
    if (!this.jsonEnabled()) {
      const { out, err } = renderProcessList(result);
      for (const line of out) this.log(line);
      for (const line of err) this.logToStderr(line);
    }
    return result;
  }
}
