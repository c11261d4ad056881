/**
 * The option registry: every option has a sane spec, values are checked on set (command-line
 * text) and on load (JSON values), and resolution merges default < global < profile.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  OPTION_SPECS,
  describeOptionType,
  getOptionSpec,
  parseOptionValue,
  resolveOptions,
  validateOptionValue,
} from '../../src/config/index.js';
import { ConfigError } from '../../src/errors/index.js';
import { REPO_ROOT } from '../helpers/env.js';

describe('config/options: the option registry', () => {
  it('has the options the issue names, with the documented defaults', () => {
    const defaults = Object.fromEntries([...OPTION_SPECS.values()].map((s) => [s.name, s.default]));
    assert.equal(defaults['daemon.timeout'], 2);
    assert.equal(defaults['daemon.default_workers'], 1);
    assert.equal(defaults['daemon.worker_process_slots'], 200);
    assert.equal(defaults['logging.level'], 'info');
    assert.ok(defaults['daemon.worker_restart_backoff']);
    assert.equal(getOptionSpec('daemon.timeout').restartRequired, false);
    assert.equal(getOptionSpec('daemon.worker_process_slots').restartRequired, true);
  });

  it('every default passes its own validation and every option has a description', () => {
    for (const spec of OPTION_SPECS.values()) {
      assert.deepEqual(validateOptionValue(spec.name, spec.default, 'test'), spec.default, spec.name);
      assert.ok(spec.description.length > 10, `${spec.name} has a description`);
      assert.ok(describeOptionType(spec.type).length > 0);
    }
  });

  it('rejects an unknown option, listing the known ones', () => {
    assert.throws(
      () => getOptionSpec('daemon.timeuot'),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /unknown option 'daemon\.timeuot'.*daemon\.timeout/);
        return true;
      },
    );
  });

  it('parses command-line text and names the option and the expected type when it is wrong', () => {
    assert.equal(parseOptionValue('daemon.timeout', '5'), 5);
    assert.equal(parseOptionValue('daemon.timeout', '0.25'), 0.25);
    assert.equal(parseOptionValue('daemon.default_workers', '4'), 4);
    assert.equal(parseOptionValue('logging.level', 'debug'), 'debug');
    assert.deepEqual(parseOptionValue('processes.modules', 'a, b'), ['a', 'b']);
    assert.deepEqual(parseOptionValue('processes.modules', '["/x/y.js"]'), ['/x/y.js']);
    assert.deepEqual(parseOptionValue('daemon.worker_restart_backoff', '{"initial":1,"max":60,"factor":2}'), {
      initial: 1,
      max: 60,
      factor: 2,
    });
    const bad: Array<[string, string, RegExp]> = [
      ['daemon.timeout', 'abc', /option 'daemon\.timeout' must be a number from 0\.05 to 3600 \(seconds\), got "abc"/],
      ['daemon.timeout', '', /daemon\.timeout' must be a number/],
      ['daemon.timeout', '0x10', /daemon\.timeout' must be a number/],
      ['daemon.timeout', '0', /daemon\.timeout' must be a number from 0\.05/],
      ['daemon.timeout', 'Infinity', /daemon\.timeout' must be a number/],
      ['daemon.default_workers', '1.5', /daemon\.default_workers' must be an integer from 1 to 256/],
      ['daemon.worker_process_slots', '0', /must be an integer from 1 to 100000/],
      ['logging.level', 'loud', /'logging\.level' must be one of debug, info, warn, error, got "loud"/],
      ['daemon.worker_restart_backoff', '{"initial":1}', /worker_restart_backoff' must be an object/],
      ['daemon.worker_restart_backoff', '{"initial":5,"max":1,"factor":2}', /worker_restart_backoff/],
      ['daemon.worker_restart_backoff', 'fast', /\(invalid JSON\)/],
    ];
    for (const [name, text, re] of bad) {
      assert.throws(
        () => parseOptionValue(name, text),
        (err: Error) => err instanceof ConfigError && re.test(err.message),
        `${name}=${text}`,
      );
    }
  });

  it('broker.heartbeat_seconds: 5 by default, an integer from 0 to 600, else a clear error', () => {
    assert.equal(resolveOptions({}, {})['broker.heartbeat_seconds'], 5);
    assert.equal(parseOptionValue('broker.heartbeat_seconds', '0'), 0);
    assert.equal(parseOptionValue('broker.heartbeat_seconds', '600'), 600);
    for (const bad of ['601', '-1', '2.5', 'abc']) {
      assert.throws(
        () => parseOptionValue('broker.heartbeat_seconds', bad),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message ===
            `option 'broker.heartbeat_seconds' must be an integer from 0 to 600 (seconds), got ${JSON.stringify(bad)}`,
        bad,
      );
    }
  });

  it('accepts only absolute paths and package names as process modules, and an absolute modules root', () => {
    assert.deepEqual(parseOptionValue('processes.modules', '@me/procs, procs/extra.js, /srv/p.mjs'), [
      '@me/procs',
      'procs/extra.js',
      '/srv/p.mjs',
    ]);
    const refused: Array<[string, RegExp]> = [
      ['["data:text/javascript,1"]', /entry 'data:text\/javascript,1' is a URL \(data:\)/],
      ['["file:///srv/p.js"]', /is a URL \(file:\); URLs are not accepted, write the absolute file path instead/],
      ['node:fs', /is a URL \(node:\)/],
      ['./p.js', /entry '\.\/p\.js' is a relative path/],
      ['p/../../x', /is neither an absolute file path nor a package name/],
      ['with space', /is neither an absolute file path nor a package name/],
    ];
    for (const [text, re] of refused) {
      assert.throws(
        () => parseOptionValue('processes.modules', text),
        (err: Error) => err instanceof ConfigError && re.test(err.message),
        text,
      );
    }
    assert.equal(parseOptionValue('processes.modules_root', '/home/me/app'), '/home/me/app');
    assert.equal(parseOptionValue('processes.modules_root', ''), '');
    for (const bad of ['app', 'file:///home/me/app', '~/app']) {
      assert.throws(
        () => parseOptionValue('processes.modules_root', bad),
        /option 'processes\.modules_root' must be an absolute directory path, or '' for none/,
        bad,
      );
    }
  });

  it('validates values from the file by their JSON type', () => {
    assert.throws(
      () => validateOptionValue('daemon.timeout', '5', 'f'),
      /f: option 'daemon\.timeout' must be a number/,
    );
    assert.throws(() => validateOptionValue('processes.modules', [''], 'f'), /list of strings/);
    assert.throws(
      () => validateOptionValue('processes.modules', ['/ok.js', 'http://h/x.js'], 'f'),
      /f: option 'processes\.modules': entry 'http:\/\/h\/x\.js' is a URL \(http:\); URLs are not accepted/,
    );
    assert.throws(() => validateOptionValue('logging.level', null, 'f'), /one of/);
  });

  it('resolves default < global < profile, and hands out copies', () => {
    const o = resolveOptions({ 'daemon.timeout': 3, 'logging.level': 'warn' }, { 'daemon.timeout': 7 });
    assert.equal(o['daemon.timeout'], 7);
    assert.equal(o['logging.level'], 'warn');
    assert.equal(o['daemon.default_workers'], 1);
    o['daemon.worker_restart_backoff'].initial = 99;
    assert.notEqual(resolveOptions({}, {})['daemon.worker_restart_backoff'].initial, 99);
    // Inherited properties of plain objects are not option values.
    assert.equal(resolveOptions(Object.create({ 'daemon.timeout': 9 }), {})['daemon.timeout'], 2);
  });

  it('docs/configuration.md documents every option with its default', () => {
    const doc = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'configuration.md'), 'utf8');
    for (const spec of OPTION_SPECS.values()) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${spec.name}\` |`));
      assert.ok(row, `${spec.name} has a row in the options table`);
      assert.ok(row.includes(`\`${JSON.stringify(spec.default)}\``), `${spec.name}: documented default is current`);
      assert.ok(row.includes(` | ${spec.scope} | `), `${spec.name}: documented scope is ${spec.scope}`);
    }
  });
});
