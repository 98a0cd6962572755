// The quark command line.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { checkCommand } from './commands/check.js';
import { runCommand } from './commands/run.js';

await yargs(hideBin(process.argv))
  .scriptName('quark')
  .usage(
    '$0 <command> [options]\n\nQuark runs containers in lightweight KVM virtual machines with their own guest kernel.',
  )
  .command(runCommand)
  .command(checkCommand)
  .demandCommand(1, 'Give a command; see `quark --help`.')
  .strict()
  .parserConfiguration({ 'populate--': true })
  .help()
  .alias('h', 'help')
  .version()
  .alias('V', 'version')
  .wrap(Math.min(120, process.stdout.columns || 100))
  .fail((msg, err) => {
    if (err) throw err;
    console.error(`quark: ${msg}\nSee \`quark --help\`.`);
    process.exit(125);
  })
  .parseAsync();
