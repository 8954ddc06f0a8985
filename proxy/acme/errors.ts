// ACME failures are reported to an operator as they are: each message names the ACME
// server, the step that failed and, when the server gave one, its reason.

import { WarrenError } from '../../shared/errors.ts'

export class AcmeError extends WarrenError {}
