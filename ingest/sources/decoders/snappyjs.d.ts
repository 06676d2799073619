declare module 'snappyjs' {
  /** Snappy block format (as Prometheus remote_write uses), pure JavaScript. */
  export function compress(input: Uint8Array): Uint8Array;
  /** Throws if the block declares more than maxLength bytes once uncompressed. */
  export function uncompress(input: Uint8Array, maxLength?: number): Uint8Array;
  const snappy: { compress: typeof compress; uncompress: typeof uncompress };
  export default snappy;
}
