// hostFacts() on this machine kind: a nested PVM host (kvm_pvm built in, no kvm_intel/kvm_amd), cgroup v1
// controllers plus a cgroup2 mount ("hybrid"), overlayfs, running as root. See shared/probes/PVM.md.
import test from 'ava';
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { hostFacts } from '../src/index.js';

const facts = hostFacts();

test('KVM: present, accessible, PVM flavour, API version 12', (t) => {
  t.is(facts.kvm.path, '/dev/kvm');
  t.true(facts.kvm.present);
  t.is(facts.kvm.present, existsSync('/dev/kvm'));
  t.true(facts.kvm.accessible, facts.kvm.detail);
  t.is(facts.kvm.flavour, 'pvm', facts.kvm.detail);
  t.true(
    existsSync('/sys/module/kvm_pvm') && !existsSync('/sys/module/kvm_intel') && !existsSync('/sys/module/kvm_amd'),
  );
  t.is(facts.kvm.apiVersion, 12);
  t.regex(facts.kvm.detail, /kvm_pvm/);
  t.regex(facts.kvm.detail, /KVM API version 12/);
});

test('cgroup: hybrid v1 layout under /sys/fs/cgroup', (t) => {
  t.true(facts.cgroup.version === 'hybrid' || facts.cgroup.version === 1, String(facts.cgroup.version));
  t.is(facts.cgroup.mountpoint, '/sys/fs/cgroup');
  // Cross-check: v1 controller hierarchies below the mountpoint; in the hybrid layout, a cgroup2 mount too.
  t.true(existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes'));
  const cgroup2 = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' - ')[1]?.startsWith('cgroup2 '));
  t.is(facts.cgroup.version, cgroup2 ? 'hybrid' : 1);
  if (cgroup2) t.is(statfsSync('/sys/fs/cgroup/unified').type, 0x63677270); // CGROUP2_SUPER_MAGIC
});

test('overlayfs, root, kernel', (t) => {
  t.true(facts.overlayfs);
  t.true(readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n'));
  t.true(facts.root);
  t.is(facts.root, process.geteuid?.() === 0);
  t.is(facts.kernel, release());
});

test('hostFacts takes no arguments and returns fresh objects', (t) => {
  const again = hostFacts();
  t.not(again, facts);
  t.deepEqual(again, facts);
});
