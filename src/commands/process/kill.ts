import { CONTROL_DESCRIPTION, ProcessControlCommand } from '../../cli/control-command.js';

export default class ProcessKill extends ProcessControlCommand {
  static override summary = 'Kill processes (and their active children): created, running, waiting or paused.';
  static override description = CONTROL_DESCRIPTION;
  static override examples = [
    '<%= config.bin %> process kill 42 43',
    '<%= config.bin %> process kill --all',
    '<%= config.bin %> process kill 42 --timeout 10 --json',
  ];
  protected readonly action = 'kill';
}
