import { DroverCommand, formatTable } from '../../cli/base-command.js';
import { profileView, type ProfileView } from '../../config/index.js';

/** Result of `drover profile list --json` (passwords hidden). */
export interface ProfileListResult {
  configFile: string;
  defaultProfile: string | null;
  profiles: ProfileView[];
}

export default class ProfileList extends DroverCommand<typeof ProfileList> {
  static override summary = 'List the profiles in the configuration file.';
  static override description = 'The default profile is marked with *. Passwords in URLs are shown as ***.';
  static override examples = ['<%= config.bin %> profile list', '<%= config.bin %> profile list --json'];

  async run(): Promise<ProfileListResult> {
    const config = this.loadConfig();
    const profiles = config.profileNames.map((name) => profileView(config, name));
    if (profiles.length === 0) {
      this.say(`No profiles in ${config.file}; create one with 'drover profile setup NAME'.`);
    } else {
      this.say(
        formatTable(
          ['', 'NAME', 'STORE', 'BROKER'],
          profiles.map((p) => [p.default ? '*' : '', p.name, p.storageDisplay, p.broker.url]),
        ),
      );
      if (config.defaultProfile === null)
        this.say(`(no default profile; choose one with 'drover profile set-default NAME')`);
    }
    return { configFile: config.file, defaultProfile: config.defaultProfile, profiles };
  }
}
