// What a recorded session printed, made safe to write to the viewer's terminal. The session
// ran as someone else (or on a node that may be stolen), so its output must not make this
// terminal act beyond drawing: no clipboard writes or titles (OSC), no DCS, APC, PM or SOS
// strings, and no queries whose answer the terminal would type into the viewer's input (CSI
// 6 n, CSI 21 t, CSI c, DECRQSS). Text, colours, cursor movement, erasing and the screen
// modes a full-screen program sets pass: replay needs them. Everything is judged by an allow
// list, so that what is not known to be harmless is dropped.

const ESC = '\x1b'

/** The longest CSI sequence kept; anything longer is nobody's drawing. */
const MAX_CSI_LENGTH = 64

/** C0 controls that only move the cursor, ring or switch character sets. */
const PASSED_CONTROLS = new Set(['\x07', '\b', '\t', '\n', '\v', '\f', '\r', '\x0e', '\x0f'])

/** Final bytes of CSI sequences that draw: cursor movement, erase, insert and delete, scrolling, SGR. */
const DRAWING_CSI_FINALS = new Set([...'@ABCDEFGHIJKLMPSTXZ`abdefmrsu'])

/** Modes (CSI ? N h / l) a program sets to draw: cursor keys, wrap, cursor blink and visibility, alternate screen, bracketed paste. */
const PRIVATE_MODES = new Set(['1', '7', '12', '25', '47', '1047', '1048', '1049', '2004'])

/** ESC and one byte: save and restore cursor, index, next line, reverse index, keypad modes. */
const PASSED_ESCAPES = new Set(['7', '8', 'D', 'E', 'M', '=', '>'])

/** 8-bit C1 introducers and their 7-bit ESC forms, so that both are judged alike. */
const C1_AS_ESCAPE: Record<string, string> = { '\x90': 'P', '\x98': 'X', '\x9b': '[', '\x9c': '\\', '\x9d': ']', '\x9e': '^', '\x9f': '_' }

type State = 'text' | 'escape' | 'charset' | 'csi' | 'overlong-csi' | 'string' | 'string-escape'

/**
 * A filter over a stream of output: `push` each chunk and write what it returns. A sequence
 * split between chunks waits in the filter until its end arrives.
 */
export class TerminalFilter {
  private state: State = 'text'
  /** The sequence being read (ESC forms only), written once it is whole and allowed. */
  private sequence = ''

  push(chunk: string): string {
    let out = ''
    for (const c of chunk) out += this.next(c)
    return out
  }

  /** Forgets an unfinished sequence: the stream ended inside it. */
  end(): void {
    this.state = 'text'
    this.sequence = ''
  }

  private next(c: string): string {
    switch (this.state) {
      case 'text':
        return this.text(c)
      case 'escape':
        return this.escape(c)
      case 'charset':
        this.state = 'text'
        // ESC ( B and the like: a final byte designates a character set; anything else aborts.
        return c >= '0' && c <= '~' ? this.sequence + c : this.text(c)
      case 'csi':
      case 'overlong-csi':
        return this.csi(c)
      case 'string':
        // A string (OSC, DCS, SOS, PM, APC) is dropped whole; BEL ends an OSC, ST (ESC \) any, CAN and SUB abort.
        if (c === '\x07' || c === '\x9c' || c === '\x18' || c === '\x1a') this.state = 'text'
        else if (c === ESC) this.state = 'string-escape'
        return ''
      case 'string-escape':
        // ESC \ ends the string; ESC and anything else ends it too and starts a sequence, as terminals read it.
        this.state = 'text'
        return c === '\\' ? '' : this.escape(c)
    }
  }

  private text(c: string): string {
    if (c === ESC) {
      this.state = 'escape'
      return ''
    }
    const introduced = C1_AS_ESCAPE[c]
    if (introduced !== undefined) return this.escape(introduced)
    return isControl(c) && !PASSED_CONTROLS.has(c) ? '' : c
  }

  /** The byte after ESC. */
  private escape(c: string): string {
    this.state = 'text'
    if (c === '[') {
      this.state = 'csi'
      this.sequence = ESC + c
      return ''
    }
    if (c === ']' || c === 'P' || c === 'X' || c === '^' || c === '_') {
      this.state = 'string'
      return ''
    }
    if (c === '(' || c === ')' || c === '*' || c === '+') {
      this.state = 'charset'
      this.sequence = ESC + c
      return ''
    }
    if (PASSED_ESCAPES.has(c)) return ESC + c
    // ESC ESC starts over; a control after ESC is itself; any other ESC sequence (ESC Z asks for an answer) is dropped.
    if (c === ESC) {
      this.state = 'escape'
      return ''
    }
    return isControl(c) ? this.text(c) : ''
  }

  private csi(c: string): string {
    const code = c.codePointAt(0)!
    if (code >= 0x20 && code <= 0x3f) {
      // Parameter and intermediate bytes.
      if (this.state === 'csi') this.sequence += c
      if (this.sequence.length > MAX_CSI_LENGTH) {
        // Read on to its end, keeping nothing: it is dropped.
        this.state = 'overlong-csi'
        this.sequence = ''
      }
      return ''
    }
    const overlong = this.state === 'overlong-csi'
    this.state = 'text'
    if (code >= 0x40 && code <= 0x7e) {
      const sequence = this.sequence + c
      this.sequence = ''
      return !overlong && drawingCsi(sequence.slice(2, -1), c) ? sequence : ''
    }
    // A control inside the sequence aborts it, and is itself.
    this.sequence = ''
    return this.text(c)
  }
}

/** C0 and C1 controls and DEL. */
function isControl(c: string): boolean {
  const code = c.codePointAt(0)!
  return code < 0x20 || (code >= 0x7f && code <= 0x9f)
}

/** Whether CSI `body` `final` only draws. */
function drawingCsi(body: string, final: string): boolean {
  if (/^[0-9;:]*$/.test(body)) {
    // CSI … t operates the window and reports on it; n, c and x ask for reports; S and T with several parameters start mouse tracking.
    if (final === 'S' || final === 'T') return !body.includes(';')
    // Insert mode (IRM) alone among the ANSI modes: the others change what the keyboard sends or echo it.
    if (final === 'h' || final === 'l') return body === '4'
    return DRAWING_CSI_FINALS.has(final)
  }
  const mode = /^\?([0-9;]+)$/.exec(body)
  // Only the listed private modes: others report the mouse or the focus into the viewer's input.
  if (mode && (final === 'h' || final === 'l')) return mode[1].split(';').every((n) => PRIVATE_MODES.has(n))
  if (mode && (final === 'J' || final === 'K')) return true
  // DECSCUSR, the cursor's shape.
  return final === 'q' && /^[0-9]? $/.test(body)
}
