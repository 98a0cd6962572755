// Every export declared in src/types.ts (NativeAddon) exists at runtime with the declared shape, and nothing
// undeclared is exported. The declared list is read from the TypeScript source with the compiler API, so this
// test follows the types file instead of repeating it.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import * as pkg from '../src/index.js';
import { AddonLoadError, loadAddon, native } from '../src/index.js';

const srcDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');

/** A shape: what `typeof` must say, and for objects the shape of each property. */
type Shape =
  { kind: 'function' } | { kind: 'number' | 'string' | 'boolean' } | { kind: 'object'; props: Record<string, Shape> };

function declaredShape(): Record<string, Shape> {
  const program = ts.createProgram([join(srcDir, 'types.ts')], { strict: true, noEmit: true });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(join(srcDir, 'types.ts'));
  if (!file) throw new Error('types.ts not found');
  const addon = file.statements.find(
    (s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === 'NativeAddon',
  );
  if (!addon) throw new Error('interface NativeAddon not found in types.ts');

  const shapeOf = (type: ts.Type, where: string): Shape => {
    if (type.getCallSignatures().length > 0) return { kind: 'function' };
    if (type.flags & ts.TypeFlags.NumberLike) return { kind: 'number' };
    if (type.flags & ts.TypeFlags.StringLike) return { kind: 'string' };
    if (type.flags & ts.TypeFlags.BooleanLike) return { kind: 'boolean' };
    if (type.flags & ts.TypeFlags.Object) {
      const props: Record<string, Shape> = {};
      for (const p of type.getProperties()) {
        props[p.name] = shapeOf(checker.getTypeOfSymbol(p), `${where}.${p.name}`);
      }
      return { kind: 'object', props };
    }
    throw new Error(`unsupported declared type at ${where}: ${checker.typeToString(type)}`);
  };
  const shape = shapeOf(checker.getTypeAtLocation(addon), 'NativeAddon');
  if (shape.kind !== 'object') throw new Error('NativeAddon is not an object type');
  return shape.props;
}

function check(value: unknown, shape: Shape, where: string, problems: string[]): void {
  if (shape.kind !== 'object') {
    if (typeof value !== shape.kind) problems.push(`${where}: declared ${shape.kind}, runtime ${typeof value}`);
    return;
  }
  if (typeof value !== 'object' || value === null) {
    problems.push(`${where}: declared object, runtime ${value === null ? 'null' : typeof value}`);
    return;
  }
  const runtime = value as Record<string, unknown>;
  for (const [key, s] of Object.entries(shape.props)) {
    if (!(key in runtime)) problems.push(`${where}.${key}: declared but missing at runtime`);
    else check(runtime[key], s, `${where}.${key}`, problems);
  }
  for (const key of Object.keys(runtime)) {
    if (!(key in shape.props)) problems.push(`${where}.${key}: exported at runtime but not declared`);
  }
}

const declared = declaredShape();

test('the declared list is read from types.ts', (t) => {
  // Guards the reader itself: a broken reader would make the next test vacuous.
  t.deepEqual(declared['hostFacts'], { kind: 'function' });
  const constants = declared['constants'];
  t.is(constants?.kind, 'object');
  t.is(constants?.kind === 'object' ? constants.props['MS_BIND']?.kind : undefined, 'number');
  t.true(Object.keys(declared).length >= 11);
});

test('every declared export exists at runtime with the declared shape, and nothing else', (t) => {
  const problems: string[] = [];
  check(native, { kind: 'object', props: declared }, 'addon', problems);
  t.deepEqual(problems, []);
});

test('functions carry their export names', (t) => {
  for (const [key, shape] of Object.entries(declared)) {
    if (shape.kind === 'function') t.is((native as unknown as Record<string, { name: string }>)[key]?.name, key);
  }
});

test('the package re-exports every declared export, bound to the addon', (t) => {
  const exported = pkg as unknown as Record<string, unknown>;
  const addon = native as unknown as Record<string, unknown>;
  for (const key of Object.keys(declared)) {
    t.is(exported[key], addon[key], key);
  }
});

test('a missing addon fails with a clear error naming the file and the fix', (t) => {
  const path = '/nonexistent/quark-native.linux-x64-gnu.node';
  const e = t.throws(() => loadAddon(path), { instanceOf: AddonLoadError });
  t.true(e?.message.includes(path), e?.message);
  t.true(e?.message.includes('npm run build'), e?.message);
  t.is((e as AddonLoadError).code, 'ERR_QUARK_NATIVE_LOAD');
});

test('a file that is not an addon fails with a clear error', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'quark-native-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'quark-native.linux-x64-gnu.node');
  writeFileSync(path, 'not an ELF shared object');
  const e = t.throws(() => loadAddon(path), { instanceOf: AddonLoadError });
  t.true(e?.message.startsWith(`@quark/native: cannot load the native addon ${path}: `), e?.message);
  t.true(e?.message.includes('npm run build'), e?.message);
});
