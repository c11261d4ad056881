import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { requireService } from '../helpers/env.js';
import { profileOfInstanceUnit, systemdEscape, systemdInstanceUnit, systemdUnescape } from '../../src/service/index.js';
import { ServiceError } from '../../src/errors/index.js';

/** Allowed profile names that are awkward for systemd: '-', '.', '_', digits, the 64-char limit. */
const AWKWARD = [
  'my-profile.v2',
  'a-b-c',
  '_x',
  'x.y.z',
  'A_1-2.b',
  'default',
  '0',
  '9-lives',
  'trailing-',
  'trailing.',
  'x.-y',
  'a--b',
  'Z'.repeat(32) + '-'.repeat(31) + 'q',
  'p-'.repeat(32),
];

const haveEscape = spawnSync('systemd-escape', ['--version']).status === 0;

function realEscape(name: string): string {
  return execFileSync('systemd-escape', ['--', name], { encoding: 'utf8' }).trim();
}

describe('systemd escaping', () => {
  it('agrees with the systemd-escape binary for awkward allowed profile names', function () {
    requireService(this, haveEscape, 'systemd-escape is not installed');
    assert.equal(AWKWARD[12]!.length, 64);
    for (const name of AWKWARD) {
      assert.equal(systemdEscape(name), realEscape(name), `escaping ${name}`);
      const back = execFileSync('systemd-escape', ['-u', '--', systemdEscape(name)], { encoding: 'utf8' }).trim();
      assert.equal(back, name, `systemd-escape -u of our escaping of ${name}`);
    }
  });

  it('agrees with systemd-escape beyond profile names: leading dot, slash, space, UTF-8, backslash', function () {
    requireService(this, haveEscape, 'systemd-escape is not installed');
    for (const s of ['.hidden', 'a/b', 'with space', 'äö€', 'back\\slash', 'colon:ok', '-lead']) {
      assert.equal(systemdEscape(s), realEscape(s), `escaping ${JSON.stringify(s)}`);
      assert.equal(systemdUnescape(realEscape(s)), s, `unescaping systemd-escape's ${JSON.stringify(s)}`);
    }
  });

  it('turns a dash into \\x2d in the instance unit name and back', () => {
    assert.equal(systemdInstanceUnit('my-profile.v2'), 'drover@my\\x2dprofile.v2.service');
    assert.equal(profileOfInstanceUnit('drover@my\\x2dprofile.v2.service'), 'my-profile.v2');
    assert.equal(profileOfInstanceUnit('other@x.service'), null);
    assert.equal(profileOfInstanceUnit('drover@bad\\x2.service'), null);
  });

  it('rejects malformed escapes with a ServiceError naming the text', () => {
    assert.throws(
      () => systemdUnescape('a\\xZZ'),
      (e: unknown) => e instanceof ServiceError && /a\\\\xZZ/.test(e.message),
    );
    assert.throws(() => systemdUnescape('\\xff'), ServiceError);
  });
});
