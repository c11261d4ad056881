import { Args } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';

/** Result of `drover profile set-default --json`. */
export interface ProfileSetDefaultResult {
  configFile: string;
  defaultProfile: string;
  /** The previous default (null: none). */
  previous: string | null;
}

export default class ProfileSetDefault extends DroverCommand<typeof ProfileSetDefault> {
  static override summary = 'Make a profile the default.';
  static override description =
    'The default profile is the one commands act on when neither -p/--profile nor DROVER_PROFILE names one.';
  static override examples = ['<%= config.bin %> profile set-default demo'];
  static override args = {
    name: Args.string({ required: true, description: 'Profile to make the default.' }),
  };

  async run(): Promise<ProfileSetDefaultResult> {
    const { name } = this.args;
    const config = this.loadConfig();
    const previous = config.defaultProfile;
    if (previous !== name) {
      config.setDefaultProfile(name);
      config.save();
    } else {
      config.getProfileRecord(name);
    }
    this.say(previous === name ? `'${name}' is already the default profile.` : `Default profile is now '${name}'.`);
    return { configFile: config.file, defaultProfile: name, previous };
  }
}
