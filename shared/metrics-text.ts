// A registry that writes the Prometheus text format (version 0.0.4) itself. The node serves
// its series through it rather than through prom-client, whose code and default collectors
// cost an agent with diag_addr about 8 MB resident (bench:footprint): every series here is
// read from the role's own state at each scrape, so the format is all that is needed.
// Series that prom-client keeps (the auth server's and the proxy's) join the output as text
// of their own.

/** One line of a series: its labels and value; `suffix` for a histogram's _bucket, _sum, _count. */
export interface Sample {
  labels?: Record<string, string>
  value: number
  suffix?: string
}

export type MetricType = 'counter' | 'gauge' | 'histogram'

/** Something that adds its families to each scrape, as text. */
export type Collector = () => string | Promise<string>

export class MetricsRegistry {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8'
  private readonly collectors: Collector[] = []

  add(collector: Collector): void {
    this.collectors.push(collector)
  }

  /** The whole exposition, collectors in the order they were added. */
  async metrics(): Promise<string> {
    const parts = await Promise.all(this.collectors.map((collect) => collect()))
    return parts.join('')
  }
}

/** One family: its HELP and TYPE lines and a line per sample (none is fine: nothing to report yet). */
export function family(name: string, type: MetricType, help: string, samples: readonly Sample[]): string {
  let text = `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`
  for (const sample of samples) text += `${name}${sample.suffix ?? ''}${labelsText(sample.labels)} ${valueText(sample.value)}\n`
  return text
}

function labelsText(labels: Record<string, string> | undefined): string {
  if (!labels) return ''
  const pairs = Object.entries(labels).map(([name, value]) => `${name}="${value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')}"`)
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`
}

function valueText(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Number.POSITIVE_INFINITY) return '+Inf'
  if (value === Number.NEGATIVE_INFINITY) return '-Inf'
  return String(value)
}

/** A histogram without labels, observed as things happen. */
export class Histogram {
  private readonly counts: number[]
  private sum = 0
  private count = 0
  private readonly options: { name: string; help: string; buckets: readonly number[] }

  constructor(registry: MetricsRegistry, options: { name: string; help: string; buckets: readonly number[] }) {
    this.options = { ...options, buckets: [...options.buckets].sort((a, b) => a - b) }
    this.counts = this.options.buckets.map(() => 0)
    registry.add(() => this.text())
  }

  observe(value: number): void {
    this.sum += value
    this.count += 1
    const index = this.options.buckets.findIndex((bound) => value <= bound)
    if (index >= 0) this.counts[index] += 1
  }

  private text(): string {
    // Buckets are cumulative in the format: each counts every observation up to its bound.
    let cumulative = 0
    const samples: Sample[] = this.options.buckets.map((bound, index) => {
      cumulative += this.counts[index]
      return { suffix: '_bucket', labels: { le: String(bound) }, value: cumulative }
    })
    samples.push({ suffix: '_bucket', labels: { le: '+Inf' }, value: this.count }, { suffix: '_sum', value: this.sum }, { suffix: '_count', value: this.count })
    return family(this.options.name, 'histogram', this.options.help, samples)
  }
}
