// Listening as net's `server.listen()` does, less its first step: listen() first loads the
// cluster module (to ask whether a cluster primary holds the address), which loads
// child_process and dgram too, 0.7 MB of an idle agent's memory that nothing else uses
// (bench:footprint). `_listen2` is the step that listen() then takes in a process that is
// not a cluster worker, which a warren process never is. Where Node has no `_listen2`, or
// a host name must be looked up first, plain listen() does it all.

import { isIP, type Server } from 'node:net'

/** net's default backlog for listen(). */
const LISTEN_BACKLOG = 511

type Internal = Server & { _pipeName?: string; _listen2?: (address: string, port: number, addressType: number, backlog: number) => void }

/** Listens on the Unix socket `path`; 'listening' or 'error' follows on the server. */
export function listenOnPath(server: Server, path: string): void {
  const internal = server as Internal
  if (typeof internal._listen2 !== 'function') {
    server.listen(path)
    return
  }
  internal._pipeName = path // what address() reports for a socket
  internal._listen2(path, -1, -1, LISTEN_BACKLOG)
}

/** Listens on TCP `host`:`port` (0: a free one); 'listening' or 'error' follows on the server. */
export function listenOnTcp(server: Server, host: string, port: number): void {
  const internal = server as Internal
  const family = isIP(host)
  if (typeof internal._listen2 !== 'function' || family === 0) {
    server.listen(port, host)
    return
  }
  internal._listen2(host, port, family, LISTEN_BACKLOG)
}
