// A whole Warren path on loopback, every role a real `warren start` process:
//
//   client → TLS (ALPN warren-ssh, user certificate) → proxy → TLS 1.3 + yamux → agent → TCP → echo
//
// The node declares the echo server as the forwarded port "echo"; the client asks the proxy
// for it with the same request line `warren proxy ssh` sends for SSH.

import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { connect, type TLSSocket } from 'node:tls'
import { loadProfile } from '../../cli/profile.ts'
import { signPortRequest } from '../../shared/port-request-proof.ts'
import { parseDialReply } from '../../shared/protocol/dial.ts'
import { readFirstMessage, writeMessage } from '../../shared/protocol/framing.ts'
import { USER_ALPN } from '../../shared/protocol/tunnel.ts'
import { readOpenSshPrivateKey } from '../../shared/ssh-key-file.ts'
import { AuthProcess, type Daemon, ProxyProcess, startNode, tempDir, waitForNode } from '../../test/helpers/cluster.ts'

export interface WarrenPath {
  auth: AuthProcess
  proxy: ProxyProcess
  node: Daemon
  /** A user connection to the echo port, ready for raw bytes. */
  connect(): Promise<TLSSocket>
  stop(): Promise<void>
}

export const NODE_NAME = 'bench-node'
const PORT_NAME = 'echo'

export interface WarrenCluster {
  auth: AuthProcess
  proxy: ProxyProcess
  /** The node NODE_NAME, joined through the proxy, its SSH server reached through its tunnel. */
  node: Daemon
  stop(): Promise<void>
}

/** An auth server, a proxy and a node, each a real `warren start`; `nodeYaml` is added to the node's config. */
export async function startWarrenCluster(options: { env?: Record<string, string>; nodeYaml?: string[] } = {}): Promise<WarrenCluster> {
  const env = options.env ?? {}
  const auth = await new AuthProcess().start()
  let proxy: ProxyProcess | undefined
  let node: Daemon | undefined
  try {
    const pin = await auth.pin()
    proxy = await new ProxyProcess({ auth, token: await auth.token(['tokens', 'add', '--type=proxy']), pin, env }).start()
    const nodeDir = tempDir('warren-bench-node-')
    const config = join(nodeDir, 'warren.yaml')
    writeFileSync(config, ['version: v1', `data_dir: ${nodeDir}`, ...(options.nodeYaml ?? []), ''].join('\n'))
    node = startNode([`--config=${config}`, `--auth-server=${proxy.web}`, `--token=${await auth.token()}`, `--ca-pin=${pin}`, `--nodename=${NODE_NAME}`], env)
    await waitForNode(auth, NODE_NAME)
    const started = { auth, proxy, node }
    return { ...started, stop: () => stopAll(started) }
  } catch (error) {
    await stopAll({ auth, proxy, node })
    throw error
  }
}

/** `env` goes to the proxy and the agent (for example NODE_OPTIONS=--cpu-prof). */
export async function startWarrenPath(echoPort: number, env: Record<string, string> = {}): Promise<WarrenPath> {
  const cluster = await startWarrenCluster({ env, nodeYaml: ['ssh_service:', '  forward_ports:', `    - { name: ${PORT_NAME}, addr: "127.0.0.1:${echoPort}" }`] })
  const { auth, proxy } = cluster
  try {
    const user = tempDir('warren-bench-user-')
    for (const args of [
      ['users', 'add', 'bench', '--logins=root'],
      ['auth', 'sign', '--user=bench', `--out=${user}`],
    ]) {
      const result = await auth.ctl(args)
      if (result.code !== 0) throw new Error(`warrenctl ${args.join(' ')} failed: ${result.stderr}`)
    }
    const credentials = {
      ca: readFileSync(join(user, 'host_ca.pem'), 'utf8'),
      cert: readFileSync(join(user, 'tls.crt'), 'utf8'),
      key: readFileSync(join(user, 'tls.key'), 'utf8'),
    }
    // The node judges a forwarded port's user from its SSH certificate, and the request signed by its key.
    const certificate = readFileSync(join(user, 'id_ed25519-cert.pub'), 'utf8').trim()
    const sshKey = readOpenSshPrivateKey(readFileSync(join(user, 'id_ed25519'), 'utf8'))
    const clusterName = loadProfile(user).cluster_name
    const [host, port] = [proxy.web.slice(0, proxy.web.lastIndexOf(':')), Number(proxy.web.slice(proxy.web.lastIndexOf(':') + 1))]
    return {
      ...cluster,
      async connect() {
        // The proxy's certificate chains to the cluster's host CA; its name is not checked here.
        const socket = connect({ host, port, ALPNProtocols: [USER_ALPN], ...credentials, checkServerIdentity: () => undefined })
        await new Promise((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
        socket.setNoDelay(true)
        const proof = signPortRequest(sshKey, { cluster: clusterName, node: NODE_NAME, port: PORT_NAME })
        writeMessage(socket, { node: NODE_NAME, service: 'port', name: PORT_NAME, certificate, proof })
        const reply = await readFirstMessage(socket, parseDialReply)
        if (!reply.ok) throw new Error(`the proxy refused the echo port: ${reply.error}`)
        return socket
      },
    }
  } catch (error) {
    await cluster.stop()
    throw error
  }
}

async function stopAll(parts: { auth: AuthProcess; proxy?: ProxyProcess; node?: Daemon }): Promise<void> {
  await parts.node?.stop()
  await parts.proxy?.stop()
  await parts.auth.stop()
}
