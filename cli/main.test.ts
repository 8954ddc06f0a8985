import t from 'tap'
import { WarrenError } from '../shared/errors.ts'
import { runMain } from './main.ts'

/** What runMain writes to standard error when `command` throws `error`, and the exit code it sets. */
async function failure(error: unknown): Promise<{ stderr: string; exitCode: typeof process.exitCode }> {
  const written: string[] = []
  const write = process.stderr.write
  process.stderr.write = ((text: string) => written.push(text) > 0) as typeof process.stderr.write
  const before = process.exitCode
  try {
    await runMain(async () => {
      throw error
    }, [])
    return { stderr: written.join(''), exitCode: process.exitCode }
  } finally {
    process.stderr.write = write
    process.exitCode = before
  }
}

t.test("a refusal's text from the network is printed escaped", async (t) => {
  // What a proxy or a node could put in its refusal: a title, a clipboard write, a forged line.
  const refusal = new WarrenError('refused: \x1b]0;owned\x07\x1b]52;c;ZXZpbA==\x07\r\nERROR: none')
  const { stderr, exitCode } = await failure(refusal)
  t.equal(stderr, 'ERROR: refused: \\x1b]0;owned\\x07\\x1b]52;c;ZXZpbA==\\x07\\x0d\\x0aERROR: none\n')
  t.equal(exitCode, 1)
})

t.test('a plain message is printed as it is, and a thrown non-error still says something', async (t) => {
  t.equal((await failure(new WarrenError('not logged in: "warren login" logs in'))).stderr, 'ERROR: not logged in: "warren login" logs in\n')
  t.equal((await failure('a string\x07')).stderr, 'ERROR: a string\\x07\n')
})
