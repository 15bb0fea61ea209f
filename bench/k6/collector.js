// k6: one tracker beacon per request at a constant arrival rate.
//
//   FAROL_URL=http://127.0.0.1:8080 RATE=5000 DURATION=60s k6 run bench/k6/collector.js
//
// The collector must trust the load generator as a proxy (FAROL_TRUST_PROXY=<its address>/32,
// 127.0.0.1/32 on one machine) so the X-Forwarded-For addresses count as
// visitors' IPs (varied visitor ids and countries). Thresholds: < 0.1% failed requests and
// p99 < 10 ms; run it at about half of the rate `npm run bench -- collector` measured, which is
// where the p99 target applies. `dropped_iterations` above 0 means the arrival rate was not met
// (too few VUs, or the server fell behind).
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { buildBeacons } from './common.js';

const BASE = __ENV.FAROL_URL || 'http://127.0.0.1:8080';
const RATE = Number(__ENV.RATE || 5000);

// Built once and shared by every VU.
const beacons = new SharedArray('beacons', () => buildBeacons(4096, 7919));

export const options = {
  discardResponseBodies: true,
  scenarios: {
    beacons: {
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
  const b = beacons[Math.floor(Math.random() * beacons.length)];
  const res = http.post(BASE + '/api/event', b.body, {
    // k6's own User-Agent would be dropped as a bot.
    headers: { 'Content-Type': 'text/plain', 'User-Agent': b.ua, 'X-Forwarded-For': b.ip },
    tags: { name: 'POST /api/event' },
  });
  check(res, { 'status is 202': (r) => r.status === 202 });
}
