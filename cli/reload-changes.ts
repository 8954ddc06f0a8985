// What a SIGHUP cannot apply: the config file's keys that changed since the process started,
// other than those a reload applies (RELOADED). They are named in the log and in
// `warren status`, so that "reloaded" never claims a change that waits for a restart.

import { parse } from 'yaml'

/** The YAML keys a reload applies (cli/start.ts onHangup, agent.reload), and what lies under them. */
export const RELOADED = ['log.level', 'labels', 'ssh_service.forward_ports', 'ssh_service.port_forwarding'] as const

/** Dotted paths of the values that differ between two parsed documents (a list as one value). */
function changedPaths(before: unknown, after: unknown, path: string): string[] {
  const isSection = (value: unknown) => typeof value === 'object' && value !== null && !Array.isArray(value)
  // A section written on one side only: its keys, each against nothing.
  if ((isSection(before) || before === undefined) && (isSection(after) || after === undefined) && before !== after) {
    const [a, b] = [(before ?? {}) as Record<string, unknown>, (after ?? {}) as Record<string, unknown>]
    return [...new Set([...Object.keys(a), ...Object.keys(b)])].flatMap((key) => changedPaths(a[key], b[key], path ? `${path}.${key}` : key))
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [path || '(the whole file)']
}

/** The keys changed from `startText` (the file the process started with) to `nowText` that a reload does not apply. */
export function keysNeedingRestart(startText: string, nowText: string): string[] {
  const applied = (path: string) => RELOADED.some((key) => path === key || path.startsWith(`${key}.`))
  return changedPaths(parse(startText) ?? {}, parse(nowText) ?? {}, '').filter((path) => !applied(path))
}
