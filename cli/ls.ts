// `warren ls`: the nodes the logged-in user may reach, as the auth server judges them from
// the roles in the user's certificate, narrowed by label selectors.

import { parseSelectors } from '../shared/selectors.ts'
import { defineCommand } from './command.ts'
import { FORMAT_FLAG, formatList } from './output.ts'
import { credentialsDir, NODE_VIEW, reachableNodes, USER_FLAGS } from './reachable.ts'

export const lsCommand = defineCommand({
  name: 'warren ls',
  summary: 'the nodes you may reach: Node Name, Address, Labels',
  operands: ['[SELECTOR...]'],
  flags: { ...USER_FLAGS, format: FORMAT_FLAG },
  description:
    'A selector is key=value or key=* (the label with any value); several, joined by commas or given apart, must all match. Only nodes your roles allow are listed: the cluster decides, from your certificate.',
  examples: ['warren ls', 'warren ls env=lab,site=*', 'warren ls env=prod --format=json'],
  async run(flags, args) {
    const selectors = parseSelectors(args)
    const nodes = await reachableNodes(credentialsDir(flags), flags.proxy, selectors)
    process.stdout.write(formatList(nodes, flags.format, NODE_VIEW))
    return 0
  },
})
