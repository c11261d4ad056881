import { CONTROL_DESCRIPTION, ProcessControlCommand } from '../../cli/control-command.js';

export default class ProcessPause extends ProcessControlCommand {
  static override summary =
    'Pause processes: queued ones do not start, running commands stop in place, workflows at their next step boundary.';
  static override description = CONTROL_DESCRIPTION;
  static override examples = [
    '<%= config.bin %> process pause 42 43',
    '<%= config.bin %> process pause --all',
    '<%= config.bin %> process pause 42 --timeout 10 --json',
  ];
  protected readonly action = 'pause';
}
