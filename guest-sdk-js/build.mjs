// Builds a policy module into a WebAssembly component with componentize-js:
//
//   node build.mjs POLICY.js OUT.wasm [--wit DIR]
//
// `jco componentize` cannot read paths on these machines (its WASI shim
// offers no preopened directories), so componentize-js's own API is called
// with absolute paths. The build keeps componentize-js's default features:
// the gateway links the WASI it imports (files, HTTP) granting nothing, and
// `console.log`/`console.error` and uncaught errors reach the host's log.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
let wit = fileURLToPath(new URL('./wit', import.meta.url));
const witAt = args.indexOf('--wit');
if (witAt >= 0) {
  wit = args[witAt + 1];
  args.splice(witAt, 2);
}
if (args.length !== 2) {
  console.error('usage: node build.mjs POLICY.js OUT.wasm [--wit DIR]');
  process.exit(2);
}
const [source, out] = args.map((p) => resolve(p));
const started = Date.now();
try {
  const { component } = await componentize({
    sourcePath: source,
    witPath: resolve(wit),
    worldName: 'policy',
  });
  await writeFile(out, component);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.error(`built ${out} (${(component.length / 1e6).toFixed(1)} MB) in ${seconds} s`);
} catch (e) {
  console.error(`failed to build ${source}: ${e?.message ?? e}`);
  process.exit(1);
}
