// Module resolution hook for native tests (see register.js).
const STORE = new URL('./store.js', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier === 'pizzja:policy/store@0.2.0') {
    return { url: STORE, shortCircuit: true };
  }
  return next(specifier, context);
}
