// Join tokens, for editors: create one (the command that joins a node with it is shown
// once, as `warrenctl nodes add` prints it), list them with type and expiry, revoke.

import { call } from '../api.ts'
import { errorLine, formValues, h, replace, table } from '../dom.ts'
import { duration, utcTime } from '../format.ts'
import { caPin } from '../pin.ts'
import { navigate } from '../router.ts'

interface ListedToken {
  id: string
  roles: string[]
  expires: number | null
  single_use: boolean
  static: boolean
  nodename: string | null
  user: string | null
}

interface TokenCreated {
  token: string
  id: string
  roles: string[]
  expires: number
}

/** The tokens' types a person creates here: host roles (sign-up tokens come from Users). */
const TYPES = ['node', 'proxy', 'auth']

export async function tokensPage(main: HTMLElement): Promise<void> {
  const status = h('div', { class: 'status', id: 'token-created' })
  const form = h(
    'form',
    { class: 'filters', id: 'token-form' },
    h('label', {}, 'Type', h('select', { name: 'roles' }, ...TYPES.map((type) => h('option', { value: type }, type)))),
    h('label', {}, 'Valid for (minutes)', h('input', { name: 'minutes', type: 'number', min: 1, max: 43200, value: 30, required: true })),
    h('label', { class: 'check' }, h('input', { name: 'single_use', type: 'checkbox' }), 'single use'),
    h('button', { type: 'submit' }, 'Create token'),
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const values = formValues(form)
    try {
      const created = await call<TokenCreated>('POST', 'tokens', { roles: values.roles, ttl_ms: Number(values.minutes) * 60_000, single_use: values.single_use === 'on' })
      replace(
        status,
        h('p', {}, `Token ${created.id} expires ${utcTime(created.expires)}. Run this on the new ${created.roles.join(' and ')} to join the cluster:`),
        h('pre', { class: 'command' }, await joinCommand(created)),
      )
      await drawList()
    } catch (error) {
      replace(status, errorLine(error))
    }
  })
  const list = h('div', { class: 'list' })
  const drawList = async () => {
    const { tokens } = await call<{ tokens: ListedToken[] }>('GET', 'tokens')
    const now = Date.now()
    replace(
      list,
      tokens.length === 0
        ? h('p', { class: 'empty' }, 'No active tokens found.')
        : table(
            ['Token', 'Type', 'Expiry Time (UTC)', ''],
            tokens.map((token) => [
              h('code', {}, token.id),
              token.user ? `signup (${token.user})` : `${token.roles.join(',')}${token.single_use ? ', single use' : ''}${token.nodename ? `, only ${token.nodename}` : ''}`,
              token.expires === null ? 'never' : `${utcTime(token.expires)} (${duration(token.expires - now)})`,
              token.static ? '' : h('button', { type: 'button', class: 'danger', onclick: () => revoke(token.id) }, 'Revoke'),
            ]),
          ),
    )
  }
  const revoke = async (id: string) => {
    if (!confirm(`Revoke the token ${id}?`)) return
    try {
      await call('DELETE', `tokens/${encodeURIComponent(id)}`)
      await drawList()
    } catch (error) {
      replace(status, errorLine(error))
    }
  }
  main.append(h('h1', {}, 'Tokens'), form, status, list)
  try {
    await drawList()
  } catch (error) {
    if (error instanceof Error && 'status' in error && error.status === 403) navigate('/web/nodes', true)
    else throw error
  }
}

/** `warren start …` through this proxy's web port, with the cluster's CA pins. */
async function joinCommand(created: TokenCreated): Promise<string> {
  const ca = (await fetch('/v1/ca').then((response) => response.json())) as { host_ca_certs: string[] }
  const pins = await Promise.all(ca.host_ca_certs.map(caPin))
  return [
    'warren start \\',
    `   --roles=${created.roles.join(',')} \\`,
    '   --token=- \\',
    ...pins.map((pin) => `   --ca-pin=${pin} \\`),
    `   --auth-server=${location.host} <<'EOF'`,
    created.token,
    'EOF',
  ].join('\n')
}
