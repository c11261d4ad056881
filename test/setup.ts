// Root hooks for every test file (loaded by --require in each mocha worker process).
import { ChildProcess } from 'node:child_process';

process.env.DROVER_TEST = '1';

/** How long a child still running after a file's own `after` hooks gets to exit by itself. */
const CHILD_EXIT_GRACE_MS = 3000;

function liveChildren(): ChildProcess[] {
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  return handles.filter(
    (h): h is ChildProcess => h instanceof ChildProcess && h.exitCode === null && h.signalCode === null,
  );
}

export const mochaHooks = {
  /**
   * A test file that leaves a child process running fails here. In parallel runs (see
   * scripts/run-tests.sh) each file runs in a mocha worker that is ended after the run, so the
   * reporter's end-of-run check of the main process would never see a worker's leaked child; this
   * runs after each file's own `after` hooks (after the whole run when serial).
   */
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(CHILD_EXIT_GRACE_MS + 5000);
    const end = Date.now() + CHILD_EXIT_GRACE_MS;
    let left = liveChildren();
    while (left.length > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      left = liveChildren();
    }
    if (left.length === 0) return;
    // Our own unreaped children (exitCode still null): the pid cannot have been reused.
    for (const c of left) c.kill('SIGKILL');
    throw new Error(
      `test file left ${left.length} child process(es) running (killed): ` +
        left.map((c) => `${c.pid} (${c.spawnargs.join(' ').slice(0, 160)})`).join('; '),
    );
  },
};
