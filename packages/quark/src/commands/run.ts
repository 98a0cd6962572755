// `quark run`: run a program from a root filesystem in a sandbox.
import type { Argv, CommandModule } from 'yargs';
import { logPathFor } from '../logs.js';
import { EXIT_SANDBOX_FAILED, newSandboxId, runSandbox, withDefaultPath } from '../sandbox.js';

export interface RunArgs {
  rootfs?: string;
  'read-only': boolean;
  cpus: number;
  memory: string;
  env: string[];
  cwd: string;
  user?: string;
  hostname?: string;
  'pids-limit': number;
  net: 'none' | 'host';
  debug: boolean;
  log?: string;
  id?: string;
  command: string[];
  /** Arguments after `--` (yargs' populate-- setting). */
  '--'?: (string | number)[];
}

export const runCommand: CommandModule<object, RunArgs> = {
  command: 'run [command..]',
  describe: 'Run a program in a new sandbox (a KVM VM with the Quark guest kernel)',
  builder: (y: Argv) =>
    y
      .usage('$0 run --rootfs DIR [options] -- COMMAND [ARGS...]')
      .option('rootfs', { type: 'string', describe: 'Root filesystem directory of the container', demandOption: false })
      .option('read-only', { type: 'boolean', default: false, describe: 'Serve the root filesystem read-only' })
      .option('cpus', { type: 'number', default: 1, describe: 'Virtual CPUs' })
      .option('memory', { type: 'string', default: '256M', describe: 'Guest memory (e.g. 128M, 1G)' })
      .option('env', {
        alias: 'e',
        type: 'string',
        array: true,
        default: [] as string[],
        describe: "Environment variable K=V (repeatable; PATH defaults to Docker's)",
      })
      .option('cwd', { alias: 'w', type: 'string', default: '/', describe: 'Working directory inside the sandbox' })
      .option('user', { alias: 'u', type: 'string', describe: 'UID[:GID] of the program (default 0:0)' })
      .option('hostname', { type: 'string', describe: 'Hostname inside the sandbox (default: the sandbox id)' })
      .option('pids-limit', { type: 'number', default: 1024, describe: 'Most tasks inside the sandbox' })
      .option('net', {
        choices: ['none', 'host'] as const,
        default: 'none' as const,
        describe: "Network: a fresh namespace (none) or the host's",
      })
      .option('debug', { type: 'boolean', default: false, describe: 'Verbose guest-kernel log; print the log path' })
      .option('log', { type: 'string', describe: 'Log file (default: $QUARK_LOG, or one file per sandbox)' })
      .option('id', { type: 'string', describe: 'Sandbox id (default: random)' })
      .positional('command', {
        type: 'string',
        array: true,
        default: [] as string[],
        describe: 'Program and arguments',
      })
      .example('$0 run --rootfs ./rootfs -- /bin/echo hello', 'Print hello from a sandbox')
      .example('$0 run --rootfs ./rootfs --cpus 2 --memory 512M -e FOO=1 -- /app', 'Two vCPUs, 512 MiB, one variable')
      .epilog(
        "Exit status: the program's; 128+N if killed by signal N; 125 if the sandbox failed; 126/127 if the program " +
          "cannot be executed / was not found. Diagnostics go to the log file, never to the program's output.",
      ) as unknown as Argv<RunArgs>,
  handler: async (argv) => {
    process.exitCode = await run(argv);
  },
};

/** Runs the command; returns the exit status. */
export async function run(argv: RunArgs): Promise<number> {
  const command = [...argv.command, ...(argv['--'] ?? [])].map(String);
  if (!argv.rootfs) {
    console.error('quark run: --rootfs DIR is required (running images by name comes with `quark pull`)');
    return EXIT_SANDBOX_FAILED;
  }
  if (command.length === 0) {
    console.error('quark run: no command given: quark run --rootfs DIR -- COMMAND [ARGS...]');
    return EXIT_SANDBOX_FAILED;
  }
  const id = argv.id ?? newSandboxId();
  const log = argv.log ?? logPathFor(id);
  if (argv.debug) console.error(`quark: sandbox ${id}, log ${log}`);
  const result = await runSandbox({
    rootfs: argv.rootfs,
    readOnly: argv['read-only'],
    cpus: argv.cpus,
    memory: argv.memory,
    env: withDefaultPath(argv.env.map(String)),
    cwd: argv.cwd,
    user: argv.user,
    hostname: argv.hostname,
    pidsLimit: argv['pids-limit'],
    net: argv.net,
    debug: argv.debug,
    log,
    id,
    argv: command,
  });
  return result.status;
}
