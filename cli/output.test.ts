import t from 'tap'
import { parse } from 'yaml'
import { formatList, type ListView } from './output.ts'

interface Item {
  name: string
  labels: Record<string, string>
}
const VIEW: ListView<Item> = { headers: ['Name', 'Labels'], row: (item) => [item.name, Object.values(item.labels).join(',')], empty: 'Nothing found.' }
const ITEMS: Item[] = [
  { name: 'pi-1', labels: { env: 'lab' } },
  { name: 'pi-22', labels: { env: 'prod' } },
]

t.test('text is a table, json and yaml every field', async (t) => {
  t.equal(formatList(ITEMS, 'text', VIEW), 'Name   Labels\n-----  ------\npi-1   lab\npi-22  prod\n')
  t.same(JSON.parse(formatList(ITEMS, 'json', VIEW)), ITEMS)
  t.same(parse(formatList(ITEMS, 'yaml', VIEW)), ITEMS)
  t.equal(formatList(ITEMS, 'json', VIEW).endsWith('\n'), true)
})

t.test('nothing to list: a sentence in text, an empty list otherwise', async (t) => {
  t.equal(formatList([], 'text', VIEW), 'Nothing found.\n')
  t.equal(formatList([], 'json', VIEW), '[]\n')
  t.same(parse(formatList([], 'yaml', VIEW)), [])
})
