/**
 * A workflow of `core.shell` steps: `examples.shell_pipeline` {commands: string[][], stopOnFailure?}
 * runs each command as a `core.shell` child, one after the other, waiting for each without
 * holding a worker slot, and reports their exit codes. A crash in the middle resumes after the
 * last finished command: finished commands are not run again. Each step is in the report once
 * (`drover process report ID`), however often the workflow resumed; a step's command output is in
 * its child's output log (`drover process logs CHILD_ID -f`, the children are in `process show ID`).
 *
 *   drover config set processes.modules "$PWD/dist/examples/shell-pipeline.js"
 *   drover process submit examples.shell_pipeline \
 *     --inputs '{"commands": [["uname", "-a"], ["sh", "-c", "echo working; sleep 2"], ["date"]]}' --wait
 */
import { defineProcess, ExitCode } from '../src/index.js';

interface Inputs {
  commands: string[][];
  stopOnFailure?: boolean;
}

export const shellPipeline = defineProcess<Inputs>({
  name: 'examples.shell_pipeline',
  description: 'Runs commands one after the other as core.shell children: {commands: string[][]}.',
  validateInputs(i) {
    if (typeof i !== 'object' || i === null || Array.isArray(i)) return 'expected {commands: string[][]}';
    const c = i.commands;
    if (!Array.isArray(c) || c.length === 0) return "'commands' must be a non-empty array of commands";
    for (const cmd of c) {
      if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((a) => typeof a === 'string')) {
        return 'each command must be a non-empty array of strings, e.g. ["ls", "-l"]';
      }
    }
    return null;
  },
  async run(ctx, { commands, stopOnFailure = true }) {
    const results: Array<{ command: string[]; exitCode: number | null; stdout: string }> = [];
    for (const [i, command] of commands.entries()) {
      const child = await ctx.submit('core.shell', { command }, { label: `step ${i + 1}` });
      const [r] = await ctx.waitFor([child]);
      const out = (r!.outputs ?? {}) as { exitCode?: number | null; stdout?: string };
      ctx.report(`step ${i + 1} (${command.join(' ')}): ${r!.state}, exit status ${r!.exitStatus}`);
      results.push({ command, exitCode: out.exitCode ?? null, stdout: out.stdout ?? '' });
      if (stopOnFailure && (r!.state !== 'finished' || r!.exitStatus !== 0)) {
        return new ExitCode(1, `step ${i + 1} failed: ${command.join(' ')}`, { results });
      }
    }
    return { results };
  },
});
