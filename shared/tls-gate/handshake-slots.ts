// Handshake slots: at most maxHandshakes TLS handshakes run at once, the rest wait with
// their ClientHello read. Waiting connections are kept per source address group and the
// groups take turns (round robin), so one address cannot hold the queue's head; each group
// runs at most maxHandshakesPerAddress at once. Clients resuming a session go first and
// have slots of their own (reservedForResumption) that other clients never take.

import type { Socket } from 'node:net'
import type { Logger } from '../log.ts'
import type { GateConfig } from './config.ts'
import type { GateStats } from './stats.ts'

export interface SlotRequest {
  socket: Socket
  /** The source group (address-group.ts); undefined for a trusted balancer's own connections, which no group limit applies to. */
  group: string | undefined
  resuming: boolean
  /** Starts the handshake; call `release` exactly when it is over (finished, failed or closed). */
  start(release: () => void): void
}

interface Waiting {
  request: SlotRequest
  since: number
  onClose: () => void
}

class Group {
  /** Whether the per-address limits apply (not to a trusted balancer's own connections). */
  readonly limited: boolean
  running = 0
  readonly resuming: Waiting[] = []
  readonly fresh: Waiting[] = []

  constructor(limited: boolean) {
    this.limited = limited
  }

  get waiting(): number {
    return this.resuming.length + this.fresh.length
  }
}

/** The key for connections that no per-address limit applies to. */
const UNGROUPED = '\0'

export class HandshakeSlots {
  readonly #config: GateConfig
  readonly #stats: GateStats
  readonly #log: Logger
  readonly #now: () => number
  readonly #groups = new Map<string, Group>()
  /** Groups with connections waiting, in the order they take turns; #turn is the next. */
  #rotation: string[] = []
  #turn = 0
  #running = 0
  #waiting = 0
  /** Closed since the queue filled; logged once per burst, so a storm cannot flood the log. */
  #shed = 0

  constructor(config: GateConfig, stats: GateStats, log: Logger, now: () => number = Date.now) {
    this.#config = config
    this.#stats = stats
    this.#log = log
    this.#now = now
  }

  /** Starts `request` now, queues it, or closes its connection. */
  request(request: SlotRequest): void {
    // Those who waited too long make room first (this may forget groups, so it comes first).
    if (this.#waiting >= this.#config.handshakeQueue) this.#expire()
    const key = request.group ?? UNGROUPED
    let group = this.#groups.get(key)
    if (!group) this.#groups.set(key, (group = new Group(request.group !== undefined)))
    if (this.#mayStart(group, request.resuming)) {
      this.#start(group, request)
      return
    }
    if (this.#waiting >= this.#config.handshakeQueue) {
      this.#stats.queueFullClosed++
      if (this.#shed++ === 0)
        this.#log.warn(`${this.#running} TLS handshakes in progress and ${this.#waiting} waiting: closing new connections until the queue drains`, {
          handshakes_running: this.#running,
          handshakes_waiting: this.#waiting,
        })
      this.#drop(key, group)
      request.socket.destroy()
      return
    }
    if (group.limited && group.waiting >= this.#config.maxQueuedPerAddress) {
      this.#stats.handshakePerAddressRefused++
      this.#log.debug(`${group.waiting} connections from ${request.group} already wait for a TLS handshake slot: closed`)
      this.#drop(key, group)
      request.socket.destroy()
      return
    }
    const waiting: Waiting = { request, since: this.#now(), onClose: () => this.#remove(key, waiting) }
    request.socket.once('close', waiting.onClose)
    ;(request.resuming ? group.resuming : group.fresh).push(waiting)
    if (group.waiting === 1) this.#rotation.push(key)
    this.#waiting++
    this.#stats.queued = this.#waiting
  }

  #mayStart(group: Group, resuming: boolean): boolean {
    const config = this.#config
    const free = resuming ? config.maxHandshakes : config.maxHandshakes - config.reservedForResumption
    return this.#running < free && (!group.limited || group.running < config.maxHandshakesPerAddress)
  }

  #start(group: Group, request: SlotRequest): void {
    group.running++
    this.#running++
    this.#stats.handshaking = this.#running
    if (request.resuming) this.#stats.resumingStarted++
    let released = false
    const release = () => {
      if (released) return
      released = true
      group.running--
      this.#running--
      this.#stats.handshaking = this.#running
      this.#drop(request.group ?? UNGROUPED, group)
      this.#next()
    }
    try {
      request.start(release)
    } catch (error) {
      this.#log.error('a TLS handshake could not start', { error })
      request.socket.destroy()
      release()
    }
  }

  /** Fills free slots: resuming clients first, then the others, the groups taking turns. */
  #next(): void {
    while (this.#waiting > 0) {
      const next = this.#take(true) ?? this.#take(false)
      if (!next) break
      const { key, group, waiting } = next
      if (this.#now() - waiting.since > this.#config.handshakeQueueWaitMs) {
        this.#stats.queueWaitClosed++
        this.#log.debug(`closed after waiting ${this.#config.handshakeQueueWaitMs} ms for a TLS handshake slot`, { group: waiting.request.group })
        waiting.request.socket.destroy()
        this.#drop(key, group)
        continue
      }
      this.#start(group, waiting.request)
    }
    if (this.#waiting === 0 && this.#shed > 0) {
      this.#log.warn(`handshake queue drained; ${this.#shed} connection(s) were closed while it was full`)
      this.#shed = 0
    }
  }

  /** Takes the first waiting connection of the next group whose turn it is and that may start one. */
  #take(resuming: boolean): { key: string; group: Group; waiting: Waiting } | undefined {
    for (let tried = 0; tried < this.#rotation.length; tried++) {
      if (this.#turn >= this.#rotation.length) this.#turn = 0
      const key = this.#rotation[this.#turn]!
      const group = this.#groups.get(key)!
      const queue = resuming ? group.resuming : group.fresh
      if (queue.length > 0 && this.#mayStart(group, resuming)) {
        const waiting = queue.shift()!
        this.#unqueue(key, group, waiting)
        // The next group's turn: it moved into this place if this group has no one left waiting.
        if (group.waiting > 0) this.#turn++
        return { key, group, waiting }
      }
      this.#turn++
    }
    return undefined
  }

  /** A connection that closed while it waited. */
  #remove(key: string, waiting: Waiting): void {
    const group = this.#groups.get(key)
    if (!group) return
    for (const queue of [group.resuming, group.fresh]) {
      const index = queue.indexOf(waiting)
      if (index === -1) continue
      queue.splice(index, 1)
      this.#unqueue(key, group, waiting)
      this.#drop(key, group)
      return
    }
  }

  /** Closes every connection that waited longer than the queue wait (when the queue is full). */
  #expire(): void {
    const oldest = this.#now() - this.#config.handshakeQueueWaitMs
    for (const [key, group] of [...this.#groups]) {
      for (const queue of [group.resuming, group.fresh]) {
        while (queue.length > 0 && queue[0]!.since < oldest) {
          const waiting = queue.shift()!
          this.#unqueue(key, group, waiting)
          this.#stats.queueWaitClosed++
          waiting.request.socket.destroy()
        }
      }
      this.#drop(key, group)
    }
  }

  #unqueue(key: string, group: Group, waiting: Waiting): void {
    waiting.request.socket.off('close', waiting.onClose)
    this.#waiting--
    this.#stats.queued = this.#waiting
    if (group.waiting > 0) return
    const index = this.#rotation.indexOf(key)
    this.#rotation.splice(index, 1)
    if (index < this.#turn) this.#turn--
  }

  /** Forgets a group with nothing running or waiting. */
  #drop(key: string, group: Group): void {
    if (group.running === 0 && group.waiting === 0) this.#groups.delete(key)
  }
}
