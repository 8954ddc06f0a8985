// Logging in: the same user, password and TOTP code as `warren login`.

import { call, loadSession } from '../api.ts'
import { errorLine, formValues, h } from '../dom.ts'
import { navigate, type RouteParams } from '../router.ts'

export function loginPage(main: HTMLElement, params: RouteParams): void {
  const status = h('div', { class: 'status' })
  const form = h(
    'form',
    { class: 'card narrow', id: 'login' },
    h('h1', {}, 'Log in'),
    h('label', {}, 'User', h('input', { name: 'user', autocomplete: 'username', required: true, autofocus: true })),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    h(
      'label',
      {},
      'Code from your authenticator app',
      h('input', { name: 'totp_code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6,8}', required: true }),
    ),
    h('button', { type: 'submit' }, 'Log in'),
    status,
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    status.replaceChildren()
    const { user, password, totp_code } = formValues(form)
    try {
      await call('POST', 'login', { user, password, totp_code })
      await loadSession()
      const next = params.query.get('next')
      // Where a link asked to go, which the user did not choose here: a terminal asks first.
      if (next?.startsWith('/web/') && !next.startsWith('/web/login')) navigate(next, false, false)
      else navigate('/web/nodes')
    } catch (error) {
      status.append(errorLine(error))
    }
  })
  main.append(form)
}
