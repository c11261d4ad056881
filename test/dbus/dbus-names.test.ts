/**
 * D-Bus names of a profile's daemon: one escaping makes a valid bus name and object path for every
 * allowed profile name (checked with dbus-next's own validators and by owning the names on a real,
 * private session bus), error names round-trip to control error codes, and the session bus is
 * found where the user's tools look for it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import dbus from 'dbus-next';
import { MAX_PROFILE_NAME_LENGTH, validateProfileName } from '../../src/config/index.js';
import {
  CONTROL_ERROR_CODES,
  DBUS_ERROR_PREFIX,
  DBUS_METHODS,
  busLabelEscape,
  busLabelUnescape,
  controlCodeOfDBusError,
  daemonBusName,
  daemonObjectPath,
  dbusErrorName,
  sessionBusAddress,
} from '../../src/protocol/index.js';
import { cleanupTempDirs, requireService, tempDir } from '../helpers/env.js';
import { busctl, connectClient, haveCommand, startPrivateBus, validators, type PrivateBus } from './helpers.js';

/** Awkward but allowed profile names. */
const AWKWARD = [
  'my-profile.v2',
  '0start',
  '9',
  'a.b.c',
  '_x',
  '__',
  'x_2d',
  'x-',
  'default',
  'A-Z.a_z-0.9',
  'a'.repeat(MAX_PROFILE_NAME_LENGTH),
  '0' + '-'.repeat(MAX_PROFILE_NAME_LENGTH - 1),
  '_' + '.-'.repeat((MAX_PROFILE_NAME_LENGTH - 2) / 2) + '_',
];

/** A deterministic pseudo-random allowed profile name. */
function randomName(seed: number): string {
  let x = seed * 2654435761;
  const next = (n: number): number => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x % n;
  };
  const first = 'abcXYZ019_';
  const rest = 'abcXYZ019_.-';
  const len = 1 + next(MAX_PROFILE_NAME_LENGTH);
  let s = first[next(first.length)]!;
  while (s.length < len) {
    const c = rest[next(rest.length)]!;
    if (c === '.' && s.endsWith('.')) continue;
    s += c;
  }
  return s;
}

describe('D-Bus names of a daemon', function () {
  after(() => cleanupTempDirs());

  it('escapes like systemd bus_label_escape: _xx for anything outside [A-Za-z0-9], and a leading digit', () => {
    const table: Array<[string, string]> = [
      ['my-profile.v2', 'my_2dprofile_2ev2'],
      ['0start', '_30start'],
      ['a.b.c', 'a_2eb_2ec'],
      ['_x', '_5fx'],
      ['default', 'default'],
      ['a1', 'a1'],
      ['', '_'],
    ];
    for (const [name, label] of table) assert.equal(busLabelEscape(name), label, name);
    assert.equal(daemonBusName('my-profile.v2'), 'org.drover.Daemon.my_2dprofile_2ev2');
    assert.equal(daemonObjectPath('my-profile.v2'), '/org/drover/Daemon/my_2dprofile_2ev2');
  });

  it('gives every allowed profile name a valid, distinct bus name and object path that unescape back', () => {
    const names = [...AWKWARD];
    for (let i = 1; i <= 3000; i++) names.push(randomName(i));
    const labels = new Map<string, string>();
    for (const name of names) {
      validateProfileName(name); // the test only uses names a user could create
      const bus = daemonBusName(name);
      const objectPath = daemonObjectPath(name);
      assert.ok(validators.isBusNameValid(bus), `bus name of ${JSON.stringify(name)}: ${bus}`);
      assert.ok(bus.length <= 255, `bus name of ${JSON.stringify(name)} is ${bus.length} long`);
      assert.ok(validators.isObjectPathValid(objectPath), `object path of ${JSON.stringify(name)}: ${objectPath}`);
      const label = busLabelEscape(name);
      assert.equal(busLabelUnescape(label), name);
      const other = labels.get(label);
      assert.ok(other === undefined || other === name, `${other} and ${name} share the label ${label}`);
      labels.set(label, name);
    }
    // Labels escaping could not have made are refused, not misread.
    for (const bad of ['_2', '_zz', 'a-b', '3a', '_41']) assert.equal(busLabelUnescape(bad), null, bad);
  });

  it('names errors org.drover.Error.<Code> and maps them back to the control error code', () => {
    for (const code of [...CONTROL_ERROR_CODES, 'DAEMON_ERROR', 'STORE_LEASE_LOST']) {
      const name = dbusErrorName(code);
      assert.ok(validators.isInterfaceNameValid(name), name);
      assert.ok(name.startsWith(`${DBUS_ERROR_PREFIX}.`), name);
      assert.equal(controlCodeOfDBusError(name), code);
    }
    assert.equal(dbusErrorName('PARAMS_INVALID'), 'org.drover.Error.ParamsInvalid');
    assert.equal(dbusErrorName('weird code!'), 'org.drover.Error.InternalError');
    assert.equal(controlCodeOfDBusError('org.freedesktop.DBus.Error.ServiceUnknown'), null);
    for (const spec of Object.values(DBUS_METHODS)) assert.ok(validators.isMemberNameValid(spec.member));
  });

  it('finds the session bus in DBUS_SESSION_BUS_ADDRESS, else at $XDG_RUNTIME_DIR/bus, else nowhere', async () => {
    const env = (e: Record<string, string>): NodeJS.ProcessEnv => e;
    assert.deepEqual(sessionBusAddress(env({ DBUS_SESSION_BUS_ADDRESS: 'unix:path=/run/user/1000/bus,guid=ab' })), {
      address: 'unix:path=/run/user/1000/bus',
      shown: 'unix:path=/run/user/1000/bus,guid=ab',
      source: 'DBUS_SESSION_BUS_ADDRESS',
    });
    // Escaped values are decoded; entries dbus-next cannot use without `usocket` are skipped.
    assert.equal(
      sessionBusAddress(env({ DBUS_SESSION_BUS_ADDRESS: 'unix:abstract=/tmp/x;unix:path=/tmp/a%2db' }))?.address,
      'unix:path=/tmp/a-b',
    );
    assert.equal(sessionBusAddress(env({ DBUS_SESSION_BUS_ADDRESS: 'unix:abstract=/tmp/dbus-x' })), null);
    assert.equal(
      sessionBusAddress(env({ DBUS_SESSION_BUS_ADDRESS: 'tcp:host=127.0.0.1,port=5555' }))?.address,
      'tcp:host=127.0.0.1,port=5555',
    );
    assert.equal(sessionBusAddress(env({})), null);

    // $XDG_RUNTIME_DIR/bus counts only when it is a socket (systemd's per-user bus).
    const runtime = tempDir('drover-xdg-');
    assert.equal(sessionBusAddress(env({ XDG_RUNTIME_DIR: runtime })), null);
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(path.join(runtime, 'bus'), resolve));
    try {
      assert.deepEqual(sessionBusAddress(env({ XDG_RUNTIME_DIR: runtime })), {
        address: `unix:path=${runtime}/bus`,
        shown: `${runtime}/bus`,
        source: 'XDG_RUNTIME_DIR',
      });
      // The variable wins when set; an empty one does not count.
      assert.equal(
        sessionBusAddress(env({ XDG_RUNTIME_DIR: runtime, DBUS_SESSION_BUS_ADDRESS: 'unix:path=/x' }))?.address,
        'unix:path=/x',
      );
      assert.equal(
        sessionBusAddress(env({ XDG_RUNTIME_DIR: runtime, DBUS_SESSION_BUS_ADDRESS: '' }))?.source,
        'XDG_RUNTIME_DIR',
      );
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.equal(fs.existsSync(path.join(runtime, 'bus')), false);
  });

  describe('on a real session bus', function () {
    this.timeout(30_000);
    let bus: PrivateBus | null = null;

    before(async function () {
      requireService(this, haveCommand('dbus-daemon'), 'dbus-daemon (Debian package dbus)');
      requireService(this, haveCommand('busctl'), 'busctl (Debian package systemd)');
      bus = await startPrivateBus();
    });

    after(async () => {
      await bus?.stop();
    });

    it('owns the bus name and exports the object path of every awkward profile name', async () => {
      const client = await connectClient(bus!);
      try {
        class Empty extends dbus.interface.Interface {}
        for (const name of AWKWARD) {
          const reply = await client.requestName(daemonBusName(name), dbus.NameFlag.DO_NOT_QUEUE);
          assert.equal(reply, dbus.RequestNameReply.PRIMARY_OWNER, name);
          client.export(daemonObjectPath(name), new Empty('org.drover.Test1'));
        }
        // busctl, a separate implementation, sees the names and walks to each object.
        const list = await busctl(bus!, 'list', '--acquired');
        assert.equal(list.status, 0, list.stderr);
        for (const name of AWKWARD) {
          assert.ok(list.stdout.includes(daemonBusName(name) + ' '), `busctl list shows ${daemonBusName(name)}`);
          const r = await busctl(bus!, 'introspect', daemonBusName(name), daemonObjectPath(name));
          assert.equal(r.status, 0, `${name}: ${r.stderr}`);
          assert.match(r.stdout, /org\.drover\.Test1/);
        }
      } finally {
        client.disconnect();
      }
    });
  });
});
