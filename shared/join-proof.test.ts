import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { joinProofMessage, signProof, verifyProof } from './join-proof.ts'

const ssh = generateKeyPairSync('ed25519')

t.test('each accepted key type signs and verifies the join proof', async (t) => {
  const pairs = {
    ed25519: generateKeyPairSync('ed25519'),
    'P-256': generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    'P-384': generateKeyPairSync('ec', { namedCurve: 'P-384' }),
    'RSA-2048': generateKeyPairSync('rsa', { modulusLength: 2048 }),
  }
  for (const [name, tls] of Object.entries(pairs)) {
    const message = joinProofMessage({ clusterName: 'c', nonce: 'n', tlsPublicKey: tls.publicKey, sshPublicKey: ssh.publicKey })
    t.ok(verifyProof(message, tls.publicKey, signProof(message, tls.privateKey)), name)
  }
})

t.test('a proof binds the cluster, the nonce and both keys', async (t) => {
  const tls = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const fields = { clusterName: 'c', nonce: 'n', tlsPublicKey: tls.publicKey, sshPublicKey: ssh.publicKey }
  const signature = signProof(joinProofMessage(fields), tls.privateKey)
  const other = generateKeyPairSync('ed25519').publicKey
  for (const [change, changed] of Object.entries({
    cluster: { ...fields, clusterName: 'd' },
    nonce: { ...fields, nonce: 'm' },
    'SSH key': { ...fields, sshPublicKey: other },
  })) {
    t.notOk(verifyProof(joinProofMessage(changed), tls.publicKey, signature), `another ${change}`)
  }
  // Length prefixes: moving a byte from one field to the next changes the message.
  t.not(joinProofMessage({ ...fields, clusterName: 'ab', nonce: 'c' }).toString('hex'), joinProofMessage({ ...fields, clusterName: 'a', nonce: 'bc' }).toString('hex'))
})

t.test('a signature by another key, or garbage, does not verify', async (t) => {
  const tls = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const message = joinProofMessage({ clusterName: 'c', nonce: 'n', tlsPublicKey: tls.publicKey, sshPublicKey: ssh.publicKey })
  const impostor = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  t.notOk(verifyProof(message, tls.publicKey, signProof(message, impostor.privateKey)))
  for (const garbage of ['', 'not base64!', 'AAAA', 'A'.repeat(5000)]) t.notOk(verifyProof(message, tls.publicKey, garbage), JSON.stringify(garbage.slice(0, 12)))
})
