import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ContainerClient } from '@azure/storage-blob';
import { z } from 'zod';
import type { Logger } from '../lib/log.ts';
import {
  registrationsSchema,
  flushRange,
  StateStoreError,
  StateStoreFencedError,
  type LoggedRegistration,
  type FlushRange,
  type StateStore,
} from './state-store.ts';

/**
 * The processor's state on Azure Blob storage (the container that holds the Event Hubs
 * checkpoints), shared by every `farol processor` of a consumer group, so that a partition's
 * sessions, dedup memory and flush log move with the partition when another processor takes it.
 *
 * Per partition, under `<prefix>/p-<n>/`:
 *  - `manifest`: a small JSON blob `{epoch, owner, snapshot, intents}` rewritten per flush with
 *    an `If-Match` on its ETag. Appending an intent is one conditional write, durable before the
 *    processor inserts the range.
 *  - `snapshot-<epoch>-<n>`: snapshots, each written under a new name, then made current by the
 *    manifest (so a crash leaves the old one or the new one); the replaced one is deleted.
 *
 * Fencing: `acquire` rewrites the manifest with the next epoch. A previous owner still running
 * (its partition was just taken over) then fails its next conditional write, and, finding a
 * higher epoch, gets {@link StateStoreFencedError}: it can log no range after the new owner read
 * the log. A range it logged before is replayed by the new owner with the same boundaries, and
 * with the same dedup token, because the incarnation (`<prefix>/incarnation`) is one blob
 * shared by all processors: an insert the old owner still has in flight is dropped by ClickHouse
 * as a duplicate of the new owner's, or the reverse.
 */

const manifestSchema = z.object({
  v: z.literal(1),
  epoch: z.number().int().nonnegative(),
  owner: z.string(),
  snapshot: z.string().nullable(),
  // [from, to] or [from, to, registrations].
  intents: z.array(
    z.union([
      z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
      z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative(), registrationsSchema]),
    ]),
  ),
});

type Manifest = z.infer<typeof manifestSchema>;

/** Options of {@link openBlobStateStore}. */
export interface BlobStateStoreOptions {
  /** The container (it must exist). */
  container: ContainerClient;
  /** Blob name prefix; see {@link blobStatePrefix}. */
  prefix: string;
  /** Names this process in manifests (for people reading them). */
  owner?: string;
}

/** `<namespace>/<hub>/<consumer group>/farol-state`, lower-cased like the checkpoint store's names. */
export function blobStatePrefix(namespace: string, eventHubName: string, consumerGroup: string): string {
  return `${namespace}/${eventHubName}/${consumerGroup}/farol-state`.toLowerCase();
}

/** Opens the store, creating the shared incarnation id if this is the first processor. */
export async function openBlobStateStore(options: BlobStateStoreOptions): Promise<StateStore> {
  const incarnation = await sharedIncarnation(options.container, `${options.prefix}/incarnation`);
  return new BlobStateStore(options, incarnation);
}

/** Options of {@link whileStorageStarts}. */
export interface StorageStartOptions {
  /** What is being done, for the warning logged per retry. */
  what: string;
  log: Pick<Logger, 'warn'>;
  /** How long to keep retrying (default 60 s, like the Event Hubs client's start). */
  timeoutMs?: number;
}

/**
 * Runs `step` until it succeeds, retrying for up to `timeoutMs` while blob storage does not answer:
 * a network error (refused, reset, "socket hang up"), a 408, 429 or 5xx, each after the storage
 * SDK's own few tries. A processor started together with its storage account, or while the
 * account restarts, then waits for it instead of exiting. Any other failure (a wrong key's 403, a
 * refused container name's 400) is thrown at once: waiting cannot fix it.
 */
export async function whileStorageStarts<T>(options: StorageStartOptions, step: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (let delay = 250; ; delay = Math.min(delay * 2, 5_000)) {
    try {
      return await step();
    } catch (err) {
      const status = statusOf(err);
      const transient = status === undefined || status === 408 || status === 429 || status >= 500;
      if (!transient || err instanceof StateStoreError || Date.now() + delay > deadline) throw err;
      options.log.warn({ err, status }, `${options.what}: blob storage not answering yet; retrying`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** A partition this store acquired: the manifest as last written, and its ETag. */
interface Held {
  manifest: Manifest;
  etag: string;
  lost: boolean;
}

let snapshotCounter = 0;

class BlobStateStore implements StateStore {
  private readonly held = new Map<number, Held>();
  private readonly owner: string;

  constructor(
    private readonly options: BlobStateStoreOptions,
    readonly incarnation: string,
  ) {
    this.owner = options.owner ?? `pid-${process.pid}-${randomBytes(4).toString('hex')}`;
  }

  async acquire(partition: number): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const current = await this.readManifest(partition);
      const next: Manifest = {
        v: 1,
        epoch: (current?.manifest.epoch ?? 0) + 1,
        owner: this.owner,
        snapshot: current?.manifest.snapshot ?? null,
        intents: current?.manifest.intents ?? [],
      };
      const etag = await this.writeManifest(partition, next, current?.etag);
      if (etag === undefined) continue; // another processor acquired it in between: read again
      this.held.set(partition, { manifest: next, etag, lost: false });
      await this.deleteOrphans(partition, next.snapshot);
      return;
    }
    throw new StateStoreError(`partition ${partition}: could not acquire its state (too much contention)`);
  }

  async loadSnapshot(partition: number): Promise<Buffer | undefined> {
    const manifest = await this.current(partition);
    if (manifest?.snapshot == null) return undefined;
    try {
      return await this.options.container.getBlobClient(manifest.snapshot).downloadToBuffer();
    } catch (err) {
      if (statusOf(err) === 404) throw new StateStoreError(`partition ${partition}: the manifest names snapshot ${manifest.snapshot}, which is missing`);
      throw err;
    }
  }

  async saveSnapshot(partition: number, bytes: Buffer): Promise<void> {
    const held = this.holding(partition);
    const name = `${this.partitionPrefix(partition)}snapshot-${held.manifest.epoch}-${Date.now()}-${snapshotCounter++}`;
    await this.options.container.getBlockBlobClient(name).uploadData(bytes);
    const previous = held.manifest.snapshot;
    try {
      await this.update(partition, (m) => ({ ...m, snapshot: name }));
    } catch (err) {
      // Only a refused write surely left the manifest alone; after any other failure it may name this blob.
      if (err instanceof StateStoreFencedError) await this.deleteQuietly(name);
      throw err;
    }
    if (previous !== null) await this.deleteQuietly(previous);
  }

  appendIntent(partition: number, from: number, to: number, registrations?: readonly LoggedRegistration[]): Promise<void> {
    const entry: Manifest['intents'][number] =
      registrations === undefined || registrations.length === 0 ? [from, to] : [from, to, registrations.map(([s, e, d]) => [s, e, d])];
    return this.update(partition, (m) => (m.intents.some(([f, t]) => f === from && t === to) ? undefined : { ...m, intents: [...m.intents, entry] }));
  }

  async readIntents(partition: number): Promise<FlushRange[]> {
    const manifest = await this.current(partition);
    return (manifest?.intents ?? []).map(([from, to, dead]) => flushRange(from, to, dead));
  }

  truncateIntents(partition: number, after: number): Promise<void> {
    return this.update(partition, (m) => {
      const kept = m.intents.filter(([, to]) => to > after);
      return kept.length === m.intents.length ? undefined : { ...m, intents: kept };
    });
  }

  close(): Promise<void> {
    this.held.clear();
    return Promise.resolve();
  }

  /** The held manifest, or (not acquired: a read-only look) the stored one. */
  private async current(partition: number): Promise<Manifest | undefined> {
    const held = this.held.get(partition);
    if (held !== undefined) {
      if (held.lost) throw new StateStoreFencedError(`partition ${partition} is owned by another processor`);
      return held.manifest;
    }
    return (await this.readManifest(partition))?.manifest;
  }

  private holding(partition: number): Held {
    const held = this.held.get(partition);
    if (held === undefined) throw new StateStoreError(`partition ${partition}: state written before it was acquired`);
    if (held.lost) throw new StateStoreFencedError(`partition ${partition} is owned by another processor`);
    return held;
  }

  /**
   * Rewrites the held manifest with `change` applied (undefined: nothing to change), on the
   * condition that nobody else wrote it since. A refused write whose stored manifest still has
   * our epoch was our own (its answer got lost): take it as the base and apply `change` again.
   */
  private async update(partition: number, change: (m: Manifest) => Manifest | undefined): Promise<void> {
    const held = this.holding(partition);
    for (;;) {
      const next = change(held.manifest);
      if (next === undefined) return;
      const etag = await this.writeManifest(partition, next, held.etag);
      if (etag !== undefined) {
        held.manifest = next;
        held.etag = etag;
        return;
      }
      const stored = await this.readManifest(partition);
      if (stored === undefined || stored.manifest.epoch !== held.manifest.epoch || stored.manifest.owner !== this.owner) {
        held.lost = true;
        throw new StateStoreFencedError(
          `partition ${partition} was taken over by ${stored?.manifest.owner ?? 'nobody'} (epoch ${stored?.manifest.epoch ?? '?'})`,
        );
      }
      held.manifest = stored.manifest;
      held.etag = stored.etag;
    }
  }

  private partitionPrefix(partition: number): string {
    return `${this.options.prefix}/p-${partition}/`;
  }

  private async readManifest(partition: number): Promise<{ manifest: Manifest; etag: string } | undefined> {
    const blob = this.options.container.getBlobClient(`${this.partitionPrefix(partition)}manifest`);
    let text: string;
    let etag: string | undefined;
    try {
      const res = await blob.download();
      etag = res.etag;
      text = (await readAll(res.readableStreamBody)).toString('utf8');
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw err;
    }
    let parsed: ReturnType<typeof manifestSchema.safeParse>;
    try {
      parsed = manifestSchema.safeParse(JSON.parse(text));
    } catch {
      throw new StateStoreError(`partition ${partition}: manifest is not JSON`);
    }
    if (!parsed.success || etag === undefined) throw new StateStoreError(`partition ${partition}: manifest is malformed`);
    return { manifest: parsed.data, etag };
  }

  /** Writes the manifest if its ETag is still `etag` (or it does not exist yet); undefined when refused. */
  private async writeManifest(partition: number, manifest: Manifest, etag: string | undefined): Promise<string | undefined> {
    const text = JSON.stringify(manifest);
    const blob = this.options.container.getBlockBlobClient(`${this.partitionPrefix(partition)}manifest`);
    try {
      const res = await blob.upload(text, Buffer.byteLength(text), {
        conditions: etag === undefined ? { ifNoneMatch: '*' } : { ifMatch: etag },
        blobHTTPHeaders: { blobContentType: 'application/json' },
      });
      if (res.etag === undefined) throw new StateStoreError('blob storage returned no ETag');
      return res.etag;
    } catch (err) {
      const status = statusOf(err);
      if (status === 412 || status === 409) return undefined;
      throw err;
    }
  }

  /** Snapshots no manifest names: left by a crash between upload and manifest, or by a fenced owner. */
  private async deleteOrphans(partition: number, keep: string | null): Promise<void> {
    try {
      for await (const item of this.options.container.listBlobsFlat({ prefix: `${this.partitionPrefix(partition)}snapshot-` })) {
        if (item.name !== keep) await this.deleteQuietly(item.name);
      }
    } catch {
      // Garbage only; the next acquire tries again.
    }
  }

  private async deleteQuietly(name: string): Promise<void> {
    await this.options.container.getBlobClient(name).deleteIfExists().catch(() => {});
  }
}

/** The incarnation blob, created by the first processor; concurrent creators agree on one. */
async function sharedIncarnation(container: ContainerClient, name: string): Promise<string> {
  const blob = container.getBlockBlobClient(name);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const text = (await blob.downloadToBuffer()).toString('utf8');
      if (!/^[0-9a-f]{16}$/.test(text)) throw new StateStoreError(`corrupt processor state id in blob ${name}`);
      return text;
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    const fresh = randomBytes(8).toString('hex');
    try {
      await blob.upload(fresh, fresh.length, { conditions: { ifNoneMatch: '*' } });
      return fresh;
    } catch (err) {
      const status = statusOf(err);
      if (status !== 409 && status !== 412) throw err;
    }
  }
  throw new StateStoreError(`could not read or create ${name}`);
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && typeof (err as { statusCode?: unknown }).statusCode === 'number'
    ? (err as { statusCode: number }).statusCode
    : undefined;
}

async function readAll(stream: NodeJS.ReadableStream | Readable | undefined): Promise<Buffer> {
  if (stream === undefined) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}
