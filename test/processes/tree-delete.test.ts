/**
 * Trees, types and cleaning up (issue 13, must-show 6 and 7): `process tree` of the fan-out
 * example, `process types` with sources, `process show` summarising many children, `process
 * delete` removing exactly what it says (counted in the store), and `profile delete --force`
 * leaving no folder and no queue of the profile.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import amqp from 'amqplib';
import type { ProcessClient } from '../../src/api/processes.js';
import { waitForProcesses } from '../../src/api/control.js';
import { topologyFor } from '../../src/broker/rabbitmq/topology.js';
import { logDir, runtimeDir, dataDir, processLogPath } from '../../src/config/index.js';
import { EXIT } from '../../src/cli/exit-codes.js';
import { TERMINAL_STATES, type ProcessState } from '../../src/protocol/index.js';
import { RABBIT_URL, REPO_ROOT, portOpen, requireService, runCliAsync, cleanupTempDirs } from '../helpers/env.js';
import { FIXTURE_MODULE, makeProfile, type TestProfile } from '../helpers/profile.js';
import { startPool, type Pool } from '../helpers/pool.js';

const FAN_OUT = path.join(REPO_ROOT, 'dist', 'examples', 'fan-out.js');
const PIPELINE = path.join(REPO_ROOT, 'dist', 'examples', 'shell-pipeline.js');

const SETUPS = [
  { bus: 'local', storage: 'sqlite' },
  { bus: 'rabbitmq', storage: 'postgres' },
] as const;

for (const setup of SETUPS) {
  describe(`process trees, types and deleting (issue 13; ${setup.bus} bus, ${setup.storage} store)`, function () {
    this.timeout(90_000);
    let tp: TestProfile;
    let client: ProcessClient;
    let pool: Pool | null = null;

    before(async function () {
      if (setup.bus === 'rabbitmq') {
        requireService(this, await portOpen(5672), `RabbitMQ is not reachable at ${RABBIT_URL}`);
        requireService(this, await portOpen(5432), 'PostgreSQL is not reachable at 127.0.0.1:5432');
      }
      tp = await makeProfile({
        bus: setup.bus,
        storage: setup.storage,
        options: { 'processes.modules': [FIXTURE_MODULE, FAN_OUT, PIPELINE] },
      });
      client = await tp.openClient();
      pool = await startPool(tp, 1);
    });
    after(async () => {
      await pool?.stop();
      await client?.close();
      await tp?.cleanup();
      cleanupTempDirs();
    });

    it('process types lists the built-ins and the example modules with where each comes from', async () => {
      const r = await runCliAsync(['process', 'types', '--json'], tp.env);
      assert.equal(r.status, 0, r.stderr);
      const types = (JSON.parse(r.stdout) as { types: Array<{ name: string; description: string; source: string }> })
        .types;
      const byName = new Map(types.map((t) => [t.name, t]));
      for (const b of ['core.arithmetic.add', 'core.shell', 'core.sleep'])
        assert.equal(byName.get(b)?.source, 'built-in', b);
      assert.equal(byName.get('examples.sum_of_squares')?.source, `module ${FAN_OUT}`);
      assert.match(byName.get('examples.sum_of_squares')!.description, /Submits n examples\.square children/);
      assert.equal(byName.get('examples.shell_pipeline')?.source, `module ${PIPELINE}`);
      assert.equal(byName.get('test.throws')?.source, `module ${FIXTURE_MODULE}`);
      const table = await runCliAsync(['process', 'types'], tp.env);
      assert.match(table.stdout, /^examples\.square\s+Squares a number.*module .*fan-out\.js$/m);
    });

    it('process tree of the fan-out example with 50 children; process show summarises them', async () => {
      const id = await client.submit('examples.sum_of_squares', { n: 50 });
      const [wf] = await waitForProcesses(client, [id], { timeoutSeconds: 60 });
      assert.equal(wf!.state, 'finished', wf!.exception ?? '');
      const r = await runCliAsync(['process', 'tree', String(id)], tp.env);
      assert.equal(r.status, 0, r.stderr);
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, 51, r.stdout);
      assert.match(lines[0]!, new RegExp(`^${id} examples\\.sum_of_squares  finished \\[0\\]  \\d+\\.\\ds$`));
      assert.match(lines[1]!, /^├── \d+ examples\.square {2}finished \[0\] {2}\d+\.\ds$/);
      assert.match(lines[50]!, /^└── \d+ examples\.square {2}finished \[0\]/);
      const j = await runCliAsync(['process', 'tree', String(id), '--json'], tp.env);
      const tree = JSON.parse(j.stdout) as { id: number; children: Array<{ id: number; state: string }> };
      assert.equal(tree.children.length, 50);
      assert.ok(
        tree.children.every((c, i) => i === 0 || c.id > tree.children[i - 1]!.id),
        'in submission order',
      );
      const short = await runCliAsync(['process', 'tree', String(id), '--max-children', '3'], tp.env);
      assert.match(short.stdout, /└── … 47 more/);
      const show = await runCliAsync(['process', 'show', String(id)], tp.env);
      assert.match(
        show.stdout,
        new RegExp(`^children\\s+50 \\(50 finished\\); drover process tree ${id} lists them$`, 'm'),
      );
      const missing = await runCliAsync(['process', 'tree', '99999'], tp.env);
      assert.equal(missing.status, EXIT.FAILED);
    });

    it('process delete --older-than 0 --state finished removes exactly the finished ones; never an active one', async () => {
      const sleeper = await client.submit('core.sleep', { seconds: 60 });
      const threw = await client.submit('test.throws', null);
      const adds = await client.submitMany(
        'core.arithmetic.add',
        Array.from({ length: 5 }, (_, i) => ({ x: i, y: 1 })),
      );
      await waitForProcesses(client, [threw, ...adds], { timeoutSeconds: 60 });
      await waitUntilState(client, sleeper, 'running');
      const count = (): Promise<Record<ProcessState, number>> => client.store.countByState();
      const before = await count();
      assert.ok(before.finished >= 5 + 51, JSON.stringify(before));

      const active = await runCliAsync(['process', 'delete', String(sleeper)], tp.env);
      assert.equal(active.status, EXIT.FAILED, active.stdout + active.stderr);
      assert.match(active.stdout, new RegExp(`kept ${sleeper}: it is running`));
      const dry = await runCliAsync(
        ['process', 'delete', '--older-than', '0', '--state', 'finished', '--dry-run'],
        tp.env,
      );
      assert.equal(dry.status, EXIT.OK, dry.stderr);
      assert.match(dry.stdout, new RegExp(`^Would delete ${before.finished} processes; nothing was changed\\.$`, 'm'));
      assert.deepEqual(await count(), before, 'a dry run changes nothing');
      const bad = await runCliAsync(['process', 'delete', '--older-than', '0', '--state', 'running'], tp.env);
      assert.equal(bad.status, EXIT.USAGE, bad.stderr);
      assert.deepEqual(await count(), before);

      const del = await runCliAsync(
        ['process', 'delete', '--older-than', '0', '--state', 'finished', '--json'],
        tp.env,
      );
      assert.equal(del.status, EXIT.OK, del.stderr);
      const res = JSON.parse(del.stdout) as { deleted: number[]; refused: unknown[] };
      assert.equal(res.deleted.length, before.finished);
      const after = await count();
      assert.deepEqual(after, { ...before, finished: 0 }, 'exactly the finished ones went');
      assert.equal((await client.getProcess(sleeper)).state, 'running');
      assert.equal((await client.getProcess(threw)).state, 'excepted');
      assert.deepEqual(await client.store.getReports(adds[0]!), []);

      assert.equal(await client.store.getProcess(adds[0]!), null);
      const again = await runCliAsync(['process', 'delete', String(adds[0])], tp.env);
      assert.equal(again.status, EXIT.FAILED);
      assert.match(again.stdout, new RegExp(`not found: ${adds[0]}`));
      const rest = await runCliAsync(['process', 'delete', String(threw)], tp.env);
      assert.equal(rest.status, EXIT.OK, rest.stdout + rest.stderr);
      assert.match(rest.stdout, /^Deleted 1 process\.$/m);
      await runCliAsync(['process', 'kill', String(sleeper)], tp.env);
      for (const s of TERMINAL_STATES) assert.equal((await count())[s], s === 'killed' ? 1 : 0, s);
    });

    it('deleting a core.shell process removes its output log', async () => {
      const id = await client.submit('core.shell', { command: ['echo', 'hello'] });
      await waitForProcesses(client, [id], { timeoutSeconds: 30 });
      const log = processLogPath(tp.name, id, tp.env);
      assert.match(fs.readFileSync(log, 'utf8'), /hello/);
      const r = await runCliAsync(['process', 'delete', String(id)], tp.env);
      assert.equal(r.status, EXIT.OK, r.stdout + r.stderr);
      assert.ok(!fs.existsSync(log), 'the output log went with the process');
    });

    it('a workflow goes with its children; a child of an active workflow is kept', async () => {
      const id = await client.submit('examples.sum_of_squares', { n: 3 });
      await waitForProcesses(client, [id], { timeoutSeconds: 60 });
      const kids = (await client.listProcesses({ parentId: id })).map((p) => p.id);
      assert.equal(kids.length, 3);
      assert.ok((await client.store.getJournal(id)).length > 0);
      const r = await runCliAsync(['process', 'delete', String(id), '--json'], tp.env);
      assert.equal(r.status, EXIT.OK, r.stderr);
      assert.deepEqual(
        (JSON.parse(r.stdout) as { deleted: number[] }).deleted,
        [id, ...kids].sort((a, b) => a - b),
      );
      assert.deepEqual(await client.store.getJournal(id), []);
      // A child whose parent still waits for it is kept: the parent needs its result on a replay.
      const parent = await client.submit('examples.shell_pipeline', {
        commands: [
          ['sleep', '0.2'],
          ['sleep', '30'],
        ],
      });
      const first = await waitUntil(async () => {
        const k = await client.listProcesses({ parentId: parent, states: ['finished'] });
        return k[0]?.id;
      });
      const kept = await runCliAsync(['process', 'delete', String(first)], tp.env);
      assert.equal(kept.status, EXIT.FAILED);
      assert.match(
        kept.stdout,
        new RegExp(`kept ${first}: its parent ${parent} is (running|waiting) and still needs its result`),
      );
      await runCliAsync(['process', 'kill', String(parent)], tp.env);
      await waitForProcesses(client, [parent], { timeoutSeconds: 30 });
    });

    it('profile delete refuses while the daemon runs; --force leaves no folder and no queue of the profile', async () => {
      if (setup.bus === 'local') {
        const refused = await runCliAsync(['profile', 'delete', tp.name, '--force'], tp.env);
        assert.equal(refused.status, EXIT.FAILED, refused.stdout);
        assert.match(refused.stderr, /is running \(pid \d+\); stop it first/);
        assert.ok(fs.existsSync(dataDir(tp.name, tp.env)), 'nothing deleted');
      }
      await pool?.stop();
      pool = null;
      await client.close();
      const dirs = [logDir(tp.name, tp.env), runtimeDir(tp.name, tp.env)];
      if (setup.storage === 'sqlite') dirs.push(dataDir(tp.name, tp.env));
      for (const d of dirs) fs.mkdirSync(d, { recursive: true }); // the log dir exists once a daemon has run
      const r = await runCliAsync(['profile', 'delete', tp.name, '--force', '--json'], tp.env);
      assert.equal(r.status, EXIT.OK, r.stderr);
      const res = JSON.parse(r.stdout) as { removed: string[]; kept: Array<{ what: string; reason: string }> };
      for (const d of dirs) {
        assert.ok(!fs.existsSync(d), `${d} is gone`);
        assert.ok(res.removed.includes(d), `${d} is listed as removed`);
      }
      if (setup.bus === 'rabbitmq') {
        const topo = topologyFor(tp.profile.uuid);
        assert.ok(
          res.removed.some((x) => x.startsWith(`queue ${topo.taskQueue} `)),
          JSON.stringify(res),
        );
        const conn = await amqp.connect(RABBIT_URL);
        try {
          for (const q of [topo.taskQueue, topo.deadQueue]) {
            const ch = await conn.createChannel();
            ch.on('error', () => undefined);
            await assert.rejects(ch.checkQueue(q), /NOT_FOUND/, `queue ${q} is gone`);
          }
          for (const x of [topo.controlExchange, topo.eventsExchange, topo.deadExchange]) {
            const ch = await conn.createChannel();
            ch.on('error', () => undefined);
            await assert.rejects(ch.checkExchange(x), /NOT_FOUND/, `exchange ${x} is gone`);
          }
        } finally {
          await conn.close();
        }
        assert.ok(
          res.kept.some((k) => /PostgreSQL/.test(k.what)),
          'the database is kept, and said so',
        );
      }
    });
  });
}

async function waitUntilState(client: ProcessClient, id: number, state: string): Promise<void> {
  await waitUntil(async () => (await client.getProcess(id)).state === state);
}

async function waitUntil<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}
