// The image commands (pull, images, rmi, inspect, load, save) come from
// @quark/oci as yargs CommandModules; the CLI adds usage examples to their help.
import type { Argv, CommandModule } from 'yargs';
import { createOciCommands, type CliIo } from '@quark/oci';

type Example = [command: string, description: string];

/** Examples and a note for each image command, by the command's first word. */
const HELP: Record<string, { examples: Example[]; epilog?: string }> = {
  pull: {
    examples: [
      ['$0 pull busybox', 'docker.io/library/busybox:latest'],
      ['$0 pull ghcr.io/org/app:1.2 --platform linux/arm64', 'One platform of a multi-platform image'],
      ['$0 pull 127.0.0.1:5000/app@sha256:<digest>', 'By digest, from a loopback registry (plain HTTP allowed)'],
      ['$0 pull --insecure-registry reg.lan:5000 reg.lan:5000/app', 'A registry without (valid) TLS'],
      ['$0 pull --registry-ca ./ca.pem reg.corp:443/app', 'A registry whose certificate a private CA signed'],
    ],
    epilog:
      'Credentials: QUARK_REGISTRY_USERNAME/QUARK_REGISTRY_PASSWORD (for QUARK_REGISTRY_HOST when set), else ' +
      '~/.docker/config.json. Progress goes to stderr (bars on a terminal), the result to stdout.',
  },
  images: {
    examples: [
      ['$0 images', 'A table: repository, tag, image ID, created, size (compressed)'],
      ['$0 images --format json', 'Every field, as JSON'],
      ['$0 images -q', 'Image IDs only'],
    ],
  },
  rmi: {
    examples: [
      ['$0 rmi busybox', 'Untag busybox and delete the content no other image uses'],
      ['$0 rmi 3f57d9401f8d', 'By (short) image ID'],
      ['$0 rmi -f app:1', 'Even when a container root filesystem still uses it'],
    ],
  },
  inspect: {
    examples: [
      ['$0 inspect busybox', 'Names, digests, platform, config, layers (JSON)'],
      ['$0 inspect busybox | jq .Config', 'Entrypoint, Cmd, Env, WorkingDir, User'],
    ],
  },
  load: {
    examples: [
      ['$0 load -i app.tar', 'An OCI archive or a docker-archive (docker save, skopeo copy)'],
      ['$0 load --name example/app < app.tar', 'From stdin; name images the archive tags only'],
    ],
  },
  save: {
    examples: [
      ['$0 save -o app.tar app:1', 'An OCI archive (readable by skopeo and `quark load`)'],
      ['$0 save busybox app:1 > images.tar', 'Several images to stdout'],
    ],
  },
};

function firstWord(c: CommandModule): string {
  const cmd = Array.isArray(c.command) ? c.command[0] : c.command;
  return String(cmd ?? '').split(' ')[0] ?? '';
}

/** Adds examples (and a note) to a command's help. */
function withHelp(c: CommandModule): CommandModule {
  const help = HELP[firstWord(c)];
  if (!help) return c;
  const builder = c.builder;
  return {
    ...c,
    builder: (y: Argv) => {
      if (typeof builder === 'function') builder(y);
      else if (builder) y.options(builder);
      for (const [cmd, what] of help.examples) y.example(cmd, what);
      if (help.epilog) y.epilog(help.epilog);
      return y;
    },
  };
}

/** Docker's names under `image`: ls, pull, rm, inspect, load, save. */
const SUBCOMMANDS: Record<string, string> = {
  images: 'ls',
  pull: 'pull',
  rmi: 'rm',
  inspect: 'inspect',
  load: 'load',
  save: 'save',
};

/**
 * pull, images, rmi, inspect, load, save with examples in their help, and the same commands under `image`
 * (`quark image ls` = `quark images`, `quark image rm` = `quark rmi`, ...) as with docker.
 */
export function imageCommands(io?: CliIo): CommandModule[] {
  // yargs aliases are single words: the oci package's "image ls" alias of images is replaced by `image ls`.
  const top = createOciCommands(io)
    .map(withHelp)
    .map((c) => (firstWord(c) === 'images' ? { ...c, command: 'images' } : c));
  const sub = top.map((c) => {
    const name = firstWord(c);
    const cmd = String(Array.isArray(c.command) ? c.command[0] : c.command);
    return { ...c, command: cmd.replace(name, SUBCOMMANDS[name] ?? name) };
  });
  const group: CommandModule = {
    command: 'image <command>',
    describe: 'The image commands by their docker names: image ls, pull, rm, inspect, load, save',
    builder: (y: Argv) => {
      for (const c of sub) y.command(c);
      return y.demandCommand(1, 'Give an image command; see `quark image --help`.');
    },
    handler: () => undefined,
  };
  return [...top, group];
}
