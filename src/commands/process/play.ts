import { CONTROL_DESCRIPTION, ProcessControlCommand } from '../../cli/control-command.js';

export default class ProcessPlay extends ProcessControlCommand {
  static override summary = 'Resume paused processes from where they stopped.';
  static override description = CONTROL_DESCRIPTION;
  static override examples = [
    '<%= config.bin %> process play 42 43',
    '<%= config.bin %> process play --all',
    '<%= config.bin %> process play 42 --timeout 10 --json',
  ];
  protected readonly action = 'play';
}
