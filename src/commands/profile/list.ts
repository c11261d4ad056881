import { DroverCommand, formatTable } from '../../cli/base-command.js';
import { Config } from '../../config/index.js';

/** Result of `drover profile list --json`. */
export interface ProfileListResult {
  configFile: string;
  defaultProfile: string | null;
  profiles: Array<{ name: string; default: boolean; uuid: string; storage: string; broker: string }>;
}

export default class ProfileList extends DroverCommand<typeof ProfileList> {
  static override summary = 'List the profiles in the configuration file.';
  static override examples = ['<%= config.bin %> profile list', '<%= config.bin %> profile list --json'];

  async run(): Promise<ProfileListResult> {
    const config = Config.load();
    const profiles = config.profileNames.map((name) => {
      const p = config.getProfile(name);
      return {
        name,
        default: name === config.defaultProfile,
        uuid: p.uuid,
        storage: p.storage.backend === 'sqlite' ? `sqlite:${p.storage.path}` : 'postgres',
        broker: p.broker.displayUrl,
      };
    });
    if (profiles.length === 0) this.say(`No profiles in ${config.file}; create one with 'drover profile setup NAME'.`);
    else
      this.say(
        formatTable(
          ['', 'NAME', 'STORAGE', 'BROKER'],
          profiles.map((p) => [p.default ? '*' : '', p.name, p.storage, p.broker]),
        ),
      );
    return { configFile: config.file, defaultProfile: config.defaultProfile, profiles };
  }
}
