// The audit log, filtered by time, type (or a glob such as session.*), user and node.

import { call } from '../api.ts'
import { errorLine, formValues, h, replace, table } from '../dom.ts'
import { utcTime } from '../format.ts'
import { navigate, type RouteParams } from '../router.ts'

interface AuditEvent {
  id: string
  time: number
  type: string
  [field: string]: string | number | boolean | null | undefined
}

const FILTERS = ['type', 'user', 'node'] as const
/** Fields shown in columns of their own; the others go into Details. */
const COLUMNS = new Set(['id', 'time', 'type', 'cluster', 'user', 'node', 'actor'])

export async function auditPage(main: HTMLElement, params: RouteParams): Promise<void> {
  const query = new URLSearchParams()
  for (const name of FILTERS) if (params.query.get(name)) query.set(name, params.query.get(name)!)
  // since is a local date and time in the form, epoch milliseconds in the API.
  const since = params.query.get('since') ?? ''
  if (since && !Number.isNaN(Date.parse(since))) query.set('since', String(Date.parse(since)))

  const form = h(
    'form',
    { class: 'filters', id: 'audit-filters' },
    h('label', {}, 'Since', h('input', { type: 'datetime-local', name: 'since', value: since })),
    ...FILTERS.map((name) =>
      h('label', {}, name[0].toUpperCase() + name.slice(1), h('input', { name, value: params.query.get(name) ?? '', placeholder: name === 'type' ? 'session.*' : '' })),
    ),
    h('button', { type: 'submit' }, 'Show'),
  )
  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const chosen = new URLSearchParams(Object.entries(formValues(form)).filter(([, value]) => value !== ''))
    navigate(`/web/audit${chosen.size ? `?${chosen}` : ''}`)
  })
  const results = h('div', { class: 'list' })
  main.append(h('h1', {}, 'Audit'), form, results)
  try {
    const { events, truncated } = await call<{ events: AuditEvent[]; truncated: boolean }>('GET', `audit/events${query.size ? `?${query}` : ''}`)
    const newest = [...events].reverse()
    replace(
      results,
      truncated && h('p', { class: 'note' }, 'More events matched: the newest are shown. Narrow the filters to see older ones.'),
      newest.length === 0
        ? h('p', { class: 'empty' }, 'No events match.')
        : table(
            ['Time', 'Type', 'User', 'Node', 'Details'],
            newest.map((event) => [
              utcTime(event.time),
              h('code', {}, event.type),
              String(event.user ?? event.actor ?? ''),
              String(event.node ?? ''),
              Object.entries(event)
                .filter(([key, value]) => !COLUMNS.has(key) && value !== null && value !== undefined)
                .map(([key, value]) => `${key}=${value}`)
                .join(' '),
            ]),
          ),
    )
  } catch (error) {
    replace(results, errorLine(error))
  }
}
