/**
 * The configuration file: round trip, atomic private writes, errors that name the file and the
 * place, refusal of newer versions, profile names, and never losing a concurrent change.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  CONFIG_VERSION,
  Config,
  MAX_PROFILE_NAME_LENGTH,
  findJsonSyntaxError,
  parseConfig,
  resolveBroker,
  resolveProfile,
  validateProfileName,
  dataDir,
  runtimeDir,
  configFilePath,
} from '../../src/config/index.js';
import { ConfigError, ProfileError, ProfileNotFoundError } from '../../src/errors/index.js';
import { cleanupTempDirs, tempDir } from '../helpers/env.js';

function mode(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

describe('config/config: the configuration file', () => {
  let home: string;
  let file: string;
  let env: NodeJS.ProcessEnv;

  beforeEach(() => {
    home = path.join(tempDir(), 'home');
    file = path.join(home, 'config.json');
    env = { DROVER_HOME: home };
  });
  after(() => cleanupTempDirs());

  it('round-trips profiles and options through the file, created 0600 in a 0700 dir', () => {
    const c = Config.load(file);
    assert.equal(c.exists, false);
    c.setupProfile('demo', {}, env);
    c.setupProfile(
      'pg',
      { postgresUrl: 'postgres://u:pw@db.example/drover', brokerUrl: 'amqp://u:s3cret@mq:5673/v' },
      env,
    );
    c.setOption('daemon.timeout', 5, 'demo');
    c.setOption('logging.level', 'debug');
    c.save();
    assert.equal(mode(file), 0o600);
    assert.equal(mode(home), 0o700);

    const d = Config.load(file);
    assert.deepEqual(d.toJSON(), c.toJSON());
    assert.equal(d.defaultProfile, 'demo', 'the first profile is the default');
    assert.deepEqual(d.profileNames, ['demo', 'pg']);
    const demo = d.getProfile('demo');
    assert.deepEqual(demo.storage, { backend: 'sqlite', path: path.join(dataDir('demo', env), 'processes.sqlite') });
    assert.equal(demo.options['daemon.timeout'], 5);
    assert.equal(demo.options['logging.level'], 'debug');
    assert.equal(d.optionSource('daemon.timeout', 'demo'), 'profile');
    assert.equal(d.optionSource('logging.level', 'demo'), 'global');
    assert.equal(d.optionSource('daemon.default_workers', 'demo'), 'default');
    const pg = d.getProfile('pg');
    assert.equal(pg.options['daemon.timeout'], 2);
    assert.equal(demo.broker.kind, 'local', 'a profile set up without broker settings uses the local bus');
    assert.ok(pg.broker.kind === 'rabbitmq');
    assert.deepEqual(
      { host: pg.broker.host, port: pg.broker.port, user: pg.broker.user, vhost: pg.broker.vhost },
      { host: 'mq', port: 5673, user: 'u', vhost: 'v' },
    );
    assert.equal(pg.broker.displayUrl, 'amqp://u:***@mq:5673/v');
    // Leftover temp files would accumulate secrets; there are none.
    assert.deepEqual(fs.readdirSync(home), ['config.json']);
  });

  it('resolves broker settings given as parts', () => {
    const b = resolveBroker({ host: 'rabbit.local', port: 5700, user: 'me', password: 'p@ss', vhost: '/' });
    assert.ok(
      b.kind === 'rabbitmq',
      'settings without a kind are RabbitMQ settings (files written before the local bus)',
    );
    assert.equal(b.host, 'rabbit.local');
    assert.equal(b.port, 5700);
    assert.equal(b.vhost, '/');
    assert.equal(b.user, 'me');
    assert.ok(!b.displayUrl.includes('p%40ss') && b.displayUrl.includes('***'));
    const d = resolveBroker({});
    assert.ok(d.kind === 'rabbitmq');
    assert.equal(d.url, 'amqp://guest:guest@127.0.0.1:5672');
    assert.deepEqual(resolveBroker({ kind: 'local' }), { kind: 'local', displayUrl: 'local (the daemon)' });
  });

  it('a failed change leaves the object and the file as they were', () => {
    const c = Config.load(file);
    c.setupProfile('demo', {}, env);
    c.save();
    const before = fs.readFileSync(file);
    const data = c.toJSON();
    assert.throws(() => c.setOption('daemon.timeout', 'abc' as never, 'demo'), /daemon\.timeout/);
    assert.throws(() => c.setOption('daemon.timeout', 5, 'nope'), ProfileNotFoundError);
    assert.throws(() => c.setupProfile('demo', {}, env), /already exists/);
    assert.throws(() => c.setupProfile('x', { storage: 'postgres' }, env), /--postgres-url is required/);
    assert.throws(() => c.setupProfile('x', { brokerUrl: 'http://mq' }, env), /amqp:\/\//);
    assert.throws(
      () =>
        c.setupProfile(
          'x',
          { sqlitePath: data.profiles.demo!.storage.backend === 'sqlite' ? data.profiles.demo!.storage.path : '' },
          env,
        ),
      /already the store of profile 'demo'/,
    );
    assert.deepEqual(c.toJSON(), data);
    assert.deepEqual(fs.readFileSync(file), before);
  });

  it('reports JSON syntax errors with the file, line and column, and never echoes the content', () => {
    const cases: Array<[string, number, number]> = [
      ['{\n  "version": 1\n  "profiles": {}\n}', 3, 3],
      ['{\n  "version": 1,\n}', 3, 1],
      ['{"version": 1, "options": {"a": tru}}', 1, 36],
      ['', 1, 1],
      ['{"version": 1, "x": "secret', 1, 21],
      ['[1,]', 1, 4],
    ];
    for (const [text, line, column] of cases) {
      assert.throws(
        () => parseConfig(text, '/some/config.json'),
        (err: Error) => {
          assert.ok(err instanceof ConfigError, text);
          assert.match(
            err.message,
            new RegExp(`^/some/config\\.json: invalid JSON at line ${line}, column ${column}: `),
            text,
          );
          assert.ok(!err.message.includes('secret'), 'no content echoed');
          return true;
        },
      );
    }
  });

  it('finds a syntax error exactly when JSON.parse does (mutations of a real file)', () => {
    const c = Config.load(file);
    c.setupProfile('demo', { brokerUrl: 'amqp://a:b@h:1/v' }, env);
    c.setOption('daemon.worker_restart_backoff', { initial: 1, max: 2.5e1, factor: 2 });
    c.setOption('processes.modules', ['/a\\b', '/c"d', '/ü']);
    const text = JSON.stringify(c.toJSON(), null, 2);
    const alphabet = ['', '"', ',', '}', ']', '{', '[', ':', '\\', '-', '0', '.', 'e', 'x', ' ', '\n', '\u0001', 'n'];
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let k = 0; k < 2000; k++) {
      const at = rnd(text.length);
      const cut = rnd(3);
      const mutated = text.slice(0, at) + alphabet[rnd(alphabet.length)] + text.slice(at + cut);
      let parses = true;
      try {
        JSON.parse(mutated);
      } catch {
        parses = false;
      }
      const problem = findJsonSyntaxError(mutated);
      assert.equal(
        problem === null,
        parses,
        `mutation ${k}: ${JSON.stringify(mutated.slice(Math.max(0, at - 10), at + 10))}`,
      );
    }
  });

  it('refuses a config written by a newer version, and bad values naming the key and expected type', () => {
    const newer = JSON.stringify({ version: CONFIG_VERSION + 1, profiles: {}, something_new: true });
    assert.throws(
      () => parseConfig(newer, '/c.json'),
      /\/c\.json: written by a newer version of Drover \(config version 2/,
    );
    const bad = (patch: object): string =>
      JSON.stringify({
        version: 1,
        default_profile: 'a',
        options: {},
        profiles: {
          a: {
            uuid: '6a9c8b2e-0d4f-4c1e-9a57-3f2b1c0d9e8a',
            storage: { backend: 'sqlite', path: '/x.sqlite' },
            broker: {},
            options: {},
          },
        },
        ...patch,
      });
    assert.doesNotThrow(() => parseConfig(bad({}), '/c.json'));
    const cases: Array<[object, RegExp]> = [
      [{ options: { 'daemon.timeout': 'abc' } }, /\/c\.json: options: option 'daemon\.timeout' must be a number/],
      [{ options: { 'daemon.timeuot': 1 } }, /unknown option 'daemon\.timeuot'/],
      [{ default_profile: 'zz' }, /'default_profile' names profile 'zz'/],
      [{ brokr: {} }, /unknown key 'brokr'/],
      [{ version: '1' }, /'version' must be a positive integer/],
      [{ version: undefined }, /'version' is missing/],
      [{ profiles: { '../x': {} } }, /invalid profile name "\.\.\/x"/],
      [{ profiles: { a: { uuid: 'x', storage: {}, broker: {} } } }, /profiles\.a\.uuid must be a UUID/],
      [
        {
          profiles: {
            a: {
              uuid: '6a9c8b2e-0d4f-4c1e-9a57-3f2b1c0d9e8a',
              storage: { backend: 'sqlite', path: 'rel' },
              broker: {},
            },
          },
        },
        /profiles\.a\.storage\.path must be an absolute path/,
      ],
      [
        {
          profiles: {
            a: {
              uuid: '6a9c8b2e-0d4f-4c1e-9a57-3f2b1c0d9e8a',
              storage: { backend: 'sqlite', path: '/x' },
              broker: { port: 'x' },
            },
          },
        },
        /profiles\.a\.broker\.port must be an integer from 1 to 65535/,
      ],
      [
        {
          profiles: {
            a: {
              uuid: '6a9c8b2e-0d4f-4c1e-9a57-3f2b1c0d9e8a',
              storage: { backend: 'sqlite', path: '/x' },
              broker: { url: 'amqp://h', host: 'h' },
            },
          },
        },
        /cannot be combined/,
      ],
    ];
    for (const [patch, re] of cases) assert.throws(() => parseConfig(bad(patch), '/c.json'), re, JSON.stringify(patch));
  });

  it('accepts good profile names and rejects bad ones with a clear error', () => {
    const ok = ['demo', 'my-profile.v2', 'a', 'A_1', '_x', 'x'.repeat(MAX_PROFILE_NAME_LENGTH), 'constructor'];
    for (const n of ok) assert.equal(validateProfileName(n), n);
    const bad: Array<[string, RegExp]> = [
      ['../x', /must not start with '\.'/],
      ['a/b', /character "\/" not allowed/],
      ['.hidden', /must not start with '\.'/],
      ['', /must not be empty/],
      ['x y', /character " " not allowed/],
      ['x'.repeat(MAX_PROFILE_NAME_LENGTH + 1), /at most 64 characters/],
      ['-x', /must not start/],
      ['a..b', /must not contain '\.\.'/],
      ['a\\b', /not allowed/],
      ['é', /not allowed/],
      ['__proto__', /reserved/],
    ];
    for (const [n, re] of bad) {
      assert.throws(
        () => validateProfileName(n),
        (err: Error) => err instanceof ProfileError && re.test(err.message),
        n,
      );
    }
    // Names never become paths outside the Drover directories.
    assert.throws(() => dataDir('../x', env), ProfileError);
    assert.throws(() => runtimeDir('a/b', env), ProfileError);
  });

  it('treats names of Object.prototype members as ordinary profiles', () => {
    const c = Config.load(file);
    assert.throws(() => c.getProfile('toString'), ProfileNotFoundError);
    c.setupProfile('constructor', {}, env);
    c.save();
    assert.deepEqual(Config.load(file).profileNames, ['constructor']);
  });

  it('does not silently move the default to another profile on delete', () => {
    const c = Config.load(file);
    for (const n of ['a', 'b', 'c']) c.setupProfile(n, {}, env);
    c.deleteProfile('a');
    assert.equal(c.defaultProfile, null, 'two left: no default until one is chosen');
    assert.throws(() => c.currentProfileName(undefined, {}), /no default profile/);
    c.setDefaultProfile('b');
    c.deleteProfile('b');
    assert.equal(c.defaultProfile, 'c', 'one left: it becomes the default');
  });

  it('never overwrites a change another command saved in between', () => {
    const a = Config.load(file);
    a.setupProfile('demo', {}, env);
    a.save();
    const x = Config.load(file);
    const y = Config.load(file);
    x.setOption('daemon.timeout', 3);
    x.save();
    const saved = fs.readFileSync(file);
    y.setOption('logging.level', 'debug');
    assert.throws(() => y.save(), /was changed by another program.*nothing was written/);
    assert.deepEqual(fs.readFileSync(file), saved);
    // First use racing another first use: the file is created once.
    const fresh = path.join(tempDir(), 'c.json');
    const p = Config.load(fresh);
    const q = Config.load(fresh);
    p.setupProfile('one', {}, env);
    q.setupProfile('two', {}, env);
    p.save();
    assert.throws(() => q.save(), /changed by another program/);
    assert.deepEqual(Config.load(fresh).profileNames, ['one']);
  });

  it('creates the default profile on first use only, and says so', () => {
    const notices: string[] = [];
    const p = resolveProfile(undefined, { env, onCreate: (m) => notices.push(m) });
    assert.equal(p.name, 'default');
    assert.equal(notices.length, 1);
    assert.match(
      notices[0]!,
      /^Created profile 'default' in .*config\.json \(store sqlite:.*, broker local \(the daemon\); for RabbitMQ instead: drover profile setup NAME --broker rabbitmq\)\.$/,
    );
    assert.equal(mode(configFilePath(env)), 0o600);
    // Second use: nothing created, nothing said.
    resolveProfile(undefined, { env, onCreate: (m) => notices.push(m) });
    assert.equal(notices.length, 1);
    // Without onCreate, a missing config is an error and nothing is written.
    const other = { DROVER_HOME: path.join(tempDir(), 'h2') };
    assert.throws(() => resolveProfile(undefined, { env: other }), /no default profile/);
    assert.equal(fs.existsSync(configFilePath(other)), false);
    // DROVER_PROFILE picks the profile.
    assert.throws(() => resolveProfile(undefined, { env: { ...env, DROVER_PROFILE: 'nope' } }), ProfileNotFoundError);
  });

  it('ignores relative XDG directories, as the XDG spec says', () => {
    const e = { HOME: '/home/u', XDG_CONFIG_HOME: 'rel/conf', XDG_DATA_HOME: '/data' };
    assert.equal(configFilePath(e), '/home/u/.config/drover/config.json');
    assert.equal(dataDir('demo', e), '/data/drover/demo');
  });
});
