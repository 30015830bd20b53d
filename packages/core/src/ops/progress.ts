/**
 * Progress of an operation, called as it goes: `done` of `total` units (bytes for `verify`,
 * `copy`; batches for `convert`; files for `remove` and `gc`), `done` never going down and reaching `total`
 * when the operation ends well.
 *
 * @param done - units done so far.
 * @param total - units in all (known from the start, or grown as the operation finds more).
 */
export type OperationProgress = (done: number, total: number) => void;
