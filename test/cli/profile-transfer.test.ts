/**
 * `drover profile export` and `drover profile import` (issue 11: one profile on several machines),
 * as a user runs them: real CLI processes, one DROVER_HOME per "machine". A refused import must
 * leave the configuration file byte-identical.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import {
  CLI,
  PG_ADMIN_URL,
  cleanupTempDirs,
  freshPostgresDatabase,
  portOpen,
  requireService,
  runCli,
  tempDir,
  type CliResult,
} from '../helpers/env.js';
import type { StatusResult } from '../../src/commands/status.js';
import type { ProfileExport } from '../../src/config/index.js';
import type { ConfigData } from '../../src/config/index.js';

const PG = 'postgres://drover:pg%40pass@db.example:5432/drover';
const MQ = 'amqp://drover:mq-pass@mq.example:5672/prod';

function haveScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs the CLI on a pseudo-terminal (script(1)), answering each prompt that contains `prompt` in turn. */
function runOnTerminal(
  args: string[],
  env: NodeJS.ProcessEnv,
  answers: string[],
): Promise<{ status: number; output: string }> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: { ...process.env, ...env } });
  let output = '';
  let asked = 0;
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    const prompts = (output.match(/password for profile/g) ?? []).length;
    while (asked < prompts && asked < answers.length) child.stdin.write(answers[asked++] + '\n');
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ status: code ?? -1, output })));
}

describe('cli: profile export and import', function () {
  this.timeout(60_000);
  let hostA: NodeJS.ProcessEnv;
  let hostB: NodeJS.ProcessEnv;
  let fileB: string;
  const on = (env: NodeJS.ProcessEnv, ...args: string[]): CliResult => runCli(args, env);
  const ok = (r: CliResult, what: string): CliResult => {
    assert.equal(r.status, 0, `${what}: ${r.stderr}${r.stdout}`);
    return r;
  };
  const configB = (): ConfigData => JSON.parse(fs.readFileSync(fileB, 'utf8')) as ConfigData;
  /** An import on host B that must fail with exit 1 naming `pattern`, leaving its config byte-identical. */
  const refused = (args: string[], pattern: RegExp, extraEnv: NodeJS.ProcessEnv = {}): CliResult => {
    const before = fs.existsSync(fileB) ? fs.readFileSync(fileB) : null;
    const r = on({ ...hostB, ...extraEnv }, 'profile', 'import', ...args);
    assert.equal(r.status, 1, `import ${args.join(' ')}: exit 1 expected, got ${r.status}; ${r.stderr}${r.stdout}`);
    assert.match(r.stderr, /^Error: /);
    assert.match(r.stderr, pattern);
    const after = fs.existsSync(fileB) ? fs.readFileSync(fileB) : null;
    assert.deepEqual(after, before, `import ${args.join(' ')} must not change ${fileB}`);
    return r;
  };
  const secretsEnv = { DROVER_POSTGRES_PASSWORD: 'pg@pass', DROVER_BROKER_PASSWORD: 'mq-pass' };

  beforeEach(() => {
    hostA = { DROVER_HOME: tempDir('drover-host-a-'), DROVER_PROFILE: '' };
    hostB = { DROVER_HOME: tempDir('drover-host-b-'), DROVER_PROFILE: '' };
    fileB = path.join(hostB.DROVER_HOME!, 'config.json');
    ok(
      on(
        hostA,
        'profile',
        'setup',
        'prod',
        '--storage',
        'postgres',
        '--postgres-url',
        PG,
        '--broker',
        'rabbitmq',
        '--broker-url',
        MQ,
      ),
      'setup prod',
    );
    ok(on(hostA, 'profile', 'setup', 'other'), 'setup other');
    ok(on(hostA, 'config', 'set', 'daemon.default_workers', '3', '-p', 'prod'), 'config set');
    ok(on(hostA, 'config', 'set', 'logging.level', 'debug', '--global'), 'config set --global');
  });
  after(() => cleanupTempDirs());

  it('round trip: export on one machine, import on another gives the same uuid, store, broker and options', () => {
    const a = JSON.parse(fs.readFileSync(path.join(hostA.DROVER_HOME!, 'config.json'), 'utf8')) as ConfigData;
    const out = path.join(tempDir(), 'prod.json');
    const e = ok(on(hostA, 'profile', 'export', 'prod', '--output', out, '--json'), 'export');
    const res = JSON.parse(e.stdout) as { file: string; secretsIncluded: boolean; mode: string; uuid: string };
    assert.equal(res.file, out);
    assert.equal(res.secretsIncluded, false);
    assert.equal(res.uuid, a.profiles.prod!.uuid);
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as ProfileExport;
    assert.equal(doc.format, 'drover-profile');
    assert.equal(doc.version, 1);
    assert.equal(doc.name, 'prod');
    assert.deepEqual(doc.options, { 'daemon.default_workers': 3 }, 'its own options, not the global ones');
    assert.ok(!JSON.stringify(doc).includes('other'), 'nothing of the other profile');

    ok(on({ ...hostB, ...secretsEnv }, 'profile', 'import', out), 'import');
    const b = configB();
    assert.deepEqual(Object.keys(b.profiles), ['prod']);
    assert.deepEqual(b.profiles.prod, a.profiles.prod, 'uuid, storage (with its password), broker and options');
    assert.equal(b.default_profile, 'prod', 'the first profile becomes the default');
    assert.deepEqual(b.options, {}, 'global options are not carried over');
    assert.equal(fs.statSync(fileB).mode & 0o777, 0o600);

    // Through a pipe, under another name, in a home that has the profile already: refused as the same uuid...
    const piped = on(hostA, 'profile', 'export', 'prod');
    assert.equal(piped.status, 0);
    const r = runCli(['profile', 'import', '-', '--name', 'prod2'], { ...hostB, ...secretsEnv }, piped.stdout);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /profile 'prod' in .* already has uuid/);
    // ...and with --force it takes that profile's place.
    const f = runCli(
      ['profile', 'import', '-', '--name', 'prod2', '--force', '--json'],
      { ...hostB, ...secretsEnv },
      piped.stdout,
    );
    assert.equal(f.status, 0, f.stderr);
    assert.deepEqual((JSON.parse(f.stdout) as { replaced: string[] }).replaced, ['prod']);
    const b2 = configB();
    assert.deepEqual(Object.keys(b2.profiles), ['prod2']);
    assert.equal(b2.default_profile, 'prod2');
    assert.deepEqual(b2.profiles.prod2, a.profiles.prod);
  });

  it('passwords are replaced by a placeholder without --include-secrets; with it the file is 0600', () => {
    const masked = path.join(tempDir(), 'masked.json');
    ok(on(hostA, 'profile', 'export', 'prod', '-o', masked), 'export');
    const text = fs.readFileSync(masked, 'utf8');
    assert.ok(!text.includes('pg%40pass') && !text.includes('mq-pass'), text);
    const doc = JSON.parse(text) as ProfileExport;
    assert.equal(doc.secrets_included, false);
    assert.equal(
      doc.storage.backend === 'postgres' && doc.storage.url,
      'postgres://drover:DROVER-PASSWORD-REMOVED@db.example:5432/drover',
    );
    assert.deepEqual(doc.broker, {
      kind: 'rabbitmq',
      url: 'amqp://drover:DROVER-PASSWORD-REMOVED@mq.example:5672/prod',
    });
    // Standard output is masked too.
    const std = on(hostA, 'profile', 'export', 'prod');
    assert.ok(!std.stdout.includes('mq-pass') && std.stdout.includes('DROVER-PASSWORD-REMOVED'));

    const full = path.join(tempDir(), 'full.json');
    ok(on(hostA, 'profile', 'export', 'prod', '-o', full, '--include-secrets'), 'export --include-secrets');
    assert.equal(fs.statSync(full).mode & 0o777, 0o600);
    const fullDoc = JSON.parse(fs.readFileSync(full, 'utf8')) as ProfileExport;
    assert.equal(fullDoc.secrets_included, true);
    assert.equal(fullDoc.storage.backend === 'postgres' && fullDoc.storage.url, PG);
    // A file with its secrets imports with no variables set.
    ok(on(hostB, 'profile', 'import', full), 'import of a file with secrets');
    assert.deepEqual(configB().profiles.prod!.storage, { backend: 'postgres', url: PG });
  });

  it('a left-out password comes from the environment, else the import fails naming what is missing', () => {
    const masked = path.join(tempDir(), 'masked.json');
    ok(on(hostA, 'profile', 'export', 'prod', '-o', masked), 'export');
    const r = refused(
      [masked],
      /left out the PostgreSQL password \(storage\.url: set DROVER_POSTGRES_PASSWORD\), the RabbitMQ password \(broker\.url: set DROVER_BROKER_PASSWORD\)/,
    );
    assert.ok(r.stderr.includes(masked), 'names the file');
    refused([masked], /left out the RabbitMQ password \(broker\.url: set DROVER_BROKER_PASSWORD\)/, {
      DROVER_POSTGRES_PASSWORD: 'pg@pass',
    });
    assert.ok(!fs.existsSync(fileB), 'no configuration was created');
    ok(on({ ...hostB, ...secretsEnv }, 'profile', 'import', masked), 'import with both variables');
    const p = configB().profiles.prod!;
    assert.equal(p.storage.backend === 'postgres' && p.storage.url, PG);
    assert.deepEqual(p.broker, { kind: 'rabbitmq', url: MQ });
  });

  it('asks for a left-out password on a terminal', async function () {
    requireService(this, haveScript(), 'script(1) for a pseudo-terminal');
    const masked = path.join(tempDir(), 'masked.json');
    ok(on(hostA, 'profile', 'export', 'prod', '-o', masked), 'export');
    const r = await runOnTerminal(['profile', 'import', masked], { ...hostB, DROVER_POSTGRES_PASSWORD: 'pg@pass' }, [
      'mq-pass',
    ]);
    assert.equal(r.status, 0, r.output);
    assert.match(r.output, /the RabbitMQ password for profile 'prod' \(broker\.url\): /);
    assert.ok(!r.output.includes('mq-pass'), `the answer is not echoed: ${r.output}`);
    assert.deepEqual(configB().profiles.prod!.broker, { kind: 'rabbitmq', url: MQ });
  });

  it('refuses a name clash unless --name or --force', () => {
    const out = path.join(tempDir(), 'other.json');
    ok(on(hostA, 'profile', 'export', 'other', '-o', out), 'export other');
    ok(on(hostB, 'profile', 'setup', 'other'), 'a profile named other on host B');
    refused([out], /a profile of that name exists in .*choose another name with --name, or replace it with --force/);
    ok(on(hostB, 'profile', 'import', out, '--name', 'other-a'), 'import --name');
    const b = configB();
    assert.deepEqual(Object.keys(b.profiles).sort(), ['other', 'other-a']);
    assert.notEqual(b.profiles.other!.uuid, b.profiles['other-a']!.uuid);
    // The same uuid under a third name: refused, it is the same profile.
    refused([out, '--name', 'third'], /profile 'other-a' in .* already has uuid/);
    // Another profile's SQLite file is refused, even with --force.
    const doc = JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, unknown>;
    const mine = configB().profiles.other!.storage;
    const clash = path.join(tempDir(), 'clash.json');
    fs.writeFileSync(clash, JSON.stringify({ ...doc, uuid: '5b0e7c4e-4d5e-4a51-9c1e-3f5e0e7a9b10', storage: mine }));
    refused([clash, '--name', 'fourth', '--force'], /its SQLite store .* is already the store of profile 'other'/);
    refused([out, '--name', 'bad/name'], /--name: invalid profile name "bad\/name"/);
    ok(on(hostB, 'profile', 'import', out, '--force'), 'import --force over the name');
    const b2 = configB();
    assert.deepEqual(Object.keys(b2.profiles), ['other'], 'other replaced, other-a (same uuid) removed');
  });

  it('refuses bad files naming the file and the field, writing nothing', () => {
    ok(on(hostB, 'profile', 'setup', 'here'), 'a profile on host B');
    const good = JSON.parse(on(hostA, 'profile', 'export', 'prod', '--include-secrets').stdout) as Record<
      string,
      unknown
    >;
    const dir = tempDir();
    const write = (name: string, content: string): string => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, content);
      return f;
    };
    const variant = (name: string, change: (d: Record<string, unknown>) => void): string => {
      const d = structuredClone(good);
      change(d);
      return write(name, JSON.stringify(d));
    };
    const cases: Array<[string, RegExp]> = [
      [
        write('notjson.json', '{"format": "drover-profile",\n  oops}'),
        /notjson\.json: not a profile export: invalid JSON at line 2, column 3/,
      ],
      [write('array.json', '[1, 2]'), /array\.json: not a profile export: the top level must be a JSON object/],
      [
        variant('config.json', (d) => (d.format = undefined)),
        /config\.json: not a profile export: 'format' must be "drover-profile", got nothing/,
      ],
      [
        variant('newer.json', (d) => (d.version = 2)),
        /newer\.json: written by a newer version of Drover \(export version 2/,
      ],
      [
        variant('version.json', (d) => (d.version = 'one')),
        /version\.json: 'version' must be a positive integer, got "one"/,
      ],
      [variant('nouuid.json', (d) => delete d.uuid), /nouuid\.json: 'uuid' is missing/],
      [variant('nostorage.json', (d) => delete d.storage), /nostorage\.json: 'storage' is missing/],
      [variant('baduuid.json', (d) => (d.uuid = 'xyz')), /baduuid\.json: uuid must be a UUID string, got "xyz"/],
      [variant('badname.json', (d) => (d.name = '../etc')), /badname\.json: 'name': invalid profile name "\.\.\/etc"/],
      [
        variant('badurl.json', (d) => (d.storage = { backend: 'postgres', url: 'mysql://x' })),
        /badurl\.json: storage\.url: PostgreSQL URL must start with postgres:\/\//,
      ],
      [
        variant('badbroker.json', (d) => (d.broker = { kind: 'kafka' })),
        /badbroker\.json: broker\.kind must be "local" or "rabbitmq"/,
      ],
      [
        variant('badopt.json', (d) => (d.options = { 'daemon.default_workers': 0 })),
        /badopt\.json: options: option 'daemon\.default_workers' must be an integer from 1 to 256, got 0/,
      ],
      [
        variant('unknownopt.json', (d) => (d.options = { 'no.such': 1 })),
        /unknownopt\.json: options: unknown option 'no\.such'/,
      ],
      [variant('extra.json', (d) => (d.profiles = {})), /extra\.json: unknown key 'profiles'/],
      [
        variant('relative.json', (d) => (d.storage = { backend: 'sqlite', path: 'rel.sqlite' })),
        /relative\.json: storage\.path must be an absolute path/,
      ],
    ];
    for (const [f, pattern] of cases) {
      const r = refused([f], pattern);
      assert.ok(!r.stderr.includes('pg%40pass') && !r.stderr.includes('mq-pass'), `no password in: ${r.stderr}`);
    }
    refused([path.join(dir, 'missing.json')], /missing\.json: cannot read: ENOENT/);
    assert.deepEqual(Object.keys(configB().profiles), ['here']);
  });
  it('a machine that imported the profile is accepted by its store; a new profile pointed at it is not', async function () {
    const u = new URL(PG_ADMIN_URL);
    requireService(this, await portOpen(Number(u.port || 5432), u.hostname), `PostgreSQL at ${PG_ADMIN_URL}`);
    const db = await freshPostgresDatabase();
    try {
      ok(on(hostA, 'profile', 'setup', 'shared', '--postgres-url', db.url), 'setup shared');
      const a = JSON.parse(fs.readFileSync(path.join(hostA.DROVER_HOME!, 'config.json'), 'utf8')) as ConfigData;
      const uuid = a.profiles.shared!.uuid;
      // Host A's worker would record its profile in the store at its first start.
      const { openStore } = await import('../../src/store/index.js');
      const st = await openStore({ backend: 'postgres', url: db.url }, { profile: { name: 'shared', uuid } });
      await st.close();
      const out = path.join(tempDir(), 'shared.json');
      ok(on(hostA, 'profile', 'export', 'shared', '-o', out, '--include-secrets'), 'export');
      ok(on(hostB, 'profile', 'import', out), 'import');
      const s = JSON.parse(
        ok(on(hostB, 'status', '-p', 'shared', '--json'), 'status on host B').stdout,
      ) as StatusResult;
      assert.equal(s.ok, true);
      assert.equal(s.store.profileUuid, uuid);
      ok(on(hostB, 'profile', 'setup', 'impostor', '--postgres-url', db.url), 'setup impostor');
      const bad = on(hostB, 'status', '-p', 'impostor', '--json');
      assert.equal(bad.status, 3, bad.stdout);
      assert.match(
        (JSON.parse(bad.stdout) as StatusResult).store.profileMismatch ?? '',
        new RegExp(`belongs to profile 'shared' \\(uuid ${uuid}\\)`),
      );
    } finally {
      await db.drop();
    }
  });
});
