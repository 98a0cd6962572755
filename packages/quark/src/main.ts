// The quark command line.
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import type { hideBin as HideBin } from 'yargs/helpers';
import { checkCommand } from './commands/check.js';
import { createRunCommand, isRootfsRun, normalizeRunArgs, runOptions, valueOptions } from './commands/run.js';

/** Exit status of a command that failed (usage errors give 125, like `quark run`'s own failures). */
const EXIT_COMMAND_FAILED = 1;
const EXIT_USAGE = 125;

// yargs' CommonJS build: its ESM build wraps help text in the middle of words (cliui's ESM wrap ignores
// word boundaries), the CommonJS one wraps between words.
const require = createRequire(import.meta.url);
const yargs = require('yargs/yargs') as (args: string[]) => Argv;
const { hideBin } = require('yargs/helpers') as { hideBin: typeof HideBin };

const raw = hideBin(process.argv);
// The image code (and the addon it loads) only when a command may need it: `quark run --rootfs` and
// `quark check` start without it.
const lean = isRootfsRun(raw) || raw[0] === 'check';
const oci = lean ? undefined : await import('@quark/oci');
const globalOptions = oci?.ociGlobalOptions ?? {};
const { imageCommands } = lean ? { imageCommands: () => [] } : await import('./commands/images.js');
const args = normalizeRunArgs(raw, valueOptions({ ...globalOptions, ...runOptions }));
let usageError = false;

try {
  await yargs(args)
    .scriptName('quark')
    .usage(
      '$0 <command> [options]\n\nQuark runs containers in lightweight KVM virtual machines with their own guest kernel.',
    )
    .options(globalOptions)
    .group(Object.keys(globalOptions), 'Image store and registries:')
    .command(createRunCommand(globalOptions))
    .command(imageCommands())
    .command(checkCommand)
    .demandCommand(1, 'Give a command; see `quark --help`.')
    .strict()
    // Repeated options (-e A -e B) take one value each, so they never swallow an image name or a command.
    .parserConfiguration({ 'populate--': true, 'greedy-arrays': false })
    .example('$0 run busybox echo hello', 'Pull busybox when missing and run a command in a sandbox')
    .example('$0 run --rootfs ./rootfs -- /bin/echo hello', 'Run a program from a directory')
    .example('$0 pull 127.0.0.1:5000/app:1', 'Pull an image (plain HTTP is allowed for loopback registries)')
    .example('$0 images', 'List local images')
    .example('$0 check', 'Can sandboxes run on this host? What to fix if not')
    .epilog(
      'Images live under --root (default /var/lib/quark as root, else $XDG_DATA_HOME/quark). ' +
        '`quark COMMAND --help` shows the options and examples of a command.',
    )
    .help()
    .alias('h', 'help')
    .version()
    .alias('V', 'version')
    .wrap(Math.min(120, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err;
      usageError = true;
      throw new Error(`${msg}\nSee \`quark --help\`.`);
    })
    .parseAsync();
} catch (e) {
  console.error(`quark: ${e instanceof Error ? e.message : String(e)}`);
  if (process.env['QUARK_DEBUG'] && e instanceof Error && e.stack) console.error(e.stack);
  process.exitCode = usageError ? EXIT_USAGE : EXIT_COMMAND_FAILED;
}
