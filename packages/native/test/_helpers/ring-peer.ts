// The other process of test/ring.test.ts: attaches to the channel handed over
// as descriptor 3 and plays one role. Run with the test's node options
// (tsx, quark-source). Usage: ring-peer.ts echo-ring|echo-stream|push-and-hang
import { attachRing, attachStream } from '../../src/index.js';

const role = process.argv[2];

async function echoRing(): Promise<void> {
  const r = attachRing(3);
  for (;;) {
    const m = r.pop();
    if (m === null) {
      if (r.ended()) break;
      await r.wait();
      continue;
    }
    const reply = Buffer.concat([m, Buffer.from('!')]).subarray(0, r.slotSize);
    while (!r.push(reply)) await r.waitWritable();
  }
  r.end();
  r.close();
}

async function echoStream(): Promise<void> {
  const s = attachStream(3);
  for (;;) {
    const b = s.read(1000);
    if (b === null) {
      if (s.ended()) break;
      await s.wait();
      continue;
    }
    let rest = Buffer.from(b.map((c) => (c >= 0x61 && c <= 0x7a ? c - 0x20 : c)));
    while (rest.length > 0) {
      const n = s.write(rest);
      rest = rest.subarray(n);
      if (rest.length > 0) await s.waitWritable();
    }
  }
  s.end();
  s.close();
}

async function pushAndHang(): Promise<void> {
  const r = attachRing(3);
  for (let i = 0; i < 3; i++) r.push(Buffer.from(`last words ${i}`));
  process.stdout.write('pushed\n');
  // Never closes the ring: the test kills this process.
  setInterval(() => {}, 1000);
}

const roles: Record<string, () => Promise<void>> = {
  'echo-ring': echoRing,
  'echo-stream': echoStream,
  'push-and-hang': pushAndHang,
};
const run = role ? roles[role] : undefined;
if (!run) {
  process.stderr.write(`usage: ring-peer.ts ${Object.keys(roles).join('|')}\n`);
  process.exit(2);
}
await run();
