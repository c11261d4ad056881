import { Args } from '../../cli/oclif.js';
import { DroverCommand, oclifFlags } from '../../cli/base-command.js';
import { describeEnd } from '../../cli/format.js';
import { exitCodeOfVerdicts, EXIT } from '../../cli/exit-codes.js';
import {
  PROCESS_SUBMIT_FLAGS,
  submissionInputs,
  submitFromCli,
  type ProcessSubmitFlags,
} from '../../cli/process-submit.js';
import { WaitTimeoutError } from '../../errors/index.js';
import type { JsonValue } from '../../protocol/index.js';

/** Result of `drover process submit --json`. */
export interface SubmitResult {
  id: number;
  type: string;
  state?: string;
  exitStatus?: number | null;
  outputs?: JsonValue | null;
  /** With --wait: how it ended (api/wait's ProcessVerdict). */
  verdict?: string;
}

// bin/drover.js answers a plain `drover process submit TYPE [flags]` itself, without loading oclif;
// this command runs for --wait, --help, flag errors and from oclif's API.
export default class ProcessSubmit extends DroverCommand<typeof ProcessSubmit> {
  static override summary = 'Submit a process to the daemon of a profile.';
  static override description =
    "The process is stored first and then dispatched to the workers through the profile's broker (the daemon " +
    'itself, or RabbitMQ); it runs when a worker ' +
    '(`drover daemon start` or `drover daemon worker`) takes it. Inputs are JSON, given whole with --inputs ' +
    'or key by key with -i key=value (a value that parses as JSON is taken as JSON, else as a string). With ' +
    '--wait it waits for the process to terminate, prints its outcome and exits 0 only when it finished with ' +
    `exit status 0: ${EXIT.PROCESS_FAILED} when it finished with another exit status, ${EXIT.PROCESS_EXCEPTED} when it ` +
    `excepted or was killed; with --timeout too it gives up after that many seconds and exits with ${EXIT.TIMED_OUT} ` +
    '(the process goes on). When no daemon is there to run it, a warning on stderr says so (the process is ' +
    'stored and runs once one starts).';
  static override examples = [
    `<%= config.bin %> process submit core.arithmetic.add -i x=1 -i y=2`,
    `<%= config.bin %> process submit core.sleep --inputs '{"seconds": 5}' --label nap --wait`,
    `<%= config.bin %> process submit core.shell --inputs '{"command": ["echo", "hi"]}' --json`,
  ];
  static override args = {
    type: Args.string({ required: true, description: 'Process type, e.g. core.arithmetic.add.' }),
  };
  static override flags = oclifFlags(PROCESS_SUBMIT_FLAGS);

  async run(): Promise<SubmitResult> {
    const { args } = await this.parse(ProcessSubmit);
    const f = this.flags as unknown as ProcessSubmitFlags;
    const inputs = submissionInputs(f);
    return submitFromCli(
      this.resolveProfile(),
      args.type,
      inputs,
      f.label,
      (l) => this.notice(l),
      async (client, id) => {
        if (!f.wait) {
          this.say(`Submitted ${args.type} as process ${id}.`);
          return { id, type: args.type };
        }
        this.say(`Submitted ${args.type} as process ${id}; waiting for it to terminate...`);
        const { verdictOf } = await import('../../api/wait.js');
        const { waitForProcesses } = await import('../../api/control.js');
        const [p] = await this.withSpinner(`Waiting for process ${id} to terminate`, () =>
          withDeadline(
            waitForProcesses(client, [id]),
            f.timeout,
            `process ${id} did not terminate within ${f.timeout}s`,
          ),
        );
        this.say(describeEnd(p!));
        if (p!.outputs !== null) this.say(JSON.stringify(p!.outputs, null, 2));
        if (p!.exception) this.say(p!.exception);
        const verdict = verdictOf(p!)!;
        process.exitCode = exitCodeOfVerdicts([verdict]);
        return { id, type: args.type, state: p!.state, exitStatus: p!.exitStatus, outputs: p!.outputs, verdict };
      },
    );
  }
}

/**
 * `promise`, or a {@link WaitTimeoutError} with `message` after `seconds` (when given). The wait
 * that lost the race is left to end with the process; the command exits right after.
 */
async function withDeadline<T>(promise: Promise<T>, seconds: number | undefined, message: string): Promise<T> {
  if (seconds === undefined) return promise;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeoutError(message)), seconds * 1000);
  });
  promise.catch(() => undefined);
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
