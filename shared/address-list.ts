// A list of IPs and CIDRs an address is looked up in: the load balancers whose PROXY headers
// a proxy believes, the addresses no direct node may report (auth/direct-nodes.ts). Backed by
// net.BlockList, which also matches IPv4 rules against IPv4-mapped IPv6 peers
// (`::ffff:10.0.0.1`), the form a dual-stack listener reports for IPv4 clients.

import { BlockList, isIP } from 'node:net'

export class AddressList {
  readonly #list = new BlockList()
  readonly #empty: boolean

  /** Entries are IPs or CIDRs (`10.0.0.0/8`, `fd00::/8`); throws on anything else, naming the entry as `what`. */
  constructor(entries: readonly string[], what: string) {
    for (const entry of entries) add(this.#list, entry.trim(), what)
    this.#empty = entries.length === 0
  }

  has(address: string): boolean {
    if (this.#empty) return false
    // A zone id (`fe80::1%eth0`) names the interface, not part of the address.
    const bare = address.replace(/%.*$/, '')
    const family = isIP(bare)
    if (family === 0) return false
    return this.#list.check(bare, family === 4 ? 'ipv4' : 'ipv6')
  }
}

function add(list: BlockList, entry: string, what: string): void {
  const [address = '', prefixText, extra] = entry.split('/')
  const family = isIP(address)
  const invalid = () => new Error(`invalid ${what} ${JSON.stringify(entry)}: want an IP address or CIDR such as 10.0.0.0/8`)
  if (family === 0 || address.includes('%') || extra !== undefined) throw invalid()
  const type = family === 4 ? 'ipv4' : 'ipv6'
  if (prefixText === undefined) {
    list.addAddress(address, type)
    return
  }
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN
  if (!(prefix <= (family === 4 ? 32 : 128))) throw invalid()
  list.addSubnet(address, prefix, type)
}
