/**
 * PostgreSQL URLs for messages. Kept apart from the adapter so that naming a database does not load
 * `pg`.
 *
 * @module
 */

/** The URL without its password, for messages. */
export function displayPostgresUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable PostgreSQL URL)';
  }
}
