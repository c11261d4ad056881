import { Args } from '../../cli/oclif.js';
import { DroverCommand, formatValue } from '../../cli/base-command.js';
import { profileView, type ProfileView } from '../../config/index.js';

/** Result of `drover profile show --json` (passwords hidden). */
export type ProfileShowResult = ProfileView;

export default class ProfileShow extends DroverCommand<typeof ProfileShow> {
  static override summary = 'Show the settings of a profile.';
  static override description =
    'Shows a profile (NAME, else -p/DROVER_PROFILE, else the default profile): its store, its broker ' +
    '(password hidden), the options it overrides, and where its data and logs live.';
  static override examples = [
    '<%= config.bin %> profile show',
    '<%= config.bin %> profile show demo',
    '<%= config.bin %> profile show -p demo --json',
  ];
  static override args = {
    name: Args.string({ description: 'Profile to show (default: -p, DROVER_PROFILE, or the default profile).' }),
  };

  async run(): Promise<ProfileShowResult> {
    // Without NAME this acts on the current profile, which first use creates.
    const name = this.args.name ?? this.resolveProfile().name;
    const v = profileView(this.loadConfig(), name);
    const rows: Array<[string, string]> = [
      ['name', v.name + (v.default ? ' (default)' : '')],
      ['uuid', v.uuid],
      ['config file', v.configFile],
      ['store', v.storageDisplay],
      ['broker', v.broker.url],
      ['workers on', v.workersOn],
      ['data dir', v.dataDir],
      ['log dir', v.logDir],
    ];
    const opts = Object.entries(v.options);
    rows.push(['options', opts.length === 0 ? '(none set for this profile)' : '']);
    const width = Math.max(...rows.map(([k]) => k.length));
    for (const [k, val] of rows) this.say(`${k.padEnd(width)}  ${val}`.trimEnd());
    for (const [k, val] of opts) this.say(`  ${k} = ${formatValue(val)}`);
    return v;
  }
}
