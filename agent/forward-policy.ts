// Where a user's `ssh -L` (an SSH direct-tcpip channel) may lead from the node, as
// `ssh_service.port_forwarding` decides. Checked after the certificate's own
// permit-port-forwarding: the certificate says who may forward, this says where to.

import { splitHostPort } from '../shared/address.ts'
import type { SshConfig } from '../shared/config.ts'

/** Why a forward to host:port is refused, or undefined when the node's policy allows it. */
/** Why `ssh -R` may not listen on this node: only when port forwarding is off here. */
export function remoteForwardRefusal(ssh: Pick<SshConfig, 'portForwarding'>): string | undefined {
  return ssh.portForwarding === 'off' ? 'port forwarding is off on this node (ssh_service.port_forwarding)' : undefined
}

export function forwardRefusal(ssh: Pick<SshConfig, 'portForwarding' | 'forwardPorts'>, host: string, port: number): string | undefined {
  switch (ssh.portForwarding) {
    case 'any':
      return undefined
    case 'off':
      return 'port forwarding is off on this node (ssh_service.port_forwarding)'
    default:
      return ssh.forwardPorts.some((declared) => sameTarget(declared.addr, host, port)) ? undefined : "the destination is not one of the node's forward_ports"
  }
}

/** The name of the declared forward port at host:port, if any: the user's roles allow ports by name. */
export function declaredPortName(ssh: Pick<SshConfig, 'forwardPorts'>, host: string, port: number): string | undefined {
  return ssh.forwardPorts.find((declared) => sameTarget(declared.addr, host, port))?.name
}

/**
 * The declared address as written, host and port: `-L` must name it the same way. Names are
 * not resolved (a name that resolves to a declared address could resolve elsewhere later).
 */
function sameTarget(declared: string, host: string, port: number): boolean {
  const target = splitHostPort(declared)
  return target.port === port && plainHost(target.host) === plainHost(host)
}

function plainHost(host: string): string {
  return host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
}
