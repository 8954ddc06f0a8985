import t from 'tap'
import { TerminalFilter } from './terminal-filter.ts'

const ESC = '\x1b'

/** The output of one filter fed `chunks` in turn. */
function filtered(...chunks: string[]): string {
  const filter = new TerminalFilter()
  return chunks.map((chunk) => filter.push(chunk)).join('')
}

t.test('text, colours, cursor movement, erasing and screen modes pass as they are', async (t) => {
  const drawing = [
    'plain text, Zürich 🏔\r\n\ttabbed\x07\b',
    `${ESC}[31mred${ESC}[0m ${ESC}[1;38;5;208mbold orange${ESC}[38:2::10:20:30mtrue colour${ESC}[m`,
    `${ESC}[H${ESC}[2J${ESC}[3J${ESC}[K${ESC}[1K${ESC}[10;20H${ESC}[5A${ESC}[B${ESC}[3C${ESC}[D${ESC}[12G${ESC}[4d`,
    `${ESC}[?1049h${ESC}[?25l${ESC}[?2004h${ESC}[?1h${ESC}=${ESC}[?25h${ESC}[?1049l${ESC}[?2004l${ESC}>`,
    `${ESC}[1;24r${ESC}7${ESC}8${ESC}M${ESC}D${ESC}E${ESC}(0lqk${ESC}(B${ESC}[2 q${ESC}[4h${ESC}[4l`,
    `${ESC}[3@${ESC}[2P${ESC}[4X${ESC}[L${ESC}[M${ESC}[2S${ESC}[T${ESC}[s${ESC}[u`,
  ].join('')
  t.equal(filtered(drawing), drawing)
})

t.test('what would write the clipboard, set a title or start a device string is dropped, the text around it kept', async (t) => {
  const cases: [string, string][] = [
    [`a${ESC}]52;c;cm0gLXJmIH4K\x07b`, 'OSC 52 ended by BEL'],
    [`a${ESC}]52;c;cm0gLXJmIH4K${ESC}\\b`, 'OSC 52 ended by ST'],
    [`a${ESC}]0;owned\x07b`, 'OSC 0 title'],
    [`a${ESC}]2;owned${ESC}\\b`, 'OSC 2 title'],
    [`a${ESC}]8;;https://example.com/${ESC}\\b`, 'OSC 8 hyperlink'],
    [`a${ESC}P$qm${ESC}\\b`, 'DECRQSS'],
    [`a${ESC}P1000p${ESC}\\b`, 'DCS'],
    [`a${ESC}_Gf=100;AAAA${ESC}\\b`, 'APC'],
    [`a${ESC}^privacy${ESC}\\b`, 'PM'],
    [`a${ESC}Xstart of string${ESC}\\b`, 'SOS'],
    [`a\x9d52;c;cm0=\x9cb`, 'OSC 52 with 8-bit introducer and ST'],
    [`a\x90$qm\x9cb`, 'DECRQSS with 8-bit DCS'],
    [`a${ESC}]52;c;cm0=\x18b`, 'a string aborted by CAN'],
  ]
  for (const [input, what] of cases) t.equal(filtered(input), 'ab', what)
})

t.test('queries the terminal would answer into the input are dropped', async (t) => {
  const queries = [
    `${ESC}[21t`,
    `${ESC}[14t`,
    `${ESC}[8;100;100t`,
    `${ESC}[6n`,
    `${ESC}[5n`,
    `${ESC}[?6n`,
    `${ESC}[c`,
    `${ESC}[0c`,
    `${ESC}[>c`,
    `${ESC}[=c`,
    `${ESC}[x`,
    `${ESC}[?2004$p`,
    `${ESC}[>4;1m`,
    `${ESC}[1;1;1;1;1T`,
    `${ESC}Z`,
    `${ESC}c`,
    `\x05`,
    `\x9b6n`,
    `\x9a`,
  ]
  for (const query of queries) t.equal(filtered(`a${query}b`), 'ab', JSON.stringify(query))
})

t.test('modes that report the mouse or the focus, or change what the keyboard sends, are dropped', async (t) => {
  for (const mode of ['?1000h', '?1002h', '?1003h', '?1004h', '?1006h', '?9h', '?25;1000h', '12l', '20h', '?1049;1004h']) {
    t.equal(filtered(`a${ESC}[${mode}b`), 'ab', mode)
  }
})

t.test('a sequence split between chunks is judged whole', async (t) => {
  t.equal(filtered('a', ESC, ']5', '2;c;cm0', 'gLX', 'JmIH4K', ESC, '\\b'), 'ab', 'OSC 52 in pieces')
  t.equal(filtered(`a${ESC}`, '[', '2', '1t', 'b'), 'ab', 'CSI 21 t in pieces')
  t.equal(filtered(`a${ESC}P`, '$q', `m${ESC}`, '\\b'), 'ab', 'DECRQSS in pieces')
  t.equal(filtered(`a${ESC}[3`, '1mred'), `a${ESC}[31mred`, 'a colour in pieces is written once whole')
  const filter = new TerminalFilter()
  t.equal(filter.push(`ok${ESC}]0;ti`), 'ok', 'nothing of an unfinished string is written')
  t.equal(filter.push('tle'), '')
  filter.end()
  t.equal(filter.push('next'), 'next', 'after the end, a new stream starts as text')
})

t.test('an ESC inside a string ends it and starts a sequence of its own, as terminals read it', async (t) => {
  t.equal(filtered(`a${ESC}]0;title${ESC}[31mred`), `a${ESC}[31mred`)
  t.equal(filtered(`a${ESC}]0;title${ESC}[6nb`), 'ab')
})

t.test('malformed and overlong sequences are dropped; a control inside a CSI sequence aborts it', async (t) => {
  t.equal(filtered(`a${ESC}[${'1;'.repeat(100)}mb`), 'ab', 'an overlong SGR')
  t.equal(filtered(`a${ESC}[3\n1mb`), 'a\n1mb', 'the control is kept, the sequence dropped')
  t.equal(filtered(`a${ESC}${ESC}[31mb`), `a${ESC}[31mb`, 'ESC ESC starts over')
  t.equal(filtered(`a${ESC}\\b`), 'ab', 'a stray ST')
  t.equal(filtered(`a\x00\x7f\x85b`), 'ab', 'NUL, DEL and other C1 controls')
})
