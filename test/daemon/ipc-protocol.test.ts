/**
 * The worker → daemon IPC messages of the local bus (src/protocol/ipc.ts, broker/local/link.ts):
 * what a worker posts in one event-loop turn is one IPC message, read back in order; a worker of an
 * earlier version (one message each) is still understood; a malformed one is refused whole. No
 * services needed.
 */
import assert from 'node:assert/strict';
import { IpcLink } from '../../src/broker/local/link.js';
import { createLogger, silentLogger } from '../../src/logging/index.js';
import { daemonRequest } from '../../src/worker/main.js';
import { MAX_IPC_BUS_MESSAGES, parseWorkerToDaemon, type BusPeerMessage } from '../../src/protocol/index.js';
import { ProtocolError } from '../../src/errors/index.js';

/** What a forked worker's `process` offers an IpcLink, recording what it sends. */
function channel(): { sent: unknown[]; ch: ConstructorParameters<typeof IpcLink>[0] } {
  const sent: unknown[] = [];
  return {
    sent,
    ch: {
      connected: true,
      send: (msg: unknown) => {
        // What Node's 'json' serialization does to it on the way.
        sent.push(JSON.parse(JSON.stringify(msg)));
        return true;
      },
      on: () => undefined,
      off: () => undefined,
    },
  };
}

describe('worker IPC of the local bus', () => {
  it('sends what one post holds as one IPC message, which the daemon reads back in order', () => {
    const { sent, ch } = channel();
    const link = new IpcLink(ch, 'w-1', silentLogger);
    const msgs: BusPeerMessage[] = [
      { kind: 'ack', ids: [3, 4] },
      { kind: 'credit', n: 2 },
      {
        kind: 'states',
        events: [
          {
            v: 1,
            kind: 'state',
            processId: 3,
            type: 't',
            state: 'finished',
            paused: false,
            parentId: null,
            exitStatus: 0,
            time: 1,
            runs: 1,
          },
        ],
      },
    ];
    link.post(msgs);
    assert.equal(sent.length, 1, 'one IPC message');
    const parsed = parseWorkerToDaemon(sent[0]);
    assert.equal(parsed.kind, 'bus');
    assert.deepEqual(parsed.kind === 'bus' && parsed.messages, msgs);
  });

  it(`splits a post of more than ${MAX_IPC_BUS_MESSAGES} messages, keeping their order`, () => {
    const { sent, ch } = channel();
    const msgs: BusPeerMessage[] = Array.from({ length: MAX_IPC_BUS_MESSAGES + 5 }, (_, i) => ({
      kind: 'ack',
      ids: [i + 1],
    }));
    new IpcLink(ch, 'w-1', silentLogger).post(msgs);
    assert.equal(sent.length, 2);
    const back = sent.flatMap((m) => {
      const p = parseWorkerToDaemon(m);
      return p.kind === 'bus' ? p.messages : [];
    });
    assert.deepEqual(back, msgs);
  });

  it("reads an earlier worker's single message as a list of one", () => {
    const parsed = parseWorkerToDaemon({ kind: 'bus', workerId: 'w-1', message: { kind: 'credit', n: 1 } });
    assert.deepEqual(parsed, { kind: 'bus', workerId: 'w-1', messages: [{ kind: 'credit', n: 1 }] });
  });

  it('refuses a malformed batch whole, saying what is wrong', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ kind: 'bus', workerId: 'w-1', messages: 'ack' }, /messages must be an array/],
      [
        {
          kind: 'bus',
          workerId: 'w-1',
          messages: Array.from({ length: MAX_IPC_BUS_MESSAGES + 1 }, () => ({ kind: 'cancel' })),
        },
        new RegExp(`at most ${MAX_IPC_BUS_MESSAGES}`),
      ],
      [
        {
          kind: 'bus',
          workerId: 'w-1',
          messages: [
            { kind: 'credit', n: 1 },
            { kind: 'ack', ids: [0] },
          ],
        },
        /bus message 'ack': every id must be a positive integer/,
      ],
      [{ kind: 'bus', workerId: 'w-1' }, /bus message must be an object/],
    ];
    for (const [raw, re] of cases) {
      assert.throws(
        () => parseWorkerToDaemon(raw),
        (err: unknown) => err instanceof ProtocolError && re.test(err.message),
        JSON.stringify(raw).slice(0, 100),
      );
    }
  });

  it("leaves the daemon's bus messages to the IpcLink and answers only what asks the worker", () => {
    const warned: string[] = [];
    const logger = createLogger({ sinks: [{ write: (_level, _scope, message) => void warned.push(message) }] });
    // A delivery is not a question: before, each one was answered with a stats message.
    assert.equal(daemonRequest({ kind: 'bus', message: { kind: 'tasks', ids: [1] } }, logger), null);
    assert.deepEqual(daemonRequest({ kind: 'stats?' }, logger), { kind: 'stats?' });
    assert.deepEqual(daemonRequest({ kind: 'drain', graceSeconds: 5 }, logger), { kind: 'drain', graceSeconds: 5 });
    assert.deepEqual(daemonRequest({ kind: 'sweep' }, logger), { kind: 'sweep' });
    assert.deepEqual(warned, []);
    assert.equal(daemonRequest({ kind: 'reboot' }, logger), null);
    assert.match(warned.join('\n'), /ignored malformed IPC message: unknown IPC message kind "reboot"/);
  });
});
