// The node's SSH server alone, in the test's process, on a loopback port, for stock OpenSSH
// clients: logins resolve to real accounts (with `home` as their home and /bin/sh), users are
// trusted by `userCA`, and `knownHosts` names the server's host key for its port. And the
// client's side: a user key, certificates for it from `userCA`, and `ssh`'s arguments.

import { spawnSync } from 'node:child_process'
import { createPublicKey, type KeyObject } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { type AddressInfo, createServer } from 'node:net'
import { join } from 'node:path'
import type { Test } from 'tap'
import { lookupPasswd } from '../../agent/login-accounts.ts'
import { NodeSshServer, type SshLimits, type SshServerOptions } from '../../agent/ssh-server.ts'
import type { Logger } from '../../shared/log.ts'
import { createSshCertificate, parseSshPublicKey, sshPublicKeyLine } from '../../shared/ssh-cert.ts'

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

/**
 * `ssh`'s arguments (after `ssh`) to log in as root to 127.0.0.1:`port` with the key `key`
 * (and its certificate): no config, the host key checked against `knownHosts` only, no other
 * identities, no prompts; `more` before the destination.
 */
export function sshLoginArgs(knownHosts: string, key: string, port: number, ...more: string[]): string[] {
  const options = ['StrictHostKeyChecking=yes', `UserKnownHostsFile=${knownHosts}`, 'GlobalKnownHostsFile=/dev/null', 'IdentitiesOnly=yes', 'BatchMode=yes']
  return ['-F', '/dev/null', ...options.flatMap((o) => ['-o', o]), '-i', key, '-p', String(port), ...more, 'root@127.0.0.1']
}

export interface TestSshUser {
  /** The private key, made by ssh-keygen so that OpenSSH reads it as its own. */
  key: string
  /** Where servers' host keys are written (startTestSshServer's `knownHosts`) and clients check them. */
  knownHosts: string
  /**
   * Writes a user certificate of the key from `userCA`: key ID `keyId`, principal root, valid
   * from an hour ago to an hour from now, with `extensions`; to `path`, by default beside the
   * key, where `-i` finds it. Returns the path.
   */
  certify(keyId: string, extensions: Record<string, string>, path?: string): string
  /** sshLoginArgs with this key and known hosts. */
  sshArgs(port: number, ...more: string[]): string[]
}

/** A user key in `dir` whose certificates `userCA` signs, for logins to servers of startTestSshServer. */
export function testSshUser(dir: string, userCA: KeyObject): TestSshUser {
  const key = join(dir, 'id_ed25519')
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'test', '-f', key], { stdio: 'ignore' })
  const knownHosts = join(dir, 'known_hosts')
  return {
    key,
    knownHosts,
    certify(keyId, extensions, path = `${key}-cert.pub`) {
      const certificate = createSshCertificate({
        publicKey: parseSshPublicKey(readFileSync(`${key}.pub`, 'utf8')),
        caKey: userCA,
        type: 'user',
        keyId,
        principals: ['root'],
        validAfter: new Date(Date.now() - 3_600_000),
        validBefore: new Date(Date.now() + 3_600_000),
        extensions,
      })
      writeFileSync(path, `${certificate}\n`)
      return path
    },
    sshArgs: (port, ...more) => sshLoginArgs(knownHosts, key, port, ...more),
  }
}
