/**
 * Fresh planner statistics for the tables the hot paths read, kept by the daemon's store.
 *
 * Why: every connection prepares its statements once, and after five executions PostgreSQL may
 * keep a generic plan, made with the statistics of that moment. Made on a new store's nearly empty
 * table, that plan is a sequential scan, and it stays one while 100,000 processes arrive, until
 * autovacuum analyzes the table (it looks once a minute: `autovacuum_naptime`). Measured here: a
 * worker's batch of 5 then took 358 ms to claim and complete instead of 6 ms, reading the whole
 * table each time. An ANALYZE rewrites the table's `pg_class` row, and that makes every session
 * plan its statements on the table again.
 *
 * So every {@link STATISTICS_CHECK_MS} the keeper compares each table's committed rows (the
 * cumulative statistics' `n_live_tup`) with the rows its planner statistics count
 * (`pg_class.reltuples`) and analyzes a table that more than doubled since (and is past
 * {@link SMALL_ROWS} rows): a few analyzes while a table fills up (each doubling), none while its
 * size stays. Rows, not pages: an ANALYZE during a bulk insert sees the pages but not the rows of
 * the transaction under way, and the planner, scaling the rows it was told of by the pages, would
 * still take the table for empty. `SKIP_LOCKED`: when another daemon of the cluster is analyzing
 * the table, this one does not queue behind it.
 *
 * @module
 */
import type pg from 'pg';
import { errorMessage } from '../../errors/index.js';
import type { Logger } from '../../logging/index.js';

/** How often the daemon's store compares the tables' sizes with their statistics. */
export const STATISTICS_CHECK_MS = 2000;

/** A table of at most this many rows is cheap to scan whatever the plan. */
const SMALL_ROWS = 500;

/** The tables whose rows the hot paths find by key (the others stay small). */
const TABLES = ['processes', 'journal', 'process_awaits', 'reports'] as const;

const SIZES_SQL = `SELECT c.relname AS name, greatest(c.reltuples, 0)::bigint AS analyzed, s.n_live_tup AS rows
  FROM unnest($1::text[]) AS t(name)
    JOIN pg_class c ON c.oid = to_regclass(t.name)
    JOIN pg_stat_user_tables s ON s.relid = c.oid`;

/** Keeps the statistics of {@link TABLES} in step with their size; see the module comment. */
export class StatisticsKeeper {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly log: Logger | undefined,
    intervalMs = STATISTICS_CHECK_MS,
  ) {
    this.timer = setInterval(() => {
      this.running ??= this.check()
        .catch((err: unknown) => this.log?.debug(`statistics check failed: ${errorMessage(err)}`))
        .finally(() => (this.running = null));
    }, intervalMs);
    this.timer.unref();
  }

  /** Analyzes the tables that outgrew their statistics; returns their names. */
  async check(): Promise<string[]> {
    const sizes = await this.pool.query<{ name: string; analyzed: number | string; rows: number | string }>(SIZES_SQL, [
      TABLES,
    ]);
    const grown = sizes.rows.filter((t) => Number(t.rows) > SMALL_ROWS && Number(t.rows) > 2 * Number(t.analyzed));
    for (const t of grown) {
      await this.pool.query(`ANALYZE (SKIP_LOCKED) ${t.name}`);
      this.log?.debug(`analyzed ${t.name}: ${t.rows} rows, its statistics counted ${t.analyzed}`);
    }
    return grown.map((t) => t.name);
  }

  /** Stops checking; waits for a check under way. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }
}
