// IP addresses as the 4 or 16 bytes that binary wire formats carry, and back. Node parses
// and checks address text (net.isIP) but has no conversion to or from bytes.

import { isIPv4, isIPv6 } from 'node:net'

/** 4 bytes for IPv4, 16 for IPv6; throws on anything else (including zone ids). */
export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number))
  if (!isIPv6(ip) || ip.includes('%')) throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`)
  const [head = '', tail] = ip.split('::')
  const first = groups(head)
  const last = tail === undefined ? [] : groups(tail)
  const words = tail === undefined ? first : [...first, ...new Array<number>(8 - first.length - last.length).fill(0), ...last]
  const bytes = Buffer.alloc(16)
  words.forEach((word, i) => {
    bytes.writeUInt16BE(word, i * 2)
  })
  return bytes
}

/** The 16-bit groups of one side of `::`; an embedded IPv4 tail counts as two. */
function groups(part: string): number[] {
  if (part === '') return []
  return part.split(':').flatMap((group) => {
    if (!group.includes('.')) return [parseInt(group, 16)]
    const [a = 0, b = 0, c = 0, d = 0] = group.split('.').map(Number)
    return [(a << 8) | b, (c << 8) | d]
  })
}

export function formatIPv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`
}

/**
 * RFC 5952 text: lower case, no leading zeros, the longest run of two or more zero groups
 * as `::`. IPv4-mapped addresses print as `::ffff:a.b.c.d`, the form Node gives for
 * `socket.remoteAddress`, so addresses from a PROXY header compare equal to socket ones.
 */
export function formatIPv6(bytes: Uint8Array): string {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, 16)
  const words: number[] = []
  for (let i = 0; i < 16; i += 2) words.push(view.readUInt16BE(i))
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return `::ffff:${formatIPv4(view.subarray(12))}`

  let bestStart = -1
  let bestLength = 1 // a single zero group is never shortened
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLength) {
      bestStart = i
      bestLength = j - i
    }
    i = j
  }
  const hex = (list: number[]) => list.map((w) => w.toString(16)).join(':')
  if (bestStart === -1) return hex(words)
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`
}
