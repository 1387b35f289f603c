// The console's charts: requests per second, cache hit rate and latency
// percentiles, each point computed from two reads of GET /stats (totals
// since start), drawn with uPlot (vendored, see vendor/README.md).

/** Points kept: five minutes at one read every two seconds. */
const MAX_POINTS = 150;

/**
 * The `quantile` (0..1) of the requests between two reads, from the
 * differences of their cumulative latency buckets, interpolated linearly
 * inside the bucket it falls in (as Prometheus' histogram_quantile does).
 * Milliseconds, or null when no request finished in between.
 */
export function latencyQuantileMs(before, after, quantile) {
  const counts = after.map((bucket, index) => bucket.count - (before[index]?.count ?? 0));
  const total = counts[counts.length - 1];
  if (!(total > 0)) return null;
  const rank = quantile * total;
  let lower = 0;
  for (let index = 0; index < counts.length; index += 1) {
    const upper = after[index].le_s;
    if (counts[index] >= rank) {
      // Past the last finite bound, the best answer is that bound.
      if (upper === null) return lower * 1000;
      const below = index === 0 ? 0 : counts[index - 1];
      const inBucket = counts[index] - below;
      const share = inBucket > 0 ? (rank - below) / inBucket : 1;
      return (lower + (upper - lower) * share) * 1000;
    }
    if (upper !== null) lower = upper;
  }
  return lower * 1000;
}

/** One point per pair of reads: [requests/s, hit %, p50 ms, p99 ms]. */
export function pointBetween(before, after) {
  const seconds = after.uptime_s - before.uptime_s;
  if (!(seconds > 0)) return null;
  const hits = after.cache_hits - before.cache_hits;
  const lookups = hits + (after.cache_misses - before.cache_misses);
  return {
    requestsPerSecond: (after.requests_total - before.requests_total) / seconds,
    hitPercent: lookups > 0 ? (100 * hits) / lookups : null,
    p50Ms: latencyQuantileMs(before.latency_buckets, after.latency_buckets, 0.5),
    p99Ms: latencyQuantileMs(before.latency_buckets, after.latency_buckets, 0.99),
  };
}

function chart(element, title, series, yRange) {
  const options = {
    title,
    width: Math.max(280, element.clientWidth || 320),
    height: 160,
    scales: { x: { time: true }, y: yRange ? { range: yRange } : {} },
    series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, spanGaps: true }))],
    axes: [{}, { size: 56 }],
  };
  return new window.uPlot(options, [[], ...series.map(() => [])], element);
}

/** The three charts, fed one read of /stats at a time. */
export class TrafficCharts {
  constructor(requestsElement, hitsElement, latencyElement) {
    this.times = [];
    this.columns = { requests: [], hits: [], p50: [], p99: [] };
    this.previous = null;
    this.elements = [requestsElement, hitsElement, latencyElement];
    this.requests = chart(requestsElement, "requests / s", [["requests/s", "#2f6fdf"]]);
    this.hits = chart(hitsElement, "cache hit rate, %", [["hit %", "#2a9d55"]], [0, 100]);
    this.latency = chart(latencyElement, "latency, ms", [["p50", "#8a5cd0"], ["p99", "#d0632f"]]);
  }

  /** Adds the point between the last read and `stats`; redraws. */
  add(stats) {
    const point = this.previous && pointBetween(this.previous, stats);
    this.previous = stats;
    if (!point) return;
    this.times.push(Date.now() / 1000);
    this.columns.requests.push(point.requestsPerSecond);
    this.columns.hits.push(point.hitPercent);
    this.columns.p50.push(point.p50Ms);
    this.columns.p99.push(point.p99Ms);
    if (this.times.length > MAX_POINTS) {
      this.times.shift();
      Object.values(this.columns).forEach((column) => column.shift());
    }
    const { requests, hits, p50, p99 } = this.columns;
    this.requests.setData([this.times, requests]);
    this.hits.setData([this.times, hits]);
    this.latency.setData([this.times, p50, p99]);
    // What the browser tests (and curious operators) read back.
    this.elements.forEach((element) => { element.dataset.points = String(this.times.length); });
  }

  /** Forgets every point (a new token, maybe another service). */
  reset() {
    this.previous = null;
    this.times = [];
    Object.values(this.columns).forEach((column) => column.splice(0));
    this.requests.setData([[], []]);
    this.hits.setData([[], []]);
    this.latency.setData([[], [], []]);
    this.elements.forEach((element) => { element.dataset.points = "0"; });
  }
}
