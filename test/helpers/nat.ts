// Real NAT for tests: four network namespaces the test creates and removes itself.
//   wan    — the internet side: auth server, proxies, users (10.231.<n>.1/24)
//   router — forwards between them and masquerades the LAN behind its WAN address
//   lan    — the device (192.168.<n>.2/24), which can dial out but cannot be dialled
//   site   — a host on the WAN side with an address of its own (10.232.<n>.2/24, next to
//            the wan namespace's 10.232.<n>.1), which anyone there can dial
// The addresses exist only inside these namespaces.

import { execFileSync } from 'node:child_process'

export interface NatTopology {
  wan: string
  router: string
  lan: string
  site: string
  wanAddress: string
  routerWanAddress: string
  deviceAddress: string
  siteAddress: string
  /** Starts dropping forwarded packets silently (no FIN, no RST). */
  dropForwarded(): void
  /** Stops dropping. */
  heal(): void
  remove(): void
}

function sh(args: string[]): string {
  return execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

/** Why NAT tests cannot run here, or undefined when they can. */
export function natUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root'
  try {
    sh(['ip', 'netns', 'add', 'warren-probe'])
    sh(['ip', 'netns', 'del', 'warren-probe'])
    sh(['nft', '--version'])
  } catch (error) {
    return `network namespaces or nftables unavailable: ${(error as Error).message.split('\n')[0]}`
  }
  return undefined
}

export function createNat(): NatTopology {
  const n = (process.pid % 200) + 20
  const id = `w${process.pid}`
  const wan = `${id}-wan`
  const router = `${id}-rtr`
  const lan = `${id}-lan`
  const site = `${id}-site`
  const wanNet = `10.231.${n}`
  const siteNet = `10.232.${n}`
  const lanNet = `192.168.${n}`
  const inNs = (ns: string, ...args: string[]) => sh(['ip', 'netns', 'exec', ns, ...args])
  const topology: NatTopology = {
    wan,
    router,
    lan,
    site,
    wanAddress: `${wanNet}.1`,
    routerWanAddress: `${wanNet}.2`,
    deviceAddress: `${lanNet}.2`,
    siteAddress: `${siteNet}.2`,
    dropForwarded: () => {
      inNs(router, 'nft', 'add', 'rule', 'ip', 'filt', 'forw', 'drop')
    },
    heal: () => {
      inNs(router, 'nft', 'flush', 'chain', 'ip', 'filt', 'forw')
    },
    remove: () => {
      for (const ns of [wan, router, lan, site]) {
        try {
          sh(['ip', 'netns', 'del', ns])
        } catch {
          // already gone
        }
      }
    },
  }
  // Namespaces by these names belong to an earlier process with this PID, killed before its teardown.
  topology.remove()
  try {
    for (const ns of [wan, router, lan, site]) {
      sh(['ip', 'netns', 'add', ns])
      inNs(ns, 'ip', 'link', 'set', 'lo', 'up')
    }
    // wan <-> router
    sh(['ip', 'link', 'add', `${id}-w0`, 'netns', wan, 'type', 'veth', 'peer', 'name', `${id}-r0`, 'netns', router])
    // router <-> lan
    sh(['ip', 'link', 'add', `${id}-r1`, 'netns', router, 'type', 'veth', 'peer', 'name', `${id}-l0`, 'netns', lan])
    inNs(wan, 'ip', 'addr', 'add', `${wanNet}.1/24`, 'dev', `${id}-w0`)
    inNs(wan, 'ip', 'link', 'set', `${id}-w0`, 'up')
    inNs(router, 'ip', 'addr', 'add', `${wanNet}.2/24`, 'dev', `${id}-r0`)
    inNs(router, 'ip', 'addr', 'add', `${lanNet}.1/24`, 'dev', `${id}-r1`)
    inNs(router, 'ip', 'link', 'set', `${id}-r0`, 'up')
    inNs(router, 'ip', 'link', 'set', `${id}-r1`, 'up')
    inNs(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
    inNs(lan, 'ip', 'addr', 'add', `${lanNet}.2/24`, 'dev', `${id}-l0`)
    inNs(lan, 'ip', 'link', 'set', `${id}-l0`, 'up')
    inNs(lan, 'ip', 'route', 'add', 'default', 'via', `${lanNet}.1`)
    // wan <-> site: one network, no NAT
    sh(['ip', 'link', 'add', `${id}-w1`, 'netns', wan, 'type', 'veth', 'peer', 'name', `${id}-s0`, 'netns', site])
    inNs(wan, 'ip', 'addr', 'add', `${siteNet}.1/24`, 'dev', `${id}-w1`)
    inNs(wan, 'ip', 'link', 'set', `${id}-w1`, 'up')
    inNs(site, 'ip', 'addr', 'add', `${siteNet}.2/24`, 'dev', `${id}-s0`)
    inNs(site, 'ip', 'link', 'set', `${id}-s0`, 'up')
    inNs(site, 'ip', 'route', 'add', 'default', 'via', `${siteNet}.1`)
    inNs(router, 'nft', 'add', 'table', 'ip', 'nat')
    inNs(router, 'nft', 'add chain ip nat post { type nat hook postrouting priority 100 ; }')
    inNs(router, 'nft', 'add', 'rule', 'ip', 'nat', 'post', 'oifname', `${id}-r0`, 'masquerade')
    inNs(router, 'nft', 'add', 'table', 'ip', 'filt')
    inNs(router, 'nft', 'add chain ip filt forw { type filter hook forward priority 0 ; }')
  } catch (error) {
    topology.remove()
    throw error
  }
  return topology
}
