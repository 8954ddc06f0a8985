// A node renewing its certificates through a proxy whose keys were stolen: the attacker stops
// the proxy and serves its tunnel address with the repo's own tunnel server and the proxy's
// identity, so the node's agent (a real `warren start` process) reconnects to it and asks it
// for its renewals. The attacker asks the real auth server for them as the proxy would (its
// certificate is a proxy's), and hands the node the genuine TLS certificate with an OpenSSH
// host certificate of its own making: every field as issued but signed by an SSH CA of its
// own, the node's own earlier SSH certificate (the cluster's signature, other dates), and one
// naming another host too. The node keeps the identity it holds each time and asks again, as
// after any refused renewal; the genuine answer is then taken.

import { generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { identityDir } from '../shared/identity-store.ts'
import { sendToAgent } from '../shared/protocol/control.ts'
import type { RenewedCertificates } from '../shared/protocol/hosts.ts'
import { createSshCertificate, parseSshCertificate } from '../shared/ssh-cert.ts'
import type { NodeStatus } from '../shared/status.ts'
import { nodeBehindStolenProxy } from './helpers/rogue-tunnels.ts'
import { until } from './helpers/until.ts'

t.setTimeout(240_000)

t.test('a stolen proxy key cannot hand a renewing node an SSH host certificate of its own making', async (t) => {
  const { node, nodeDir, requests, renewAsProxy } = await nodeBehindStolenProxy(t)
  const nodeStatus = async () => (await node.status()).node as NodeStatus
  const stored = () => ({
    tls: readFileSync(join(identityDir(nodeDir), 'host.crt'), 'utf8'),
    ssh: readFileSync(join(identityDir(nodeDir), 'ssh_host_ed25519_key-cert.pub'), 'utf8').trim(),
  })
  // The takeover renews nothing: what the node holds is what it joined with.
  const joined = stored()
  const held = await nodeStatus()

  const attackerCA = generateKeyPairSync('ed25519').privateKey
  /** An SSH host certificate for the node's key as the auth server issued it, but signed by the attacker's CA, with `principals` when given. */
  const forged = (genuine: RenewedCertificates, principals?: string[]) => {
    const issued = parseSshCertificate(genuine.ssh_cert)
    return createSshCertificate({
      publicKey: issued.publicKey,
      caKey: attackerCA,
      type: 'host',
      keyId: issued.keyId,
      principals: principals ?? issued.principals,
      validAfter: issued.validAfter,
      validBefore: issued.validBefore,
    })
  }
  const tampered: [string, (genuine: RenewedCertificates) => string][] = [
    ["every field as issued, signed by the attacker's SSH CA", (genuine) => forged(genuine)],
    ["the node's own SSH certificate from its join, signed by the cluster", () => joined.ssh],
    ['naming another host too', (genuine) => forged(genuine, [...parseSshCertificate(genuine.ssh_cert).principals, 'db-1'])],
  ]
  let genuine: RenewedCertificates | undefined
  for (const [index, [what, sshCert]] of tampered.entries()) {
    await until(`the node to ask for a renewal (${index + 1})`, () => requests.length > index, { timeoutMs: 90_000 })
    const tunnel = requests[index]!
    genuine ??= await renewAsProxy(tunnel)
    sendToAgent(tunnel.control!, { type: 'certs', ...genuine, ssh_cert: sshCert(genuine) })
    tunnel.renewing = false
    // Asked again: the answer was refused, and the renewal is tried again (or, were it taken, the identity changed).
    await until(`the node to ask again after ${what}`, () => requests.length > index + 1 || stored().ssh !== joined.ssh, { timeoutMs: 30_000 })
    t.same(stored(), joined, `${what}: the node's identity on disk is the one it had`)
    t.ok(requests.length > index + 1, `${what}: the node asked again`)
    const status = await nodeStatus()
    t.same(status.certificate, held.certificate, `${what}: the node's status shows the certificate it had`)
    t.equal(status.trust.version, held.trust.version, `${what}: and the set of CAs it held`)
  }
  t.ok(node.running, 'the node is still running')
  t.ok(
    node.logEntries().filter((entry) => entry.level === 'error' && typeof entry.ssh_cert_refused === 'string').length >= tampered.length,
    'each refusal is logged with its field',
  )

  // The genuine answer is taken.
  const tunnel = requests[tampered.length]!
  sendToAgent(tunnel.control!, { type: 'certs', ...genuine! })
  tunnel.renewing = false
  await until('the node to take the genuine certificates', () => stored().ssh === genuine!.ssh_cert.trim(), { timeoutMs: 10_000 })
  t.equal(stored().tls, genuine!.tls_cert, 'with its TLS certificate')
  t.not((await nodeStatus()).certificate.serial, held.certificate.serial, 'which its status shows')
})
