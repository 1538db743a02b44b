// Node.js module hooks that run the repository's TypeScript sources without a build step, for
// the scripts in this folder (prepare-device-bundle.mjs). Each .ts file is transpiled on its own
// with the typescript package, so types are stripped and not checked. `npx tsc --noEmit` checks them.
//
// Usage: node --import ./raster/cuda/ts-register.mjs SCRIPT
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';

/** Resolves `./x.js` to `./x.ts` when only the TypeScript source exists, as tsc's NodeNext resolution does. */
export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const relative = specifier.startsWith('./') || specifier.startsWith('../');
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !relative || !specifier.endsWith('.js')) throw error;
    return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
  }
}

/** Loads .ts files as ES modules transpiled by the typescript package. */
export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return nextLoad(url, context);
  const path = fileURLToPath(url);
  const source = await readFile(path, 'utf8');
  const output = ts.transpileModule(source, {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false },
  });
  return { format: 'module', source: output.outputText, shortCircuit: true };
}
