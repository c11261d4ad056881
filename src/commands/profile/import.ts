import fs from 'node:fs';
import readline from 'node:readline';
import { Writable } from 'node:stream';
import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { ConfigError } from '../../errors/index.js';
import {
  fillSecret,
  parseProfileExport,
  profileView,
  validateProfileName,
  type ProfileView,
} from '../../config/index.js';

/** Result of `drover profile import --json`: the imported profile (passwords hidden). */
export interface ProfileImportResult extends ProfileView {
  /** Profiles replaced or removed (with --force). */
  replaced: string[];
}

/** Reads all of standard input. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Asks for a secret on the terminal without echoing it. */
async function askHidden(question: string): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = readline.createInterface({ input: process.stdin, output, terminal: true });
  try {
    return await new Promise<string>((resolve) => {
      rl.question(question, (answer) => resolve(answer));
      muted = true;
    });
  } finally {
    rl.close();
    process.stderr.write('\n');
  }
}

export default class ProfileImport extends DroverCommand<typeof ProfileImport> {
  static override summary = 'Add a profile from a file written by profile export (join it from this machine).';
  static override description =
    "Adds the profile in FILE (or standard input with '-') to the configuration file with the same uuid, so " +
    "this machine's workers consume the profile's queues and its store accepts them. Refused when a profile of " +
    'that name exists (choose another with --name) or a profile here already has that uuid (it is the same ' +
    'profile), unless --force: then the profile of that name is overwritten and one with that uuid removed ' +
    'from the configuration (its data is left in place). A password the export left out is taken from ' +
    'DROVER_POSTGRES_PASSWORD (store) or DROVER_BROKER_PASSWORD (broker), else asked for on a terminal, else ' +
    'the import fails naming what is missing. A bad file (not JSON, another format version, a missing or ' +
    'invalid field) is refused naming the file and the field; nothing is written then.';
  static override examples = [
    '<%= config.bin %> profile import prod.json',
    'DROVER_BROKER_PASSWORD=secret DROVER_POSTGRES_PASSWORD=secret <%= config.bin %> profile import prod.json',
    '<%= config.bin %> profile import prod.json --name prod-copy',
    'ssh host1 drover profile export prod | <%= config.bin %> profile import -',
  ];
  static override args = {
    file: Args.string({ required: true, description: "Export file, or '-' for standard input." }),
  };
  static override flags = {
    name: Flags.string({ description: 'Name of the profile here (default: the name in the file).' }),
    force: Flags.boolean({
      char: 'f',
      description: 'Replace a profile of the same name, and remove one with the same uuid from the configuration.',
    }),
  };

  async run(): Promise<ProfileImportResult> {
    const file = this.args.file;
    let text: string;
    if (file === '-') {
      text = await readStdin();
    } else {
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (err) {
        throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
      }
    }
    const parsed = parseProfileExport(text, file);
    const name = this.flags.name ?? parsed.name;
    if (this.flags.name !== undefined) {
      try {
        validateProfileName(this.flags.name);
      } catch (err) {
        throw new ConfigError(`--name: ${(err as Error).message}`);
      }
    }
    // Refuse a clash before asking for any password (in memory only: nothing is saved).
    this.loadConfig().importProfile(name, parsed.record, { force: this.flags.force, source: file });

    let record = parsed.record;
    const missing = parsed.missing.filter((m) => process.env[m.env] === undefined || process.env[m.env] === '');
    const canAsk = file !== '-' && this.interactive();
    if (missing.length > 0 && !canAsk) {
      const list = missing.map((m) => `${m.what} (${m.field}: set ${m.env})`).join(', ');
      throw new ConfigError(
        `${file === '-' ? 'standard input' : file}: the export left out ${list}; set the variable` +
          `${missing.length > 1 ? 's' : ''}${file === '-' ? '' : ' or run the import on a terminal to be asked'}; nothing was imported`,
      );
    }
    const seen = new Map<string, string>();
    for (const m of parsed.missing) {
      let pw = process.env[m.env];
      if (pw === undefined || pw === '') {
        pw = seen.get(m.env) ?? (await askHidden(`${m.what} for profile '${name}' (${m.field}): `));
        if (pw === '') throw new ConfigError(`no ${m.what} given; nothing was imported`);
      }
      seen.set(m.env, pw);
      record = fillSecret(record, m, pw);
    }
    const fresh = this.loadConfig();
    const replaced = fresh.importProfile(name, record, { force: this.flags.force, source: file });
    fresh.save();
    const view = profileView(fresh, name);
    this.say(`Imported profile '${name}' (uuid ${view.uuid}) into ${fresh.file}`);
    if (replaced.length > 0) this.say(`  replaced: ${replaced.join(', ')} (their data is left in place)`);
    this.say(`  store:  ${view.storageDisplay}`);
    this.say(`  broker: ${view.broker.url}`);
    this.say(`  workers: ${view.workersOn}`);
    if (record.storage.backend === 'sqlite' && record.broker.kind !== 'local') {
      this.notice(
        `Note: the profile's store is a SQLite file (${record.storage.path}); workers on several machines need ` +
          'one shared store (PostgreSQL): this machine uses the file at that path here.',
      );
    }
    return { ...view, replaced };
  }
}
