import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { InputError } from '../../errors/index.js';
import { describeStorage, removeProfileData, type RemovedData } from '../../config/index.js';

/** Result of `drover profile delete --json`. */
export interface ProfileDeleteResult {
  name: string;
  configFile: string;
  /** The default profile after the deletion (null: none; choose one with `profile set-default`). */
  defaultProfile: string | null;
  /** Paths removed (only with --force). */
  removed: string[];
  /** Data left in place, with the reason. */
  kept: Array<{ what: string; reason: string }>;
}

export default class ProfileDelete extends DroverCommand<typeof ProfileDelete> {
  static override summary = 'Delete a profile.';
  static override description =
    'Removes the profile from the configuration file. Without --force it asks for confirmation on a terminal ' +
    'and refuses when there is none, and keeps the SQLite store. With --force it does not ask and also ' +
    "removes the profile's SQLite store, its data, log and runtime directories and, when its broker is RabbitMQ " +
    'and reachable, its queues and exchanges (one still in use by another machine is kept and said so). A ' +
    'PostgreSQL database is never touched. A profile whose daemon is running is not deleted: stop it first.';
  static override examples = [
    '<%= config.bin %> profile delete scratch',
    '<%= config.bin %> profile delete scratch --force',
  ];
  static override args = {
    name: Args.string({ required: true, description: 'Profile to delete.' }),
  };
  static override flags = {
    force: Flags.boolean({
      char: 'f',
      description: "Do not ask; also remove the profile's SQLite store, directories and RabbitMQ queues.",
    }),
  };

  async run(): Promise<ProfileDeleteResult> {
    const { name } = this.args;
    const config = this.loadConfig();
    const record = config.getProfileRecord(name);
    const force = this.flags.force;
    if (!force) {
      if (!this.interactive()) {
        throw new InputError(
          `refusing to delete profile '${name}' without confirmation (not a terminal); pass --force to delete it ` +
            'and its SQLite data',
        );
      }
      const ok = await this.confirm(
        `Delete profile '${name}' (store ${describeStorage(record.storage)}) from ${config.file}? ` +
          'Its data is kept.',
      );
      if (!ok) throw new InputError(`not deleting profile '${name}'`);
    }
    const profile = config.getProfile(name);
    const { DaemonClient } = await import('../../client/index.js');
    const daemon = new DaemonClient(profile);
    if (daemon.isDaemonRunning) {
      throw new InputError(
        `the daemon of profile '${name}' is running (pid ${daemon.daemonPid}); stop it first ` +
          `(drover daemon stop --profile ${name}), nothing was deleted`,
      );
    }
    config.deleteProfile(name);
    config.save();
    let data: RemovedData;
    if (force) {
      data = removeProfileData(config, name, record);
      const { removeProfileBroker } = await import('../../api/profile-cleanup.js');
      const broker = await removeProfileBroker(profile);
      data.removed.push(...broker.removed);
      data.kept.push(...broker.kept);
    } else {
      data = {
        removed: [],
        kept: [{ what: describeStorage(record.storage), reason: 'kept without --force' }],
      };
    }
    this.say(`Deleted profile '${name}' from ${config.file}.`);
    for (const r of data.removed) this.say(`  removed ${r}`);
    for (const k of data.kept) this.say(`  kept ${k.what} (${k.reason})`);
    if (config.defaultProfile === null && config.profileNames.length > 0) {
      this.say(`There is no default profile now; choose one with 'drover profile set-default NAME'.`);
    }
    return { name, configFile: config.file, defaultProfile: config.defaultProfile, ...data };
  }
}
