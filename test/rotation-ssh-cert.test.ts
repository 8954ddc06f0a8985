// A host CA rotation reaching a node through a proxy whose keys were stolen: the node asks for
// its renewal while the new host CA signs, so the genuine answer carries a TLS certificate
// from a CA the node trusts only from that answer's signed set on. The attacker (the repo's
// own tunnel server with the proxy's identity, on its tunnel address, as in
// test/renewal-ssh-cert.test.ts) asks the real auth server for the renewal and hands the node
// the genuine TLS certificate and set with an OpenSSH host certificate signed by an SSH CA of
// its own: once as it is, once with the host CAs' SSH keys taken out of the set (their
// signatures with them). Before the set named those keys the node took the key the
// certificate named at such a moment, and would then have refused every genuine renewal. Now
// it keeps what it holds each time, and takes the genuine answer afterwards.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Tunnel } from '../proxy/tunnel-server.ts'
import { identityDir } from '../shared/identity-store.ts'
import { fetchTrustedCA } from '../shared/join.ts'
import { sendToAgent } from '../shared/protocol/control.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { createSshCertificate, parseSshCertificate } from '../shared/ssh-cert.ts'
import type { NodeStatus } from '../shared/status.ts'
import { nodeBehindStolenProxy } from './helpers/rogue-tunnels.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

t.test('at a host CA rotation, a stolen proxy key cannot plant an SSH CA of its own with the new CA’s genuine TLS certificate', async (t) => {
  const { auth, node, nodeDir, stolen, requests, renewAsProxy } = await nodeBehindStolenProxy(t)
  const nodeStatus = async () => (await node.status()).node as NodeStatus
  const file = (name: string) => readFileSync(join(identityDir(nodeDir), name), 'utf8')
  const stored = () => ({
    tls: file('host.crt'),
    ssh: file('ssh_host_ed25519_key-cert.pub').trim(),
    hostCAs: file('host_ca.pem'),
    meta: JSON.parse(file('identity.json')) as { host_ca_ssh_keys?: string[]; trust_version: number },
  })
  // The takeover renews nothing: what the node holds is what it joined with.
  const joined = stored()
  t.equal(joined.meta.host_ca_ssh_keys?.length, 1, 'the node holds the host CA’s SSH key from its join')
  const held = await nodeStatus()

  // The rotation, to the step where the new host CA signs.
  for (const phase of ['init', 'update_clients']) {
    const result = await auth.ctl(['auth', 'rotate', '--type=host', '--manual', `--phase=${phase}`])
    t.equal(result.code, 0, `phase ${phase}: ${result.stdout.trim()}${result.stderr.trim()}`)
  }
  t.equal(requests.length, 0, 'before the node asks for its renewal')
  const oldCA = new X509Certificate(stolen.hostCAPems[0]!)
  const clusterCAs = (await fetchTrustedCA(auth.address, [], () => {})).host_ca_certs

  /** The genuine answer, asked of the auth server as the proxy asks it (it answers a repeat with the same certificates). */
  const genuineFor = (tunnel: Tunnel) => renewAsProxy(tunnel, clusterCAs)
  const attackerCA = generateKeyPairSync('ed25519').privateKey
  /** The node's SSH host certificate as the auth server issued it, every field as issued, but signed by the attacker's CA. */
  const forged = (genuine: RenewedCertificates) => {
    const issued = parseSshCertificate(genuine.ssh_cert)
    return createSshCertificate({
      publicKey: issued.publicKey,
      caKey: attackerCA,
      type: 'host',
      keyId: issued.keyId,
      principals: issued.principals,
      validAfter: issued.validAfter,
      validBefore: issued.validBefore,
    })
  }
  const tampered: [string, (genuine: RenewedCertificates) => RenewedCertificates][] = [
    ["an SSH certificate signed by the attacker's SSH CA", (genuine) => ({ ...genuine, ssh_cert: forged(genuine) })],
    [
      'the same, the host CAs’ SSH keys taken out of the set',
      (genuine) => ({ ...genuine, ssh_cert: forged(genuine), trust: { ...genuine.trust!, host_ca_ssh_keys: undefined, signatures_v2: undefined } }),
    ],
  ]
  let genuine: RenewedCertificates | undefined
  for (const [index, [what, tamper]] of tampered.entries()) {
    await until(`the node to ask for a renewal (${index + 1})`, () => requests.length > index, { timeoutMs: 90_000 })
    const tunnel = requests[index]!
    if (!genuine) {
      genuine = await genuineFor(tunnel)
      const tls = new X509Certificate(genuine.tls_cert)
      t.notOk(tls.checkIssued(oldCA) && tls.verify(oldCA.publicKey), 'the genuine TLS certificate comes from the new host CA')
      t.equal(genuine.trust?.host_ca_ssh_keys?.length, 2, 'with a set naming both host CAs’ SSH keys')
    }
    sendToAgent(tunnel.control!, { type: 'certs', ...tamper(genuine) })
    tunnel.renewing = false
    // Asked again: the answer was refused, and the renewal is tried again (or, were it taken, the identity changed).
    await until(`the node to ask again after ${what}`, () => requests.length > index + 1 || stored().ssh !== joined.ssh, { timeoutMs: 30_000 })
    t.same(stored(), joined, `${what}: the node's identity on disk is the one it had (certificates, host CAs, their SSH keys, version)`)
    t.ok(requests.length > index + 1, `${what}: the node asked again`)
    const status = await nodeStatus()
    t.same(status.certificate, held.certificate, `${what}: the node's status shows the certificate it had`)
    t.equal(status.trust.version, held.trust.version, `${what}: and the set of CAs it held`)
  }
  t.ok(node.running, 'the node is still running')
  const errors = node.logEntries().filter((entry) => entry.level === 'error' && typeof entry.certificates_refused === 'string')
  t.ok(
    errors.some((entry) => /SSH key of the host CA that issued its TLS certificate/.test(String(entry.ssh_cert_refused))),
    'the forged SSH certificate is refused for its signer',
  )
  t.ok(
    node.logEntries().some((entry) => /without their SSH keys/.test(String(entry.trust_refused))),
    'the set without the SSH keys is refused',
  )

  // The genuine answer is taken: the new CA's certificates, and the new set with both SSH keys.
  const tunnel = requests[tampered.length]!
  sendToAgent(tunnel.control!, { type: 'certs', ...genuine! })
  tunnel.renewing = false
  await until('the node to take the genuine certificates', () => stored().ssh === genuine!.ssh_cert.trim(), { timeoutMs: 10_000 })
  const after = stored()
  t.equal(after.tls, genuine!.tls_cert, 'with its TLS certificate')
  t.same(after.meta.host_ca_ssh_keys, genuine!.trust!.host_ca_ssh_keys, 'and the host CAs’ SSH keys of the new set')
  t.equal(after.meta.trust_version, genuine!.trust!.version, 'at its version')
  t.not((await nodeStatus()).certificate.serial, held.certificate.serial, 'which its status shows')
})
