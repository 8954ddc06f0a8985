// A device behind a slow link, for tests and `bench:slow-link`: a network namespace reached
// over a veth pair whose two ends a token bucket (`tc ... tbf`) can hold to a rate, as a
// cellular or satellite uplink would. The host keeps its side's address; the device's
// exists only in the namespace, which is removed at exit (and any leftover of this PID's
// first).

import { execFileSync } from 'node:child_process'

export interface SlowLink {
  /** The namespace to run the device's processes in. */
  ns: string
  /** The host's end of the veth pair: where the device reaches the proxy. */
  hostSide: string
  deviceSide: string
  /** Holds both ends to `rate` (tc's notation: `2mbit`), with a 400 ms queue. */
  limit(rate: string): void
  /** Lifts the limit. */
  unlimit(): void
  remove(): void
}

const sh = (...argv: string[]) => execFileSync(argv[0]!, argv.slice(1), { stdio: 'pipe' })

/** Why a slow link cannot be made here, or undefined when it can. */
export function slowLinkUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root'
  try {
    sh('tc', '-V')
  } catch {
    return "iproute2's tc is missing"
  }
  return undefined
}

export function createSlowLink(): SlowLink {
  const ns = `wsl${process.pid}`
  const subnet = `10.251.${process.pid % 250}`
  const [hostSide, deviceSide] = [`${subnet}.1`, `${subnet}.2`]
  const inNs = (...argv: string[]) => sh('ip', 'netns', 'exec', ns, ...argv)
  const remove = () => {
    try {
      sh('ip', 'netns', 'del', ns)
    } catch {
      // not made, or gone
    }
    try {
      sh('ip', 'link', 'del', `${ns}a`)
    } catch {
      // gone with the namespace
    }
  }
  remove()
  process.on('exit', remove)
  sh('ip', 'netns', 'add', ns)
  sh('ip', 'link', 'add', `${ns}a`, 'type', 'veth', 'peer', 'name', `${ns}b`, 'netns', ns)
  sh('ip', 'addr', 'add', `${hostSide}/30`, 'dev', `${ns}a`)
  sh('ip', 'link', 'set', `${ns}a`, 'up')
  inNs('ip', 'link', 'set', 'lo', 'up')
  inNs('ip', 'addr', 'add', `${deviceSide}/30`, 'dev', `${ns}b`)
  inNs('ip', 'link', 'set', `${ns}b`, 'up')
  inNs('ip', 'route', 'add', 'default', 'via', hostSide)
  const ends = [
    [sh, `${ns}a`],
    [inNs, `${ns}b`],
  ] as const
  return {
    ns,
    hostSide,
    deviceSide,
    limit(rate) {
      for (const [run, dev] of ends) run('tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '32kbit', 'latency', '400ms')
    },
    unlimit() {
      for (const [run, dev] of ends) {
        try {
          run('tc', 'qdisc', 'del', 'dev', dev, 'root')
        } catch {
          // no limit set
        }
      }
    },
    remove,
  }
}
