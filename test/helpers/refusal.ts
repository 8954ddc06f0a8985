// What the auth API would answer to an error a domain module throws: its status (the one
// mapping in auth/api/errors.ts) and its message, so that unit tests of the modules check
// the answer a caller gets without a server.

import { statusOf } from '../../auth/api/errors.ts'

export async function refusal(work: Promise<unknown>): Promise<{ status: number | undefined; message: string } | 'accepted'> {
  try {
    await work
    return 'accepted'
  } catch (error) {
    return { status: statusOf(error)?.status, message: (error as Error).message }
  }
}
