import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import rhea, {
  type AmqpError,
  type Delivery,
  type EventContext,
  type Message,
  type Receiver,
  type Sender,
  type Typed,
} from 'rhea';
import { withMessageAnnotations } from './amqp-codec.ts';
import { partitionForKey } from './partition-key.ts';
import { PartitionLog, type StoredEvent } from './partition-log.ts';

/**
 * An Event Hubs-compatible AMQP 1.0 broker for tests, on rhea, driven by the real
 * `@azure/event-hubs` clients: CBS and `$management` requests, batched sends to the hub or a
 * partition, per-partition logs fsync-ed in `dataDir` before a send is accepted, receivers with
 * selector filters and owner levels (epochs). It implements what the SDK is known to use, no more.
 */

/** Options for {@link startEventHubsBroker}. */
export interface EventHubsBrokerOptions {
  /** Directory for the partition logs; a broker started on the same directory sees the same data. */
  dataDir: string;
  hubName: string;
  partitions: number;
  /** Port on 127.0.0.1; 0 (default) picks a free one, kept across stop/start. */
  port?: number;
  /** Default `['$Default']`. */
  consumerGroups?: readonly string[];
}

/** A running broker. */
export interface EventHubsBroker {
  readonly port: number;
  /** `Endpoint=sb://127.0.0.1:<port>;…;UseDevelopmentEmulator=true`; pass the hub name separately. */
  readonly connectionString: string;
  /** Stored (fsync-ed) events per partition, index = partition id. */
  counts(): number[];
  /** Stops listening and drops every connection (clients see a disconnect); data stays on disk. */
  stop(): Promise<void>;
  /** Listens again on the same port, reloading the logs from disk. No-op if running. */
  start(): Promise<void>;
}

const BATCH_FORMAT = 0x80013700;
const MAX_MESSAGE_SIZE = 1_048_576;
const HOST = '127.0.0.1';
const SELECTOR_FILTER = 'apache.org:selector-filter:string';
const PARTITION_KEY = 'x-opt-partition-key';
const EPOCH = 'com.microsoft:epoch';

type LinkRole = { kind: 'cbs' } | { kind: 'management' } | { kind: 'ingress'; partition: number | undefined };

interface Consumer {
  readonly sender: Sender;
  readonly consumerGroup: string;
  readonly partition: number;
  readonly epoch: number | undefined;
  next: number;
  retry?: NodeJS.Timeout | undefined;
}

/** The remote terminus as rhea hands it over (a composite with unwrapping getters). */
interface RemoteTerminus {
  readonly address?: string | null;
  readonly filter?: Record<string, unknown> | null;
}

class EntityError extends Error {
  constructor(
    readonly condition: string,
    description: string,
  ) {
    super(description);
  }
  get amqp(): AmqpError {
    return { condition: this.condition, description: this.message };
  }
}

/** Starts a broker listening on 127.0.0.1. */
export async function startEventHubsBroker(options: EventHubsBrokerOptions): Promise<EventHubsBroker> {
  const { hubName, partitions } = options;
  if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`partitions must be ≥ 1, got ${partitions}`);
  const consumerGroups = new Set((options.consumerGroups ?? ['$Default']).map((g) => g.toLowerCase()));
  const partitionIds = Array.from({ length: partitions }, (_, i) => String(i));
  const createdAt = new Date();
  const container = rhea.create_container({ id: `eventhubs-test-broker-${hubName}` });
  const roles = new WeakMap<Receiver, LinkRole>();
  const consumers = new Set<Consumer>();
  const sockets = new Set<Socket>();
  let logs: PartitionLog[] = [];
  let server: Server | undefined;
  let port = options.port ?? 0;
  let roundRobin = 0;

  const same = (a: string | undefined, b: string): boolean => a !== undefined && a.toLowerCase() === b.toLowerCase();

  function notFound(path: string): EntityError {
    return new EntityError(
      'amqp:not-found',
      `The messaging entity 'sb://${HOST}/${path}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions.`,
    );
  }

  function partitionIndex(id: string | undefined): number {
    if (id !== undefined && /^\d+$/.test(id) && Number(id) < partitions) return Number(id);
    throw new EntityError(
      'com.microsoft:argument-out-of-range',
      `The specified partition '${id}' is invalid for an EventHub partition sender or receiver. It should be between 0 and ${partitions - 1}.`,
    );
  }

  /** `<hub>` or `<hub>/Partitions/<id>`. */
  function parseSendTarget(address: string): number | undefined {
    const parts = address.split('/');
    if (!same(parts[0], hubName)) throw notFound(address);
    if (parts.length === 1) return undefined;
    if (parts.length === 3 && same(parts[1], 'Partitions')) return partitionIndex(parts[2]);
    throw notFound(address);
  }

  /** `<hub>/ConsumerGroups/<cg>/Partitions/<id>`. */
  function parseConsumerSource(address: string): { consumerGroup: string; partition: number } {
    const parts = address.split('/');
    if (parts.length !== 5 || !same(parts[0], hubName) || !same(parts[1], 'ConsumerGroups') || !same(parts[3], 'Partitions')) {
      throw notFound(address);
    }
    const consumerGroup = parts[2]!.toLowerCase();
    if (!consumerGroups.has(consumerGroup)) throw notFound(address);
    return { consumerGroup, partition: partitionIndex(parts[4]) };
  }

  /** Where a receiver starts, from the selector filter the SDK sends. */
  function startIndex(log: PartitionLog, selector: string | undefined): number {
    if (selector === undefined) return 0;
    const m = /^amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*'([^']*)'$/i.exec(
      selector.trim(),
    );
    const field = m?.[1]?.toLowerCase();
    const inclusive = m?.[2] === '>=';
    const value = m?.[3] ?? '';
    if (field === 'x-opt-offset') {
      if (value === '@latest') return log.count;
      if (/^-?\d+$/.test(value)) return log.indexAfterOffset(Number(value), inclusive);
    } else if (field === 'x-opt-sequence-number' && /^-?\d+$/.test(value)) {
      return Math.max(0, Number(value) + (inclusive ? 0 : 1));
    } else if (field === 'x-opt-enqueued-time' && /^-?\d+$/.test(value)) {
      return log.indexAfterTime(Number(value));
    }
    throw new EntityError('amqp:invalid-field', `Unsupported filter expression: ${selector}`);
  }

  function selectorOf(source: RemoteTerminus | null | undefined): string | undefined {
    const raw = source?.filter?.[SELECTOR_FILTER];
    const value = raw !== null && typeof raw === 'object' && 'value' in raw ? (raw as { value: unknown }).value : raw;
    return typeof value === 'string' ? value : undefined;
  }

  function echoTermini(link: Sender | Receiver): void {
    const source = link.source as RemoteTerminus | null | undefined;
    const target = link.target as RemoteTerminus | null | undefined;
    if (source) link.set_source({ address: source.address ?? '', ...(source.filter ? { filter: source.filter } : {}) });
    if (target) link.set_target({ address: target.address ?? '' });
  }

  function refuse(link: Sender | Receiver, error: EntityError): void {
    link.close(error.amqp);
  }

  // -- Links ------------------------------------------------------------------------------------

  /** The client attached a sender: CBS or management requests, or events. */
  function onReceiverOpen(receiver: Receiver): void {
    const address = (receiver.target as RemoteTerminus | null | undefined)?.address ?? '';
    try {
      const role: LinkRole =
        address === '$cbs'
          ? { kind: 'cbs' }
          : address === '$management'
            ? { kind: 'management' }
            : { kind: 'ingress', partition: parseSendTarget(address) };
      roles.set(receiver, role);
      echoTermini(receiver);
    } catch (err) {
      if (err instanceof EntityError) refuse(receiver, err);
      else throw err;
    }
  }

  /** The client attached a receiver: a reply link or a partition consumer. */
  function onSenderOpen(sender: Sender): void {
    const source = sender.source as RemoteTerminus | null | undefined;
    const address = source?.address ?? '';
    if (address === '$cbs' || address === '$management') {
      echoTermini(sender);
      return;
    }
    try {
      const { consumerGroup, partition } = parseConsumerSource(address);
      const next = startIndex(logs[partition]!, selectorOf(source));
      const rawEpoch: unknown = sender.properties?.[EPOCH];
      const epoch = rawEpoch === undefined || rawEpoch === null ? undefined : Number(rawEpoch);
      const rivals = [...consumers].filter((c) => c.consumerGroup === consumerGroup && c.partition === partition);
      const owner = rivals.reduce<number | undefined>(
        (max, c) => (c.epoch === undefined ? max : Math.max(max ?? c.epoch, c.epoch)),
        undefined,
      );
      if (owner !== undefined && (epoch === undefined || epoch < owner)) {
        throw new EntityError(
          'amqp:link:stolen',
          `Receiver '${sender.name}' with epoch '${epoch ?? 'null'}' cannot be created: a receiver with a higher epoch of '${owner}' already exists on partition '${partition}' of consumer group '${consumerGroup}'.`,
        );
      }
      if (epoch !== undefined) {
        for (const rival of rivals) {
          drop(rival);
          rival.sender.close({
            condition: 'amqp:link:stolen',
            description: `New receiver '${sender.name}' with epoch '${epoch}' is created hence current receiver '${rival.sender.name}' with epoch '${rival.epoch ?? 'null'}' is getting disconnected.`,
          });
        }
      }
      echoTermini(sender);
      const consumer: Consumer = { sender, consumerGroup, partition, epoch, next, retry: undefined };
      consumers.add(consumer);
      pump(consumer);
    } catch (err) {
      if (err instanceof EntityError) refuse(sender, err);
      else throw err;
    }
  }

  function drop(consumer: Consumer): void {
    clearTimeout(consumer.retry);
    consumers.delete(consumer);
  }

  function forget(match: (c: Consumer) => boolean): void {
    for (const c of consumers) if (match(c)) drop(c);
  }

  // -- Delivery ---------------------------------------------------------------------------------

  function annotate(event: StoredEvent): Buffer {
    const annotations: Record<string, Typed> = {
      'x-opt-sequence-number': rhea.types.wrap_long(event.sequenceNumber),
      'x-opt-offset': rhea.types.wrap_string(String(event.offset)),
      'x-opt-enqueued-time': rhea.types.wrap_timestamp(event.enqueuedTimeMs),
    };
    if (event.partitionKey !== undefined) annotations[PARTITION_KEY] = rhea.types.wrap_string(event.partitionKey);
    return withMessageAnnotations(event.message, annotations);
  }

  /** Sends committed events while the client has granted credit. */
  function pump(consumer: Consumer): void {
    const { sender } = consumer;
    if (!consumers.has(consumer)) return;
    if (!sender.is_open()) {
      drop(consumer);
      return;
    }
    const events = logs[consumer.partition]!.events;
    while (consumer.next < events.length && sender.sendable()) {
      sender.send(annotate(events[consumer.next]!), undefined, 0);
      consumer.next += 1;
    }
    // Credit left but the session's outgoing buffer is full: it drains as the peer settles and
    // opens its window, which raises no event here, so look again shortly.
    if (consumer.next < events.length && sender.has_credit() && !consumer.retry) {
      consumer.retry = setTimeout(() => {
        consumer.retry = undefined;
        pump(consumer);
      }, 5);
    }
  }

  function pumpPartition(partition: number): void {
    for (const c of consumers) if (c.partition === partition) pump(c);
  }

  // -- Requests ---------------------------------------------------------------------------------

  function reply(ctx: EventContext, request: Message, properties: Record<string, unknown>, body?: unknown): void {
    const replyTo: unknown = request.reply_to;
    const sender = ctx.connection.find_sender(
      (s: Sender) => s.name === replyTo || (s.target as RemoteTerminus | null | undefined)?.address === replyTo,
    );
    if (!sender) {
      ctx.delivery?.reject({ condition: 'amqp:not-found', description: `No reply link '${String(replyTo)}'.` });
      return;
    }
    const response: Message = { application_properties: properties, body };
    if (request.message_id !== undefined) response.correlation_id = request.message_id;
    sender.send(response);
    ctx.delivery?.accept();
  }

  function answerCbs(ctx: EventContext, request: Message): void {
    const props = (request.application_properties ?? {}) as Record<string, unknown>;
    if (props.operation !== 'put-token') {
      reply(ctx, request, { 'status-code': 400, 'status-description': `Unsupported CBS operation '${String(props.operation)}'.` });
      return;
    }
    reply(ctx, request, { 'status-code': 202, 'status-description': 'Accepted' });
  }

  function answerManagement(ctx: EventContext, request: Message): void {
    const props = (request.application_properties ?? {}) as Record<string, unknown>;
    const fail = (status: number, error: EntityError): void =>
      reply(ctx, request, { 'status-code': status, 'status-description': error.message, 'error-condition': error.condition });
    if (props.operation !== 'READ') {
      fail(400, new EntityError('amqp:not-implemented', `Unsupported management operation '${String(props.operation)}'.`));
      return;
    }
    if (!same(typeof props.name === 'string' ? props.name : undefined, hubName)) {
      fail(404, notFound(String(props.name)));
      return;
    }
    const ok = { 'status-code': 200, 'status-description': 'OK' };
    if (props.type === 'com.microsoft:eventhub') {
      reply(ctx, request, ok, {
        name: hubName,
        created_at: createdAt,
        partition_ids: partitionIds,
        partition_count: partitions,
      });
      return;
    }
    if (props.type === 'com.microsoft:partition') {
      let partition: number;
      try {
        partition = partitionIndex(typeof props.partition === 'string' ? props.partition : String(props.partition));
      } catch (err) {
        if (err instanceof EntityError) return fail(400, err);
        throw err;
      }
      const last = logs[partition]!.events.at(-1);
      reply(ctx, request, ok, {
        name: hubName,
        partition: String(partition),
        begin_sequence_number: rhea.types.wrap_long(last ? 0 : -1),
        last_enqueued_sequence_number: rhea.types.wrap_long(last ? last.sequenceNumber : -1),
        last_enqueued_offset: last ? String(last.offset) : '-1',
        last_enqueued_time_utc: new Date(last ? last.enqueuedTimeMs : 0),
        is_partition_empty: last === undefined,
      });
      return;
    }
    fail(400, new EntityError('amqp:not-implemented', `Unsupported management type '${String(props.type)}'.`));
  }

  // -- Ingress ----------------------------------------------------------------------------------

  /** The encoded events in one transfer and the key they were sent with. */
  function unpack(ctx: EventContext & { format?: number }): { messages: Buffer[]; key: string | undefined; size: number } {
    const keyOf = (m: Message): string | undefined => {
      const k: unknown = (m.message_annotations as Record<string, unknown> | undefined)?.[PARTITION_KEY];
      return k === undefined || k === null ? undefined : String(k);
    };
    if (ctx.format === BATCH_FORMAT) {
      const raw = ctx.message as unknown as Buffer;
      const envelope = rhea.message.decode(raw) as unknown as Message;
      const body = envelope.body as { typecode?: number; multiple?: boolean; content?: unknown } | undefined;
      if (body?.typecode !== 0x75) throw new EntityError('amqp:decode-error', 'A batch must carry data sections.');
      const messages = (body.multiple ? (body.content as Buffer[]) : [body.content as Buffer]).map((b) => Buffer.from(b));
      return { messages, key: keyOf(envelope), size: raw.length };
    }
    if (ctx.format !== undefined && ctx.format !== 0) {
      throw new EntityError('amqp:not-implemented', `Unsupported message format ${ctx.format}.`);
    }
    const message = ctx.message!;
    const encoded = rhea.message.encode(message);
    return { messages: [encoded], key: keyOf(message), size: encoded.length };
  }

  function ingest(ctx: EventContext, fixedPartition: number | undefined): void {
    const delivery = ctx.delivery!;
    const receiver = ctx.receiver!;
    let unpacked: ReturnType<typeof unpack>;
    try {
      unpacked = unpack(ctx);
    } catch (err) {
      delivery.reject(err instanceof EntityError ? err.amqp : { condition: 'amqp:decode-error', description: String(err) });
      return;
    }
    const { messages, key, size } = unpacked;
    if (size > MAX_MESSAGE_SIZE) {
      delivery.reject({
        condition: 'amqp:link:message-size-exceeded',
        description: `The received message (delivery-id:${delivery.id}, size:${size} bytes) exceeds the limit (${MAX_MESSAGE_SIZE} bytes) currently allowed on the link.`,
      });
      return;
    }
    const partition = fixedPartition ?? (key !== undefined ? partitionForKey(key, partitions) : roundRobin++ % partitions);
    // Settled only once the events are on disk: an accepted send survives any broker restart.
    logs[partition]!.append(messages.map((message) => ({ message, partitionKey: key }))).then(
      () => settle(receiver, delivery, undefined),
      (err: unknown) => settle(receiver, delivery, { condition: 'amqp:internal-error', description: String(err) }),
    );
  }

  function settle(receiver: Receiver, delivery: Delivery, error: AmqpError | undefined): void {
    if (!receiver.is_open()) return; // the connection went away; the client will resend
    if (error) delivery.reject(error);
    else delivery.accept();
  }

  // -- Wiring -----------------------------------------------------------------------------------

  container.on('receiver_open', (ctx: EventContext) => onReceiverOpen(ctx.receiver!));
  container.on('sender_open', (ctx: EventContext) => onSenderOpen(ctx.sender!));
  container.on('message', (ctx: EventContext) => {
    const role = roles.get(ctx.receiver!);
    if (role?.kind === 'cbs') answerCbs(ctx, ctx.message!);
    else if (role?.kind === 'management') answerManagement(ctx, ctx.message!);
    else if (role?.kind === 'ingress') ingest(ctx, role.partition);
    else ctx.delivery?.reject({ condition: 'amqp:not-allowed', description: 'Link is not open.' });
  });
  container.on('sendable', (ctx: EventContext) => {
    for (const c of consumers) if (c.sender === ctx.sender) pump(c);
  });
  container.on('sender_close', (ctx: EventContext) => forget((c) => c.sender === ctx.sender));
  container.on('receiver_close', () => {});
  container.on('session_close', (ctx: EventContext) => forget((c) => c.sender.session === ctx.session));
  const dropConnection = (ctx: EventContext): void => forget((c) => c.sender.connection === ctx.connection);
  container.on('connection_close', dropConnection);
  container.on('disconnected', dropConnection);
  // Errors a client closes its own links or connection with are its business, not the broker's.
  container.on('error', () => {});

  async function openLogs(): Promise<PartitionLog[]> {
    return Promise.all(
      partitionIds.map((id, i) => PartitionLog.open(join(options.dataDir, hubName, `partition-${id}.log`), () => pumpPartition(i))),
    );
  }

  async function listen(): Promise<void> {
    const s = container.listen({
      host: HOST,
      port,
      // Events go out pre-settled; sends are settled by hand once persisted.
      sender_options: { snd_settle_mode: 1 },
      receiver_options: { autoaccept: false, max_message_size: MAX_MESSAGE_SIZE },
    }) as Server;
    s.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      s.once('listening', resolve);
      s.once('error', reject);
    });
    s.on('error', () => {});
    const address = s.address();
    if (address === null || typeof address === 'string') throw new Error('broker: no TCP address');
    port = address.port;
    server = s;
  }

  async function start(): Promise<void> {
    if (server) return;
    logs = await openLogs();
    try {
      await listen();
    } catch (err) {
      await Promise.all(logs.map((l) => l.close()));
      throw err;
    }
  }

  async function stop(): Promise<void> {
    const s = server;
    if (!s) return;
    server = undefined;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    forget(() => true);
    await closed;
    await Promise.all(logs.map((l) => l.close()));
  }

  await start();
  return {
    get port() {
      return port;
    },
    get connectionString() {
      return `Endpoint=sb://${HOST}:${port};SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true`;
    },
    counts: () => logs.map((l) => l.count),
    stop,
    start,
  };
}
