// crates/napi, exercised from JS through the test-only addon crates/napi-selftest.
import test from 'ava';
import { setImmediate as tick } from 'node:timers/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import { loadSelftest } from './_helpers/selftest.js';

const st = loadSelftest();

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Collects garbage until `done()` or 100 rounds; finalizers run from the event loop after a GC. */
async function collectUntil(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) {
    gc();
    await tick();
  }
}

test('sync function converts checked arguments', (t) => {
  t.deepEqual(st.checkArgs('x', 3, true, Buffer.from([1, 2, 3]), 7), {
    name: 'x',
    count: 3,
    flag: true,
    length: 3,
    sum: 6,
    optional: 7,
  });
  t.is(st.checkArgs('x', 0, false, new Uint8Array(0)).optional, null);
  t.deepEqual(st.strings(['a', 'bé']), ['A', 'BÉ']);
  t.is(st.bigAdd(2n ** 63n, 5n), 2n ** 63n + 5n);
  t.deepEqual([...st.echoBytes(Buffer.from('abc'))], [...Buffer.from('cba')]);
  t.is(st.answer, 42);
});

test('bad argument types throw TypeError naming the argument', (t) => {
  const bad = (f: () => unknown, code: string, message: string, type: typeof Error = TypeError) => {
    const e = t.throws(f, { instanceOf: type });
    t.is((e as NodeJS.ErrnoException).code, code);
    t.is(e?.message, message);
  };
  const call =
    (...args: unknown[]) =>
    () =>
      (st.checkArgs as (...a: unknown[]) => unknown)(...args);
  bad(call(5), 'ERR_INVALID_ARG_TYPE', 'The "name" argument must be of type string. Received type number (5)');
  bad(call(), 'ERR_INVALID_ARG_TYPE', 'The "name" argument must be of type string. Received undefined');
  bad(
    call('x', '3'),
    'ERR_INVALID_ARG_TYPE',
    'The "count" argument must be of type number. Received type string (\'3\')',
  );
  bad(
    call('x', 1, true, [1, 2]),
    'ERR_INVALID_ARG_TYPE',
    'The "data" argument must be an instance of Buffer or Uint8Array. Received an instance of Array',
  );
  bad(
    call('x', 1, 1, Buffer.alloc(0)),
    'ERR_INVALID_ARG_TYPE',
    'The "flag" argument must be of type boolean. Received type number (1)',
  );
  bad(
    call('x', 1, true, Buffer.alloc(0), 'y'),
    'ERR_INVALID_ARG_TYPE',
    'The "optional" argument must be of type number, null or undefined. Received type string (\'y\')',
  );
  bad(
    call('x', -1),
    'ERR_OUT_OF_RANGE',
    'The value of "count" is out of range. It must be >= 0 && <= 4294967295. Received -1',
    RangeError,
  );
  bad(
    call('x', 1.5),
    'ERR_OUT_OF_RANGE',
    'The value of "count" is out of range. It must be an integer. Received 1.5',
    RangeError,
  );
  bad(
    () => (st.strings as (l: unknown) => unknown)(['a', 1]),
    'ERR_INVALID_ARG_TYPE',
    'The "list" argument must be an array whose every element is of type string. Received an instance of Array',
  );
  bad(
    () => (st.bigAdd as (a: unknown, b: unknown) => unknown)(1, 2n),
    'ERR_INVALID_ARG_TYPE',
    'The "a" argument must be of type bigint. Received type number (1)',
  );
  bad(
    () => st.labelOf({} as never),
    'ERR_INVALID_ARG_TYPE',
    'The "probe" argument must be an instance of Probe. Received an instance of Object',
  );
});

test('OS errors look like Node fs errors', (t) => {
  const e = t.throws(() => st.throwOs(2, '/x')) as NodeJS.ErrnoException;
  t.is(e.message, "ENOENT: no such file or directory, selftest '/x'");
  t.is(e.code, 'ENOENT');
  t.is(e.errno, -2);
  t.is(e.syscall, 'selftest');
  t.is(e.path, '/x');
  t.true(e instanceof Error);
});

test('a Rust panic becomes a JS Error and the process survives', (t) => {
  const before = st.count();
  const e = t.throws(() => st.panicNow('boom'), { instanceOf: Error });
  t.is(e?.message, 'Rust panic: boom');
  t.is((e as NodeJS.ErrnoException).code, 'ERR_RUST_PANIC');
  // The addon (and its state) still works after the panic.
  t.is(st.count(), before + 1);
  t.is(st.checkArgs('after', 1, true, Buffer.alloc(1)).name, 'after');
});

test('JS exceptions thrown by callbacks propagate through Rust', (t) => {
  t.is(
    st.callTwice((x) => x * 3, 2),
    18,
  );
  const e = t.throws(() =>
    st.callTwice(() => {
      throw new RangeError('from JS');
    }, 1),
  );
  t.true(e instanceof RangeError);
  t.is(e?.message, 'from JS');
});

test('class: constructor, methods, getters, receiver and new checks', (t) => {
  const p = new st.Probe('hello');
  t.is(p.label(), 'hello');
  t.is(p.label(), 'hello');
  t.is(p.calls, 2);
  t.is(st.labelOf(p), 'hello');
  t.true(p instanceof st.Probe);
  // A method called on a foreign object is a TypeError, never a bad cast.
  t.throws(() => st.Probe.prototype.label.call({}), { instanceOf: TypeError });
  t.throws(() => (st.Probe as unknown as (l: string) => unknown)('x'), {
    instanceOf: TypeError,
    message: "Class constructor Probe cannot be invoked without 'new'",
  });
  t.throws(() => new st.Probe(5 as unknown as string), {
    instanceOf: TypeError,
    message: 'The "label" argument must be of type string. Received type number (5)',
  });
});

// Serial (ava runs these before the concurrent tests), so no other test's instances are counted.
test.serial('class instances are finalized after GC (finalizer count reaches N)', async (t) => {
  const N = 500;
  const before = st.Probe.stats();
  t.is(before.created, before.finalized, 'no other Probe may be alive');
  (() => {
    for (let i = 0; i < N; i++) t.is(new st.Probe(`p${i}`).label(), `p${i}`);
  })();
  t.is(st.Probe.stats().created - before.created, N);
  await collectUntil(() => st.Probe.stats().finalized - before.finalized >= N);
  t.is(st.Probe.stats().finalized - before.finalized, N);
});

test('promise resolved from a Rust thread', async (t) => {
  const started = Date.now();
  const pending = st.resolveAfter(50, 'hi');
  t.true(pending instanceof Promise);
  t.is(await pending, 'hi from a Rust thread');
  t.true(Date.now() - started >= 45);
  t.deepEqual(await st.settleWithObject(), { thread: 'rust' });
  // Many at once, settled in any order.
  const all = await Promise.all(Array.from({ length: 50 }, (_, i) => st.resolveAfter(50 - i, `v${i}`)));
  t.deepEqual(
    all,
    Array.from({ length: 50 }, (_, i) => `v${i} from a Rust thread`),
  );
});

test('promise rejected from a Rust thread with a typed error', async (t) => {
  const e = (await t.throwsAsync(st.rejectAfter(10, 13))) as NodeJS.ErrnoException;
  t.is(e.message, "EACCES: permission denied, selftest '/nowhere'");
  t.is(e.code, 'EACCES');
  t.is(e.errno, -13);
  t.is(e.syscall, 'selftest');
  t.is(e.path, '/nowhere');
});

test('a panic on a Rust thread rejects the promise; a dropped Deferred rejects too', async (t) => {
  await t.throwsAsync(st.panicInThread('thread boom'), { message: 'Rust panic: thread boom' });
  const e = (await t.throwsAsync(st.dropPromise())) as NodeJS.ErrnoException;
  t.is(e.code, 'ERR_NAPI_PROMISE_DROPPED');
  t.is(st.checkArgs('still alive', 1, true, Buffer.alloc(0)).name, 'still alive');
});

test('shared-memory ArrayBuffer written from a Rust thread is seen by JS', async (t) => {
  const region = new st.SharedRegion(1 << 16);
  const buffer = region.arrayBuffer();
  t.is(buffer.byteLength, 1 << 16);
  const words = new Uint32Array(buffer);
  t.is(Atomics.load(words, 2), 0);
  // The Rust thread writes 30 ms after this call; JS spins on the memory itself (no promise, no copy).
  region.writeLater(30, 8, 0xc0ffee);
  const deadline = Date.now() + 5000;
  while (Atomics.load(words, 2) !== 0xc0ffee && Date.now() < deadline) {
    /* spin */
  }
  t.is(Atomics.load(words, 2), 0xc0ffee);

  // A second view over the same region sees the same memory, both ways.
  const other = new Uint8Array(region.arrayBuffer());
  t.is(other[8], 0xee);
  words[100] = 0x01020304;
  t.is(other[400], 0x04);

  t.is(await region.fill(0x5a), 1 << 16);
  t.true(new Uint8Array(buffer).every((b) => b === 0x5a));
});

test.serial('external ArrayBuffers release their memory after GC', async (t) => {
  const before = st.SharedRegion.stats();
  t.is(before.mapped, before.unmapped, 'no other SharedRegion may be alive');
  (() => {
    for (let i = 0; i < 20; i++) {
      const r = new st.SharedRegion(1 << 20);
      new Uint8Array(r.arrayBuffer()).fill(1);
      new Uint8Array(r.arrayBuffer()).fill(2);
    }
  })();
  t.is(st.SharedRegion.stats().mapped - before.mapped, 20);
  await collectUntil(() => st.SharedRegion.stats().unmapped - before.unmapped >= 20);
  t.is(st.SharedRegion.stats().unmapped - before.unmapped, 20);
});

test('a Rust thread calls a JS callback through a JsThread (Persistent reference)', async (t) => {
  const seen: number[] = [];
  const results = await st.callFromThread((i) => {
    seen.push(i);
    return i * i;
  }, 100);
  t.deepEqual(
    seen,
    Array.from({ length: 100 }, (_, i) => i),
  );
  t.deepEqual(
    results,
    Array.from({ length: 100 }, (_, i) => i * i),
  );
});

test('nested handle scopes', (t) => {
  t.is(st.sumInScopes(100_000), (100_000 * 99_999) / 2);
});
