/**
 * Helpers of the D-Bus tests: a PRIVATE session bus (`dbus-daemon --session` on a socket in a temp
 * dir, never the machine's or the user's bus), `busctl --user` pointed at it, and a dbus-next
 * client connected to it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dbus from 'dbus-next';
import { tempDir } from '../helpers/env.js';

/** True when `cmd` is on the PATH. */
export function haveCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** A private session bus of one test file. */
export interface PrivateBus {
  /** The address dbus-daemon printed (`unix:path=...,guid=...`). */
  readonly address: string;
  /** Environment that points `busctl --user`, dbus-next and the daemon at this bus. */
  readonly env: { DBUS_SESSION_BUS_ADDRESS: string };
  readonly pid: number;
  /** SIGTERMs the bus (SIGKILL after 3 s) and waits for it to exit. Safe to call twice. */
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `dbus-daemon --session --nofork` on `<tmp>/bus` and waits for its address. */
export async function startPrivateBus(): Promise<PrivateBus> {
  const dir = tempDir('drover-bus-');
  const socket = path.join(dir, 'bus');
  const child = spawn(
    'dbus-daemon',
    ['--session', '--nofork', '--nopidfile', '--print-address=1', `--address=unix:path=${socket}`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const until = Date.now() + 10_000;
  while (!out.includes('\n') || !fs.existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      running.delete(child);
      throw new Error(`dbus-daemon did not start: ${err || out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const address = out.split('\n')[0]!.trim();
  let stopping: Promise<void> | null = null;
  return {
    address,
    env: { DBUS_SESSION_BUS_ADDRESS: address },
    pid: child.pid!,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 3000);
          await exited;
          clearTimeout(t);
        }
        running.delete(child);
      })();
      return stopping;
    },
  };
}

/** Outcome of a busctl run. */
export interface BusctlResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `busctl --user ARGS` against `bus` (as a user would, with DBUS_SESSION_BUS_ADDRESS set).
 * Asynchronous: an object served by this very process must keep answering meanwhile.
 */
export function busctl(bus: PrivateBus, ...args: string[]): Promise<BusctlResult> {
  return new Promise((resolve) => {
    execFile(
      'busctl',
      ['--user', '--no-pager', ...args],
      { env: { ...process.env, ...bus.env }, encoding: 'utf8', timeout: 20_000 },
      (err, stdout, stderr) => {
        const status = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ status, stdout, stderr });
      },
    );
  });
}

/** `busctl --user --json=short get-property`: the property's value as JSON. */
export async function busctlProperty(
  bus: PrivateBus,
  name: string,
  objectPath: string,
  iface: string,
  prop: string,
): Promise<unknown> {
  const r = await busctl(bus, '--json=short', 'get-property', name, objectPath, iface, prop);
  if (r.status !== 0) throw new Error(`busctl get-property ${prop} failed (${r.status}): ${r.stderr}`);
  return (JSON.parse(r.stdout) as { data: unknown }).data;
}

/** A dbus-next connection to `bus`, connected. The caller disconnects it. */
export async function connectClient(bus: PrivateBus): Promise<dbus.MessageBus> {
  const client = dbus.sessionBus({ busAddress: bus.address.split(',')[0] });
  client.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
  });
  return client;
}

/** dbus-next's name validators (exported by the package, missing from its type declarations). */
export const validators = (
  dbus as unknown as {
    validators: {
      isBusNameValid(name: string): boolean;
      isObjectPathValid(p: string): boolean;
      isInterfaceNameValid(name: string): boolean;
      isMemberNameValid(name: string): boolean;
    };
  }
).validators;
