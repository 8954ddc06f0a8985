import t from 'tap'
import { hostCertificateNames, serverCertificateNames } from './certificate-names.ts'

const hostId = '0b8c5a3e-8a43-4d1f-9a3c-2f1e6b7d9c10'

t.test("a node's certificates name its host ID and node name, nothing else", async (t) => {
  t.same(hostCertificateNames({ hostId, nodename: 'pi-1', roles: ['node'] }), {
    dnsNames: [hostId, 'pi-1'],
    ipAddresses: [],
    principals: [hostId, 'pi-1'],
  })
})

t.test("public addresses are a proxy's grant: a node asking for them gets none", async (t) => {
  const asked = ['proxy.example.com', '203.0.113.7', 'other-node']
  t.same(hostCertificateNames({ hostId, nodename: 'pi-1', roles: ['node'], publicAddrs: asked }).dnsNames, [hostId, 'pi-1'])
  const proxy = hostCertificateNames({ hostId, nodename: 'proxy-a', roles: ['proxy'], publicAddrs: asked })
  t.same(proxy.dnsNames, [hostId, 'proxy-a', 'proxy.example.com', 'other-node'])
  t.same(proxy.ipAddresses, ['203.0.113.7'])
  t.same(proxy.principals, [hostId, 'proxy-a', 'proxy.example.com', 'other-node', '203.0.113.7'])
})

t.test('a node name shaped like an IP address names no IP address', async (t) => {
  for (const nodename of ['10.0.0.1', '203.0.113.7', '::1']) {
    t.same(hostCertificateNames({ hostId, nodename, roles: ['node'] }).ipAddresses, [], `a node named ${nodename}`)
    t.same(hostCertificateNames({ hostId, nodename, roles: ['proxy'], publicAddrs: ['proxy.example.com'] }).ipAddresses, [], `a proxy named ${nodename}`)
  }
  t.same(
    hostCertificateNames({ hostId, nodename: '10.0.0.1', roles: ['proxy'], publicAddrs: ['10.0.0.1'] }).ipAddresses,
    ['10.0.0.1'],
    "unless a proxy's configured public address is that IP",
  )
})

t.test("never localhost, the cluster's reserved server name or another .invalid name", async (t) => {
  for (const name of ['localhost', 'LocalHost', 'a.localhost', 'cluster.warren.invalid', 'x.invalid']) {
    const names = hostCertificateNames({ hostId, nodename: name, roles: ['proxy'], publicAddrs: [name] })
    t.same(names.dnsNames, [hostId], `${name} is not a SAN`)
    t.same(names.principals, [hostId], `${name} is not a principal`)
  }
})

t.test('a node name that is not a DNS name is a principal but not a SAN', async (t) => {
  const names = hostCertificateNames({ hostId, nodename: 'lab_pi', roles: ['node'] })
  t.same(names.dnsNames, [hostId])
  t.same(names.principals, [hostId, 'lab_pi'])
})

t.test("an auth server's certificate names what its configuration names, wildcards left out", async (t) => {
  t.same(serverCertificateNames(['0.0.0.0', 'auth.example.com', '::', '']), { dnsNames: ['auth.example.com'], ipAddresses: [] })
  t.same(serverCertificateNames(['127.0.0.1', 'localhost']), { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }, 'configured loopback names stay')
})
