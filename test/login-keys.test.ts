// Certificates only for keys the caller holds. Someone who knows a user's password and code
// (or holds an invitation) asks a real proxy for certificates: for another person's public
// keys (public halves are no secret), with signatures by other keys, with none at all, with
// a proof made for a join, and by sending a recorded request again. Each is refused and
// changes nothing: the same code, and the same invitation, still serve the real request.

import { readFileSync } from 'node:fs'
import t from 'tap'
import { generateUserKeys, provenKeyFields, publicKeyFields, type UserKeys } from '../cli/credentials-files.ts'
import { type SealingChallenge, sealedLogin, sealedSignup, sealingChallenge, startSignup } from '../cli/sealed-login-requests.ts'
import { ApiClient } from '../shared/api-client.ts'
import { ApiError } from '../shared/errors.ts'
import { joinProofMessage, LOGIN_PURPOSE, signProof } from '../shared/join-proof.ts'
import type { LoginKeyFields } from '../shared/protocol/logins.ts'
import { authAndProxy, testLogin } from './helpers/cluster.ts'
import { codeAt, stepNow } from './helpers/people.ts'

t.setTimeout(120_000)

const PASSWORD = 'a long enough passphrase'
const { auth, proxy } = await authAndProxy(t)
const caPems: string[] = JSON.parse(readFileSync(auth.identityPath, 'utf8')).host_ca_certs
const client = new ApiClient({ server: proxy.web, caPems })
t.teardown(() => client.close())
const cluster = { name: 'test-cluster', caPems }

const own = generateUserKeys()
const someoneElse = generateUserKeys()

/** A fresh challenge, which the secrets are sealed for. */
type Request = { challenge: SealingChallenge; keys: Partial<LoginKeyFields> }

/** `keys` signed as the proof message of `purpose` (a login's unless given), over a fresh challenge; `signers` sign in their place when given. */
async function proof(keys: UserKeys, options: { purpose?: string; signers?: UserKeys } = {}): Promise<Request> {
  const challenge = await sealingChallenge(client, cluster)
  return { challenge, keys: proofFields(challenge.nonce, keys, options) }
}

function proofFields(nonce: string, keys: UserKeys, options: { purpose?: string; signers?: UserKeys }): LoginKeyFields {
  if (!options.purpose && !options.signers) return provenKeyFields(keys, 'test-cluster', nonce)
  const message = joinProofMessage({
    purpose: options.purpose ?? LOGIN_PURPOSE,
    clusterName: 'test-cluster',
    nonce,
    tlsPublicKey: keys.tls.publicKey,
    sshPublicKey: keys.ssh.publicKey,
  })
  const signers = options.signers ?? keys
  return { ...publicKeyFields(keys), nonce, tls_signature: signProof(message, signers.tls.privateKey), ssh_signature: signProof(message, signers.ssh.privateKey) }
}

/** The status and message of a request through the proxy (200 and '' when it was answered). */
async function answer(route: 'POST /v1/login' | 'POST /v1/signup/complete', body: object): Promise<{ status: number; message: string }> {
  try {
    // biome-ignore lint/suspicious/noExplicitAny: the forged bodies are what the types would not allow
    await client.call(route, { body: body as any })
    return { status: 200, message: '' }
  } catch (error) {
    if (!(error instanceof ApiError)) throw error
    return { status: error.status, message: error.message }
  }
}

/** The ways to ask for certificates for keys one does not hold, with what each is refused by. */
const forgeries: [string, () => Promise<Request>, RegExp][] = [
  [
    "another person's keys, signed by one's own",
    async () => {
      const request = await proof(own)
      return { ...request, keys: { ...request.keys, ...publicKeyFields(someoneElse) } }
    },
    /field "tls_signature" is not a signature by the key in "tls_public_key"/,
  ],
  [
    "one's own TLS key beside another person's SSH key, signed by one's own SSH key",
    () => proof({ tls: own.tls, ssh: someoneElse.ssh }, { signers: { tls: own.tls, ssh: own.ssh } }),
    /field "ssh_signature" is not a signature by the key in "ssh_public_key"/,
  ],
  ['no proof at all', async () => ({ challenge: await sealingChallenge(client, cluster), keys: publicKeyFields(own) }), /nonce/],
  ['a proof made for a join, not a login', () => proof(own, { purpose: 'warren join proof-of-possession v1' }), /field "tls_signature"/],
]

/** The keys and lifetime a request's sealed box is bound to, as the caller sends them. */
const bound = (keys: Request['keys']) => ({ ssh_public_key: keys.ssh_public_key ?? '', tls_public_key: keys.tls_public_key ?? '', ttl_ms: 60_000 })

t.test('an invitation is not accepted for keys the caller does not hold, and still serves its person', async (t) => {
  const added = await auth.ctl(['users', 'add', 'bob', `--logins=${testLogin()}`])
  t.equal(added.code, 0, added.stderr)
  const token = /--invite=([0-9a-f]{32})/.exec(added.stdout)![1]
  const { totp_secret } = await startSignup(client, cluster, token)
  const signUp = async ({ challenge, keys }: Request) =>
    answer('POST /v1/signup/complete', {
      ...keys,
      sealed: sealedSignup(challenge, bound(keys), { token, password: PASSWORD, totp_code: codeAt(totp_secret, stepNow()) }),
      ttl_ms: 60_000,
    })
  for (const [what, forge, refusal] of forgeries) t.match(await signUp(await forge()), { status: 400, message: refusal }, what)
  t.same(await signUp(await proof(own)), { status: 200, message: '' }, 'the invitation was not spent')

  t.test('a login is not granted for keys the caller does not hold, nor twice for one request', async (t) => {
    // The sign-up used this step's code: the next one is accepted from now on.
    const code = codeAt(totp_secret, stepNow() + 1)
    const logIn = ({ challenge, keys }: Request) =>
      answer('POST /v1/login', {
        user: 'bob',
        ...keys,
        sealed: sealedLogin(challenge, 'bob', bound(keys), { password: PASSWORD, totp_code: code }),
        ttl_ms: 60_000,
      })
    for (const [what, forge, refusal] of forgeries) t.match(await logIn(await forge()), { status: 400, message: refusal }, what)
    const recorded = await proof(own)
    t.same(await logIn(recorded), { status: 200, message: '' }, 'the code was not used up')
    t.match(await logIn(recorded), { status: 403, message: /challenge was already used/ }, 'the same request again is refused')
  })
})
