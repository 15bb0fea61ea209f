import rhea, { type Typed } from 'rhea';

/** rhea's section reader/writer: public at runtime, missing from its typings. */
interface Codec {
  Reader: new (buffer: Buffer) => { position: number; read(): Typed; remaining(): number };
  Writer: new () => { write(value: Typed): void; toBuffer(): Buffer };
}

const codec = rhea.types as unknown as Codec;

const HEADER = 0x70;
const DELIVERY_ANNOTATIONS = 0x71;
const MESSAGE_ANNOTATIONS = 0x72;

const SYMBOLIC_SECTIONS: Record<string, number> = {
  'amqp:header:list': HEADER,
  'amqp:delivery-annotations:map': DELIVERY_ANNOTATIONS,
  'amqp:message-annotations:map': MESSAGE_ANNOTATIONS,
};

function sectionCode(section: Typed): number {
  const descriptor: unknown = (section.descriptor as { value?: unknown } | undefined)?.value;
  if (typeof descriptor === 'number') return descriptor;
  if (typeof descriptor === 'string') return SYMBOLIC_SECTIONS[descriptor] ?? -1;
  return -1;
}

/**
 * Returns the encoded message with `annotations` merged into its message-annotations section.
 * Every other section keeps its original bytes, so the body and properties a consumer decodes
 * are exactly what the producer encoded.
 */
export function withMessageAnnotations(message: Buffer, annotations: Record<string, Typed>): Buffer {
  const reader = new codec.Reader(message);
  const leading: Buffer[] = [];
  const trailing: Buffer[] = [];
  const merged: Record<string, Typed> = {};
  while (reader.remaining() > 0) {
    const start = reader.position;
    const section = reader.read();
    const code = sectionCode(section);
    if (code === MESSAGE_ANNOTATIONS) {
      const items = section.value as Typed[];
      for (let i = 0; i + 1 < items.length; i += 2) merged[String(items[i]!.value)] = items[i + 1]!;
      continue;
    }
    // The header and delivery annotations precede message annotations on the wire.
    (code === HEADER || code === DELIVERY_ANNOTATIONS ? leading : trailing).push(message.subarray(start, reader.position));
  }
  Object.assign(merged, annotations);
  const writer = new codec.Writer();
  writer.write(rhea.types.described(rhea.types.wrap_ulong(MESSAGE_ANNOTATIONS), rhea.types.wrap_symbolic_map(merged)) as Typed);
  return Buffer.concat([...leading, writer.toBuffer(), ...trailing]);
}
