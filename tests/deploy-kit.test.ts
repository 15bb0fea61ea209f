import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { commandNames } from '../cli/main.ts';
import { configSchema } from '../schemas/config.ts';
import { isSecretVariable } from '../schemas/secrets.ts';
import { buildInputs } from '../scripts/build.js';

/**
 * The deploy kit, validated as far as this machine can: Docker and a Kubernetes cluster are not
 * available here, so nothing is built or applied. Instead: every YAML file parses; every FAROL_*
 * variable the files set is one the config schema knows (a typo would be silently ignored by a
 * container); secrets only ever come from Secrets; the Kubernetes manifests pass
 * kubernetes-models' schema validation, probe endpoints the processes really serve and reference
 * objects that exist; the Dockerfile runs only the README's set-up commands and `farol` commands
 * that exist, as a non-root user, with the data dir a volume and a health check on /healthz, and
 * its build context (.dockerignore) holds every input of the build.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8');
const K8S = 'deploy/k8s';
const k8sFiles = readdirSync(join(ROOT, K8S)).filter((f) => f.endsWith('.yaml')).sort().map((f) => `${K8S}/${f}`);
const KNOWN = new Set(Object.keys(configSchema.shape));
const COMMANDS = new Set(commandNames());

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

function yamlDocs(rel: string): Obj[] {
  const docs = parseAllDocuments(read(rel), { merge: true });
  const list = Array.isArray(docs) ? docs : [docs];
  for (const d of list) expect(d.errors.map((e) => e.message), rel).toEqual([]);
  return list.map((d) => obj(d.toJS()));
}

const manifests = k8sFiles.flatMap((file) => yamlDocs(file).map((doc) => ({ file, doc })));
const compose = yamlDocs('deploy/compose.yaml')[0] ?? {};

/** The pod spec of a workload (Deployment, StatefulSet, Job), else undefined. */
function podSpec(doc: Obj): Obj | undefined {
  const template = obj(obj(doc['spec'])['template']);
  return template['spec'] === undefined ? undefined : obj(template['spec']);
}
const containersOf = (doc: Obj): Obj[] => arr(podSpec(doc)?.['containers']).map(obj);

/** Dockerfile instructions, continuation lines joined, comments left out. */
function dockerInstructions(text: string): { op: string; args: string }[] {
  const joined = text.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const at = l.search(/\s/);
      return { op: l.slice(0, at).toUpperCase(), args: l.slice(at + 1).trim() };
    });
}

/** Commands in the README's shell blocks, each `a && b` part on its own, comments left out. */
function readmeCommands(): Set<string> {
  const out = new Set<string>();
  for (const [, block] of read('README.md').matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of (block ?? '').split('\n')) {
      for (const part of line.replace(/\s#.*$/, '').split('&&')) if (part.trim() !== '') out.add(part.trim().replace(/\s+/g, ' '));
    }
  }
  return out;
}

/** FAROL_* keys a file sets: compose services' environment, ConfigMap/Secret data, container env. */
function variablesSet(): { where: string; name: string; value: string; fromSecret: boolean }[] {
  const out: { where: string; name: string; value: string; fromSecret: boolean }[] = [];
  for (const [service, def] of Object.entries(obj(compose['services']))) {
    for (const [name, value] of Object.entries(obj(obj(def)['environment']))) out.push({ where: `compose ${service}`, name, value: String(value), fromSecret: false });
  }
  for (const { file, doc } of manifests) {
    const kind = String(doc['kind']);
    if (kind === 'ConfigMap') for (const [name, value] of Object.entries(obj(doc['data']))) out.push({ where: file, name, value: String(value), fromSecret: false });
    if (kind === 'Secret') for (const [name, value] of Object.entries(obj(doc['stringData']))) out.push({ where: file, name, value: String(value), fromSecret: true });
    for (const c of containersOf(doc)) {
      for (const e of arr(c['env']).map(obj)) out.push({ where: `${file} ${String(c['name'])}`, name: String(e['name']), value: String(e['value'] ?? ''), fromSecret: e['valueFrom'] !== undefined });
    }
  }
  for (const i of dockerInstructions(read('Dockerfile')).filter((x) => x.op === 'ENV')) {
    for (const [, name, value] of i.args.matchAll(/(\w+)=(\S*)/g)) out.push({ where: 'Dockerfile', name: name ?? '', value: value ?? '', fromSecret: false });
  }
  for (const line of read('deploy/farol.env').split('\n')) {
    const m = /^#?(FAROL_\w+)=(.*)$/.exec(line);
    if (m) out.push({ where: 'deploy/farol.env', name: m[1] ?? '', value: m[2] ?? '', fromSecret: false });
  }
  return out;
}

describe('deploy kit', () => {
  it('parses: compose has its services, every manifest file at least one object', () => {
    expect(Object.keys(obj(compose['services'])).sort()).toEqual(['api', 'azurite', 'clickhouse', 'collector', 'eventhubs', 'migrate', 'processor']);
    for (const file of k8sFiles) expect(manifests.filter((m) => m.file === file).length, file).toBeGreaterThan(0);
    // The emulator's entity is the hub the processes are configured with.
    const emulator = JSON.parse(read('deploy/eventhubs-emulator.json')) as { UserConfig: { NamespaceConfig: { Entities: { Name: string; ConsumerGroups: { Name: string }[] }[] }[] } };
    const entity = emulator.UserConfig.NamespaceConfig[0]?.Entities[0];
    const env = obj(obj(obj(compose['services'])['processor'])['environment']);
    expect(entity?.Name).toBe(env['FAROL_EVENTHUBS_NAME']);
    expect(entity?.ConsumerGroups.map((g) => g.Name)).toContain(env['FAROL_EVENTHUBS_CONSUMER_GROUP']);
  });

  it('sets only FAROL_* variables the config schema knows, each to a value it accepts', () => {
    const set = variablesSet().filter((v) => v.name.startsWith('FAROL_'));
    expect(set.length).toBeGreaterThan(30);
    const unknown = set.filter((v) => !KNOWN.has(v.name)).map((v) => `${v.where}: ${v.name}`);
    expect(unknown).toEqual([]);
    // Values that are not placeholders or compose substitutions parse as the schema wants.
    for (const v of set) {
      if (/[<$]/.test(v.value) || v.value === '') continue;
      const field = configSchema.shape[v.name as keyof typeof configSchema.shape];
      expect(field.safeParse(v.value).success, `${v.where}: ${v.name}=${v.value}`).toBe(true);
    }
  });

  it('keeps secrets in Secrets: no secret variable in a ConfigMap or a pod spec literal', () => {
    const leaks = variablesSet().filter((v) => isSecretVariable(v.name) && v.where.startsWith(K8S) && !v.fromSecret);
    expect(leaks.map((v) => `${v.where}: ${v.name}`)).toEqual([]);
    // Every Secret a pod reads exists, and every processor/collector has what its hub needs.
    const secrets = new Map(manifests.filter((m) => m.doc['kind'] === 'Secret').map((m) => [String(obj(m.doc['metadata'])['name']), obj(m.doc['stringData'])]));
    for (const { doc } of manifests) {
      for (const c of containersOf(doc)) {
        for (const from of arr(c['envFrom']).map(obj)) {
          const ref = obj(from['secretRef'])['name'];
          if (ref !== undefined) expect(secrets.has(String(ref)), `secret ${String(ref)}`).toBe(true);
        }
      }
    }
    expect(Object.keys(secrets.get('farol-processor') ?? {}).sort()).toEqual(['FAROL_CHECKPOINT_CONNECTION_STRING', 'FAROL_CLICKHOUSE_PASSWORD', 'FAROL_EVENTHUBS_CONNECTION_STRING']);
    expect(Object.keys(secrets.get('farol-collector') ?? {})).toContain('FAROL_EVENTHUBS_CONNECTION_STRING');
  });

  it('passes the Kubernetes schemas (kubernetes-models validate) for every object', async () => {
    expect(manifests.length).toBeGreaterThanOrEqual(12);
    for (const { file, doc } of manifests) {
      const apiVersion = String(doc['apiVersion']);
      const kind = String(doc['kind']);
      const group = (await import(`kubernetes-models/${apiVersion}`)) as Record<string, new (data: unknown) => { validate(): void }>;
      const Model = group[kind];
      expect(Model, `${file}: ${apiVersion} ${kind}`).toBeDefined();
      expect(() => new (Model as new (data: unknown) => { validate(): void })(doc).validate(), `${file}: ${kind}`).not.toThrow();
    }
    // And a broken object does not pass: the validator is really checking.
    const { Deployment } = await import('kubernetes-models/apps/v1');
    expect(() => new Deployment({ metadata: { name: 'x' }, spec: { selector: {}, template: { spec: { containers: [{ name: 'c', ports: [{ containerPort: 'http' as unknown as number }] }] } } } }).validate()).toThrow();
  });

  it('runs farol commands that exist, non-root, with resources and probes on endpoints the process serves', () => {
    // What each command serves (from the sources, so a renamed route fails here).
    const collectorSrc = read('ingest/collector.ts');
    const apiSrc = read('api/server.ts');
    const metricsSrc = read('lib/metrics-server.ts');
    const serves: Record<string, { http: string[]; metrics: string[] }> = {
      collector: { http: ['/healthz', '/readyz'].filter((p) => collectorSrc.includes(`'${p}'`)), metrics: metricsSrc.includes("'/metrics'") ? ['/metrics'] : [] },
      api: { http: ['/healthz', '/readyz'].filter((p) => apiSrc.includes(`'${p}'`)), metrics: ['/metrics'] },
      processor: { http: [], metrics: ['/metrics'] },
    };
    expect(serves['collector']?.http).toEqual(['/healthz', '/readyz']);
    expect(serves['api']?.http).toEqual(['/healthz']);
    const workloads = manifests.filter((m) => ['Deployment', 'StatefulSet', 'Job'].includes(String(m.doc['kind'])));
    expect(workloads.map((w) => String(obj(w.doc['metadata'])['name'])).sort()).toEqual(['farol-api', 'farol-collector', 'farol-migrate', 'farol-processor']);
    for (const { file, doc } of workloads) {
      const pod = podSpec(doc) ?? {};
      expect(obj(pod['securityContext'])['runAsNonRoot'], file).toBe(true);
      for (const c of containersOf(doc)) {
        const command = String(arr(c['args'])[0]);
        expect(COMMANDS.has(command), `${file}: farol ${command}`).toBe(true);
        expect(obj(c['securityContext'])['readOnlyRootFilesystem'], file).toBe(true);
        const resources = obj(c['resources']);
        expect(obj(resources['requests'])['cpu'], file).toBeDefined();
        expect(obj(resources['limits'])['memory'], file).toBeDefined();
        if (doc['kind'] === 'Job') continue;
        const ports = new Map(arr(c['ports']).map(obj).map((p) => [String(p['name']), Number(p['containerPort'])]));
        for (const probe of ['livenessProbe', 'readinessProbe']) {
          const get = obj(obj(c[probe])['httpGet']);
          const port = ports.get(String(get['port']));
          const env = new Map(arr(c['env']).map(obj).map((e) => [String(e['name']), String(e['value'])]));
          const config = Object.fromEntries(manifests.filter((m) => m.doc['kind'] === 'ConfigMap').flatMap((m) => Object.entries(obj(m.doc['data']))));
          const listen = port === Number(env.get('FAROL_PORT') ?? config['FAROL_PORT']) ? 'http' : port === Number(config['FAROL_METRICS_PORT']) ? 'metrics' : 'none';
          expect(listen, `${file} ${probe}: port ${String(get['port'])}`).not.toBe('none');
          expect(serves[command]?.[listen as 'http' | 'metrics'], `${file} ${probe}`).toContain(String(get['path']));
        }
      }
    }
    for (const [service, def] of Object.entries(obj(compose['services']))) {
      const command = arr(obj(def)['command'])[0];
      if (obj(def)['image'] === 'farol:local') expect(COMMANDS.has(String(command)), `compose ${service}: farol ${String(command)}`).toBe(true);
    }
  });

  it('scales collectors with an HPA and bounds disruptions of every workload', () => {
    const byKind = (kind: string): Obj[] => manifests.filter((m) => m.doc['kind'] === kind).map((m) => m.doc);
    const hpa = byKind('HorizontalPodAutoscaler');
    expect(hpa).toHaveLength(1);
    const target = obj(obj(hpa[0]?.['spec'])['scaleTargetRef']);
    const collector = [...byKind('StatefulSet'), ...byKind('Deployment')].find((w) => obj(w['metadata'])['name'] === target['name']);
    expect(collector?.['kind']).toBe(target['kind']);
    expect(containersOf(collector ?? {})[0]?.['args']).toEqual(['collector']);
    const labelsOf = (w: Obj): Obj => obj(obj(obj(obj(w['spec'])['template'])['metadata'])['labels']);
    for (const w of [...byKind('StatefulSet'), ...byKind('Deployment')]) {
      const pdb = byKind('PodDisruptionBudget').find((p) =>
        Object.entries(obj(obj(obj(p['spec'])['selector'])['matchLabels'])).every(([k, v]) => labelsOf(w)[k] === v),
      );
      expect(pdb, `PodDisruptionBudget for ${String(obj(w['metadata'])['name'])}`).toBeDefined();
    }
  });

  it('Dockerfile: multi-stage, the README set-up commands and farol commands only, non-root, data volume, health check', () => {
    const steps = dockerInstructions(read('Dockerfile'));
    expect(steps.filter((s) => s.op === 'FROM').length).toBeGreaterThanOrEqual(2);
    const readme = readmeCommands();
    // Image plumbing beyond the README: the data dir, made private to the runtime user.
    const plumbing = new Set(['mkdir -p /data', 'chown 1000:1000 /data', 'chmod 0700 /data']);
    const runs = steps.filter((s) => s.op === 'RUN').flatMap((s) => s.args.split('&&').map((c) => c.trim().replace(/\s+/g, ' ')));
    expect(runs).toContain('npm run build');
    for (const c of runs) expect(readme.has(c) || plumbing.has(c), `RUN ${c} is not a README set-up command`).toBe(true);
    const json = (op: string): string[] => JSON.parse(steps.filter((s) => s.op === op).at(-1)?.args ?? '[]') as string[];
    expect(json('ENTRYPOINT')).toEqual(['node', 'cli/farol.js']);
    expect(COMMANDS.has(json('CMD')[0] ?? '')).toBe(true);
    // The README's bin is the entry point it runs.
    expect(JSON.parse(read('package.json')).bin.farol).toBe('cli/farol.js');
    const user = steps.filter((s) => s.op === 'USER').at(-1)?.args ?? 'root';
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const env = Object.fromEntries(steps.filter((s) => s.op === 'ENV').flatMap((s) => [...s.args.matchAll(/(\w+)=(\S*)/g)].map((m) => [m[1], m[2]])));
    expect(JSON.parse(steps.find((s) => s.op === 'VOLUME')?.args ?? '[]')).toEqual([env['FAROL_DATA_DIR']]);
    expect(env['FAROL_HOST']).toBe('0.0.0.0');
    expect(steps.find((s) => s.op === 'HEALTHCHECK')?.args).toMatch(/\/healthz/);
  });

  it('.dockerignore keeps every build input in the context (the image never rebuilds at start)', () => {
    const patterns = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const ignored = (path: string): boolean =>
      patterns.some((p) => {
        // Docker's patterns as this file uses them: `**/` any folders, `*` within one name.
        const body = p
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .split('**/')
          .map((part) => part.replace(/\*/g, '[^/]*'))
          .join('(?:.*/)?');
        const re = new RegExp(`^${body}(?:/.*)?$`);
        return re.test(path);
      });
    const inputs = buildInputs(ROOT);
    expect(inputs.length).toBeGreaterThan(100);
    expect(inputs.filter(ignored)).toEqual([]);
    for (const needed of ['package.json', 'package-lock.json', 'cli/farol.js', 'scripts/build.js', 'api/dashboard/index.html', 'ingest/tracker/script.js']) expect(ignored(needed), needed).toBe(false);
    for (const left of ['node_modules/x', 'dist/cli/run.js', 'data/hub', 'tests/x.test.ts', 'ingest/enrich/geo.test.ts', '.git/HEAD']) expect(ignored(left), left).toBe(true);
  });
});
