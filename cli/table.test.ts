import t from 'tap'
import { formatTable, textWidth } from './table.ts'

t.test('header, dashes as wide as each column, two-space gaps, no trailing spaces', async (t) => {
  const text = formatTable(
    ['Token', 'Type', 'Expiry Time (UTC)'],
    [
      ['abc123', 'Node', '25 Nov 26 02:59 UTC (29m59s)'],
      ['x', 'Proxy,Node', 'never'],
    ],
  )
  t.equal(
    text,
    [
      'Token   Type        Expiry Time (UTC)',
      '------  ----------  ----------------------------',
      'abc123  Node        25 Nov 26 02:59 UTC (29m59s)',
      'x       Proxy,Node  never',
      '',
    ].join('\n'),
  )
  for (const line of text.split('\n')) t.notMatch(line, / $/)
})

t.test('widths count code points', async (t) => {
  t.equal(textWidth('⟵ Tunnel'), 8)
  t.equal(textWidth('𝕏 node'), 6, 'a character outside the BMP is one code point, two UTF-16 units')
  t.equal(formatTable(['Name', 'B'], [['𝕏', 'x']]), 'Name  B\n----  -\n𝕏     x\n')
  const text = formatTable(
    ['Node Name', 'Address', 'Labels'],
    [
      ['pi', '⟵ Tunnel', 'env=prod'],
      ['router', '10.0.0.1:3022', ''],
    ],
  )
  t.equal(text, ['Node Name  Address        Labels', '---------  -------------  --------', 'pi         ⟵ Tunnel       env=prod', 'router     10.0.0.1:3022', ''].join('\n'))
})

t.test('an empty table is the header and the dashes', async (t) => {
  t.equal(formatTable(['A', 'Bee'], []), 'A  Bee\n-  ---\n')
})

t.test('short rows are padded with empty cells', async (t) => {
  t.equal(formatTable(['A', 'B', 'C'], [['1'], ['22', '3', '4']]), 'A   B  C\n--  -  -\n1\n22  3  4\n')
})

t.test('control characters in cells are escaped: no screen clearing, no forged rows', async (t) => {
  const text = formatTable(
    ['Node Name', 'Labels'],
    [
      ['pi', 'motd=\x1b[2J\x1b[H'],
      ['router', 'note=x\r\nforged-row  admin=yes'],
      ['mac', 'del=\x7f c1=\x9b31m bidi=\u202eevil lsep=\u2028 tag=\u{e0001}'],
    ],
  )
  t.notMatch(text, /[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u202e]/u, 'nothing a terminal would act on, bar the line ends')
  t.equal(text.split('\n').length, 6, 'one line per row')
  t.notMatch(text, /^forged-row/m)
  t.match(text, /^pi +motd=\\x1b\[2J\\x1b\[H$/m)
  t.match(text, /^router +note=x\\x0d\\x0aforged-row {2}admin=yes$/m)
  t.match(text, 'del=\\x7f c1=\\x9b31m bidi=\\u202eevil lsep=\\u2028 tag=\\u{e0001}')
})
