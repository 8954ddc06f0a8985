// A warrenctl command: the flags every one of them takes (where the admin identity is, or
// which login to act as), and its run with a connection to the auth server, opened only once
// the flags and arguments are understood: a mistake in them is a usage error (exit 2) that
// names it, here or away from the auth host alike, never a failure to find the identity.

import { type Command, type CommandSpec, defineCommand } from '../command.ts'
import { defineFlags, type FlagSpec, type FlagValues } from '../flags.ts'
import { type AdminConnection, connectAdmin } from './admin-client.ts'

export const GLOBAL_FLAGS = defineFlags({
  'data-dir': { type: 'path', placeholder: 'DIR', description: "the auth server's data dir, where the admin identity is (default: the config's data_dir, else /var/lib/warren)" },
  config: { type: 'path', placeholder: 'FILE', description: "the auth server's config file (for its data_dir)" },
  identity: { type: 'path', placeholder: 'FILE', description: 'an admin identity file (default: <data_dir>/admin/identity.json)' },
  'auth-server': { type: 'string', placeholder: 'HOST:PORT', description: 'the auth server (default: from the identity)' },
  proxy: {
    type: 'string',
    placeholder: 'HOST:PORT',
    description: "as the user of warren login, through this proxy's web port (default, away from the auth host: the login's proxy)",
  },
  cluster: { type: 'string', placeholder: 'NAME', description: 'the cluster of warren login to use, when logged in to several' },
})

type CtlRun<F extends FlagSpec> = (admin: AdminConnection, flags: FlagValues<F & typeof GLOBAL_FLAGS>, args: string[]) => Promise<void>
/** Throws a UsageError for flags or arguments the command cannot take, before anything connects. */
type CtlCheck<F extends FlagSpec> = (flags: FlagValues<F & typeof GLOBAL_FLAGS>, args: string[]) => void

export function ctlCommand<const F extends FlagSpec>(def: Omit<CommandSpec<F, typeof GLOBAL_FLAGS>, 'common'> & { check?: CtlCheck<F>; run: CtlRun<F> }): Command {
  return defineCommand<F, typeof GLOBAL_FLAGS>({
    ...def,
    common: { title: 'Flags of every warrenctl command:', flags: globalFlagsBesides(def.flags ?? {}) },
    async run(flags, args) {
      def.check?.(flags, args)
      // A command's own flag of the same name (auth sign's --proxy: the proxy its credentials
      // name) is that command's, and does not choose how warrenctl connects.
      const admin = connectAdmin(def.flags && 'proxy' in def.flags ? { ...flags, proxy: undefined } : flags)
      try {
        await def.run(admin, flags, args)
      } finally {
        await admin.client.close()
      }
    },
  })
}

/** The flags of every command that this one does not define itself. */
function globalFlagsBesides(own: FlagSpec): typeof GLOBAL_FLAGS {
  return Object.fromEntries(Object.entries(GLOBAL_FLAGS).filter(([name]) => !Object.hasOwn(own, name))) as typeof GLOBAL_FLAGS
}

/** A line on standard output. */
export const out = (text: string) => process.stdout.write(text + '\n')
