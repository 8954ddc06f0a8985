// The node's SSH server alone, in the test's process, on a loopback port, for stock OpenSSH
// clients: logins resolve to real accounts (with `home` as their home and /bin/sh), users are
// trusted by `userCA`, and `knownHosts` names the server's host key for its port.

import { createPublicKey, type KeyObject } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import type { Test } from 'tap'
import { lookupPasswd } from '../../agent/login-accounts.ts'
import { NodeSshServer, type SshLimits, type SshServerOptions } from '../../agent/ssh-server.ts'
import type { Logger } from '../../shared/log.ts'
import { sshPublicKeyLine } from '../../shared/ssh-cert.ts'

export interface TestSshServerOptions {
  hostKey: KeyObject
  userCA: KeyObject
  home: string
  log: Logger
  /** Where the server's host key is written for its port (appended: several servers may share it). */
  knownHosts: string
  limits?: Partial<SshLimits>
  /** Where sessions are recorded and what the audit trail is told; default: neither. */
  recordingDir?: SshServerOptions['recordingDir']
  audit?: SshServerOptions['audit']
  /** The perl that opens ptys; default: the system's. */
  perl?: SshServerOptions['perl']
}

export async function startTestSshServer(t: Test, options: TestSshServerOptions): Promise<{ server: NodeSshServer; port: number }> {
  const server = new NodeSshServer({
    hostKeyPem: options.hostKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    userCAKeys: [sshPublicKeyLine(options.userCA)],
    log: options.log,
    resolveLogin: (login) => {
      const account = lookupPasswd(login)
      return account && { ...account, home: options.home, shell: '/bin/sh' }
    },
    forwardRefusal: () => undefined,
    ...(options.limits ? { limits: () => options.limits! } : {}),
    recordingDir: options.recordingDir,
    audit: options.audit,
    ...(options.perl ? { perl: options.perl } : {}),
  })
  const listener = createServer((socket) => server.handleConnection(socket))
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const port = (listener.address() as AddressInfo).port
  writeFileSync(options.knownHosts, `[127.0.0.1]:${port} ${sshPublicKeyLine(createPublicKey(options.hostKey))}\n`, { flag: 'a' })
  t.teardown(async () => {
    await server.close()
    listener.close()
  })
  return { server, port }
}
