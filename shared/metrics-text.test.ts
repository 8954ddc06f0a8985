import { spawnSync } from 'node:child_process'
import t from 'tap'
import { gaugeOf, labelledCounterOf, labelledGaugeOf } from './metrics.ts'
import { Histogram, MetricsRegistry } from './metrics-text.ts'
import { watchProcess } from './process-metrics.ts'

/** Prometheus's own lint of an exposition: the exit code and what it said. */
function promtool(text: string): { status: number | null; output: string } {
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  return { status: check.status, output: check.stdout + check.stderr }
}

t.test('every kind of series is written in a form promtool accepts', async (t) => {
  const registry = new MetricsRegistry()
  watchProcess(registry)
  let reconnects: Record<string, number> = { dial_failed: 2 }
  labelledCounterOf(registry, { name: 'test_reconnects_total', help: 'Redials, by reason' }, 'reason', ['dial_failed', 'tunnel_lost'], () => reconnects)
  gaugeOf(registry, { name: 'test_expiry_timestamp_seconds', help: 'Not known yet' }, () => undefined)
  labelledGaugeOf(registry, { name: 'test_tunnel_up', help: 'Per proxy, with a "quoted" \\ help' }, 'proxy_id', () => ({ 'a"b\\c\nd': 1 }))
  const rtt = new Histogram(registry, { name: 'test_rtt_seconds', help: 'Round trips', buckets: [0.01, 0.1, 1] })
  for (const seconds of [0.005, 0.05, 0.05, 3]) rtt.observe(seconds)

  const text = await registry.metrics()
  const lint = promtool(text)
  t.equal(lint.status, 0, `promtool check metrics passes ${lint.output}`)
  t.match(text, /^warren_process_resident_memory_bytes \d+$/m, 'process memory')
  t.match(text, /^warren_process_cpu_seconds_total [\d.e-]+$/m, 'process CPU')
  t.match(text, /^test_reconnects_total\{reason="tunnel_lost"\} 0$/m, 'a known reason is reported before it happens')
  t.match(text, /^test_tunnel_up\{proxy_id="a\\"b\\\\c\\nd"\} 1$/m, 'label values escaped')
  t.match(text, /^# TYPE test_expiry_timestamp_seconds gauge$/m, 'an unknown gauge is declared')
  t.notMatch(text, /^test_expiry_timestamp_seconds /m, 'but has no sample')
  const buckets = [...text.matchAll(/^test_rtt_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)].map((match) => [match[1], Number(match[2])])
  t.same(
    buckets,
    [
      ['0.01', 1],
      ['0.1', 3],
      ['1', 3],
      ['+Inf', 4],
    ],
    'histogram buckets are cumulative, +Inf holds them all',
  )
  t.match(text, /^test_rtt_seconds_count 4$/m)

  reconnects = { dial_failed: 1 }
  t.match(await registry.metrics(), /^test_reconnects_total\{reason="dial_failed"\} 2$/m, 'a total read lower than before is not reported lower')
})
