/** A {@link lazyArray}'s state: whether it was filled, and whether anyone changed it since. */
interface LazyState {
  filled: boolean;
  changed: boolean;
}

const states = new WeakMap<object, LazyState>();

/**
 * An array whose elements are made on first use: a `Proxy` over a real array of `length` holes
 * that fills every element (`at(i)` for each i) the first time anything but its `length` (or
 * `then`, which an array lacks) is read,
 * then behaves as that plain array (`Array.isArray` is true; spreading a plan that holds one
 * copies the reference, making nothing). A plan's `items` in columns is one, so callers and custom
 * planners see `WriteItem` objects while the engine works on the columns.
 *
 * @param length - the number of elements.
 * @param at - makes element i.
 * @returns the array.
 */
export function lazyArray<T>(length: number, at: (i: number) => T): T[] {
  return lazyArrayFilled(length, (target) => {
    for (let i = 0; i < length; i++) target[i] = at(i);
  });
}

/**
 * {@link lazyArray} whose elements are made all at once, by one walk of their source (a `Map`'s
 * entries, say) rather than one call per index.
 *
 * @param length - the number of elements.
 * @param fill - sets `target[0..length)` (called once, on first use).
 * @returns the array.
 */
export function lazyArrayFilled<T>(length: number, fill: (target: T[]) => void): T[] {
  const target: T[] = new Array(length);
  const state: LazyState = { filled: false, changed: false };
  const fillOnce = () => {
    if (state.filled) return;
    state.filled = true;
    fill(target);
  };
  const changed = () => {
    fillOnce();
    state.changed = true;
  };
  const proxy = new Proxy(target, {
    get(t, prop, receiver) {
      // `then`: what resolving a promise with the array asks (an async function returning it).
      if (prop !== "length" && prop !== "then") fillOnce();
      return Reflect.get(t, prop, receiver);
    },
    has(t, prop) {
      fillOnce();
      return Reflect.has(t, prop);
    },
    ownKeys(t) {
      fillOnce();
      return Reflect.ownKeys(t);
    },
    getOwnPropertyDescriptor(t, prop) {
      fillOnce();
      return Reflect.getOwnPropertyDescriptor(t, prop);
    },
    set(t, prop, value, receiver) {
      changed();
      return Reflect.set(t, prop, value, receiver);
    },
    defineProperty(t, prop, descriptor) {
      changed();
      return Reflect.defineProperty(t, prop, descriptor);
    },
    deleteProperty(t, prop) {
      changed();
      return Reflect.deleteProperty(t, prop);
    },
  });
  states.set(proxy, state);
  return proxy;
}

/**
 * Whether `array` is a {@link lazyArray} nobody has written to (its elements are still exactly
 * what `at` makes): what lets the engine trust the columns behind it.
 *
 * @param array - any array.
 */
export function isUnchangedLazyArray(array: readonly unknown[]): boolean {
  const state = states.get(array);
  return state !== undefined && !state.changed;
}
