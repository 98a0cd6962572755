// A streaming tar reader (ustar, pax extended headers, GNU long names) and a
// minimal writer (for `save`). The reader pulls 512-byte blocks from an async
// iterable of Buffers and never holds more than one entry's header in memory.

export type TarEntryType = 'file' | 'link' | 'symlink' | 'chardev' | 'blockdev' | 'directory' | 'fifo';

export interface TarHeader {
  /** Path as stored (pax/GNU long names applied), not normalised. */
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid/setgid/sticky (no file-type bits). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  /** Modification time in seconds since the epoch (fractional with pax). */
  mtime: number;
  /** Symlink target or hard-link target path. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from pax `SCHILY.xattr.*` records. */
  xattrs: Map<string, Buffer>;
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(`malformed tar stream: ${message}`);
    this.name = 'TarFormatError';
  }
}

const BLOCK = 512;

/** Pulls exact byte counts out of an async iterable of chunks. */
class ByteSource {
  private buf: Buffer = Buffer.alloc(0);
  private off = 0;
  private readonly it: AsyncIterator<Buffer | Uint8Array | string>;
  private done = false;
  /** Total bytes consumed by the reader so far. */
  position = 0;

  constructor(src: AsyncIterable<Buffer | Uint8Array | string>) {
    this.it = src[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.off >= this.buf.length) {
      if (this.done) return false;
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        return false;
      }
      const v = r.value;
      this.buf =
        typeof v === 'string' ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.length);
      this.off = 0;
    }
    return true;
  }

  /** Reads exactly n bytes, or returns null at a clean end of stream before any byte. */
  async readExact(n: number): Promise<Buffer | null> {
    if (!(await this.fill())) return null;
    if (this.buf.length - this.off >= n) {
      const out = this.buf.subarray(this.off, this.off + n);
      this.off += n;
      this.position += n;
      return out;
    }
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      if (!(await this.fill())) throw new TarFormatError(`truncated: wanted ${n} bytes at offset ${this.position}`);
      const take = Math.min(need, this.buf.length - this.off);
      parts.push(this.buf.subarray(this.off, this.off + take));
      this.off += take;
      this.position += take;
      need -= take;
    }
    return Buffer.concat(parts, n);
  }

  /** Yields exactly n bytes as a series of chunks (views; copy them to keep them). */
  async *chunks(n: number): AsyncGenerator<Buffer> {
    let need = n;
    while (need > 0) {
      if (!(await this.fill())) throw new TarFormatError(`truncated entry body at offset ${this.position}`);
      const take = Math.min(need, this.buf.length - this.off);
      const out = this.buf.subarray(this.off, this.off + take);
      this.off += take;
      this.position += take;
      need -= take;
      yield out;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.chunks(n)) {
      // discard
    }
  }

  /** Drains whatever is left (trailing zero blocks), so a pipeline sees its end. */
  async drain(): Promise<void> {
    while (await this.fill()) {
      this.position += this.buf.length - this.off;
      this.off = this.buf.length;
    }
  }
}

function cstring(b: Buffer, start: number, len: number): string {
  const s = b.subarray(start, start + len);
  const nul = s.indexOf(0);
  return (nul >= 0 ? s.subarray(0, nul) : s).toString('utf8');
}

function numeric(b: Buffer, start: number, len: number, field: string): number {
  const f = b.subarray(start, start + len);
  if (f[0] !== undefined && (f[0] & 0x80) !== 0) {
    // GNU base-256: big-endian two's complement with the top bit as marker.
    const negative = (f[0] & 0x40) !== 0;
    let v = 0n;
    for (let i = 0; i < f.length; i++) {
      let byte = f[i] ?? 0;
      if (i === 0) byte &= 0x7f;
      v = (v << 8n) | BigInt(byte);
    }
    if (negative) v -= 1n << BigInt(f.length * 8 - 1);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new TarFormatError(`${field} out of range`);
    }
    return Number(v);
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarFormatError(`bad octal ${field} "${s}"`);
  return parseInt(s, 8);
}

function checksumOk(b: Buffer): boolean {
  const stored = numeric(b, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 32 : (b[i] ?? 0);
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  return stored === unsigned || stored === signed;
}

/** Parses pax records ("%d key=value\n"); values stay raw bytes (xattrs are binary). */
export function parsePax(data: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break;
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) throw new TarFormatError('pax record without length');
    const len = Number(data.subarray(pos, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0 || pos + len > data.length)
      throw new TarFormatError('bad pax record length');
    const rec = data.subarray(sp + 1, pos + len);
    if (rec[rec.length - 1] !== 0x0a) throw new TarFormatError('pax record not newline-terminated');
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError('pax record without "="');
    out.set(rec.subarray(0, eq).toString('utf8'), Buffer.from(rec.subarray(eq + 1, rec.length - 1)));
    pos += len;
  }
  return out;
}

const TYPES: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'chardev',
  '4': 'blockdev',
  '5': 'directory',
  '6': 'fifo',
};

/**
 * Reads a tar stream entry by entry:
 *   for (let h; (h = await r.next()); ) { for await (const c of r.body()) … }
 * An unread body is skipped by the next call to next().
 */
export class TarReader {
  private readonly src: ByteSource;
  private remaining = 0;
  private padding = 0;
  private globalPax = new Map<string, Buffer>();
  private ended = false;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    this.src = new ByteSource(source);
  }

  async next(): Promise<TarHeader | null> {
    if (this.ended) return null;
    await this.src.skip(this.remaining + this.padding);
    this.remaining = 0;
    this.padding = 0;
    let pax: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = await this.src.readExact(BLOCK);
      if (block === null) {
        if (pax || longName !== undefined || longLink !== undefined)
          throw new TarFormatError('stream ends after an extended header');
        this.ended = true;
        return null;
      }
      if (block.every((b) => b === 0)) {
        // End-of-archive marker: one or two zero blocks. Consume the rest.
        this.ended = true;
        await this.src.drain();
        return null;
      }
      if (!checksumOk(block))
        throw new TarFormatError(`header checksum mismatch at offset ${this.src.position - BLOCK}`);
      const flag = String.fromCharCode(block[156] ?? 0);
      const size = numeric(block, 124, 12, 'size');
      if (size < 0) throw new TarFormatError('negative size');
      const pad = (BLOCK - (size % BLOCK)) % BLOCK;
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (size > 16 * 1024 * 1024) throw new TarFormatError(`extended header of ${size} bytes is too large`);
        const data = size === 0 ? Buffer.alloc(0) : await this.src.readExact(size);
        if (data === null) throw new TarFormatError('truncated extended header');
        await this.src.skip(pad);
        if (flag === 'x') pax = new Map([...(pax ?? []), ...parsePax(data)]);
        else if (flag === 'g') this.globalPax = new Map([...this.globalPax, ...parsePax(data)]);
        else if (flag === 'L') longName = cstring(data, 0, data.length);
        else longLink = cstring(data, 0, data.length);
        continue;
      }
      if (flag === 'V') {
        await this.src.skip(size + pad);
        continue;
      }
      if (flag === 'S') throw new TarFormatError('GNU sparse files are not supported in image layers');
      let type = TYPES[flag];
      if (type === undefined) throw new TarFormatError(`unsupported entry type "${flag}"`);
      const magic = block.subarray(257, 263).toString('latin1');
      let name = cstring(block, 0, 100);
      if (magic === 'ustar\0') {
        const prefix = cstring(block, 345, 155);
        if (prefix !== '') name = `${prefix}/${name}`;
      }
      const h: TarHeader = {
        name,
        type,
        mode: numeric(block, 100, 8, 'mode') & 0o7777,
        uid: numeric(block, 108, 8, 'uid'),
        gid: numeric(block, 116, 8, 'gid'),
        size,
        mtime: numeric(block, 136, 12, 'mtime'),
        linkname: cstring(block, 157, 100),
        uname: cstring(block, 265, 32),
        gname: cstring(block, 297, 32),
        devmajor: type === 'chardev' || type === 'blockdev' ? numeric(block, 329, 8, 'devmajor') : 0,
        devminor: type === 'chardev' || type === 'blockdev' ? numeric(block, 337, 8, 'devminor') : 0,
        xattrs: new Map(),
      };
      if (longName !== undefined) h.name = longName;
      if (longLink !== undefined) h.linkname = longLink;
      for (const [k, v] of [...this.globalPax, ...(pax ?? [])]) applyPax(h, k, v);
      if (type === 'file' && h.name.endsWith('/')) {
        type = 'directory';
        h.type = type;
      }
      // Only regular files carry data (as in Go's archive/tar: every other type is header-only).
      const dataSize = type === 'file' ? h.size : 0;
      if (type !== 'file') h.size = 0;
      this.remaining = dataSize;
      this.padding = (BLOCK - (dataSize % BLOCK)) % BLOCK;
      return h;
    }
  }

  /** The current entry's data. Chunks are views into the reader's buffers. */
  async *body(): AsyncGenerator<Buffer> {
    const n = this.remaining;
    this.remaining = 0;
    yield* this.src.chunks(n);
  }
}

function applyPax(h: TarHeader, key: string, value: Buffer): void {
  const s = (): string => value.toString('utf8');
  const num = (): number => {
    const n = Number(s());
    if (!Number.isFinite(n)) throw new TarFormatError(`bad pax ${key} "${s()}"`);
    return n;
  };
  switch (key) {
    case 'path':
      h.name = s();
      return;
    case 'linkpath':
      h.linkname = s();
      return;
    case 'size':
      h.size = num();
      return;
    case 'uid':
      h.uid = num();
      return;
    case 'gid':
      h.gid = num();
      return;
    case 'uname':
      h.uname = s();
      return;
    case 'gname':
      h.gname = s();
      return;
    case 'mtime':
      h.mtime = num();
      return;
    default:
      if (key.startsWith('SCHILY.xattr.')) h.xattrs.set(key.slice('SCHILY.xattr.'.length), value);
      else if (key.startsWith('LIBARCHIVE.xattr.')) {
        const name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length));
        h.xattrs.set(name, Buffer.from(value.toString('latin1'), 'base64'));
      }
  }
}

// ---- writer -------------------------------------------------------------

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

export interface TarWriteEntry {
  name: string;
  type: TarEntryType;
  size?: number;
  mode?: number;
  mtime?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes, written as pax SCHILY.xattr.* records. */
  xattrs?: Record<string, Buffer | string>;
}

function paxRecord(key: string, value: string | Buffer): Buffer {
  const v = Buffer.isBuffer(value) ? value : Buffer.from(value);
  const fixed = Buffer.byteLength(` ${key}=`) + v.length + 1;
  let len = fixed + 1;
  while (String(len).length + fixed !== len) len = String(len).length + fixed;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), v, Buffer.from('\n')]);
}

const FLAGS: Record<TarEntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  chardev: '3',
  blockdev: '4',
  directory: '5',
  fifo: '6',
};

/** Builds the header block(s) of one entry (a pax header first when needed: long names, xattrs). */
export function tarHeader(e: TarWriteEntry): Buffer {
  const parts: Buffer[] = [];
  let name = e.name;
  let prefix = '';
  const records: Buffer[] = [];
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (cut > 0 && Buffer.byteLength(name.slice(cut + 1)) <= 100 && Buffer.byteLength(name.slice(0, cut)) <= 155) {
      prefix = name.slice(0, cut);
      name = name.slice(cut + 1);
    } else {
      records.push(paxRecord('path', e.name));
      name = Buffer.from(name).subarray(0, 100).toString('latin1');
    }
  }
  let linkname = e.linkname ?? '';
  if (Buffer.byteLength(linkname) > 100) {
    records.push(paxRecord('linkpath', linkname));
    linkname = '';
  }
  for (const [k, v] of Object.entries(e.xattrs ?? {})) records.push(paxRecord(`SCHILY.xattr.${k}`, v));
  if (records.length > 0) {
    const pax = Buffer.concat(records);
    parts.push(rawHeader({ name: 'PaxHeaders/entry', flag: 'x', size: pax.length, mode: 0o644, mtime: 0 }, ''));
    parts.push(pax, tarPadding(pax.length));
  }
  parts.push(
    rawHeader(
      {
        name,
        flag: FLAGS[e.type],
        size: e.type === 'file' ? (e.size ?? 0) : 0,
        mode: e.mode ?? (e.type === 'directory' ? 0o755 : 0o644),
        mtime: e.mtime ?? 0,
        uid: e.uid,
        gid: e.gid,
        linkname,
        devmajor: e.devmajor,
        devminor: e.devminor,
      },
      prefix,
    ),
  );
  return Buffer.concat(parts);
}

function rawHeader(
  f: {
    name: string;
    flag: string;
    size: number;
    mode: number;
    mtime: number;
    uid?: number | undefined;
    gid?: number | undefined;
    linkname?: string | undefined;
    devmajor?: number | undefined;
    devminor?: number | undefined;
  },
  prefix: string,
): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(f.name, 0, 100, 'utf8');
  b.write(octal(f.mode, 8), 100, 'latin1');
  b.write(octal(f.uid ?? 0, 8), 108, 'latin1');
  b.write(octal(f.gid ?? 0, 8), 116, 'latin1');
  b.write(octal(f.size, 12), 124, 'latin1');
  b.write(octal(Math.floor(f.mtime), 12), 136, 'latin1');
  b.write('        ', 148, 'latin1');
  b.write(f.flag, 156, 'latin1');
  if (f.linkname) b.write(f.linkname, 157, 100, 'utf8');
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  b.write(octal(f.devmajor ?? 0, 8), 329, 'latin1');
  b.write(octal(f.devminor ?? 0, 8), 337, 'latin1');
  b.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const c of b) sum += c;
  b.write(octal(sum, 7) + ' ', 148, 'latin1');
  return b;
}

/** A whole in-memory archive (tests, small documents). */
export function buildTar(entries: (TarWriteEntry & { data?: Buffer | string })[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? undefined : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    parts.push(tarHeader({ ...e, size: data?.length ?? e.size ?? 0 }));
    if (data && e.type === 'file') parts.push(data, tarPadding(data.length));
  }
  parts.push(tarTrailer());
  return Buffer.concat(parts);
}

/** Zero padding after `size` bytes of data. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The end-of-archive marker (two zero blocks). */
export function tarTrailer(): Buffer {
  return Buffer.alloc(BLOCK * 2);
}
