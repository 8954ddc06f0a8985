// A CA near the end of its certificate: what it signs ends no later than it does, nothing is
// signed once it has ended, and the auth server warns from a year before, once a day (by an
// injected clock), with the date in the log line's fields.

import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import t from 'tap'
import { createLogger } from '../shared/log.ts'
import { sshPublicKeyLine } from '../shared/ssh-cert.ts'
import { createCA } from '../shared/x509.ts'
import { Authority, type AuthorityType } from './authorities.ts'
import { CA_EXPIRY_WARN_EVERY_MS, CAExpiryWarnings } from './ca-expiry.ts'
import { issueAdminCredentials, issueHostIdentity, issueServerCredentials } from './issuer.ts'

const DAY_MS = 24 * 3600_000

/** A CA whose certificate ends in `days`. */
function authority(type: AuthorityType, days: number): Authority {
  const tls = createCA(`test ${type} CA`, 'test', days)
  const ssh = generateKeyPairSync('ed25519')
  return new Authority({
    type,
    clusterName: 'test',
    keySets: [
      {
        tlsCertPem: tls.certPem,
        tlsKeyPem: tls.key.export({ type: 'pkcs8', format: 'pem' }) as string,
        sshPublicKey: sshPublicKeyLine(ssh.publicKey),
        sshPrivateKeyPem: ssh.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
      },
    ],
  })
}

const notAfter = (pem: string) => new X509Certificate(pem).validToDate.getTime()

t.test('a certificate ends no later than the CA that signs it', async (t) => {
  const host = authority('host', 10)
  const keys = { tls: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, ssh: generateKeyPairSync('ed25519').publicKey }
  const identity = issueHostIdentity(host, {
    hostId: 'h1',
    nodename: 'pi-1',
    clusterName: 'test',
    roles: ['node'],
    tlsPublicKey: keys.tls,
    sshPublicKey: keys.ssh,
    ttlMs: 30 * DAY_MS,
  })
  t.equal(notAfter(identity.tlsCertPem), host.signingExpires, 'the host certificate: 30 days asked, cut to the CA')
  t.equal(identity.expires, host.signingExpires, 'and recorded so')
  t.equal(notAfter(issueServerCredentials(host, { clusterName: 'test', role: 'proxy', names: ['localhost'] }).certPem), host.signingExpires, "a server's")
  const user = authority('user', 3)
  t.equal(notAfter(issueAdminCredentials(user, 'test').certPem), user.signingExpires, "warrenctl's admin identity: 7 days asked, cut to the CA's 3")
  const long = authority('host', 3650)
  t.ok(notAfter(issueServerCredentials(long, { clusterName: 'test', role: 'proxy', names: ['localhost'] }).certPem) < long.signingExpires, 'a CA far from its end cuts nothing')
})

t.test('an expired CA signs nothing, and says why', async (t) => {
  const host = authority('host', 1)
  t.throws(() => host.capValidBefore(new Date(host.signingExpires + DAY_MS), host.signingExpires + 1), /host CA's certificate expired/)
})

t.test('warned of from a year before, once a day, with the date in the fields', async (t) => {
  const lines: Record<string, unknown>[] = []
  const log = createLogger('auth', { format: 'json', stream: { write: (line: string) => lines.push(JSON.parse(line)) } as unknown as NodeJS.WritableStream })
  const far = authority('user', 3650)
  const near = authority('host', 200)
  // After the CAs are made: their 200 days run from then (in whole seconds), so less is left now.
  let now = Date.now()
  const warnings = new CAExpiryWarnings(log, () => now)
  warnings.check(far)
  t.same(lines, [], 'ten years left: nothing')
  warnings.check(near)
  t.match(lines, [{ level: 'warn', ca: 'host', ca_expires: new Date(near.signingExpires).toISOString(), ca_expires_in_days: 199 }])
  now += CA_EXPIRY_WARN_EVERY_MS - 1000
  warnings.check(near)
  t.equal(lines.length, 1, 'not again within the day')
  now += 1000
  warnings.check(near)
  t.equal(lines.length, 2, 'again a day later')
  now = near.signingExpires + 1
  warnings.check(near)
  t.match(lines[2], { level: 'error', ca: 'host', ca_expires_in_days: -1 }, 'past it: an error')
})
