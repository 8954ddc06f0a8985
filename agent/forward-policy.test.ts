import t from 'tap'
import { forwardRefusal } from './forward-policy.ts'

const forwardPorts = [
  { name: 'webui', addr: '127.0.0.1:8080' },
  { name: 'db', addr: '[::1]:5432' },
  { name: 'cam', addr: 'Camera.local:554' },
]

t.test('declared: only the forward_ports, by host and port as written', async (t) => {
  const policy = { portForwarding: 'declared' as const, forwardPorts }
  t.equal(forwardRefusal(policy, '127.0.0.1', 8080), undefined)
  t.equal(forwardRefusal(policy, '::1', 5432), undefined, 'IPv6 as OpenSSH sends it, without brackets')
  t.equal(forwardRefusal(policy, 'camera.local', 554), undefined, 'host names compare without case')
  for (const [host, port] of [
    ['127.0.0.1', 8081],
    ['127.0.0.1', 22],
    ['localhost', 8080],
    ['10.0.0.1', 8080],
    ['::1', 8080],
  ] as const) {
    t.equal(forwardRefusal(policy, host, port), "the destination is not one of the node's forward_ports", `${host}:${port} is refused`)
  }
  t.ok(forwardRefusal({ portForwarding: 'declared', forwardPorts: [] }, '127.0.0.1', 8080), 'nothing declared, nothing reachable')
})

t.test('any and off', async (t) => {
  t.equal(forwardRefusal({ portForwarding: 'any', forwardPorts: [] }, '10.1.2.3', 443), undefined)
  t.equal(
    forwardRefusal({ portForwarding: 'off', forwardPorts }, '127.0.0.1', 8080),
    'port forwarding is off on this node (ssh_service.port_forwarding)',
    'off refuses even declared ports',
  )
})
