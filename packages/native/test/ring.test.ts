// Shared-memory channels (createRing/attachRing, createStream/attachStream)
// between this process and a real second node process (test/_helpers/ring-peer.ts),
// the handover descriptor passed as the child's fd 3.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { attachRing, attachStream, createRing, createStream, type ShmChannel } from '../src/index.js';

const peerScript = join(dirname(fileURLToPath(import.meta.url)), '_helpers', 'ring-peer.ts');

/** Starts the peer with `fd` as its descriptor 3, then closes our copy of `fd`. */
function peer(role: string, fd: number | null): { child: ChildProcess; exit: Promise<number | string> } {
  if (fd === null) throw new Error('the creating side must have a handover descriptor');
  const child = spawn(process.execPath, ['--import=tsx', '--conditions=quark-source', peerScript, role], {
    stdio: ['ignore', 'pipe', 'inherit', fd],
  });
  closeSync(fd);
  const exit = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  return { child, exit };
}

/** Reads messages until the peer ends its direction. */
async function drain(r: { pop(): Buffer | null } & ShmChannel, out: Buffer[]): Promise<void> {
  for (;;) {
    const m = r.pop();
    if (m !== null) {
      out.push(m);
      continue;
    }
    if (r.ended()) return;
    await r.wait();
  }
}

test('messages cross to another process and back in order, across wraparound and full/empty edges', async (t) => {
  // 4 slots of 24 bytes, 3000 messages of 0..24 bytes each way: every slot
  // wraps hundreds of times and both sides keep hitting "full" and "empty".
  const r = createRing({ slots: 4, slotSize: 24 });
  t.is(r.kind, 'messages');
  t.is(r.slots, 4);
  t.is(r.slotSize, 24);
  t.is(typeof r.fd, 'number');
  const { exit } = peer('echo-ring', r.fd);
  const sent: Buffer[] = [];
  for (let i = 0; i < 3000; i++) sent.push(Buffer.from(`${i}:${'x'.repeat(i % 20)}`.slice(0, i % 25)));
  const received: Buffer[] = [];
  const reader = drain(r, received);
  let fulls = 0;
  for (const m of sent) {
    while (!r.push(m)) {
      fulls++;
      await r.waitWritable();
    }
  }
  r.end();
  await reader;
  t.is(received.length, sent.length);
  const expected = sent.map((m) => Buffer.concat([m, Buffer.from('!')]).subarray(0, 24));
  const firstBad = received.findIndex((m, i) => !m.equals(expected[i] ?? Buffer.alloc(0)));
  t.is(firstBad, -1, `message ${firstBad} differs`);
  t.true(fulls > 0, 'the ring was full at times');
  t.true(r.ended());
  t.is(r.pop(), null);
  r.close();
  t.is(await exit, 0);
});

test('a byte stream crosses to another process and back', async (t) => {
  const s = createStream({ capacity: 64 });
  t.is(s.kind, 'stream');
  t.is(s.capacity, 64);
  const { exit } = peer('echo-stream', s.fd);
  const data = Buffer.alloc(200_000);
  for (let i = 0; i < data.length; i++) data[i] = 0x61 + (i % 26);
  const chunks: Buffer[] = [];
  const reader = (async () => {
    for (;;) {
      const b = s.read(500);
      if (b !== null) {
        chunks.push(b);
        continue;
      }
      if (s.ended()) return;
      await s.wait();
    }
  })();
  let rest = data;
  while (rest.length > 0) {
    const n = s.write(rest.subarray(0, 777));
    rest = rest.subarray(n);
    if (n === 0) await s.waitWritable();
  }
  s.end();
  await reader;
  const back = Buffer.concat(chunks);
  t.is(back.length, data.length);
  t.true(back.equals(Buffer.from(data.toString('latin1').toUpperCase(), 'latin1')));
  s.close();
  t.is(await exit, 0);
});

test('a killed peer fails a pending wait with ERR_SHMQ_PEER_GONE within a second', async (t) => {
  const r = createRing({ slots: 8, slotSize: 64 });
  const { child, exit } = peer('push-and-hang', r.fd);
  await new Promise<void>((resolve) => child.stdout?.once('data', () => resolve()));
  const got: string[] = [];
  for (let m = r.pop(); m !== null; m = r.pop()) got.push(m.toString());
  t.deepEqual(got, ['last words 0', 'last words 1', 'last words 2'], 'messages sent before the death arrive');
  const pending = r.wait();
  const killedAt = performance.now();
  child.kill('SIGKILL');
  const e = await t.throwsAsync(pending);
  const ms = performance.now() - killedAt;
  t.is((e as Error & { code?: string }).code, 'ERR_SHMQ_PEER_GONE');
  t.regex(e?.message ?? '', /peer process is gone/);
  t.true(ms < 1000, `noticed after ${ms.toFixed(0)} ms`);
  t.log(`peer death noticed after ${ms.toFixed(1)} ms`);
  // Later waits fail at once too; nothing hangs.
  const again = await t.throwsAsync(r.wait());
  t.is((again as Error & { code?: string }).code, 'ERR_SHMQ_PEER_GONE');
  t.is(await exit, 'SIGKILL');
  r.close();
});

test('in one process: immediate waits, closing, and clear errors for misuse', async (t) => {
  const a = createRing({ slots: 2, slotSize: 8 });
  const b = attachRing(a.fd ?? -1);
  t.is(b.fd, null);
  t.deepEqual([b.slots, b.slotSize], [2, 8]);
  // A wait with data already there resolves at once; one without resolves on the push.
  t.true(a.push(Buffer.from('one')));
  await b.wait();
  t.is(b.pop()?.toString(), 'one');
  const later = b.wait();
  setTimeout(() => a.push(Buffer.from('two')), 50);
  await later;
  t.is(b.pop()?.toString(), 'two');
  // Full: push says false, waitWritable resolves after the peer pops.
  t.true(a.push(Buffer.from('3')));
  t.true(a.push(Buffer.from('4')));
  t.false(a.push(Buffer.from('5')));
  const room = a.waitWritable();
  setTimeout(() => b.pop(), 50);
  await room;
  t.true(a.push(Buffer.from('5')));
  // Misuse.
  t.throws(() => a.push(Buffer.alloc(9)), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => createRing({ slots: 3, slotSize: 8 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => createRing({ slots: 4, slotSize: 0 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => createStream({ capacity: 100 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
  const s = createStream({ capacity: 64 });
  t.throws(() => attachRing(s.fd ?? -1), { instanceOf: TypeError, message: /use attachStream/ });
  s.close();
  // The peer closing its reading side makes our writes fail with a clear error.
  b.close();
  t.throws(() => a.push(Buffer.from('x')), { code: 'ERR_SHMQ_CLOSED', message: /peer closed its end/ });
  // ... and ends its direction (it sent nothing): wait() resolves at once and ended() is true.
  await a.wait();
  t.true(a.ended());
  t.is(a.pop(), null);
  a.close();
  // A pending wait is rejected by close(); later calls fail clearly.
  const c = createRing({ slots: 2, slotSize: 8 });
  const d = attachRing(c.fd ?? -1);
  const pending = c.wait();
  c.close();
  await t.throwsAsync(pending, { code: 'ERR_SHMQ_CLOSED' });
  t.throws(() => c.pop(), { code: 'ERR_SHMQ_CLOSED', message: /closed with close\(\)/ });
  await t.throwsAsync(c.wait(), { code: 'ERR_SHMQ_CLOSED' });
  await d.wait();
  t.true(d.ended(), 'the peer sees the end of the closed side');
  d.close();
});

test('stream ends and attach errors', async (t) => {
  const a = createStream({ capacity: 128 });
  const b = attachStream(a.fd ?? -1);
  t.is(a.write(Buffer.from('hello')), 5);
  a.end();
  await b.wait();
  t.is(b.read()?.toString(), 'hello');
  t.true(b.ended());
  t.is(b.read(), null);
  a.close();
  b.close();
  t.throws(() => attachRing(1_000_000), { code: 'EBADF' });
  t.throws(() => attachRing(-1), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
});
