import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand, timeoutFlag } from '../../cli/base-command.js';
import { describeEnd, parseKeyValues } from '../../cli/format.js';
import { EXIT, exitCodeOfVerdicts } from '../../cli/exit-codes.js';
import { InputError, WaitTimeoutError } from '../../errors/index.js';
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

export default class ProcessSubmit extends DroverCommand<typeof ProcessSubmit> {
  static override summary = 'Submit a process to the daemon of a profile.';
  static override description =
    'The process is stored first and then dispatched to the workers through RabbitMQ; it runs when a worker ' +
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
  static override flags = {
    inputs: Flags.string({ description: 'Inputs as one JSON value.', exclusive: ['input'] }),
    input: Flags.string({ char: 'i', multiple: true, description: 'An input as key=value (repeatable).' }),
    label: Flags.string({ description: 'A label to find the process by.' }),
    wait: Flags.boolean({ description: 'Wait until the process terminates and print its outcome.' }),
    timeout: timeoutFlag('With --wait: give up waiting after this many seconds (exit 5; the process goes on).'),
  };

  async run(): Promise<SubmitResult> {
    const { args } = await this.parse(ProcessSubmit);
    const f = this.flags;
    let inputs: JsonValue = {};
    if (f.inputs !== undefined) {
      try {
        inputs = JSON.parse(f.inputs) as JsonValue;
      } catch (err) {
        throw new InputError(`--inputs is not valid JSON: ${(err as Error).message}`);
      }
    } else if (f.input) {
      try {
        inputs = parseKeyValues(f.input) as JsonValue;
      } catch (err) {
        throw new InputError((err as Error).message);
      }
    }
    const profile = this.resolveProfile();
    const { ProcessClient } = await import('../../api/processes.js');
    // The client's warnings (an unreachable broker: the process is stored, its dispatch pending)
    // are the user's to see, once each, on stderr.
    const { createLogger } = await import('../../logging/index.js');
    const logger = createLogger({
      level: 'warn',
      sinks: [{ write: (_level, _scope, message) => this.notice(`Warning: ${message}`) }],
    });
    const client = await ProcessClient.open(profile, { logger });
    try {
      const id = await client.submit(args.type, inputs, { label: f.label });
      const { nobodyToRun, verdictOf } = await import('../../api/wait.js');
      const warning = await nobodyToRun(client);
      if (warning !== null) this.notice(`Warning: ${warning}`);
      if (!f.wait) {
        this.say(`Submitted ${args.type} as process ${id}.`);
        return { id, type: args.type };
      }
      this.say(`Submitted ${args.type} as process ${id}; waiting for it to terminate...`);
      const { waitForProcesses } = await import('../../api/control.js');
      const [p] = await this.withSpinner(`Waiting for process ${id} to terminate`, () =>
        withDeadline(waitForProcesses(client, [id]), f.timeout, `process ${id} did not terminate within ${f.timeout}s`),
      );
      this.say(describeEnd(p!));
      if (p!.outputs !== null) this.say(JSON.stringify(p!.outputs, null, 2));
      if (p!.exception) this.say(p!.exception);
      const verdict = verdictOf(p!)!;
      process.exitCode = exitCodeOfVerdicts([verdict]);
      return { id, type: args.type, state: p!.state, exitStatus: p!.exitStatus, outputs: p!.outputs, verdict };
    } finally {
      await client.close();
    }
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
