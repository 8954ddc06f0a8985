// Resident memory and CPU time of another process, from /proc (Linux).

import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'

const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  if (!match) throw new Error(`no VmRSS for process ${pid}`)
  return Number(match[1]) * 1024
}

/** User plus system CPU time in seconds, all threads. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name (which may contain spaces) start at field 3; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
}

/** The machine's CPU time so far, in ticks: busy (everything but idle and I/O wait) and total. */
export function machineCpu(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = fields.reduce((sum, value) => sum + value, 0)
  return { busy: total - fields[3]! - fields[4]!, total }
}

/** The share of one core each process used over `seconds` (1.0 = one core busy). */
export async function cpuShare(pids: number[], seconds: number): Promise<number[]> {
  const before = pids.map(cpuSeconds)
  const started = performance.now()
  await sleep(seconds * 1000)
  const elapsed = (performance.now() - started) / 1000
  return pids.map((pid, i) => (cpuSeconds(pid) - before[i]!) / elapsed)
}

/** `pid` and every process below it (sshd forks one or two processes per connection). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)])
  }
  const tree: number[] = []
  const visit = (id: number) => {
    tree.push(id)
    for (const child of children.get(id) ?? []) visit(child)
  }
  visit(pid)
  return tree
}

/** CPU seconds of processes that may have exited meanwhile (those count as 0). */
export function cpuSecondsOf(pids: number[]): number {
  let total = 0
  for (const pid of pids) {
    try {
      total += cpuSeconds(pid)
    } catch {
      // exited
    }
  }
  return total
}

/**
 * The CPU time a process and every process below it spend from now until stop(), those
 * that exit meanwhile included. Not every parent waits for its children (sshd's session
 * processes for a login other than root never reach its cutime), so the tree is read from
 * /proc every `intervalMs` and each process counted at its last reading: what a process
 * spends after the last one before it exits (at most `intervalMs` of it) is missed.
 */
export class TreeCpu {
  private readonly root: number
  private readonly atStart = new Map<number, number>()
  private readonly latest = new Map<number, number>()
  private readonly timer: NodeJS.Timeout

  constructor(root: number, intervalMs = 100) {
    this.root = root
    this.sample(this.atStart)
    this.timer = setInterval(() => this.sample(this.latest), intervalMs)
  }

  /** CPU seconds spent since the start: all of the tree, and the root process alone. */
  stop(): { total: number; root: number } {
    clearInterval(this.timer)
    this.sample(this.latest)
    let total = 0
    for (const [pid, seconds] of this.latest) total += seconds - (this.atStart.get(pid) ?? 0)
    return { total, root: (this.latest.get(this.root) ?? 0) - (this.atStart.get(this.root) ?? 0) }
  }

  private sample(into: Map<number, number>): void {
    for (const pid of processTree(this.root)) {
      try {
        into.set(pid, cpuSeconds(pid))
      } catch {
        // exited since the tree was read: its last reading stands
      }
    }
  }
}
