// An invitation accepted in the browser: the user scans the QR code (or types the secret)
// into an authenticator app, sets a password and confirms with a code; then is logged in.

import { call, loadSession } from '../api.ts'
import { errorLine, formValues, h } from '../dom.ts'
import { navigate, type RouteParams } from '../router.ts'

interface InviteStarted {
  user: string
  cluster_name: string
  otpauth_uri: string
  qr_svg: string
}

export async function invitePage(main: HTMLElement, params: RouteParams): Promise<void> {
  const token = params.path.token
  const invite = await call<InviteStarted>('POST', 'invite/start', { token })
  const secret = new URL(invite.otpauth_uri).searchParams.get('secret') ?? ''
  const status = h('div', { class: 'status' })
  const form = h(
    'form',
    { class: 'card narrow', id: 'invite' },
    h('h1', {}, `Welcome to ${invite.cluster_name}`),
    h('p', {}, 'Set up the user ', h('strong', { id: 'invite-user' }, invite.user), '.'),
    h('p', {}, 'Scan this code with an authenticator app:'),
    h('img', { class: 'qr', alt: 'QR code of the TOTP secret', src: `data:image/svg+xml,${encodeURIComponent(invite.qr_svg)}` }),
    h('p', {}, 'or type its secret: ', h('code', { id: 'totp-secret' }, secret)),
    h('label', {}, 'Password', h('input', { name: 'password', type: 'password', autocomplete: 'new-password', required: true, minlength: 8 })),
    h('label', {}, 'Password again', h('input', { name: 'again', type: 'password', autocomplete: 'new-password', required: true })),
    h('label', {}, 'Code from the app', h('input', { name: 'totp_code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6,8}', required: true })),
    h('button', { type: 'submit' }, 'Create the account'),
    status,
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    status.replaceChildren()
    const { password, again, totp_code } = formValues(form)
    if (password !== again) {
      status.append(errorLine('the two passwords differ'))
      return
    }
    try {
      await call('POST', 'invite/complete', { token, password, totp_code })
      await loadSession()
      navigate('/web/nodes')
    } catch (error) {
      status.append(errorLine(error))
    }
  })
  main.append(form)
}
