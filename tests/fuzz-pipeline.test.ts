import fc from 'fast-check';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLocalHub, type LocalHub } from '../hub/local-hub.ts';
import type { HubConsumer } from '../hub/hub.ts';
import { startCollector, type CollectorRuntime } from '../ingest/main.ts';
import { createLogger, silentLogger } from '../lib/log.ts';
import { Registry } from '../lib/metrics.ts';
import { openFileStateStore, startProcessor, type ProcessorRuntime, type StateStore } from '../processor/main.ts';
import { metricValue, openTestStore, removeTempDirs, tempDir } from '../processor/testing/harness.ts';
import { loadConfig } from '../schemas/config.ts';
import { isCleanString } from '../schemas/unicode.ts';
import type { Store } from '../store/store.ts';
import { pollUntil } from './support/e2e.ts';
import { encodeJson, escapeChoices, hostileJson, hostileString, nested, Obj, RawJson, type J } from '../schemas/testing/hostile-json.ts';

/**
 * Property-based fuzzing of the whole ingest path (issue #8): arbitrary JSON — any Unicode with
 * lone surrogates and NUL written as raw escapes, extreme numbers, deep nesting, strings near and
 * past the limits, odd keys — sent as single events, batches, query strings and raw bytes to a
 * real collector on a real port, through the local hub and the processor into chDB on a temp dir.
 *
 * Every answer must be a 2xx or a coded 4xx (never a 5xx, never a dropped connection, except for
 * a request head past uWebSockets.js's 64 KiB, which it resets before Farol sees it), and a
 * string that is not well-formed Unicode or holds NUL must never be accepted. Then every accepted
 * event must be stored exactly once (found by its client id) within a bound — a record the store
 * cannot take would stop its partition, so "not stored in time" is the failure, not a hang — and
 * valid traffic sent afterwards must all be counted.
 *
 * `FAROL_FUZZ_SEED` replays a run; `FAROL_FUZZ_RUNS` sets the number of requests (default 1,000,
 * about 5,000 events; cut short after 45 s on a slow machine). The seed is printed by fast-check
 * on a failure and named in every other assertion message.
 */

const SEED = process.env['FAROL_FUZZ_SEED'] !== undefined ? Number(process.env['FAROL_FUZZ_SEED']) : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
const RUNS = Number(process.env['FAROL_FUZZ_RUNS'] ?? 1000);
const SITES = ['fuzz.test', 'other.test'];
const PARTITIONS = 2;
const CHROME =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36';
/** Client ids of this run: unique, so each accepted event is found by its id. */
const ID_PREFIX = `fz${(SEED >>> 0).toString(36)}-`;
const STORE_BOUND_MS = 45_000;
const UWS_MAX_HEAD = 60_000;

// ---------------------------------------------------------------------------------------------
// Generators.

/** A value that is mostly a valid one, sometimes hostile (`hostility` of 10 draws). */
function field(valid: fc.Arbitrary<J>, hostility: number): fc.Arbitrary<J> {
  return hostility === 0 ? valid : fc.oneof({ weight: 10 - hostility, arbitrary: valid }, { weight: hostility, arbitrary: hostileJson });
}

// The pools below are valid (or nearly: an unknown site, a `javascript:` URL, 31 props, now and
// then); `field` mixes in hostile values. Text is any printable Unicode, astral included.
const text = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: 'grapheme', minLength: min, maxLength: max });
const rare = <T>(common: fc.Arbitrary<T>, odd: fc.Arbitrary<T>): fc.Arbitrary<T> => fc.oneof({ weight: 12, arbitrary: common }, { weight: 1, arbitrary: odd });

const names = fc.oneof(fc.constantFrom('pageview', 'Signup', 'Outbound Link: Click', 'Ação 🚀', 'n'.repeat(120), 'e\u0007'), text(1, 40));
const validUrls = fc.oneof(
  fc.constantFrom(
    'https://fuzz.test/',
    'https://fuzz.test/pricing?utm_source=news&utm_medium=email&gclid=x',
    'http://www.fuzz.test/a/b/',
    'https://fuzz.test/%ED%A0%80/%00?utm_source=%00&utm_campaign=%ED%A0%80',
    'https://fuzz.test/ção/😀#/route',
    `https://fuzz.test/${'p'.repeat(1980)}`,
    'https://xn--fsq.fuzz.test/',
  ),
  text(0, 30).map((t) => `https://fuzz.test/${t}?utm_source=${t}`),
);
const urls = rare(validUrls, fc.constantFrom('javascript:alert(1)', '/relative', 'https://'));
const validDomains = fc.constantFrom(
  'fuzz.test',
  'FUZZ.TEST',
  ' fuzz.test ',
  'fuzz.test,other.test',
  'fuzz.test,fuzz.test,FUZZ.test, fuzz.test',
  'other.test,fuzz.test,other.test',
  ',fuzz.test,',
);
const domains = rare(validDomains, fc.constantFrom('unknown.test', 'fuzz.test,'.repeat(11), 'fuzz.test,unknown.test'));
const referrers = fc.oneof(fc.constantFrom('', 'https://www.google.com/', 'https://t.co/x', 'android-app://com.slack/', 'not a url', 'https://fuzz.test/self'), text(0, 40));
const propKeys = fc.oneof(fc.constantFrom('plan', 'seats', '__proto__', 'constructor', 'toString', 'k'.repeat(300)), text(1, 20));
const finiteNumbers = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom('1e308', '-1e308', '-0', '0.0', '1E+2', '5e-324', '1e-400', '9007199254740993', '123456789012345678901234567890').map((t) => new RawJson(t)),
);
const propValues = fc.oneof(text(0, 30), finiteNumbers, fc.boolean(), fc.constant('v'.repeat(2000)));
const validProps = fc.oneof(
  { weight: 6, arbitrary: fc.array(fc.tuple(propKeys, propValues), { maxLength: 8 }).map((e) => new Obj(e)) },
  // Plausible's old tracker sent props as a JSON string; its escapes are a second layer.
  { weight: 1, arbitrary: fc.tuple(fc.array(fc.tuple(propKeys, propValues), { maxLength: 3 }), escapeChoices).map(([e, c]) => encodeJson(new Obj(e), c)) },
);
const props = rare(
  validProps,
  fc.integer({ min: 29, max: 32 }).map((n) => new Obj(Array.from({ length: n }, (_, i) => [`k${i}`, i] as const))),
);
const revenue = fc.oneof(
  fc
    .tuple(
      fc.constantFrom('EUR', 'usd', 'BRL'),
      fc.oneof(
        finiteNumbers,
        fc.constantFrom('12.50', '-3', '7', '999999999999.99', '-3742804198504.4'),
        // Around what Decimal(18, 6) holds: 12 integer digits.
        fc.constantFrom(999_999_999_999.5, 1e12, -1e12, 3.7e12, 9e12, 9.3e12, 1e21, 1e22).map((n) => new RawJson(String(n))),
      ),
    )
    .map(([c, a]) => new Obj([['currency', c], ['amount', a]])),
  fc.constant(null),
);
const expIds = fc.constantFrom('hero', 'cta.v2', 'a-b_c', 'x'.repeat(100));
const exp = fc.array(fc.tuple(expIds, expIds), { maxLength: 3 }).map((e) => new Obj(e));
const oddKeys = fc.constantFrom('__proto__', 'constructor', '', 'n', 'd', 'id', 'props', 'zzz', '\u0000', '\ud800');

/** `a` once in `oneIn` draws, else undefined (absent). */
const sometimes = <T>(a: fc.Arbitrary<T>, oneIn: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: a });
/** `a` except once in `oneIn` draws. */
const mostly = <T>(a: fc.Arbitrary<T>, oneIn: number): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined, freq: oneIn });

/**
 * An event object (as ordered entries); `hostility` of 10 is the chance each field is hostile. At
 * 0 the event is valid (however odd its text), so a batch of them is accepted.
 */
function eventArb(hostility: number): fc.Arbitrary<{ entries: Array<[string, J]>; idSuffix: string }> {
  return fc
    .record({
      longForm: fc.boolean(),
      n: hostility === 0 ? names : mostly(field(names, hostility), 15),
      u: hostility === 0 ? validUrls : mostly(field(urls, hostility), 15),
      d: hostility === 0 ? validDomains : mostly(field(domains, hostility), 15),
      r: sometimes(field(referrers, hostility), 2),
      p: sometimes(hostility === 0 ? validProps : field(props, hostility), 2),
      revenue: sometimes(field(revenue, hostility), 4),
      exp: sometimes(field(exp, hostility), 4),
      w: sometimes(field(fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.constantFrom(new RawJson('-0'), new RawJson('1E+2'))), hostility), 4),
      h: sometimes(field(fc.oneof(fc.boolean(), finiteNumbers), hostility), 6),
      i: sometimes(field(fc.boolean(), hostility), 4),
      ip: sometimes(field(fc.constantFrom('8.8.8.8', '2a00:1450::1', '::1'), hostility), 6),
      ua: sometimes(field(fc.constantFrom(CHROME, ''), hostility), 6),
      extra: hostility === 0 ? fc.constant([] as Array<[string, J]>) : rare(fc.constant([] as Array<[string, J]>), fc.array(fc.tuple(oddKeys, hostileJson), { minLength: 1, maxLength: 2 })),
      deep: hostility === 0 ? fc.constant(undefined) : sometimes(fc.tuple(fc.constantFrom(10, 100, 1000, 5000), hostileJson, fc.boolean()), 40),
      idSuffix: hostility === 0 ? fc.constant('') : fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 1, arbitrary: hostileString }),
    })
    .map((f) => {
      const entries: Array<[string, J]> = [];
      const add = (k: string, v: J | undefined): void => {
        if (v !== undefined) entries.push([k, v]);
      };
      add(f.longForm ? 'name' : 'n', f.n);
      add(f.longForm ? 'url' : 'u', f.u);
      add(f.longForm ? 'domain' : 'd', f.d);
      add(f.longForm ? 'referrer' : 'r', f.r);
      add(f.longForm ? 'props' : 'p', f.p);
      add(f.longForm ? 'revenue' : '$', f.revenue);
      add('exp', f.exp);
      add('w', f.w);
      add('h', f.h);
      add(f.longForm ? 'interactive' : 'i', f.i);
      add('ip', f.ip);
      add('ua', f.ua);
      for (const e of f.extra) entries.push(e);
      if (f.deep) entries.push([f.deep[2] ? 'p' : 'zzz', nested(f.deep[0], f.deep[1], f.deep[2])]);
      return { entries, idSuffix: f.idSuffix };
    });
}

type Case =
  | { kind: 'event'; event: { entries: Array<[string, J]>; idSuffix: string }; choices: number[]; pad: number }
  | { kind: 'batch'; events: Array<{ entries: Array<[string, J]>; idSuffix: string }>; stray: J | undefined; choices: number[] }
  | { kind: 'get'; route: '/api/event' | '/e.gif'; event: { entries: Array<[string, J]>; idSuffix: string }; choices: number[] }
  | { kind: 'json'; route: '/api/event' | '/api/batch'; value: J; choices: number[] }
  | { kind: 'bytes'; route: '/api/event' | '/api/batch'; bytes: Uint8Array };

const caseArb: fc.Arbitrary<Case> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('event' as const),
      event: eventArb(1),
      choices: escapeChoices,
      // Now and then a padding prop that takes the body near or past the 64 KiB cap.
      pad: fc.oneof({ weight: 15, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(60_000, 65_400, 70_000) }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('batch' as const),
      events: fc.array(eventArb(0), { minLength: 1, maxLength: 40, size: 'max' }),
      stray: sometimes(fc.oneof(eventArb(3).map((e) => new Obj(e.entries) as J), hostileJson), 4),
      choices: escapeChoices,
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('get' as const), route: fc.constantFrom('/api/event' as const, '/e.gif' as const), event: eventArb(1), choices: escapeChoices }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('json' as const),
      route: fc.constantFrom('/api/event' as const, '/api/batch' as const),
      value: fc.oneof(hostileJson, fc.tuple(fc.constantFrom(1000, 20_000), hostileJson, fc.boolean()).map(([n, v, o]) => nested(n, v, o))),
      choices: escapeChoices,
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bytes' as const), route: fc.constantFrom('/api/event' as const, '/api/batch' as const), bytes: fc.uint8Array({ maxLength: 64 }) }) },
);

// ---------------------------------------------------------------------------------------------
// What the collector sees, and what it must store.

let nextId = 0;

/** The event's entries with a unique client id appended (a later key wins in JSON). */
function withId(event: { entries: Array<[string, J]>; idSuffix: string }): Obj {
  return new Obj([...event.entries, ['id', `${ID_PREFIX}${nextId++}${event.idSuffix}`]]);
}

/** The sites an accepted event is stored for: `domain ?? d`, split, trimmed, lower-cased, once each. */
function sitesOf(v: Record<string, unknown>): string[] {
  const domain = v['domain'] ?? v['d'];
  if (typeof domain !== 'string') return [];
  return [...new Set(domain.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''))];
}

function nameOf(v: Record<string, unknown>): string {
  const n = v['name'] ?? v['n'];
  return typeof n === 'string' ? n : '';
}

/** Whether a decoded value holds a string (key or value) that is not well-formed or holds NUL. */
function holdsBadString(v: unknown): boolean {
  const stack = [v];
  for (let x = stack.pop(); x !== undefined || stack.length > 0; x = stack.pop()) {
    if (typeof x === 'string') {
      if (!isCleanString(x)) return true;
    } else if (Array.isArray(x)) stack.push(...(x as unknown[]));
    else if (x !== null && typeof x === 'object') {
      for (const [k, y] of Object.entries(x)) {
        if (!isCleanString(k)) return true;
        stack.push(y);
      }
    }
  }
  return false;
}

const JSON_PARAMS = new Set(['p', 'props', 'm', 'exp', '$', 'revenue']);

/** A field's query-string form: strings as they are, anything else as JSON text. */
function paramText(v: J, choices: number[]): string {
  if (typeof v === 'string') return v;
  if (v instanceof RawJson) return v.text;
  return encodeJson(v, choices);
}

interface Request {
  method: 'GET' | 'POST';
  path: string;
  body?: Buffer;
  /** What the collector decodes from it (undefined: not JSON / not an event list). */
  events: Array<Record<string, unknown>> | undefined;
  /** The request holds a string that is not well-formed Unicode or holds NUL: it must be refused. */
  mustRefuse: boolean;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function toRequest(c: Case): Request {
  switch (c.kind) {
    case 'event': {
      const obj = withId(c.event);
      const entries = c.pad > 0 ? [...obj.entries, ['zpad', 'x'.repeat(c.pad)] as const] : obj.entries;
      const text = encodeJson(new Obj(entries), c.choices);
      const v = parseOrUndefined(text);
      return { method: 'POST', path: '/api/event', body: Buffer.from(text), events: isRecord(v) ? [v] : undefined, mustRefuse: holdsBadString(v) };
    }
    case 'batch': {
      const items: J[] = c.events.map(withId);
      if (c.stray !== undefined) items.splice(items.length >> 1, 0, c.stray);
      const text = encodeJson(items, c.choices);
      const v = parseOrUndefined(text);
      return { method: 'POST', path: '/api/batch', body: Buffer.from(text), events: Array.isArray(v) && v.every(isRecord) ? v : undefined, mustRefuse: holdsBadString(v) };
    }
    case 'get': {
      const params = new URLSearchParams();
      // `h` has no query-string form (it stays text there).
      for (const [k, v] of withId(c.event).entries) if (k !== 'h') params.append(k, paramText(v, c.choices));
      const query = params.toString();
      // What the collector decodes: the same percent-decoding, later keys winning, JSON fields parsed.
      const seen: Record<string, unknown> = {};
      let bad = false;
      for (const [k, v] of new URLSearchParams(query)) {
        const decoded = JSON_PARAMS.has(k) ? parseOrUndefined(v) : v;
        if (!isCleanString(k) || !isCleanString(v) || holdsBadString(decoded)) bad = true;
        seen[k] = decoded;
      }
      return { method: 'GET', path: `${c.route}?${query}`, events: [seen], mustRefuse: bad };
    }
    case 'json': {
      const text = encodeJson(c.value, c.choices);
      const v = parseOrUndefined(text);
      const events = c.route === '/api/batch' ? (Array.isArray(v) && v.every(isRecord) ? v : undefined) : isRecord(v) ? [v] : undefined;
      return { method: 'POST', path: c.route, body: Buffer.from(text), events, mustRefuse: holdsBadString(v) };
    }
    case 'bytes':
      return { method: 'POST', path: c.route, body: Buffer.from(c.bytes), events: undefined, mustRefuse: false };
  }
}

/** An accepted event: its client id (null without one), the sites it goes to, its name. */
interface Accepted {
  id: string | null;
  sites: string[];
  name: string;
}

// ---------------------------------------------------------------------------------------------

describe('fuzz: arbitrary JSON through collector → hub → processor → chDB', () => {
  let store: Store;
  let hub: LocalHub;
  let consumer: HubConsumer;
  let stateStore: StateStore;
  let processor: ProcessorRuntime;
  let collector: CollectorRuntime;
  let url = '';
  const metrics = new Registry();
  const accepted: Accepted[] = [];
  let requests = 0;
  let refused = 0;
  let sentEvents = 0;
  /** The processor's last warning or error (why a write fails), for the failure message. */
  let processorTrouble = '';
  const acceptedBad: string[] = [];

  beforeAll(async () => {
    store = await openTestStore();
    const dataDir = await tempDir('fuzz');
    hub = await openLocalHub({ dir: join(dataDir, 'hub'), partitions: PARTITIONS });
    consumer = await hub.openConsumer('processor');
    stateStore = await openFileStateStore(await tempDir('fuzz-state'));
    processor = startProcessor({
      consumer,
      store,
      stateStore,
      log: createLogger('warn', {}, (line) => (processorTrouble = line.slice(0, 800))),
      metrics,
      options: { flushIntervalMs: 100, retryInitialMs: 50, retryMaxMs: 1_000, lagRefreshMs: 200 },
    });
    const config = loadConfig({ FAROL_DATA_DIR: dataDir, FAROL_PORT: '0', FAROL_SITES: SITES.join(','), FAROL_HUB_PARTITIONS: String(PARTITIONS),
      // One client sends everything as fast as it can: the rate limit (tests/abuse.test.ts) is not what this checks.
      FAROL_RATE_CLIENT: 'off',
    });
    collector = await startCollector(config, { hub, log: silentLogger, metrics });
    url = `http://127.0.0.1:${collector.port}`;
  }, 120_000);

  afterAll(async () => {
    await collector?.stop();
    processor?.abandon('test over');
    await processor?.drain();
    await consumer?.close();
    await stateStore?.close();
    await hub?.close();
    await store?.close();
    await removeTempDirs();
  });

  /**
   * The property's runs, until each ends: fast-check's time limit ends the property without
   * waiting for the run it interrupts, whose request may still be stored after its answer.
   */
  const runs = new Set<Promise<void>>();
  const tracked =
    <A>(run: (a: A) => Promise<void>) =>
    (a: A): Promise<void> => {
      const p = run(a);
      runs.add(p);
      const done = (): boolean => runs.delete(p);
      p.then(done, done);
      return p;
    };

  it(`answers every request 2xx or with a coded 4xx, refusing every string that is not well-formed (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(caseArb, tracked(async (c) => {
        const req = toRequest(c);
        requests++;
        sentEvents += c.kind === 'batch' ? c.events.length + (c.stray === undefined ? 0 : 1) : 1;
        const sent = fetch(`${url}${req.path}`, {
          method: req.method,
          headers: { 'user-agent': CHROME, 'content-type': 'text/plain' },
          ...(req.body === undefined ? {} : { body: req.body }),
          signal: AbortSignal.timeout(20_000),
        });
        // uWebSockets.js resets a request whose head passes its 64 KiB bound before Farol sees it.
        if (req.path.length > UWS_MAX_HEAD) {
          await sent.then((r) => r.arrayBuffer()).catch(() => undefined);
          return;
        }
        const res = await sent;
        const text = await res.text();
        const where = `${req.method} ${req.path.slice(0, 200)} → ${res.status} ${text.slice(0, 300)}`;
        expect(res.status, where).toBeLessThan(500);
        if (res.status >= 400) {
          refused++;
          expect([400, 413], where).toContain(res.status);
          const error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
          expect(error?.code, where).toMatch(/^ING_[A-Z0-9_]+$/);
          expect(typeof error?.message === 'string' && error.message.length > 0, where).toBe(true);
          return;
        }
        // Recorded, not thrown: the run goes on, so what such events do downstream is seen too.
        if (req.mustRefuse) acceptedBad.push(where);
        const events = req.events;
        expect(events, where).toBeDefined();
        if (req.path.startsWith('/e.gif')) expect(res.status).toBe(200);
        else expect(res.status, where).toBe(202);
        if (req.path === '/api/batch') expect(JSON.parse(text), where).toEqual({ accepted: events?.length });
        for (const e of events ?? []) accepted.push({ id: typeof e['id'] === 'string' ? e['id'] : null, sites: sitesOf(e), name: nameOf(e) });
      })),
      { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 45_000, markInterruptAsFailure: false },
    );
    // An interrupted run's answer is recorded like the others before anything is counted.
    await Promise.allSettled([...runs]);
    console.log(`fuzz seed ${SEED}: ${requests} requests holding ${sentEvents} events; ${accepted.length} events accepted, ${refused} requests refused`);
    expect(acceptedBad.slice(0, 5), `seed ${SEED}: accepted strings that are not well-formed Unicode or hold NUL`).toEqual([]);
    // Bounded by time on a slow machine, but never trivially small.
    expect(requests, `seed ${SEED}`).toBeGreaterThanOrEqual(Math.min(RUNS, 300));
    expect(accepted.length, `seed ${SEED}: too few accepted events to mean anything`).toBeGreaterThan(requests / 2);
    expect(refused, `seed ${SEED}: too few refusals to mean anything`).toBeGreaterThan(requests / 20);
  }, 120_000);

  it('stores every accepted event exactly once, within a bound', async () => {
    const expected = new Map<string, { sites: Set<string>; name: string }>();
    let anonymousRows = 0;
    for (const a of accepted) {
      if (a.id === null) {
        anonymousRows += a.sites.length;
        continue;
      }
      const e = expected.get(a.id) ?? { sites: new Set<string>(), name: a.name };
      for (const s of a.sites) e.sites.add(s);
      expected.set(a.id, e);
    }
    const total = anonymousRows + [...expected.values()].reduce((n, e) => n + e.sites.size, 0);
    let stored = 0;
    await pollUntil(
      async () => {
        stored = Number((await store.query<{ n: string }>('SELECT count() AS n FROM events'))[0]?.n ?? 0);
        return stored >= total ? true : undefined;
      },
      {
        timeoutMs: STORE_BOUND_MS,
        describe: () =>
          `seed ${SEED}: ${stored} of ${total} accepted event rows stored; failed inserts retried ${metricValue(metrics, 'farol_processor_store_retries_total')} times ` +
          `(a record the store cannot take stops its partition); the processor's last complaint: ${processorTrouble}`,
      },
    );
    const rows = await store.query<{ id: string; site: string; name: string; n: string }>(
      'SELECT event_id AS id, site, any(name) AS name, count() AS n FROM events GROUP BY event_id, site',
    );
    const found = new Map<string, Map<string, { name: string; n: number }>>();
    for (const r of rows) {
      const bySite = found.get(r.id) ?? new Map<string, { name: string; n: number }>();
      bySite.set(r.site, { name: r.name, n: Number(r.n) });
      found.set(r.id, bySite);
    }
    const problems: string[] = [];
    for (const [id, e] of expected) {
      const got = found.get(id);
      const want = [...e.sites].sort();
      const have = [...(got?.keys() ?? [])].sort();
      if (JSON.stringify(want) !== JSON.stringify(have)) problems.push(`${JSON.stringify(id)}: sites ${JSON.stringify(have)}, wanted ${JSON.stringify(want)}`);
      for (const [site, g] of got ?? []) {
        if (g.n !== 1) problems.push(`${JSON.stringify(id)} on ${site}: stored ${g.n} times`);
        if (g.name !== e.name) problems.push(`${JSON.stringify(id)} on ${site}: name ${JSON.stringify(g.name)}, sent ${JSON.stringify(e.name)}`);
      }
    }
    for (const id of found.keys()) if (!expected.has(id) && id.startsWith(ID_PREFIX)) problems.push(`${JSON.stringify(id)}: stored but never accepted`);
    expect(problems.slice(0, 10), `seed ${SEED}`).toEqual([]);
    expect(stored, `seed ${SEED}`).toBe(total);
    expect(metricValue(metrics, 'farol_processor_store_retries_total'), `seed ${SEED}`).toBe(0);
  }, STORE_BOUND_MS + 30_000);

  it('keeps counting valid traffic sent afterwards', async () => {
    const before = Number((await store.query<{ n: string }>('SELECT count() AS n FROM events'))[0]?.n ?? 0);
    const batches = 20;
    const perBatch = 50;
    for (let b = 0; b < batches; b++) {
      const events = Array.from({ length: perBatch }, (_, i) => ({ n: 'pageview', u: `https://fuzz.test/after/${i}`, d: 'fuzz.test', id: `after-${SEED}-${b}-${i}` }));
      const res = await fetch(`${url}/api/batch`, { method: 'POST', body: JSON.stringify(events), headers: { 'user-agent': CHROME } });
      expect(await res.text(), `seed ${SEED}`).toBe(JSON.stringify({ accepted: perBatch }));
    }
    let stored = 0;
    await pollUntil(
      async () => {
        stored = Number((await store.query<{ n: string }>("SELECT count() AS n FROM events WHERE startsWith(event_id, 'after-')"))[0]?.n ?? 0);
        return stored >= batches * perBatch ? true : undefined;
      },
      { timeoutMs: STORE_BOUND_MS, describe: () => `seed ${SEED}: ${stored} of ${batches * perBatch} valid events stored afterwards` },
    );
    expect(stored).toBe(batches * perBatch);
    expect(Number((await store.query<{ n: string }>('SELECT count() AS n FROM events'))[0]?.n)).toBe(before + batches * perBatch);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  }, STORE_BOUND_MS + 30_000);
});
