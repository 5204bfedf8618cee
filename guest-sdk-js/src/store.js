// The account's store, kept by the host: it survives instance replacement,
// traps and reloads, one store per local account (docs/writing-policies.md).
// Keys are strings; values bytes, or text encoded as UTF-8.

import * as host from 'pizzja:policy/store@0.2.0';

/** The value under `key` as bytes, or `undefined`. */
export function get(key) {
  return host.get(key);
}

/** The value under `key` as text, or `undefined`. */
export function getText(key) {
  const bytes = host.get(key);
  return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
}

/**
 * Stores `value` (bytes, or text) under `key`. Throws an Error saying why
 * when the host refuses (the store's bounds).
 */
export function set(key, value) {
  const bytes = typeof value === 'string' ? new TextEncoder().encode(value) : value;
  try {
    host.set(key, bytes);
  } catch (e) {
    // componentize-js throws an `err` result as an error carrying it.
    throw new Error(String(e?.payload ?? e?.message ?? e));
  }
}

/** Removes `key`. */
export function remove(key) {
  host.delete(key);
}
