// People, for editors: invite one (the invitation URL is shown to pass on), reset one's
// password and second factor (a new invitation), remove one.

import { call } from '../api.ts'
import { errorLine, formValues, h, replace, table } from '../dom.ts'
import { utcTime } from '../format.ts'

interface User {
  name: string
  logins: string[]
  roles: string[]
}

interface UserInvited extends User {
  signup_token: string
  signup_expires: number
}

/** A comma-separated field as a list, blanks dropped. */
const list = (value: string) =>
  value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')

export async function usersPage(main: HTMLElement): Promise<void> {
  const status = h('div', { class: 'status', id: 'user-invited' })
  const showInvite = (invited: UserInvited, what: string) => {
    const url = `${location.origin}/web/invite/${encodeURIComponent(invited.signup_token)}`
    replace(
      status,
      h('p', {}, `${what} Share this URL with ${invited.name}; it is valid until ${utcTime(invited.signup_expires)} and works once:`),
      h('pre', { class: 'command', id: 'invite-url' }, url),
    )
  }
  const form = h(
    'form',
    { class: 'filters', id: 'user-form' },
    h('label', {}, 'Name', h('input', { name: 'name', required: true, pattern: '[A-Za-z0-9._-]+' })),
    h('label', {}, 'Roles', h('input', { name: 'roles', value: 'access', placeholder: 'access,editor' })),
    h('label', {}, 'Logins', h('input', { name: 'logins', placeholder: 'root,ubuntu' })),
    h('button', { type: 'submit' }, 'Invite'),
  )
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const values = formValues(form)
    try {
      const invited = await call<UserInvited>('POST', 'users', { name: values.name, roles: list(values.roles), logins: list(values.logins) })
      showInvite(invited, `User "${invited.name}" has been created but requires a password.`)
      form.reset()
      await drawList()
    } catch (error) {
      replace(status, errorLine(error))
    }
  })
  const users = h('div', { class: 'list' })
  const act = async (what: () => Promise<void>) => {
    try {
      await what()
      await drawList()
    } catch (error) {
      replace(status, errorLine(error))
    }
  }
  const reset = (name: string) =>
    act(async () => {
      if (!confirm(`Reset ${name}'s password and second factor? They stop working at once.`)) return
      showInvite(await call<UserInvited>('POST', `users/${encodeURIComponent(name)}/reset`, {}), `${name}'s password and second factor are reset.`)
    })
  const remove = (name: string) =>
    act(async () => {
      if (!confirm(`Remove the user ${name}?`)) return
      await call('DELETE', `users/${encodeURIComponent(name)}`)
      replace(status, h('p', {}, `User "${name}" has been removed.`))
    })
  const drawList = async () => {
    const answer = await call<{ users: User[] }>('GET', 'users')
    replace(
      users,
      table(
        ['User', 'Roles', 'Logins', ''],
        answer.users.map((user) => [
          user.name,
          user.roles.join(', '),
          user.logins.join(', '),
          h(
            'span',
            { class: 'actions' },
            h('button', { type: 'button', onclick: () => reset(user.name) }, 'Reset'),
            h('button', { type: 'button', class: 'danger', onclick: () => remove(user.name) }, 'Remove'),
          ),
        ]),
      ),
    )
  }
  main.append(h('h1', {}, 'Users'), form, status, users)
  await drawList()
}
