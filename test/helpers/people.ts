// A person accepting an invitation with `warren login --invite`, as a test plays them: the
// password twice and a first TOTP code computed by oathtool (an independent implementation),
// answered on standard input once the enrolment's secret is shown.

import { execFileSync, spawn } from 'node:child_process'
import { join } from 'node:path'
import { generateUserKeys, provenKeyFields } from '../../cli/credentials-files.ts'
import { sealedLogin, sealingChallenge } from '../../cli/sealed-login-requests.ts'
import type { ApiClient } from '../../shared/api-client.ts'
import { ROOT, type RunResult } from './cluster.ts'

/** oathtool's code for the time step `step`. */
export const codeAt = (secret: string, step: number) => execFileSync('oathtool', ['--totp', '-b', secret, `--now=@${step * 30}`], { encoding: 'utf8' }).trim()
export const stepNow = () => Math.floor(Date.now() / 30_000)

/** `warren login --invite` with `args`, in the environment `env`: its result, the secret enrolled and the step of the first code. */
export function signUp(args: string[], env: Record<string, string>, password: string): Promise<RunResult & { secret?: string; step?: number }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(ROOT, 'cli/warren.ts'), 'login', ...args], { env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    let secret: string | undefined
    let step: number | undefined
    child.stdout.on('data', (chunk) => (stdout += chunk))
    child.stderr.on('data', (chunk) => {
      stderr += chunk
      const shown = /otpauth:\/\/totp\/\S*[?&]secret=([A-Z2-7]+)/.exec(stderr)
      if (shown && !secret) {
        secret = shown[1]
        step = stepNow()
        child.stdin.end(`${password}\n${password}\n${codeAt(secret, step)}\n`)
      }
    })
    const timer = setTimeout(() => child.kill(), 30_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      if (!secret) child.stdin.destroy()
      resolve({ code: code ?? 1, stdout, stderr, secret, step })
    })
  })
}

/** POST /v1/login's body as `warren login` sends it: fresh keys proven, the password and code sealed for the auth server. */
export async function loginBody(client: ApiClient, caPems: string[], user: string, password: string, code: string, cluster = 'test-cluster') {
  const challenge = await sealingChallenge(client, { name: cluster, caPems })
  const request = { ...provenKeyFields(generateUserKeys(), cluster, challenge.nonce), ttl_ms: 60_000 }
  return { user, ...request, sealed: sealedLogin(challenge, user, request, { password, totp_code: code }) }
}
