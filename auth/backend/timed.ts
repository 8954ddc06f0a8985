// A backend that reports how long each operation took (auth/metrics.ts makes a histogram of
// it), whatever the storage behind it. Failed operations are timed as well: a backend that
// fails slowly is what an operator needs to see.

import type { Backend } from './backend.ts'

export type BackendOperation = 'get' | 'list' | 'put' | 'create' | 'delete' | 'txn'

export const BACKEND_OPERATIONS: readonly BackendOperation[] = ['get', 'list', 'put', 'create', 'delete', 'txn']

export function timedBackend(backend: Backend, observe: (operation: BackendOperation, seconds: number) => void): Backend {
  const timed =
    <A extends unknown[], R>(operation: BackendOperation, run: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const start = process.hrtime.bigint()
      try {
        return await run(...args)
      } finally {
        observe(operation, Number(process.hrtime.bigint() - start) / 1e9)
      }
    }
  return {
    get: timed('get', backend.get.bind(backend)),
    list: timed('list', backend.list.bind(backend)),
    put: timed('put', backend.put.bind(backend)),
    create: timed('create', backend.create.bind(backend)),
    delete: timed('delete', backend.delete.bind(backend)),
    txn: timed('txn', backend.txn.bind(backend)),
    close: () => backend.close(),
  }
}
