// Registers ts-hooks.mjs: `node --import ./raster/cuda/ts-register.mjs SCRIPT` runs SCRIPT with
// the repository's .ts modules importable.
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
