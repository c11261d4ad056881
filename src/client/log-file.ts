import fs from 'node:fs';

/**
 * The last `n` lines of `file` (or of the part after byte `fromOffset`), reading backwards from
 * the end in blocks so a large log costs no more than the lines asked for. [] when the file is missing.
 */
export function readLastLines(file: string, n: number, fromOffset = 0): string[] {
  if (n <= 0) return [];
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return [];
  }
  try {
    const size = fs.fstatSync(fd).size;
    const start = Math.min(Math.max(0, fromOffset), size);
    const block = 64 * 1024;
    let pos = size;
    let text = '';
    let newlines = 0;
    while (pos > start && newlines <= n) {
      const len = Math.min(block, pos - start);
      pos -= len;
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, pos);
      const chunk = buf.toString('utf8');
      text = chunk + text;
      for (const c of chunk) if (c === '\n') newlines++;
    }
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    return lines.slice(-n);
  } finally {
    fs.closeSync(fd);
  }
}

/** Size of `file` in bytes, 0 when missing. */
export function fileSize(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
