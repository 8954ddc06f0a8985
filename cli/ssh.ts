// `warren ssh` and `warren proxy ssh`: a user reaches a node through any proxy. The proxy
// connection is TLS with the user's certificate (ALPN warren-ssh); `proxy ssh` splices it
// to standard input and output, which is what OpenSSH's ProxyCommand needs, and `warren ssh`
// runs the system's OpenSSH client with that ProxyCommand and the user's certificate; on a
// label selector instead of a node, on every node that matches (fleet-ssh.ts).

import { spawn } from 'node:child_process'
import { type KeyObject, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { parseHostPort } from '../shared/address.ts'
import { certSubject } from '../shared/cert-subject.ts'
import { DEFAULTS } from '../shared/config.ts'
import { UsageError, WarrenError } from '../shared/errors.ts'
import { tuneHeapForForwarding } from '../shared/heap-tuning.ts'
import { type PortProof, signPortRequest } from '../shared/port-request-proof.ts'
import { printable } from '../shared/printable.ts'
import { type DialReply, parseDialReply, type UserDialIn } from '../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../shared/protocol/framing.ts'
import { CLUSTER_SERVER_NAME, USER_ALPN } from '../shared/protocol/tunnel.ts'
import { isSelector, parseSelectors } from '../shared/selectors.ts'
import { forward } from '../shared/splice.ts'
import { readOpenSshPrivateKey } from '../shared/ssh-key-file.ts'
import { defineCommand } from './command.ts'
import { defineFlags, type FlagValues } from './flags.ts'
import { DEFAULT_MAX_PARALLEL, failed, formatSummary, runOnNodes } from './fleet-ssh.ts'
import { forgetHostKeys, HOST_KEYS_DIR, refreshHostKeys } from './host-keys.ts'
import { DEFAULT_LISTEN_HOST, listenAndDial, parseListenAddress } from './port-listen.ts'
import { defaultProfileDir, loadProfile, profilePath, warrenCommand } from './profile.ts'
import { credentialsDir, reachableNodes, USER_FLAGS } from './reachable.ts'
import { proxyCommand, sshPath, sshWord } from './ssh-options.ts'
import { checkFdpassChannel, dialSshStream, handOver } from './ssh-stream.ts'

const COMMON = defineFlags({
  identity: { type: 'path', placeholder: 'DIR', defaultText: '$WARREN_HOME, else ~/.warren', description: 'directory with the credentials from "warrenctl auth sign"' },
  proxy: { type: 'string', placeholder: 'HOST:PORT', defaultText: 'the first proxy of the credentials', description: "a proxy's web port" },
})

type ProxyFlags = FlagValues<typeof COMMON>

export function proxyAddress(flags: ProxyFlags, dir: string): { host: string; port: number } {
  const proxy = flags.proxy ?? loadProfile(dir).proxies[0]
  if (!proxy) throw new UsageError('no proxy known: pass --proxy=HOST:PORT')
  return parseHostPort(proxy, DEFAULTS.webPort)
}

/** A user connection through the proxy to a service on a node, ready to carry raw bytes. */
export async function dialThroughProxy(flags: ProxyFlags, node: string, request: { service: 'ssh' | 'port'; name?: string }): Promise<TLSSocket> {
  const dir = flags.identity ?? defaultProfileDir()
  const { host, port } = proxyAddress(flags, dir)
  // A forwarded port is judged by the node too, from the user's SSH certificate and the
  // request signed by its key (shared/port-request-proof.ts).
  const certificate = request.service === 'port' ? readSshCertificate(dir) : undefined
  const proof = request.service === 'port' ? signedPortRequest(dir, node, request.name ?? '') : undefined
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
  // Keystrokes are small writes: Nagle's algorithm would hold one back behind another's ACK.
  socket.setNoDelay(true)
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve())
    socket.once('error', (error) => reject(new WarrenError(`cannot reach the proxy at ${host}:${port}: ${error.message}`)))
  })
  if (socket.alpnProtocol !== USER_ALPN) throw new WarrenError(`the server at ${host}:${port} does not accept user connections`)
  writeMessage<UserDialIn>(socket, { node, ...request, certificate, proof })
  const reply = await readFirstMessage(socket, parseDialReply).catch((error: Error): DialReply => ({ ok: false, error: error.message }))
  if (!reply.ok) throw new WarrenError(`cannot reach node "${node}": ${reply.error}`)
  return socket
}

/** A port request signed with the user's SSH key: one per stream (`--listen` opens one per connection). */
function signedPortRequest(dir: string, node: string, port: string): PortProof {
  let key: KeyObject
  try {
    key = readOpenSshPrivateKey(readFileSync(profilePath(dir, 'sshKey'), 'utf8'))
  } catch (error) {
    throw new WarrenError(`cannot read the SSH key in ${dir}: ${(error as Error).message}`)
  }
  return signPortRequest(key, { cluster: loadProfile(dir).cluster_name, node, port })
}

function readSshCertificate(dir: string): string {
  try {
    return readFileSync(profilePath(dir, 'sshCert'), 'utf8').trim()
  } catch (error) {
    throw new WarrenError(`cannot read the SSH certificate in ${dir}: ${(error as Error).message}`)
  }
}

/**
 * Splices standard input and output to `socket` until it closes, with the backlog and the
 * batching of a splice (`shared/splice.ts`): `pipe` paused standard input at every write the
 * TLS socket counted as unsent (bench:ssh, warren-ssh up).
 */
function pipeStdio(socket: TLSSocket): Promise<number> {
  tuneHeapForForwarding('client')
  forward(process.stdin, socket)
  forward(socket, process.stdout)
  return new Promise((resolve) => {
    socket.on('close', () => {
      // Nothing more can go anywhere: a standard input still read would keep the process, and
      // so the ssh that runs it, waiting on a dead connection.
      process.stdin.destroy()
      resolve(0)
    })
    socket.on('error', () => resolve(1))
  })
}

export const proxySshCommand = defineCommand({
  name: 'warren proxy ssh',
  summary: "standard input and output to a node's SSH server: an OpenSSH ProxyCommand",
  operands: ['login@node[:port]'],
  flags: {
    ...COMMON,
    fdpass: {
      type: 'boolean',
      description: 'hand the connection itself to OpenSSH (ProxyUseFdpass yes) as a plain SSH stream: no process copies the bytes, and the proxy no TLS layer around them',
    },
  },
  description: 'OpenSSH runs it with the tokens %r@%h:%p; the ssh_config that "warrenctl auth sign --format=openssh" writes names it.',
  examples: ['ssh -o "ProxyCommand=warren proxy ssh %r@%h:%p" root@pi-1', 'warren proxy ssh --identity=~/.warren --proxy=proxy.example.com:3080 root@pi-1:22'],
  async run(flags, args) {
    const node = /^(?:[^@]+@)?(.+?)(?::\d+)?$/.exec(args[0])?.[1] ?? args[0]
    const dir = flags.identity ?? defaultProfileDir()
    if (flags.fdpass) checkFdpassChannel()
    const dial = () => {
      if (!flags.fdpass) return dialThroughProxy(flags, node, { service: 'ssh' })
      const { host, port } = proxyAddress(flags, dir)
      return dialSshStream(host, port, dir, node)
    }
    // Both before the node's first byte reaches OpenSSH, which then checks its host key.
    const [socket] = await Promise.all([
      dial(),
      refreshHostKeys(dir, flags.proxy, node).catch((error: Error) => {
        // No key then, rather than one the cluster no longer vouches for: OpenSSH refuses the node.
        forgetHostKeys(dir, node)
        process.stderr.write(`warren: cannot refresh the host keys of "${node}", so none is known for it: ${printable(error.message)}\n`)
      }),
    ])
    return flags.fdpass ? handOver(socket) : pipeStdio(socket as TLSSocket)
  },
})

export const proxyPortCommand = defineCommand({
  name: 'warren proxy port',
  summary: 'standard input and output, or a local listener, to a TCP port that a node declares (ssh_service.forward_ports)',
  operands: ['NODE', 'NAME'],
  flags: {
    ...COMMON,
    listen: {
      type: 'string',
      placeholder: '[HOST:]PORT',
      description: `a local listener instead of standard input and output, as ssh -L has (host ${DEFAULT_LISTEN_HOST} unless given; port 0 picks a free one): each connection opens its own stream`,
    },
  },
  description: `With --listen, the first line of standard output is "listening on HOST:PORT"; a connection the proxy or the node refuses is told on standard error and closed, and the listener goes on until SIGTERM or Ctrl-C.`,
  examples: [
    'warren proxy port pi-1 webui',
    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | warren proxy port --proxy=proxy.example.com:3080 pi-1 webui",
    'warren proxy port --listen=8080 pi-1 webui',
  ],
  async run(flags, args) {
    const [node, name] = args
    const dial = () => dialThroughProxy(flags, node, { service: 'port', name })
    if (flags.listen === undefined) return pipeStdio(await dial())
    const address = parseListenAddress(flags.listen)
    await checkReachable(flags, node)
    return listenAndDial(address, dial)
  },
})

/** Fails before listening when the user's roles reach no node of that name or host ID. */
async function checkReachable(flags: ProxyFlags, node: string): Promise<void> {
  const nodes = await reachableNodes(flags.identity ?? defaultProfileDir(), flags.proxy, [])
  if (!nodes.some((present) => present.nodename === node || present.host_id === node)) {
    throw new WarrenError(`cannot reach node "${node}": no node you may reach has that name or host ID ("warren ls" lists them)`)
  }
}

export const sshCommand = defineCommand({
  name: 'warren ssh',
  summary: "log in to a node through a proxy with the system's OpenSSH client, or run a command on every node a label selector matches",
  operands: ['login@node', '[command...]'],
  flags: {
    ...USER_FLAGS,
    port: { type: 'string', short: 'p', placeholder: 'PORT', description: "the node's SSH port (informational)" },
    tty: { type: 'boolean', short: 't', description: 'force a terminal' },
    'max-parallel': { type: 'string', placeholder: 'N', default: String(DEFAULT_MAX_PARALLEL), description: 'with a selector: how many nodes run the command at once' },
    fdpass: { type: 'boolean', description: 'ssh talks to the proxy itself over a plain SSH stream (ProxyUseFdpass): no process of ours copies the bytes' },
  },
  flagsEndAtFirstArgument: true,
  description: `Host keys are checked strictly against the known_hosts of the credentials. Flags go before login@node; what follows it is the command to run.

With a label selector for the node (login@env=lab,site=*: key=value or key=*, all must match), the command runs on every node you may reach that matches, each output line prefixed with [node-name]; then a summary of each node's result on standard error. The exit status is 0 when the command succeeded everywhere, 1 when it failed on any node or no node matched.`,
  examples: ['warren ssh root@pi-1', 'warren ssh --identity=~/creds root@pi-1 uptime', "warren ssh --max-parallel=8 root@env=lab,site=berlin 'uptime'"],
  run: (flags, args) => ssh(flags, args[0], args.slice(1)),
})

type SshFlags = ProxyFlags & { cluster?: string; port?: string; tty: boolean; 'max-parallel': string; fdpass?: boolean }

async function ssh(flags: SshFlags, destination: string, command: string[]): Promise<number> {
  const at = destination.lastIndexOf('@')
  if (at <= 0 || at === destination.length - 1) throw new UsageError(`"warren ssh" needs login@node, not ${JSON.stringify(destination)}`)
  const dir = credentialsDir(flags)
  loadProfile(dir)
  const host = destination.slice(at + 1)
  if (isSelector(host)) return sshOnSelection(flags, dir, destination.slice(0, at), host, command)
  return runSsh(opensshArgs(flags, dir, [...(flags.tty ? ['-t'] : []), ...(flags.port ? ['-p', String(flags.port)] : []), destination, ...command]))
}

/** `warren ssh login@SELECTOR command`: the command on every matching node the user may reach. */
async function sshOnSelection(flags: SshFlags, dir: string, login: string, selector: string, command: string[]): Promise<number> {
  const selectors = parseSelectors([selector])
  if (command.length === 0) throw new UsageError(`an interactive session needs one node: name it (login@node), or give a command to run on every node "${selector}" matches`)
  if (flags.tty) throw new UsageError('--tty is for one node: a command on several nodes runs without a terminal')
  const maxParallel = Number(flags['max-parallel'])
  if (!Number.isInteger(maxParallel) || maxParallel < 1) throw new UsageError(`--max-parallel must be a whole number of at least 1, not ${JSON.stringify(flags['max-parallel'])}`)
  const nodes = await reachableNodes(dir, flags.proxy, selectors)
  if (nodes.length === 0) throw new WarrenError(`no node you may reach matches "${selector}" ("warren ls" lists them)`)
  // Nothing may ask a question: several sessions share one terminal. The host ID names the
  // node without doubt (known_hosts names each node by it too).
  const fixed = ['-n', '-T', '-o', 'BatchMode=yes', ...(flags.port ? ['-p', String(flags.port)] : [])]
  const outcomes = await runOnNodes(nodes, maxParallel, (node) => opensshArgs(flags, dir, [...fixed, `${login}@${node.host_id}`, ...command]))
  process.stderr.write(formatSummary(outcomes))
  return outcomes.some(failed) ? 1 : 0
}

/**
 * OpenSSH's arguments: the credentials of `dir`, strict host keys, warren as the ProxyCommand,
 * then `rest`. Each path is one word to OpenSSH's option parser and taken as it is (ssh-options.ts).
 */
export function opensshArgs(flags: ProxyFlags & { fdpass?: boolean }, dir: string, rest: string[], warren = warrenCommand()): string[] {
  const command = proxyCommand(warren, resolve(dir), flags.proxy, flags.fdpass === true)
  const proxyOptions = flags.fdpass ? ['-o', 'ProxyUseFdpass=yes', '-o', `ProxyCommand=${command}`] : ['-o', `ProxyCommand=${command}`]
  const path = (text: string) => sshWord(sshPath(text))
  return [
    '-F',
    '/dev/null',
    '-o',
    `UserKnownHostsFile=${sshWord(`${sshPath(join(resolve(dir), HOST_KEYS_DIR))}/%h`)}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `IdentityFile=${path(profilePath(dir, 'sshKey'))}`,
    '-o',
    `CertificateFile=${path(profilePath(dir, 'sshCert'))}`,
    ...proxyOptions,
    ...rest,
  ]
}

function runSsh(args: string[]): Promise<number> {
  const child = spawn('ssh', args, { stdio: 'inherit' })
  return new Promise((resolve, reject) => {
    child.on('error', (error) => reject(new WarrenError(`cannot run the OpenSSH client "ssh": ${error.message}`)))
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 255 : 1)))
  })
}
