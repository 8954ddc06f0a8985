// Keeps a TCP socket's unsent bytes in the kernel short (Linux's TCP_NOTSENT_LOWAT), so that
// what a multiplexed connection queues for one stream waits in our process, where a frame of
// another stream can still go ahead of it, and not in the kernel, where it cannot. Without
// it the kernel takes up to its send buffer (megabytes) of a bulk copy, and on a slow uplink
// a keystroke's echo waits behind all of it (`npm run bench:slow-link`).
//
// Node cannot set a socket option, but a socket option belongs to the socket, not to the
// descriptor: perl, given the socket as its fd 3, sets it and exits. perl-base is essential
// on Debian-based systems; where there is no perl the socket keeps the kernel's default.

import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import type { Socket } from 'node:net'

/** Linux's TCP_NOTSENT_LOWAT (include/uapi/linux/tcp.h) at level IPPROTO_TCP (6). */
const TCP_NOTSENT_LOWAT = 25
const IPPROTO_TCP = 6

/**
 * Unsent bytes below which the kernel reports a slow link's socket writable: one frame of the
 * paced session's least backlog (shared/yamux/output-pacer.ts). The kernel still takes
 * writes past it, so it bounds only what is queued when the pacer's drain waits end; with
 * 16 KiB (what Cloudflare and Apple run with for HTTP/2) a keystroke's echo beside a copy
 * waited about twice as long as with 4 KiB, the copy as fast (`bench:slow-link`,
 * bench/results/2026-12-08-slow-link-delay.md).
 */
export const UNSENT_LIMIT_BYTES = 4 * 1024

const PERL_PATHS = ['/usr/bin/perl', '/bin/perl', '/usr/local/bin/perl']

const SET_OPTION = `open(my $s, "+<&=3") or exit 2; setsockopt($s, ${IPPROTO_TCP}, ${TCP_NOTSENT_LOWAT}, pack("i", $ARGV[0])) or exit 3; exit 0`

/** The descriptor of the TCP connection under `socket` (a TLS socket's too), if it has one. */
function tcpDescriptor(socket: Socket): number | undefined {
  type Handle = { fd?: number; _parent?: Handle }
  const handle = (socket as unknown as { _handle?: Handle })._handle
  const fd = handle?._parent?.fd ?? handle?.fd
  return typeof fd === 'number' && fd >= 0 ? fd : undefined
}

/**
 * Sets TCP_NOTSENT_LOWAT on the connection under `socket`. Resolves whether it is set:
 * false off Linux, without perl, or when the socket has no descriptor (closed already).
 */
export function limitUnsentBytes(socket: Socket, bytes: number): Promise<boolean> {
  const fd = tcpDescriptor(socket)
  const perl = PERL_PATHS.find((path) => existsSync(path))
  if (process.platform !== 'linux' || fd === undefined || perl === undefined) return Promise.resolve(false)
  return new Promise((resolve) => {
    try {
      const child = spawn(perl, ['-e', SET_OPTION, String(bytes)], { stdio: ['ignore', 'ignore', 'ignore', fd], env: {} })
      child.once('error', () => resolve(false))
      child.once('exit', (code) => resolve(code === 0))
    } catch {
      // spawn throws for some failures (a descriptor gone bad, ENOMEM) rather than emitting 'error'.
      resolve(false)
    }
  })
}
