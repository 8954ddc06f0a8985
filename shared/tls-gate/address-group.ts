// The source a per-address limit counts a connection against. One IPv4 address is one
// host (or one NAT); an IPv6 host is given a whole /64 by its network (RFC 6177 section 2)
// and can pick any address in it, so IPv6 addresses count per /64.

import { isIPv4, isIPv6 } from 'node:net'

/** `203.0.113.7` for IPv4 (also when IPv4-mapped), `2001:db8:1:2::/64` for IPv6; anything else as given. */
export function addressGroup(address: string): string {
  const bare = address.replace(/%.*$/, '')
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare)
  if (mapped) return mapped[1]!
  if (isIPv4(bare) || !isIPv6(bare)) return bare
  const prefix = ipv6Words(bare)
    .slice(0, 4)
    .map((word) => word.toString(16))
  return `${prefix.join(':')}::/64`
}

/** The eight 16-bit words of a valid IPv6 address (an embedded IPv4 tail counts as two). */
function ipv6Words(address: string): number[] {
  const [head = '', tail] = address.split('::')
  const first = words(head)
  if (tail === undefined) return first
  const last = words(tail)
  return [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last]
}

function words(part: string): number[] {
  if (part === '') return []
  return part.split(':').flatMap((group) => {
    if (!group.includes('.')) return [parseInt(group, 16)]
    const [a = 0, b = 0, c = 0, d = 0] = group.split('.').map(Number)
    return [(a << 8) | b, (c << 8) | d]
  })
}
