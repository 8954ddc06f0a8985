// Shapes: how each field of a wire message is read. A message's shape is declared once, in
// this folder, and gives both its parser and its TypeScript types: what a receiver gets
// (`Out`) and what a sender may write (`In`, where fields with a default may be left out).
// Types and checks therefore cannot drift apart. A value that does not fit fails with a
// FieldError naming the field; the parsers of whole messages (parseWith, taggedParser)
// turn it into a ProtocolError that names the message too.

import { checkLabels, LabelError } from '../labels.ts'
import { ProtocolError } from './errors.ts'

export class FieldError extends Error {
  readonly field: string
  constructor(field: string, message: string) {
    super(message)
    this.field = field
  }
}

export interface Shape<Out, In = Out, Optional extends boolean = false> {
  /** Whether a sender may leave the field out. */
  readonly optional: Optional
  /** Reads the value found at `field` (undefined when it is absent); throws FieldError. */
  parse(value: unknown, field: string): Out
  /** Carries the types; never set. */
  readonly types?: { out: Out; in: In }
}

export type AnyShape = Shape<unknown, unknown, boolean>
export type Out<S> = S extends Shape<infer O, unknown, boolean> ? O : never
export type In<S> = S extends Shape<unknown, infer I, boolean> ? I : never
type Simplify<T> = { [K in keyof T]: T[K] } & {}
type Fields = Record<string, AnyShape>
type OptionalKeys<F extends Fields> = { [K in keyof F]: F[K]['optional'] extends true ? K : never }[keyof F]
export type ObjectOut<F extends Fields> = Simplify<{ [K in keyof F]: Out<F[K]> }>
export type ObjectIn<F extends Fields> = Simplify<{ [K in Exclude<keyof F, OptionalKeys<F>>]: In<F[K]> } & { [K in OptionalKeys<F>]?: In<F[K]> }>

/** A field left out: absent, null, or an empty string. */
function absent(value: unknown): boolean {
  return value === undefined || value === null || value === ''
}

function fieldError(field: string, problem: string): FieldError {
  return new FieldError(field, `field "${field}" ${problem}`)
}

function required<T, I = T>(read: (value: unknown, field: string) => T): Shape<T, I> {
  return {
    optional: false,
    parse(value, field) {
      if (absent(value)) throw new FieldError(field, `missing field "${field}"`)
      return read(value, field)
    },
  }
}

/** A string of at most `max` characters (8192 unless given). */
export function text(options: { max?: number } = {}): Shape<string> {
  const max = options.max ?? 8192
  return required((value, field) => {
    if (typeof value !== 'string') throw fieldError(field, 'must be a string')
    if (value.length > max) throw fieldError(field, 'is too long')
    return value
  })
}

/** A list of at most `max` strings. */
export function texts(max: number): Shape<string[]> {
  return required((value, field) => {
    if (!Array.isArray(value) || value.length > max || value.some((item) => typeof item !== 'string')) throw fieldError(field, `must be a list of at most ${max} strings`)
    return value as string[]
  })
}

/** A list of at most `max` entries, each read with `item`. */
export function list<O, I>(item: Shape<O, I, boolean>, max: number): Shape<O[], I[]> {
  return required<O[], I[]>((value, field) => {
    if (!Array.isArray(value) || value.length > max) throw fieldError(field, `must be a list of at most ${max} entries`)
    return value.map((entry, i) => item.parse(entry, `${field}[${i}]`))
  })
}

/** A finite number within the bounds; `expected` says what in the error ("a positive number"). */
export function number(options: { above?: number; atLeast?: number; atMost?: number; expected: string }): Shape<number> {
  return required((value, field) => {
    const fits =
      typeof value === 'number' &&
      Number.isFinite(value) &&
      (options.above === undefined || value > options.above) &&
      (options.atLeast === undefined || value >= options.atLeast) &&
      (options.atMost === undefined || value <= options.atMost)
    if (!fits) throw fieldError(field, `must be ${options.expected}`)
    return value as number
  })
}

/** true or false. */
export function bool(): Shape<boolean> {
  return required((value, field) => {
    if (typeof value !== 'boolean') throw fieldError(field, 'must be true or false')
    return value
  })
}

/** true or false; left out, false. */
export function flag(): Shape<boolean, boolean | undefined, true> {
  return optional(bool(), false)
}

/** One of `values`; `refusal` words the error for a value that is none of them. */
export function oneOf<const T extends string>(values: readonly T[], refusal?: (value: unknown) => string): Shape<T> {
  const choices = values.length > 1 ? `${values.slice(0, -1).join(', ')} or ${values.at(-1)}` : values.join('')
  return required((value, field) => {
    if (typeof value === 'string' && (values as readonly string[]).includes(value)) return value as T
    throw new FieldError(field, refusal ? refusal(value) : `field "${field}" must be ${choices}`)
  })
}

/** Node labels under the rules of shared/labels.ts; left out, none. */
export function labels(): Shape<Record<string, string>, Record<string, string> | undefined, true> {
  return {
    optional: true,
    parse(value, field) {
      if (value === undefined) return {}
      try {
        return checkLabels(value)
      } catch (error) {
        if (error instanceof LabelError) throw new FieldError(field, `field "${field}": ${error.message}`)
        throw error
      }
    },
  }
}

/** Labels as they are, or why the rules refuse them: for receivers that drop refused labels and carry on. */
export type RuledLabels = { labels: Record<string, string> } | { refused: string }

/** Labels judged by the rules without failing the message; left out, undefined. */
export function ruledLabels(): Shape<RuledLabels | undefined, Record<string, string> | undefined, true> {
  return {
    optional: true,
    parse(value) {
      if (value === undefined) return undefined
      try {
        return { labels: checkLabels(value) }
      } catch (error) {
        if (error instanceof LabelError) return { refused: error.message }
        throw error
      }
    },
  }
}

/** A field a sender must not send (it once could), with the reason. */
export function refused(reason: string): Shape<undefined, undefined, true> {
  return {
    optional: true,
    parse(value, field) {
      if (value !== undefined) throw fieldError(field, `is not accepted: ${reason}`)
      return undefined
    },
  }
}

/** `shape`, or (left out) undefined or the fallback. */
export function optional<O, I>(shape: Shape<O, I, boolean>): Shape<O | undefined, I | undefined, true>
export function optional<O, I>(shape: Shape<O, I, boolean>, fallback: O): Shape<O, I | undefined, true>
export function optional<O, I>(shape: Shape<O, I, boolean>, fallback?: O): Shape<O | undefined, I | undefined, true> {
  return { optional: true, parse: (value, field) => (absent(value) ? fallback : shape.parse(value, field)) }
}

/** `shape`, with a value that does not fit taken as left out: for hints a receiver may do without. */
export function lenient<O, I>(shape: Shape<O, I, boolean>): Shape<O | undefined, I | undefined, true> {
  return {
    optional: true,
    parse(value, field) {
      try {
        return absent(value) ? undefined : shape.parse(value, field)
      } catch (error) {
        if (error instanceof FieldError) return undefined
        throw error
      }
    },
  }
}

/** An object with these fields (others are ignored, so that senders may add fields). */
export function object<F extends Fields>(fields: F): Shape<ObjectOut<F>, ObjectIn<F>> {
  return required<ObjectOut<F>, ObjectIn<F>>((value, field) => {
    if (typeof value !== 'object' || Array.isArray(value)) throw new FieldError(field, field === '' ? 'the message must be a JSON object' : `field "${field}" must be an object`)
    const record = value as Record<string, unknown>
    const parsed: Record<string, unknown> = {}
    for (const [key, shape] of Object.entries(fields)) {
      parsed[key] = shape.parse(Object.hasOwn(record, key) ? record[key] : undefined, field === '' ? key : `${field}.${key}`)
    }
    return parsed as ObjectOut<F>
  })
}

/** Reads a whole message with `shape`; a misfit is a ProtocolError naming `messageType` (and the field, after `prefix`). */
export function parseWith<O>(messageType: string, shape: Shape<O, unknown, boolean>, value: unknown, prefix = ''): O {
  try {
    return shape.parse(value, '')
  } catch (error) {
    if (error instanceof FieldError) throw new ProtocolError(messageType, error.field || undefined, prefix + error.message)
    throw error
  }
}

/** Messages told apart by their `type`: one object shape per type. */
export type Tagged<M extends Record<string, AnyShape>> = { [T in keyof M & string]: Simplify<{ type: T } & Out<M[T]>> }[keyof M & string]
export type TaggedIn<M extends Record<string, AnyShape>> = { [T in keyof M & string]: Simplify<{ type: T } & In<M[T]>> }[keyof M & string]

/** The parser of messages of `kind` told apart by `type`; an unknown type is a ProtocolError too. */
export function taggedParser<M extends Record<string, AnyShape>>(kind: string, shapes: M): (value: unknown) => Tagged<M> {
  return (value) => {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError(kind, undefined, `a ${kind} must be a JSON object`)
    const type = (value as { type?: unknown }).type
    if (typeof type !== 'string' || !Object.hasOwn(shapes, type)) {
      throw new ProtocolError(typeof type === 'string' ? type : kind, 'type', `unknown ${kind} type ${JSON.stringify(type ?? null)}`)
    }
    const fields = parseWith(type, shapes[type], value, `${kind} "${type}": `) as object
    return { type, ...fields } as Tagged<M>
  }
}
