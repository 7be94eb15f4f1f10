import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { Metrics, renderMerged } from '../src/metrics.js';
import { createJob, jobsWorlds } from './helpers/jobs-world.js';
import { parsePrometheusText, sampleValue } from './helpers/prometheus-text.js';

const open = jobsWorlds();

async function scrape(baseUrl: string) {
  const res = await request(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toContain('text/plain; version=0.0.4');
  return parsePrometheusText(await res.body.text());
}

describe('/metrics scraped over a real socket', () => {
  it('exports the admission, job offer and REST latency histograms and the process metrics, as valid Prometheus text', async () => {
    const w = await open();
    const before = await scrape(w.baseUrl);
    expect(sampleValue(before, 'fleet_admission_duration_seconds_count', { outcome: 'managed' })).toBeUndefined();
    expect(sampleValue(before, 'fleet_admission_transaction_seconds_count')).toBe(0);

    const [d] = w.fakeDevices(1);
    const welcome = await d!.connect(w.channel.port);
    expect(welcome.body.admission).toBe('managed');
    const afterHello = await scrape(w.baseUrl);
    expect(sampleValue(afterHello, 'fleet_admission_duration_seconds_count', { outcome: 'managed' })).toBe(1);
    expect(sampleValue(afterHello, 'fleet_admission_duration_seconds_bucket', { outcome: 'managed', le: '+Inf' })).toBe(1);
    // On loopback with one device the whole admission takes well under the 10 s bucket.
    expect(sampleValue(afterHello, 'fleet_admission_duration_seconds_bucket', { outcome: 'managed', le: '10' })).toBe(1);
    expect(afterHello.get('fleet_admission_duration_seconds')).toMatchObject({ type: 'histogram' });
    // One hello, one admission transaction (its group commit).
    expect(sampleValue(afterHello, 'fleet_admission_transaction_seconds_count')).toBe(1);
    expect(sampleValue(afterHello, 'fleet_devices_connected')).toBe(1);

    // The process's own metrics (prom-client's default collectors).
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_gc_duration_seconds',
      'nodejs_version_info',
    ]) {
      expect(afterHello.has(name), name).toBe(true);
    }
    expect(sampleValue(afterHello, 'process_resident_memory_bytes')).toBeGreaterThan(10 * 1024 * 1024);

    // The previous scrape was a REST request: one series per route pattern and status class.
    expect(sampleValue(afterHello, 'fleet_http_request_duration_seconds_count', { method: 'GET', route: '/metrics', status_class: '2xx' }))
      .toBeGreaterThanOrEqual(1);

    const packet = await w.packet();
    const job = await createJob(w, { packetUuid: packet.uuid, target: { all: true } });
    const offer = await d!.next((m) => m.type === 'job-offer');
    expect(offer.body).toMatchObject({ jobId: job.uuid });
    const afterOffer = await scrape(w.baseUrl);
    expect(sampleValue(afterOffer, 'fleet_job_offer_latency_seconds_count')).toBe(1);
    expect(sampleValue(afterOffer, 'fleet_job_offers_total')).toBe(1);
    expect(sampleValue(afterOffer, 'fleet_http_request_duration_seconds_count', { method: 'POST', route: '/api/jobs', status_class: '2xx' })).toBe(1);
    // A path no route matches is one series, whatever the path.
    await request(`${w.baseUrl}/api/no/such/${Date.now()}`).then((r) => r.body.dump());
    const afterMiss = await scrape(w.baseUrl);
    expect(sampleValue(afterMiss, 'fleet_http_request_duration_seconds_count', { method: 'GET', route: 'unmatched', status_class: '4xx' })).toBe(1);

    // The README's list names exactly what a server exports (fleet_workers: cluster primary only).
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = /<!-- metrics:start -->\n([\s\S]*?)<!-- metrics:end -->/.exec(readme)?.[1] ?? '';
    const documented = new Set(section.match(/\bfleet_[a-z_]+/g));
    const exported = new Set([...afterMiss.keys()].filter((n) => n.startsWith('fleet_')));
    expect([...exported].filter((n) => !documented.has(n))).toEqual([]);
    expect([...documented].filter((n) => !exported.has(n))).toEqual(['fleet_workers']);
  });
});

describe('Metrics', () => {
  it('keeps counters and gauges readable synchronously and takes label names at first use', async () => {
    const m = new Metrics({ processMetrics: false });
    m.counter('fleet_test_total', 'A test counter.');
    m.inc('fleet_test_total');
    expect(parsePrometheusText(await m.render()).get('fleet_test_total')?.samples).toEqual([
      { name: 'fleet_test_total', labels: {}, value: 1 },
    ]);
    m.inc('fleet_test_total', { code: 'A "quoted"\nline' }, 2);
    let gauge = 7;
    m.gauge('fleet_test_gauge', 'A test gauge.', () => gauge);
    expect(m.value('fleet_test_total')).toBe(1);
    expect(m.value('fleet_test_total', { code: 'A "quoted"\nline' })).toBe(2);
    expect(m.snapshot()['fleet_test_gauge']).toMatchObject({ type: 'gauge', values: [['', 7]] });
    gauge = 9;
    const families = parsePrometheusText(await m.render());
    expect(sampleValue(families, 'fleet_test_total', { code: 'A "quoted"\nline' })).toBe(2);
    expect(sampleValue(families, 'fleet_test_gauge')).toBe(9);
    expect(() => m.inc('fleet_unknown_total')).toThrow(/unknown metric/);
    expect(() => m.counter('fleet bad name', 'x')).not.toThrow(); // declared lazily …
    m.inc('fleet bad name');
    await expect(m.render()).rejects.toThrow(/Invalid metric name/); // … refused when exported
  });

  it('merges the processes of a cluster: sums per-process figures and histograms, takes the maximum of store-wide gauges', async () => {
    const parts = [];
    for (const n of [1, 2]) {
      const m = new Metrics({ processMetrics: false });
      m.inc('fleet_messages_in_total', undefined, n);
      m.gauge('fleet_devices_connected', 'Connected here.', () => n);
      m.gauge('fleet_devices_managed', 'Store-wide.', () => 5, { aggregate: 'max' });
      m.observe('fleet_admission_duration_seconds', { outcome: 'managed' }, 0.002 * n);
      // What node:cluster's IPC does to the figures on the way to the primary.
      parts.push(JSON.parse(JSON.stringify(await m.json())));
    }
    const families = parsePrometheusText(await renderMerged(parts));
    expect(sampleValue(families, 'fleet_messages_in_total')).toBe(3);
    expect(sampleValue(families, 'fleet_devices_connected')).toBe(3);
    expect(sampleValue(families, 'fleet_devices_managed')).toBe(5);
    expect(sampleValue(families, 'fleet_admission_duration_seconds_count', { outcome: 'managed' })).toBe(2);
    expect(sampleValue(families, 'fleet_admission_duration_seconds_bucket', { outcome: 'managed', le: '0.0025' })).toBe(1);
    expect(sampleValue(families, 'fleet_admission_duration_seconds_sum', { outcome: 'managed' })).toBeCloseTo(0.006, 6);
  });
});
