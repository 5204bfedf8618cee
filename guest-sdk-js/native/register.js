// `node --import ./native/register.js`: makes `pizzja:policy/store@0.2.0`, which
// only exists inside the gateway, resolve to an in-memory store, so that
// policies and the SDK run under node's own test runner.
import { register } from 'node:module';

register('./hooks.js', import.meta.url);
