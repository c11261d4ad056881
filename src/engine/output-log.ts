/**
 * The output log of a run (`ctx.output`, `drover process logs`): one file per process under the
 * profile's log directory (see `processLogPath` in config/paths.ts), written synchronously in the
 * order of the writes (stdout and stderr of `core.shell` interleaved as they arrive), bounded in size:
 * when a write would take the file past the limit it is renamed to `<file>.1` (replacing the one
 * before) and a new file is begun, so at most twice the limit is kept, the last of the output. A
 * single write larger than the limit keeps its last `limit` bytes.
 *
 * The first write of a process's first run starts a fresh log (removing files left by an earlier
 * process of the same id, e.g. from a store that was reset); later runs (a replay, a command run
 * again after its worker died) append to it. Nothing is opened until something is written.
 *
 * Writing never throws: a log that cannot be written (a full disk, no permission) is given up for
 * the rest of the run with one warning, and the process goes on.
 *
 * @module
 */
import fs from 'node:fs';
import path from 'node:path';
import { rotatedLogPath } from '../config/index.js';
import { errorMessage } from '../errors/index.js';
import type { Logger } from '../logging/index.js';
import type { OutputLog } from './definition.js';

/** An output log file of one run; see the module comment. */
export class OutputLogFile implements OutputLog {
  private fd: number | null = null;
  private size = 0;
  private failed = false;
  private closed = false;

  /**
   * @param file - the log file (`processLogPath`).
   * @param maxBytes - the most one file holds.
   * @param fresh - start anew (a first run): remove what an earlier process of this id left.
   */
  constructor(
    readonly file: string,
    readonly maxBytes: number,
    private fresh: boolean,
    private readonly logger: Logger,
  ) {}

  write(chunk: string | Uint8Array): void {
    if (this.failed || this.closed) return;
    let buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk);
    if (buf.length === 0) return;
    try {
      if (this.fd === null) this.open();
      if (this.size > 0 && this.size + buf.length > this.maxBytes) this.rotate();
      if (buf.length > this.maxBytes) buf = buf.subarray(buf.length - this.maxBytes);
      let off = 0;
      while (off < buf.length) off += fs.writeSync(this.fd!, buf, off, buf.length - off);
      this.size += buf.length;
    } catch (err) {
      this.failed = true;
      this.logger.warn(`output log ${this.file}: ${errorMessage(err)}; the rest of this run's output is not logged`);
      this.closeFd();
    }
  }

  /** Closes the file; later writes are dropped. Safe to call twice. */
  close(): void {
    this.closed = true;
    this.closeFd();
  }

  private open(): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    if (this.fresh) {
      fs.rmSync(rotatedLogPath(this.file), { force: true });
      this.fd = fs.openSync(this.file, 'w', 0o600);
      this.fresh = false;
    } else {
      this.fd = fs.openSync(this.file, 'a', 0o600);
    }
    this.size = fs.fstatSync(this.fd).size;
  }

  private rotate(): void {
    this.closeFd();
    fs.renameSync(this.file, rotatedLogPath(this.file));
    this.fd = fs.openSync(this.file, 'w', 0o600);
    this.size = 0;
  }

  private closeFd(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // closed already
    }
    this.fd = null;
  }
}
