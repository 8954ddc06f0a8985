// The one error of the wire contract: a message that does not follow it. Every parser in
// this folder throws it, naming the message (a control message's type, `dial request`, an
// API route) and the field at fault, so that a receiver can say exactly what it refused.

export class ProtocolError extends Error {
  /** The message refused: its control message type, `dial request`, `dial reply`, or an API route. */
  readonly messageType: string
  /** The field at fault (`nodes[2].host_id`), or undefined when the message as a whole is. */
  readonly field?: string

  constructor(messageType: string, field: string | undefined, message: string) {
    super(message)
    this.name = 'ProtocolError'
    this.messageType = messageType
    this.field = field
  }
}
