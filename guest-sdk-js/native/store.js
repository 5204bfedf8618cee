// The host's `pizzja:policy/store`, in memory and with the host's bounds,
// for tests run by node itself. `reset()` empties it between tests.

const values = new Map();

/** What one account's store may hold, keys and values (the host's bound). */
export const LIMIT = 64 * 1024;
/** The longest key. */
export const KEY_LIMIT = 256;

function usage() {
  let n = 0;
  for (const [k, v] of values) n += new TextEncoder().encode(k).length + v.length;
  return n;
}

export function get(key) {
  const v = values.get(key);
  return v === undefined ? undefined : new Uint8Array(v);
}

export function set(key, value) {
  const keyLen = new TextEncoder().encode(key).length;
  if (keyLen > KEY_LIMIT) throw { payload: `keys are at most ${KEY_LIMIT} bytes` };
  const old = values.has(key) ? keyLen + values.get(key).length : 0;
  const after = usage() - old + keyLen + value.length;
  if (after > LIMIT) {
    throw { payload: `the account's store would hold ${after} bytes; the limit is ${LIMIT}` };
  }
  values.set(key, new Uint8Array(value));
}

function remove(key) {
  values.delete(key);
}
export { remove as delete };

export function reset() {
  values.clear();
}
