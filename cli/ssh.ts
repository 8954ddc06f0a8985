// `warren ssh` and `warren proxy ssh`: a user reaches a node through any proxy. The proxy
// connection is TLS with the user's certificate (ALPN warren-ssh); `proxy ssh` splices it
// to standard input and output, which is what OpenSSH's ProxyCommand needs, and `warren ssh`
// runs the system's OpenSSH client with that ProxyCommand and the user's certificate.

import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connect, type TLSSocket } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { certSubject } from '../shared/cert-subject.ts'
import { parseHostPort, DEFAULTS } from '../shared/config.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { parseFlags, type FlagSpec } from './flags.ts'
import { CLUSTER_SERVER_NAME, USER_ALPN } from '../shared/protocol/tunnel.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { parseDialReply, type DialReply, type UserDialIn } from '../shared/protocol/dial.ts'
import { defaultProfileDir, loadProfile, profilePath, warrenCommand } from './profile.ts'

const COMMON: FlagSpec = {
  identity: { type: 'string', description: 'directory with the credentials from "warrenctl auth sign" (default ~/.warren)' },
  proxy: { type: 'string', description: 'HOST:PORT of a proxy\'s web port (default: from the credentials)' },
}

function proxyAddress(flags: Record<string, any>, dir: string): { host: string; port: number } {
  const proxy = flags.proxy ?? loadProfile(dir).proxies[0]
  if (!proxy) throw new UsageError('no proxy known: pass --proxy=HOST:PORT')
  return parseHostPort(proxy, DEFAULTS.webPort)
}

/** A user connection through the proxy to a service on a node, ready to carry raw bytes. */
export async function dialThroughProxy(flags: Record<string, any>, node: string, request: { service: 'ssh' | 'port'; name?: string }): Promise<TLSSocket> {
  const dir = flags.identity ?? defaultProfileDir()
  const { host, port } = proxyAddress(flags, dir)
  const socket = connect({
    host,
    port,
    ALPNProtocols: [USER_ALPN],
    ca: readFileSync(profilePath(dir, 'hostCA'), 'utf8'),
    cert: readFileSync(profilePath(dir, 'tlsCert'), 'utf8'),
    key: readFileSync(profilePath(dir, 'tlsKey'), 'utf8'),
    servername: CLUSTER_SERVER_NAME,
    checkServerIdentity: (_h, cert) => (certSubject(new X509Certificate(cert.raw)).roles.includes('proxy') ? undefined : new Error('not a proxy of this cluster')),
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve())
    socket.once('error', (error) => reject(new WarrenError(`cannot reach the proxy at ${host}:${port}: ${error.message}`)))
  })
  if (socket.alpnProtocol !== USER_ALPN) throw new WarrenError(`the server at ${host}:${port} does not accept user connections`)
  writeMessage<UserDialIn>(socket, { node, ...request })
  const reply = await readFirstMessage(socket, parseDialReply).catch((error: Error): DialReply => ({ ok: false, error: error.message }))
  if (!reply.ok) throw new WarrenError(`cannot reach node "${node}": ${reply.error}`)
  return socket
}

/** Splices standard input and output to `socket` until it closes. */
function pipeStdio(socket: TLSSocket): Promise<number> {
  process.stdin.pipe(socket)
  socket.pipe(process.stdout)
  return new Promise((resolve) => {
    socket.on('close', () => resolve(0))
    socket.on('error', () => resolve(1))
  })
}

/** `warren proxy ssh [--identity=DIR] [--proxy=HOST:PORT] login@node[:port]` — stdin/stdout to the node's SSH server. */
export async function proxySsh(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, COMMON, 'warren proxy ssh')
  if (args.length !== 1) throw new UsageError('usage: warren proxy ssh [--identity=DIR] [--proxy=HOST:PORT] login@node[:port]')
  const node = /^(?:[^@]+@)?(.+?)(?::\d+)?$/.exec(args[0])?.[1] ?? args[0]
  return pipeStdio(await dialThroughProxy(flags, node, { service: 'ssh' }))
}

/** `warren proxy port [--identity=DIR] [--proxy=HOST:PORT] NODE NAME` — stdin/stdout to a port the node's config declares. */
export async function proxyPort(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, COMMON, 'warren proxy port')
  if (args.length !== 2) throw new UsageError('usage: warren proxy port [--identity=DIR] [--proxy=HOST:PORT] NODE NAME')
  return pipeStdio(await dialThroughProxy(flags, args[0], { service: 'port', name: args[1] }))
}

/** `warren ssh [-p PORT] [--identity=DIR] [--proxy=HOST:PORT] login@node [command...]` */
export async function ssh(argv: string[]): Promise<number> {
  const split = argv.findIndex((arg) => !arg.startsWith('-') && arg.includes('@'))
  if (split < 0) throw new UsageError('usage: warren ssh [--identity=DIR] [--proxy=HOST:PORT] login@node [command...]')
  const { flags } = parseFlags(argv.slice(0, split), { ...COMMON, port: { type: 'string', short: 'p', description: 'the node\'s SSH port (informational)' }, tty: { type: 'boolean', short: 't', description: 'force a terminal' } }, 'warren ssh')
  const destination = argv[split]
  const command = argv.slice(split + 1)
  const dir = flags.identity ?? defaultProfileDir()
  loadProfile(dir)
  const proxyFlags = [`--identity=${dir}`, ...(flags.proxy ? [`--proxy=${flags.proxy}`] : [])].map((f) => `'${f}'`).join(' ')
  const args = [
    '-F', '/dev/null',
    '-o', `UserKnownHostsFile=${profilePath(dir, 'knownHosts')}`,
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'IdentitiesOnly=yes',
    '-o', `IdentityFile=${profilePath(dir, 'sshKey')}`,
    '-o', `CertificateFile=${profilePath(dir, 'sshCert')}`,
    '-o', `ProxyCommand=${warrenCommand()} proxy ssh ${proxyFlags} %r@%h:%p`,
    ...(flags.tty ? ['-t'] : []),
    ...(flags.port ? ['-p', String(flags.port)] : []),
    destination,
    ...command,
  ]
  const child = spawn('ssh', args, { stdio: 'inherit' })
  return new Promise((resolve, reject) => {
    child.on('error', (error) => reject(new WarrenError(`cannot run the OpenSSH client "ssh": ${error.message}`)))
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 255 : 1)))
  })
}
