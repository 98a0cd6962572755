// `quark check`: the host facts that decide whether sandboxes can run here.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { HostFacts } from '@quark/native';
import type { Argv, CommandModule } from 'yargs';
import { findSandboxBinary } from '../sandbox.js';

const run = promisify(execFile);

/** What the in-guest self-test reported (`quark-sandbox --check`). */
export interface GuestCheck {
  ok: boolean;
  flavour?: string;
  syscallsViaPfRedirect?: number;
  syscallsDirect?: number;
  bootMs?: number;
  error?: string;
}

/** The verdict plus everything it was based on. */
export interface CheckReport {
  host: HostFacts;
  sandboxBinary: string | null;
  guest: GuestCheck;
  canRun: boolean;
  problems: string[];
}

/** Boots a sandbox that runs the guest kernel's platform self-test. */
export async function guestCheck(binary: string): Promise<GuestCheck> {
  const t = performance.now();
  try {
    const { stdout } = await run(binary, ['--check'], { timeout: 60_000 });
    const facts = JSON.parse(stdout.trim()) as {
      flavour: string;
      booted: boolean;
      syscalls_via_pf_redirect: number;
      syscalls_direct: number;
    };
    return {
      ok: facts.booted,
      flavour: facts.flavour,
      syscallsViaPfRedirect: facts.syscalls_via_pf_redirect,
      syscallsDirect: facts.syscalls_direct,
      bootMs: Math.round(performance.now() - t),
    };
  } catch (e) {
    const err = e as { stderr?: string; message?: string };
    return { ok: false, error: (err.stderr || err.message || String(e)).trim() };
  }
}

/** Gathers the facts and decides. */
export async function checkHost(): Promise<CheckReport> {
  // Loaded here, not at start-up: `quark run` does not need the addon.
  const { hostFacts } = await import('@quark/native');
  const host = hostFacts();
  const problems: string[] = [];
  if (!host.kvm.present) problems.push('/dev/kvm is missing: enable KVM (load kvm_intel or kvm_amd, or kvm_pvm)');
  else if (!host.kvm.accessible) problems.push(`/dev/kvm is not usable: ${host.kvm.detail}`);
  if (!host.root) problems.push('not running as root: quark-sandbox needs root to create namespaces and mounts');
  let sandboxBinary: string | null = null;
  try {
    sandboxBinary = findSandboxBinary();
  } catch (e) {
    problems.push((e as Error).message);
  }
  let guest: GuestCheck = { ok: false, error: 'not attempted' };
  if (sandboxBinary && host.kvm.accessible) {
    guest = await guestCheck(sandboxBinary);
    if (!guest.ok) problems.push(`a test sandbox did not boot: ${guest.error ?? 'unknown error'}`);
  }
  return { host, sandboxBinary, guest, canRun: problems.length === 0, problems };
}

function flavourNote(f: string): string {
  switch (f) {
    case 'vmx':
    case 'svm':
      return 'hardware virtualization: the guest kernel runs natively';
    case 'pvm':
      return 'kvm_pvm compat mode: guest kernel instructions are emulated (slow supervisor paths)';
    default:
      return 'unknown KVM flavour';
  }
}

/** The human-readable report. */
export function formatReport(r: CheckReport): string {
  const h = r.host;
  const lines = [
    `kvm:        ${h.kvm.present ? (h.kvm.accessible ? 'usable' : 'present, not usable') : 'absent'}` +
      ` (${h.kvm.flavour}: ${flavourNote(h.kvm.flavour)}; API ${h.kvm.apiVersion ?? '-'})`,
    `cgroup:     ${h.cgroup.version === 'none' ? 'none' : `${typeof h.cgroup.version === 'number' ? `v${h.cgroup.version}` : h.cgroup.version} at ${h.cgroup.mountpoint}`}`,
    `overlayfs:  ${h.overlayfs ? 'yes' : 'no'}`,
    `root:       ${h.root ? 'yes' : 'no'}`,
    `kernel:     ${h.kernel}`,
    `sandbox:    ${r.sandboxBinary ?? 'quark-sandbox not found'}`,
  ];
  if (r.guest.ok) {
    lines.push(
      `guest boot: ok in ${r.guest.bootMs} ms; SYSCALL arrives ${
        (r.guest.syscallsViaPfRedirect ?? 0) > 0
          ? 'through the compat-mode #PF redirect'
          : 'directly (VMX/SVM semantics)'
      } (${r.guest.syscallsViaPfRedirect} redirected, ${r.guest.syscallsDirect} direct)`,
    );
  }
  lines.push('');
  if (r.canRun) lines.push('Sandboxes can run here.');
  else {
    lines.push('Sandboxes cannot run here. To fix:');
    for (const p of r.problems) lines.push(`  - ${p}`);
  }
  return lines.join('\n');
}

export const checkCommand: CommandModule<object, { format: 'text' | 'json' }> = {
  command: 'check',
  describe: 'Show the host facts Quark needs and whether sandboxes can run here',
  builder: (y: Argv) =>
    y.option('format', {
      choices: ['text', 'json'] as const,
      default: 'text' as const,
      describe: 'Output format',
    }) as unknown as Argv<{ format: 'text' | 'json' }>,
  handler: async (argv) => {
    const r = await checkHost();
    console.log(argv.format === 'json' ? JSON.stringify(r, null, 2) : formatReport(r));
    process.exitCode = r.canRun ? 0 : 1;
  },
};
