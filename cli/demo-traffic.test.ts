import { describe, expect, it } from 'vitest';
import { enrichedEventSchema } from '../schemas/enriched-event.ts';
import { demoEvents, GOALS, type DemoPlan } from './demo-traffic.ts';

const DAY = 86_400_000;
const plan: DemoPlan = {
  site: 'demo.example.com',
  epoch: 1_700_000_000_000,
  firstDayMs: Date.UTC(2026, 10, 7),
  days: 30,
  sessionsPerDay: 120,
  untilMs: Date.UTC(2026, 11, 6, 12),
  seed: 7,
  experiment: { id: 'exp', control: 'control', variant: 'b', goal: 'Signup', controlRate: 0.05, variantRate: 0.2 },
};
const all = (p: DemoPlan) => [...demoEvents(p)].flat();

describe('demo traffic', () => {
  const events = all(plan);

  it('is deterministic: the same plan gives the same events and ids', () => {
    expect(all(plan)).toEqual(events);
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(all({ ...plan, seed: 8 })).not.toEqual(events);
  });

  it('gives events the hub accepts from a collector, in time order per day, never past untilMs', () => {
    for (const e of events) expect(enrichedEventSchema.safeParse(e).success, e.id).toBe(true);
    const days = [...demoEvents(plan)];
    expect(days).toHaveLength(30);
    for (const d of days) for (let i = 1; i < d.length; i++) expect((d[i] as { ts: number }).ts).toBeGreaterThanOrEqual((d[i - 1] as { ts: number }).ts);
    const starts = events.filter((e) => e.id.endsWith('-0'));
    expect(Math.max(...starts.map((e) => e.ts))).toBeLessThanOrEqual(plan.untilMs);
    expect(Math.min(...events.map((e) => e.ts))).toBeGreaterThanOrEqual(plan.firstDayMs);
    expect(Math.max(...events.map((e) => e.ts))).toBeLessThan(plan.firstDayMs + 31 * DAY);
  });

  it('has what every dashboard panel shows: sources, campaigns, countries, devices, goals with revenue', () => {
    const landing = events.filter((e) => e.id.endsWith('-0'));
    expect(new Set(landing.map((e) => e.channel)).size).toBeGreaterThanOrEqual(8);
    expect(landing.some((e) => e.utmCampaign !== '' && e.utmSource !== '' && e.utmMedium !== '')).toBe(true);
    expect(new Set(events.map((e) => e.country)).size).toBeGreaterThan(20);
    expect(new Set(events.map((e) => e.device))).toEqual(new Set(['desktop', 'mobile', 'tablet']));
    const names = new Set(events.map((e) => e.name));
    for (const g of GOALS.filter((g) => !g.startsWith('Visit '))) expect(names.has(g), g).toBe(true);
    expect(events.some((e) => e.pathname === '/pricing')).toBe(true);
    const purchases = events.filter((e) => e.name === 'Purchase');
    expect(purchases.length).toBeGreaterThan(0);
    for (const p of purchases) expect(p.revenue?.amount).toBeGreaterThan(0);
  });

  it('runs the experiment with a real effect: the variant converts more often than the control', () => {
    const arm = new Map<string, string>();
    for (const e of events) for (const [id, v] of Object.entries(e.exp)) if (id === 'exp') arm.set(`${e.id.split('-')[1]}:${e.visitorId}`, v);
    const rate = (v: string): number => {
      const visitors = [...arm].filter(([, a]) => a === v).map(([k]) => k);
      const converted = new Set(events.filter((e) => e.name === 'Signup').map((e) => `${e.id.split('-')[1]}:${e.visitorId}`));
      return visitors.filter((k) => converted.has(k)).length / visitors.length;
    };
    expect(rate('b')).toBeGreaterThan(rate('control') + 0.05);
  });
});
