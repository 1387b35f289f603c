// The chart arithmetic of host/console/charts.js, in Node's own test runner.
import { test } from "node:test";
import assert from "node:assert/strict";
import { latencyQuantileMs, pointBetween } from "../../host/console/charts.js";

const near = (actual, expected) => assert.ok(Math.abs(actual - expected) < 1e-9, `${actual} ≉ ${expected}`);
const buckets = (counts) => [0.01, 0.1, 1, null].map((le_s, index) => ({ le_s, count: counts[index] }));

test("a quantile interpolates inside its bucket of the requests between two reads", () => {
  const before = buckets([5, 5, 5, 5]);
  // Between the reads: 10 requests, all between 10 ms and 100 ms.
  const after = buckets([5, 15, 15, 15]);
  near(latencyQuantileMs(before, after, 0.5), 55);
  near(latencyQuantileMs(before, after, 1), 100);
});

test("no request in between has no quantile; past the last bound is that bound", () => {
  assert.equal(latencyQuantileMs(buckets([1, 2, 3, 4]), buckets([1, 2, 3, 4]), 0.5), null);
  assert.equal(latencyQuantileMs(buckets([0, 0, 0, 0]), buckets([0, 0, 0, 10]), 0.99), 1000);
});

test("a point has rates over the time between the reads", () => {
  const read = (uptime_s, requests_total, cache_hits, cache_misses, counts) =>
    ({ uptime_s, requests_total, cache_hits, cache_misses, latency_buckets: buckets(counts) });
  const point = pointBetween(read(10, 100, 10, 10, [0, 0, 0, 0]), read(12, 140, 13, 11, [40, 40, 40, 40]));
  assert.equal(point.requestsPerSecond, 20);
  assert.equal(point.hitPercent, 75);
  near(point.p50Ms, 5);
  assert.equal(pointBetween(read(10, 0, 0, 0, [0, 0, 0, 0]), read(10, 0, 0, 0, [0, 0, 0, 0])), null);
  assert.equal(pointBetween(read(1, 0, 0, 0, [0, 0, 0, 0]), read(2, 5, 0, 0, [5, 5, 5, 5])).hitPercent, null);
});
