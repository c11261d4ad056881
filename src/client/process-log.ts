/**
 * Reading a process's output log (`drover process logs`), which the worker running the process
 * writes and rotates by renaming (see engine/output-log.ts): the rotated file `<file>.1` holds the
 * older part, `<file>` the newer.
 *
 * @module
 */
import fs from 'node:fs';

/** All of `file`, or an empty buffer when it does not exist. */
export function readWholeFile(file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  }
}

/**
 * Follows a log file that its writer rotates by renaming it away and starting a new one: each
 * {@link LogFollower.read} returns what was written since the last, finishing the renamed file
 * before going on with the new one. Output written past two rotations between two reads (more than
 * the log limit) is not seen. A file that shrank (started anew in place) is read from its start.
 */
export class LogFollower {
  private fd: number | null = null;
  private ino = -1;
  private offset = 0;

  constructor(readonly file: string) {}

  /** What was appended since the last call (nothing while the file does not exist). */
  read(): Buffer {
    const parts: Buffer[] = [];
    for (let turn = 0; turn < 3; turn++) {
      if (this.fd === null) {
        try {
          this.fd = fs.openSync(this.file, 'r');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          throw err;
        }
        this.ino = fs.fstatSync(this.fd).ino;
        this.offset = 0;
      }
      if (fs.fstatSync(this.fd).size < this.offset) this.offset = 0;
      parts.push(this.drain());
      let ino: number | null = null;
      try {
        ino = fs.statSync(this.file).ino;
      } catch {
        // removed or being renamed: treated as rotated
      }
      if (ino === this.ino) break;
      // Rotated: what the old file got last, then the new file from its start.
      parts.push(this.drain());
      this.close();
    }
    return Buffer.concat(parts);
  }

  /** Closes the open file; a later read opens the current one anew, from its start. */
  close(): void {
    if (this.fd === null) return;
    fs.closeSync(this.fd);
    this.fd = null;
  }

  private drain(): Buffer {
    const parts: Buffer[] = [];
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = fs.readSync(this.fd!, buf, 0, buf.length, this.offset);
      if (n === 0) break;
      parts.push(Buffer.from(buf.subarray(0, n)));
      this.offset += n;
    }
    return Buffer.concat(parts);
  }
}
