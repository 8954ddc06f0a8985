// Process CPU and memory for every role's /metrics, under the names prom-client's default
// collectors give them (with the warren_ prefix), read from Node and /proc at each scrape.

import { readdirSync, readFileSync } from 'node:fs'
import { family, type MetricsRegistry } from './metrics-text.ts'

const PREFIX = 'warren_'

export function watchProcess(registry: MetricsRegistry): void {
  const startedAt = Math.round(Date.now() / 1000 - process.uptime())
  const [major, minor, patch] = process.versions.node.split('.')
  registry.add(() => {
    const cpu = process.cpuUsage()
    const memory = process.memoryUsage()
    const status = procStatus()
    const fds = openFds()
    const maxFds = maxOpenFds()
    const gauge = (name: string, help: string, value: number | undefined) => family(PREFIX + name, 'gauge', help, value === undefined ? [] : [{ value }])
    return [
      family(`${PREFIX}process_cpu_user_seconds_total`, 'counter', 'Total user CPU time spent in seconds.', [{ value: cpu.user / 1e6 }]),
      family(`${PREFIX}process_cpu_system_seconds_total`, 'counter', 'Total system CPU time spent in seconds.', [{ value: cpu.system / 1e6 }]),
      family(`${PREFIX}process_cpu_seconds_total`, 'counter', 'Total user and system CPU time spent in seconds.', [{ value: (cpu.user + cpu.system) / 1e6 }]),
      gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', startedAt),
      gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', status.VmRSS ?? memory.rss),
      gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', status.VmSize),
      gauge('process_heap_bytes', 'Process heap size in bytes.', status.VmData),
      gauge('process_open_fds', 'Number of open file descriptors.', fds),
      gauge('process_max_fds', 'Maximum number of open file descriptors.', maxFds),
      gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes.', memory.heapTotal),
      gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes.', memory.heapUsed),
      gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes.', memory.external),
      family(`${PREFIX}nodejs_version_info`, 'gauge', 'Node.js version info.', [{ labels: { version: process.version, major, minor, patch }, value: 1 }]),
    ].join('')
  })
}

/** VmRSS, VmSize and VmData of /proc/self/status in bytes; empty where there is no /proc. */
function procStatus(): Record<string, number> {
  const fields: Record<string, number> = {}
  try {
    for (const match of readFileSync('/proc/self/status', 'utf8').matchAll(/^(VmRSS|VmSize|VmData):\s+(\d+) kB$/gm)) fields[match[1]] = Number(match[2]) * 1024
  } catch {}
  return fields
}

function openFds(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1 // less the one readdir opened
  } catch {
    return undefined
  }
}

function maxOpenFds(): number | undefined {
  try {
    const limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    return limit ? Number(limit[1]) : undefined
  } catch {
    return undefined
  }
}
