/**
 * NDJSON and _bulk are decoded, normalized and serialized as the body streams in, so a
 * request never holds its whole body nor a string the size of it.
 */
import type { PublishBatch } from '../../bus/types.ts';
import type { NormalizeOptions } from '../../model/normalize.ts';
import { JsonLineNormalizer } from '../../model/normalize-json.ts';

/** A byte path and the refusal of its last line (normalize's error), or undefined. */
export function createByteLine() {
  const byteReader = new JsonLineNormalizer();
  /** Why byteLine's last line was refused (normalize's error), or undefined. */
  let refusal: string | undefined;
  /**
   * Ingest's byte path for one line of NDJSON or one _bulk document: read, modelled and
   * written into the batch. Returns the line's newline, or -1 to have the line read as
   * text (it is blank, or not JSON the byte path reads exactly as JSON.parse would).
   */
  const byteLine = (
    buf: Buffer,
    start: number,
    normalizeOptions: NormalizeOptions,
    batch: PublishBatch,
  ): number => {
    refusal = undefined;
    const end = byteReader.scan(buf, start);
    if (end < 0 || byteReader.blank) return -1;
    try {
      byteReader.model(normalizeOptions);
    } catch (err) {
      refusal = (err as Error).message;
      return end;
    }
    batch.addJson(byteReader.metric ? 'metrics' : 'logs', byteReader.key, byteReader.write);
    return end;
  };
  return { byteLine, refusal: () => refusal };
}
