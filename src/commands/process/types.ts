import { DroverCommand } from '../../cli/base-command.js';
import { formatTable } from '../../cli/format.js';

import type { ProcessTypeInfo } from '../../api/processes.js';

export default class ProcessTypes extends DroverCommand<typeof ProcessTypes> {
  static override summary = 'List the process types the profile knows, with their descriptions and sources.';
  static override description =
    'The built-in types (core.*) and those of the modules in the option processes.modules, as the workers load ' +
    'them (like `verdi plugin list`). A module that cannot be loaded is an error naming it.';
  static override examples = ['<%= config.bin %> process types', '<%= config.bin %> process types --json'];

  async run(): Promise<{ types: ProcessTypeInfo[] }> {
    await this.parse(ProcessTypes);
    const { listProcessTypes } = await import('../../api/processes.js');
    const types = await listProcessTypes(this.resolveProfile());
    this.say(
      formatTable(
        ['TYPE', 'DESCRIPTION', 'SOURCE'],
        types.map((t) => [t.name, t.description ?? '', t.source]),
      ),
    );
    return { types };
  }
}
