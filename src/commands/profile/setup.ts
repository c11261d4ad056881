import { Args, Flags } from '../../cli/oclif.js';
import { DroverCommand } from '../../cli/base-command.js';
import { profileView, type ProfileView } from '../../config/index.js';

/** Result of `drover profile setup --json`: the new profile (passwords hidden). */
export type ProfileSetupResult = ProfileView;

export default class ProfileSetup extends DroverCommand<typeof ProfileSetup> {
  static override summary = 'Create a profile.';
  static override description =
    'Adds a profile to the configuration file: a SQLite store under the data directory (or a PostgreSQL ' +
    'database) and a message bus: `local` (the default: the daemon itself carries tasks, nothing else to ' +
    'install; workers run on this machine only) or `rabbitmq` (default amqp://guest:guest@127.0.0.1:5672; ' +
    'for workers on several machines). The first profile becomes the default. Nothing is created in the ' +
    'store or the broker until the profile is used.';
  static override examples = [
    '<%= config.bin %> profile setup demo',
    '<%= config.bin %> profile setup prod --storage postgres --postgres-url postgres://drover:secret@db/drover --broker rabbitmq --broker-url amqp://drover:secret@mq:5672/drover --set-default',
    '<%= config.bin %> profile setup scratch --sqlite-path ./scratch.sqlite --json',
  ];
  static override args = {
    name: Args.string({
      required: true,
      description: "Profile name: letters, digits, '_', '-', '.'; not starting with '.' or '-'; at most 64 characters.",
    }),
  };
  static override flags = {
    storage: Flags.option({
      options: ['sqlite', 'postgres'] as const,
      description: 'Store backend (default: sqlite, or postgres when --postgres-url is given).',
    })(),
    'postgres-url': Flags.string({ description: 'PostgreSQL connection string (with --storage postgres).' }),
    'sqlite-path': Flags.string({
      description: 'SQLite file (default: processes.sqlite in the profile data directory).',
    }),
    broker: Flags.string({
      options: ['local', 'rabbitmq'],
      description: 'Message bus (default: local, or rabbitmq when --broker-url is given).',
    }),
    'broker-url': Flags.string({
      description: 'RabbitMQ URL (with --broker rabbitmq; default amqp://guest:guest@127.0.0.1:5672).',
    }),
    'set-default': Flags.boolean({ description: 'Make the new profile the default.' }),
  };

  async run(): Promise<ProfileSetupResult> {
    const { name } = this.args;
    const config = this.loadConfig();
    config.setupProfile(name, {
      storage: this.flags.storage,
      postgresUrl: this.flags['postgres-url'],
      sqlitePath: this.flags['sqlite-path'],
      broker: this.flags.broker as 'local' | 'rabbitmq' | undefined,
      brokerUrl: this.flags['broker-url'],
      setDefault: this.flags['set-default'],
    });
    config.save();
    const view = profileView(config, name);
    this.say(`Created profile '${name}'${view.default ? ' (default)' : ''} in ${config.file}`);
    this.say(`  store:  ${view.storageDisplay}`);
    this.say(`  broker: ${view.broker.url}`);
    this.say(`  workers: ${view.workersOn}`);
    return view;
  }
}
