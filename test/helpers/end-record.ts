/**
 * Shared checks of a wait settled by the end event's record (`StateBroadcast.record`), run on each
 * store and bus: the record a wait returns is the one a store read returns, to the order of the
 * outputs' keys, and a wait for one process that ends after it began reads the store only once
 * (the check after subscribing).
 */
import assert from 'node:assert/strict';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import type { ProcessRecord } from '../../src/protocol/index.js';

/** Waits for `id` and counts the store reads the wait made. */
async function waitCountingReads(client: ProcessClient, id: number): Promise<{ record: ProcessRecord; reads: number }> {
  const store = client.store;
  const original = store.listProcesses;
  let reads = 0;
  store.listProcesses = function (this: typeof store, ...args: Parameters<typeof original>) {
    reads++;
    return original.apply(this, args);
  };
  try {
    const [record] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
    return { record: record!, reads };
  } finally {
    store.listProcesses = original;
  }
}

/** The checks; `client` on a profile whose workers run the test fixtures. */
export async function checkEndRecords(client: ProcessClient): Promise<void> {
  const cases: Array<{ inputs: Record<string, unknown>; reads: number; state: string }> = [
    { inputs: { outputs: 'shaped', ms: 300 }, reads: 1, state: 'finished' },
    { inputs: { outputs: [3, 'four'], ms: 300 }, reads: 1, state: 'finished' },
    { inputs: { outputs: null, ms: 300, fail: 'boom on purpose' }, reads: 1, state: 'excepted' },
    // Too long to go with the event: read from the store.
    { inputs: { outputs: { big: 'y'.repeat(10_000) }, ms: 300 }, reads: 2, state: 'finished' },
  ];
  for (const c of cases) {
    const id = await client.submit('test.echo', c.inputs as never);
    const { record, reads } = await waitCountingReads(client, id);
    const read = await client.store.getProcess(id);
    assert.equal(record.state, c.state, record.exception ?? '');
    // What the wait returned is what the store holds, printed the same.
    assert.deepEqual(record, read);
    assert.equal(JSON.stringify(record), JSON.stringify(read));
    assert.equal(reads, c.reads, `store reads of the wait for ${JSON.stringify(c.inputs).slice(0, 60)}`);
  }
}
