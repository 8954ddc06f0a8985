// A cluster's name: fixed at the auth server's first start, it is in every certificate (the
// subject's O, the `<host ID>.<cluster>` principal of a node's SSH host certificate and the
// known_hosts lines naming it) and names the directory of a person's login,
// ~/.warren/<cluster>/ (cli/login.ts). So it is a name, never a path: checked when the
// config is read, before the auth server stores it.

/** Letters, digits, `.`, `_` and `-`, from a letter or digit, 128 characters at most. */
const CLUSTER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

/** What is wrong with `name` as a cluster's name (after the key or flag that gave it), or undefined. */
export function clusterNameProblem(name: string): string | undefined {
  if (CLUSTER_NAME.test(name) && !name.includes('..')) return undefined
  return `must be 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit and without "..": it names a directory of every login (~/.warren/<cluster>) and is in every certificate`
}
