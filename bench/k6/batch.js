// k6: POST /api/batch with 100 events per request at a constant arrival rate (target:
// ≥ 250k events/s per collector core, i.e. RATE=2500 requests/s against one collector).
//
//   FAROL_URL=http://127.0.0.1:8080 RATE=2500 DURATION=60s k6 run bench/k6/batch.js
//
// Each event carries its visitor's `ip` and `ua`, honoured only from a trusted proxy: run the
// collector with FAROL_TRUST_PROXY=<the k6 machine's address>/32 (127.0.0.1/32 on one machine).
// The `events` counter's rate in the summary is events/s.
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';
import { buildBatches } from './common.js';

const BASE = __ENV.FAROL_URL || 'http://127.0.0.1:8080';
const RATE = Number(__ENV.RATE || 2500);
const EVENTS = Number(__ENV.EVENTS || 100);

const batches = new SharedArray('batches', () => buildBatches(256, EVENTS, 104729));
const events = new Counter('events');

export const options = {
  discardResponseBodies: true,
  scenarios: {
    batches: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '60s',
      preAllocatedVUs: Number(__ENV.VUS || 100),
      maxVUs: Number(__ENV.MAX_VUS || 1000),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.001'],
    http_req_duration: ['p(99)<' + Number(__ENV.P99_MS || 10)],
    checks: ['rate>0.999'],
  },
};

export default function () {
  const b = batches[Math.floor(Math.random() * batches.length)];
  const res = http.post(BASE + '/api/batch', b.body, {
    headers: { 'Content-Type': 'application/json', 'User-Agent': 'farol-forwarder/1.0', 'X-Forwarded-For': b.ip },
    tags: { name: 'POST /api/batch' },
  });
  if (check(res, { 'status is 202': (r) => r.status === 202 })) events.add(EVENTS);
}
