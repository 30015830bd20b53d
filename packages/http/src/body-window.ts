const NOTHING = new Uint8Array(0);

/**
 * The wanted window of a response body, piece by piece: the first `skip` bytes dropped (the offset
 * wanted, in a whole-file 200), the next `want` kept, the rest dropped. Both transports' bodies
 * read through one.
 */
export class BodyWindow {
  /** Bytes kept so far. */
  delivered = 0;
  #skip: number;

  /**
   * @param skip - bytes dropped first.
   * @param want - bytes kept after them.
   */
  constructor(
    skip: number,
    readonly want: number,
  ) {
    this.#skip = skip;
  }

  /** Whether every wanted byte is in. */
  get full(): boolean {
    return this.delivered === this.want;
  }

  /** Bytes the window takes next: those still to skip, else those still wanted (at least 1, to see the body's end). */
  get room(): number {
    return this.#skip > 0 ? this.#skip : Math.max(1, this.want - this.delivered);
  }

  /**
   * The part of the next piece that is wanted, counted as delivered.
   * @param piece - the body's next bytes.
   * @returns a view of `piece` (empty when all of it is skipped or past the window).
   */
  take(piece: Uint8Array): Uint8Array {
    let part = piece;
    if (this.#skip > 0) {
      if (part.byteLength <= this.#skip) {
        this.#skip -= part.byteLength;
        return NOTHING;
      }
      part = part.subarray(this.#skip);
      this.#skip = 0;
    }
    if (part.byteLength > this.want - this.delivered) part = part.subarray(0, this.want - this.delivered);
    this.delivered += part.byteLength;
    return part;
  }
}
