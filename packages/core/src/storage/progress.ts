/** Reports progress of a save or load as increments: call it with the work just completed. */
export type ProgressCallback = (delta: {
  /** Bytes just written or read. */
  readonly bytes: number;
  /** Items just written or read. */
  readonly items: number;
}) => void;
