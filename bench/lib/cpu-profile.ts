// Where a process spent its time, from the .cpuprofile that `node --cpu-prof` writes on exit:
// self time per function and per source file, as shares of all samples.

import { readdirSync, readFileSync } from 'node:fs'
import { basename, join } from 'node:path'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  hitCount?: number
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
}

export interface ProfileSummary {
  /** Samples in which the process was doing something (all but "(idle)"); shares are of these. */
  samples: number
  /** The share of all samples that were busy. */
  busy: number
  functions: { name: string; share: number }[]
  files: { name: string; share: number }[]
}

/** The .cpuprofile files `node --cpu-prof --cpu-prof-dir=DIR` wrote in `dir` for process `pid`. */
export function profilesOf(dir: string, pid: number): string[] {
  return readdirSync(dir)
    .filter((file) => file.endsWith('.cpuprofile') && file.includes(`.${pid}.`))
    .map((file) => join(dir, file))
}

/** Self time per function and per file over all samples of the given profiles. */
export function summariseProfiles(files: string[], top = 20): ProfileSummary {
  const byFunction = new Map<string, number>()
  const byFile = new Map<string, number>()
  let total = 0
  let idle = 0
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
    const hits = new Map<number, number>()
    for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1)
    for (const node of profile.nodes) {
      const count = hits.get(node.id) ?? 0
      if (count === 0) continue
      const { functionName, url, lineNumber } = node.callFrame
      if (functionName === '(idle)') {
        idle += count
        continue
      }
      total += count
      const where = url ? `${shortUrl(url)}:${lineNumber + 1}` : ''
      const name = `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`
      byFunction.set(name, (byFunction.get(name) ?? 0) + count)
      const source = url ? shortUrl(url) : functionName || '(native)'
      byFile.set(source, (byFile.get(source) ?? 0) + count)
    }
  }
  const rank = (map: Map<string, number>) =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, count]) => ({ name, share: count / total }))
  return { samples: total, busy: total / (total + idle || 1), functions: rank(byFunction), files: rank(byFile) }
}

/** Project files relative to the repository, Node's internals as node:..., others by name. */
function shortUrl(url: string): string {
  const inRepo = /\/(agent|auth|proxy|shared|cli|bench|test)\/.+$/.exec(url)
  if (inRepo && !url.includes('node_modules')) return inRepo[0].slice(1)
  if (url.startsWith('node:')) return url
  return basename(url)
}

export function formatSummary(title: string, summary: ProfileSummary): string {
  const percent = (share: number) => `${(share * 100).toFixed(1).padStart(5)}%`
  return [
    `${title} (${summary.samples} busy samples, ${(summary.busy * 100).toFixed(1)}% of all; shares below are of the busy ones)`,
    '  self time by file:',
    ...summary.files.map((f) => `    ${percent(f.share)}  ${f.name}`),
    '  self time by function:',
    ...summary.functions.map((f) => `    ${percent(f.share)}  ${f.name}`),
  ].join('\n')
}
