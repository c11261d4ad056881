import path from 'node:path';
import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { exportProfile, serializeProfileExport, type ProfileExport } from '../../config/index.js';
import { writeFileAtomicSync } from '../../util/index.js';

/** Result of `drover profile export --json`: the export itself, or where it was written with --output. */
export type ProfileExportResult =
  ProfileExport | { name: string; uuid: string; file: string; secretsIncluded: boolean; mode: string };

export default class ProfileExportCommand extends DroverCommand<typeof ProfileExportCommand> {
  static override summary = 'Write one profile as a file another machine can import.';
  static override description =
    'Writes the profile NAME as JSON (format version, name, uuid, store and broker settings, the options set ' +
    'for it; nothing of other profiles and no global options) to --output or standard output. Another machine ' +
    "joins the profile with 'drover profile import FILE': same uuid, so its workers consume the same queues " +
    'and its store check (docs/store.md) accepts the store. Passwords in the store and broker URLs are replaced ' +
    'by DROVER-PASSWORD-REMOVED unless --include-secrets (the import then takes them from ' +
    'DROVER_POSTGRES_PASSWORD / DROVER_BROKER_PASSWORD or asks); with --include-secrets the file is written ' +
    'with mode 0600.';
  static override examples = [
    '<%= config.bin %> profile export prod --output prod.json',
    '<%= config.bin %> profile export prod --include-secrets --output /secure/prod.json',
    '<%= config.bin %> profile export prod | ssh host2 drover profile import -',
  ];
  static override args = {
    name: Args.string({ required: true, description: 'Profile to export.' }),
  };
  static override flags = {
    output: Flags.string({
      char: 'o',
      description: 'File to write (replaced atomically; default: standard output).',
      helpValue: '<file>',
    }),
    'include-secrets': Flags.boolean({
      description: 'Keep the passwords of the store and broker URLs (the file is then written 0600).',
    }),
  };

  async run(): Promise<ProfileExportResult> {
    const config = this.loadConfig();
    const secrets = this.flags['include-secrets'] === true;
    const doc = exportProfile(config, this.args.name, { includeSecrets: secrets });
    const text = serializeProfileExport(doc);
    const out = this.flags.output;
    if (out === undefined || out === '-') {
      if (!this.jsonEnabled()) process.stdout.write(text);
      return doc;
    }
    const file = path.resolve(out);
    const mode = secrets ? 0o600 : 0o644;
    writeFileAtomicSync(file, text, mode);
    this.say(
      `Exported profile '${doc.name}' (uuid ${doc.uuid}) to ${file}` +
        (secrets
          ? ' with its passwords (mode 0600: keep it private)'
          : ' (passwords replaced by DROVER-PASSWORD-REMOVED)'),
    );
    this.say(`On the other machine: drover profile import ${path.basename(file)}`);
    return { name: doc.name, uuid: doc.uuid, file, secretsIncluded: secrets, mode: `0${mode.toString(8)}` };
  }
}
