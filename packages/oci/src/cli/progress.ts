// Pull progress: per-layer bars (bytes and rate) redrawn in place on a TTY,
// plain lines otherwise (logs, CI).
import type { PullEvent } from '../pull.js';

export interface Output {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i++;
  } while (v >= 1000 && i < units.length - 1);
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[i]}`;
}

interface Row {
  label: string;
  done: number;
  total: number;
  state: string;
  started: number;
  ended?: number;
}

const short = (d: string): string => d.replace(/^sha256:/, '').slice(0, 12);

export class PullProgress {
  private readonly rows = new Map<string, Row>();
  private drawn = 0;
  private lastDraw = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly out: Output,
    private readonly tty: boolean = out.isTTY === true,
  ) {}

  private row(digest: string, label: string, total: number): Row {
    let r = this.rows.get(digest);
    if (!r) {
      r = { label, done: 0, total, state: 'waiting', started: Date.now() };
      this.rows.set(digest, r);
    }
    return r;
  }

  event(e: PullEvent): void {
    switch (e.type) {
      case 'resolved':
        this.line(`${e.ref}: resolved to ${e.digest}`);
        for (const l of e.layers) this.row(l.digest, `layer ${short(l.digest)}`, l.size);
        break;
      case 'blob': {
        const r = this.row(
          e.digest,
          e.kind === 'config' ? `config ${short(e.digest)}` : `layer ${short(e.digest)}`,
          e.total,
        );
        r.done = e.done;
        if (e.event === 'exists') {
          r.state = 'already present';
          r.ended = Date.now();
          this.plain(`${r.label}: already present`);
        } else if (e.event === 'start' || e.event === 'resumed') {
          r.state = 'downloading';
          r.started = Date.now();
          this.plain(
            `${r.label}: ${e.event === 'resumed' ? `resuming at ${formatBytes(e.done)} of` : 'downloading'} ${formatBytes(e.total)}`,
          );
        } else if (e.event === 'retry') {
          r.state = 'retrying';
          this.plain(`${r.label}: connection lost at ${formatBytes(e.done)}, retrying`);
        } else if (e.event === 'done') {
          r.state = 'downloaded';
          r.ended = Date.now();
          this.plain(
            `${r.label}: downloaded ${formatBytes(e.total)} in ${((r.ended - r.started) / 1000).toFixed(1)} s`,
          );
        }
        break;
      }
      case 'snapshot': {
        const r = this.rows.get(e.layer);
        if (r) {
          r.state = e.event === 'unpacking' ? 'unpacking' : e.event === 'exists' ? 'already unpacked' : 'unpacked';
          if (e.event === 'unpacked') this.plain(`${r.label}: unpacked in ${((e.ms ?? 0) / 1000).toFixed(1)} s`);
        }
        break;
      }
      case 'retry':
        this.line(`${e.what}: retrying after: ${e.error}`);
        break;
      case 'warning':
        this.line(`warning: ${e.message}`);
        break;
    }
    this.schedule();
  }

  /** A line in both modes (printed above the bars on a TTY). */
  line(s: string): void {
    if (this.tty) {
      this.clear();
      this.out.write(`${s}\n`);
      this.draw();
    } else {
      this.out.write(`${s}\n`);
    }
  }

  private plain(s: string): void {
    if (!this.tty) this.out.write(`${s}\n`);
  }

  private schedule(): void {
    if (!this.tty) return;
    const now = Date.now();
    if (now - this.lastDraw >= 100) {
      this.draw();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, 100);
  }

  private clear(): void {
    if (this.drawn > 0) this.out.write(`\x1b[${this.drawn}A\x1b[J`);
    this.drawn = 0;
  }

  private draw(): void {
    if (!this.tty) return;
    this.lastDraw = Date.now();
    this.clear();
    const width = Math.max(10, Math.min(40, (this.out.columns ?? 80) - 60));
    const lines: string[] = [];
    for (const r of this.rows.values()) {
      const frac = r.total > 0 ? Math.min(1, r.done / r.total) : 1;
      const filled = Math.round(frac * width);
      const bar = `[${'='.repeat(Math.max(0, filled - 1))}${filled > 0 ? (frac < 1 ? '>' : '=') : ''}${' '.repeat(width - filled)}]`;
      const secs = ((r.ended ?? Date.now()) - r.started) / 1000;
      const rate = r.state === 'downloading' && secs > 0 ? `  ${formatBytes(Math.round(r.done / secs))}/s` : '';
      lines.push(
        `${r.label.padEnd(20)} ${r.state.padEnd(16)} ${bar} ${formatBytes(r.done)}/${formatBytes(r.total)}${rate}`,
      );
    }
    if (lines.length > 0) this.out.write(lines.join('\n') + '\n');
    this.drawn = lines.length;
  }

  finish(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tty) this.draw();
  }
}
