/**
 * A compact latency histogram: log-linear buckets (about 2 % relative error) over 0.1 ms–24 h, so
 * a million samples cost a few KB and histograms from several processes merge by adding counts.
 */
const SUB_BUCKETS = 32; // per power of two → relative error ≤ 1/32 ≈ 3 %
const MIN_MS = 0.1;

export interface HistogramSummary {
  count: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

export class Histogram {
  counts = new Map<number, number>();
  count = 0;
  sum = 0;
  min = Number.POSITIVE_INFINITY;
  max = 0;

  record(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    const bucket = ms <= MIN_MS ? 0 : Math.floor(Math.log2(ms / MIN_MS) * SUB_BUCKETS) + 1;
    this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + 1);
    this.count++;
    this.sum += ms;
    if (ms < this.min) this.min = ms;
    if (ms > this.max) this.max = ms;
  }

  /** Upper bound of a bucket (ms). */
  static bucketValue(bucket: number): number {
    return bucket === 0 ? MIN_MS : MIN_MS * 2 ** (bucket / SUB_BUCKETS);
  }

  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.ceil((p / 100) * this.count);
    let seen = 0;
    for (const bucket of [...this.counts.keys()].sort((a, b) => a - b)) {
      seen += this.counts.get(bucket)!;
      if (seen >= rank) return Math.min(Histogram.bucketValue(bucket), this.max);
    }
    return this.max;
  }

  merge(other: Histogram | SerializedHistogram): void {
    const entries = other instanceof Histogram ? [...other.counts] : other.buckets;
    for (const [bucket, n] of entries) this.counts.set(bucket, (this.counts.get(bucket) ?? 0) + n);
    // An empty histogram's min is Infinity, which JSON (and IPC) turns into null: it has no min or max to give.
    if (other.count === 0) return;
    this.count += other.count;
    this.sum += other.sum;
    this.min = Math.min(this.min, other.min);
    this.max = Math.max(this.max, other.max);
  }

  /**
   * For each bound (ascending, ms), how many samples are at most that bound: a Prometheus
   * histogram's cumulative buckets. A sample counts under a bound when its whole log-linear bucket
   * lies below it, so a count may leave out samples up to 3 % under the bound (the resolution).
   */
  cumulative(bounds: readonly number[]): number[] {
    const sorted = [...this.counts].sort((a, b) => a[0] - b[0]);
    const out: number[] = [];
    let i = 0;
    let seen = 0;
    for (const bound of bounds) {
      while (i < sorted.length && Histogram.bucketValue(sorted[i]![0]) <= bound) seen += sorted[i++]![1];
      out.push(seen);
    }
    return out;
  }

  summary(): HistogramSummary {
    const r = (x: number) => Math.round(x * 10) / 10;
    return {
      count: this.count,
      min: this.count ? r(this.min) : 0,
      p50: r(this.percentile(50)),
      p90: r(this.percentile(90)),
      p99: r(this.percentile(99)),
      max: r(this.max),
      mean: this.count ? r(this.sum / this.count) : 0,
    };
  }

  /** Plain data that survives JSON and process boundaries (merge it with `Histogram.from`). */
  toJSON(): SerializedHistogram {
    // Buckets ascending, so equal histograms serialize to equal JSON; an empty one's min is 0, not Infinity (not JSON).
    const buckets = [...this.counts].sort((x, y) => x[0] - y[0]);
    return { buckets, count: this.count, sum: this.sum, min: this.count ? this.min : 0, max: this.max };
  }

  static from(data: SerializedHistogram): Histogram {
    const h = new Histogram();
    h.merge(data);
    return h;
  }
}

export interface SerializedHistogram {
  buckets: Array<[number, number]>;
  count: number;
  sum: number;
  min: number;
  max: number;
}
