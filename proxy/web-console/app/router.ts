// The app's pages by path (the proxy answers every /web path with the same page): links and
// history move between them without reloading.

export type Render = (main: HTMLElement, params: RouteParams) => void | Promise<void>

export interface RouteParams {
  /** What the pattern's `:name` matched. */
  path: Record<string, string>
  query: URLSearchParams
}

interface Route {
  pattern: RegExp
  names: string[]
  render: Render
}

const routes: Route[] = []
/** Called before the next page is drawn: a page's clean-up (a terminal's socket, a replay). */
let cleanup: (() => void) | undefined

export function onLeave(then: () => void): void {
  cleanup = then
}

export function leavePage(): void {
  cleanup?.()
  cleanup = undefined
}
let show: (render: Render, params: RouteParams) => void = () => {}

/** `/web/recordings/:id` → its page. */
export function route(path: string, render: Render): void {
  const names: string[] = []
  const pattern = new RegExp(
    `^${path.replace(/:(\w+)/g, (_, name: string) => {
      names.push(name)
      return '([^/]+)'
    })}/?$`,
  )
  routes.push({ pattern, names, render })
}

/** Where pages are drawn: `display` gets each page's render function. */
export function startRouter(display: typeof show): void {
  show = display
  window.addEventListener('popstate', () => dispatch())
  // Same-origin links under /web/ move within the app.
  document.addEventListener('click', (event) => {
    const link = (event.target as Element).closest?.('a')
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || link.target) return
    const url = new URL(link.href, location.href)
    if (url.origin !== location.origin || !url.pathname.startsWith('/web/')) return
    event.preventDefault()
    navigate(url.pathname + url.search)
  })
  dispatch()
}

/**
 * Moves to `to`. `chosen`: the user chose it within the app (a link, a form); a page that acts
 * when opened (a terminal) asks first when it was not, as when another site linked to it or
 * the login page goes on to the page a link asked for.
 */
export function navigate(to: string, replace = false, chosen = true): void {
  const state = chosen ? { chosen: true } : null
  if (replace) history.replaceState(state, '', to)
  else history.pushState(state, '', to)
  dispatch()
}

/** Whether the page shown now was chosen within the app (navigate), not opened from outside it. */
export function chosenInApp(): boolean {
  return (history.state as { chosen?: boolean } | null)?.chosen === true
}

function dispatch(): void {
  for (const { pattern, names, render } of routes) {
    const match = pattern.exec(location.pathname)
    if (!match) continue
    const path = Object.fromEntries(names.map((name, i) => [name, decodeURIComponent(match[i + 1])]))
    show(render, { path, query: new URLSearchParams(location.search) })
    return
  }
  navigate('/web/nodes', true)
}
