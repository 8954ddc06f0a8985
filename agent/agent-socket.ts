// `warren agent-socket`: makes the Unix socket of a forwarded SSH agent as the login, so
// that the socket and its directory (mode 0700) are the login's own, then hands the
// listening socket to the node over the IPC channel it was started with and exits. The node
// needs no CAP_CHOWN for it (the packaged unit leaves it out). Not for people: only the
// node runs it, as the login.

import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** What the node receives with the listening socket. */
export interface AgentSocketMessage {
  path: string
}

export async function agentSocketCommand(): Promise<number> {
  if (!process.send) {
    process.stderr.write('warren agent-socket: the node runs this for ssh -A, with an IPC channel\n')
    return 2
  }
  const dir = mkdtempSync(join(tmpdir(), 'warren-agent-'))
  const path = join(dir, 'agent.sock')
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, resolve)
  })
  const message: AgentSocketMessage = { path }
  await new Promise<void>((resolve, reject) => process.send!(message, server, (error: Error | null) => (error ? reject(error) : resolve())))
  // Exit without closing: closing would remove the socket the node now listens on.
  process.exit(0)
}
