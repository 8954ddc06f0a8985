import t from 'tap'
import { closest } from './closest.ts'

t.test('the first known word within two edits, else none', async (t) => {
  t.equal(closest('auth_servr', ['data_dir', 'auth_servers', 'auth_token']), 'auth_servers')
  t.equal(closest('lables', ['nodename', 'labels']), 'labels', 'two letters swapped are two edits')
  t.equal(closest('colour', ['name', 'addr']), undefined)
  t.equal(closest('ca_pin', ['ca-pin'], 1), 'ca-pin')
  t.equal(closest('capin', ['ca-pin-file'], 1), undefined, 'beyond the edits allowed')
})
