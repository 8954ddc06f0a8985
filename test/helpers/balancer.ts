// A real round-robin load balancer (HAProxy, TCP mode, PROXY v2 headers) in front of the
// tunnel ports of proxies made with proxiesBehindBalancer(), so that one agent holds a
// tunnel to each of them.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { freePort, type ProxyProcess, tempDir } from './cluster.ts'

/** Why HAProxy tests cannot run here, or false when they can (for tap's `skip`). */
export function haproxyUnavailable(): string | false {
  return spawnSync('haproxy', ['-v']).status === 0 ? false : 'HAProxy is not installed (apt-get install haproxy)'
}

/** A free loopback address for the balancer, to give proxiesBehindBalancer() before it starts. */
export async function balancerAddress(): Promise<string> {
  return `127.0.0.1:${await freePort()}`
}

/** Starts HAProxy at `address` over the proxies' tunnel ports; the caller kills it. */
export function startBalancer(address: string, proxies: ProxyProcess[]): ChildProcess {
  const config = join(tempDir(), 'haproxy.cfg')
  writeFileSync(
    config,
    [
      'defaults',
      '  mode tcp',
      '  timeout connect 2s',
      '  timeout client 1h',
      '  timeout server 1h',
      'frontend tunnels',
      `  bind ${address}`,
      '  default_backend proxies',
      'backend proxies',
      '  balance roundrobin',
      ...proxies.map((proxy, i) => `  server p${i} ${proxy.tunnel} send-proxy-v2 check inter 300ms fall 1 rise 1`),
      '',
    ].join('\n'),
  )
  return spawn('haproxy', ['-db', '-f', config], { stdio: 'ignore' })
}
