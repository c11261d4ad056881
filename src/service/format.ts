/**
 * Human-readable report of an install or uninstall, as the commands print it.
 *
 * @module
 */
import { shellCommand, type ServiceActionResult } from './runner.js';
import type { InstalledUnitCheck } from './supervisor.js';

/** What the unit is, for messages. */
function what(r: ServiceActionResult): string {
  return r.init === 'systemd' ? `${r.unit} (systemd user unit)` : `${r.unit} (launchd agent)`;
}

/**
 * Formats a result: with `dryRun`, the rendered files in full and the commands that would run;
 * otherwise what was written, removed and run, and the equivalent manual commands. Warnings are
 * left to the caller (they go to stderr).
 */
export function formatServiceAction(r: ServiceActionResult): string {
  const lines: string[] = [];
  const verb = r.action === 'install' ? 'install' : 'uninstall';
  if (r.dryRun) {
    lines.push(`Dry run: would ${verb} ${what(r)} for profile '${r.profile}'; nothing was changed.`);
    for (const f of r.files) {
      if (f.action === 'write') {
        lines.push('', `# ${f.path}${f.reason ? ` (${f.reason})` : ''}`, f.content ?? '');
      } else {
        lines.push(`  would ${f.action.padEnd(6)} ${f.path}${f.reason ? ` (${f.reason})` : ''}`);
      }
    }
    if (r.commands.length > 0) {
      lines.push('Would run:');
      for (const c of r.commands) lines.push(`  ${shellCommand(c.argv)}`);
    }
  } else {
    lines.push(`${verb === 'install' ? 'Installed' : 'Uninstalled'} ${what(r)} for profile '${r.profile}'.`);
    for (const f of r.files) {
      const done = f.action === 'write' ? 'wrote' : f.action === 'remove' ? 'removed' : 'kept';
      lines.push(`  ${done.padEnd(7)} ${f.path}${f.reason ? ` (${f.reason})` : ''}`);
    }
    for (const c of r.commands) {
      const how = c.ignored ? ` (exit ${c.status}: ${c.ignored})` : '';
      lines.push(`  ${'ran'.padEnd(7)} ${shellCommand(c.argv)}${how}`);
    }
    if (r.manualCommands.length > 0) {
      lines.push(
        r.action === 'install'
          ? 'Equivalent manual commands (after writing the files above):'
          : 'Equivalent manual commands:',
      );
      for (const m of r.manualCommands) lines.push(`  ${m}`);
    }
  }
  for (const n of r.notes) lines.push(`Note: ${n}`);
  return lines.join('\n');
}

/**
 * One line about the profile's installed unit or agent for `drover daemon status`, e.g.
 * `Service: drover@p.service (systemd user unit; enabled, active) runs /usr/bin/node /x/bin/drover.js`,
 * or null when none is installed. Problems are left to the caller (they are warnings).
 */
export function formatUnitCheck(c: InstalledUnitCheck): string | null {
  if (!c.installed || c.unit === null) return null;
  const kind = c.supervisor === 'launchd' ? 'launchd agent' : 'systemd user unit';
  const facts: string[] = [];
  if (c.enabled !== undefined) facts.push(c.enabled ? 'enabled' : 'not enabled');
  if (c.state !== undefined) facts.push(c.state);
  else if (c.active !== undefined) facts.push(c.active ? 'active' : 'inactive');
  const runs = c.nodePath !== null && c.cliPath !== null ? ` runs ${shellCommand([c.nodePath, c.cliPath])}` : '';
  return `Service: ${c.unit} (${kind}${facts.length > 0 ? `; ${facts.join(', ')}` : ''})${runs}`;
}
