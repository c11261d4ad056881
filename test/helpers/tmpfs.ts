/**
 * A small tmpfs of a test's own, to fill up and free again: a real full disk, not a mocked
 * ENOSPC. Mounting needs root (a test skips, or fails under CI, when it cannot).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

/** A mounted tmpfs. */
export interface Tmpfs {
  /** The mount point. */
  readonly dir: string;
  /** Bytes free for unprivileged writes (as `df` says). */
  freeBytes(): number;
  /** Bytes used (as `df` says). */
  usedBytes(): number;
  /** Fills the filesystem to the last block with a file of its own; returns the bytes written. */
  fill(): number;
  /** Removes what {@link Tmpfs.fill} wrote. */
  unfill(): void;
  /** Unmounts it and removes the mount point; safe to call twice. */
  unmount(): void;
}

/** Why a tmpfs cannot be mounted here, or null when it can (root, and `mount` exists). */
export function tmpfsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  try {
    execFileSync('mount', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'the mount command is missing';
  }
  return null;
}

/** Mounts a tmpfs of `sizeBytes` on a fresh directory (mode 0700). */
export function mountTmpfs(sizeBytes: number): Tmpfs {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'drover-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const filler = path.join(dir, 'filler');
  let mounted = true;
  const stat = (): fs.StatsFs => fs.statfsSync(dir);
  return {
    dir,
    freeBytes: () => {
      const s = stat();
      return s.bavail * s.bsize;
    },
    usedBytes: () => {
      const s = stat();
      return (s.blocks - s.bfree) * s.bsize;
    },
    fill() {
      const fd = fs.openSync(filler, 'a', 0o600);
      let written = 0;
      try {
        for (const size of [1 << 20, 64 << 10, 4 << 10, 512, 1]) {
          const buf = Buffer.alloc(size, 0x2a);
          for (;;) {
            try {
              written += fs.writeSync(fd, buf);
            } catch (err) {
              if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw err;
            }
          }
        }
      } finally {
        fs.closeSync(fd);
      }
      return written;
    },
    unfill() {
      fs.rmSync(filler, { force: true });
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      try {
        execFileSync('umount', [dir], { stdio: 'pipe' });
      } catch {
        // Still in use by a process that outlived the test: detach it now, freed when it lets go.
        execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
