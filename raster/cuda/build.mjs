// Builds raster/cuda's two Node-API addons with cmake-js:
//   build/emulation/Release/rasterd_cuda_emu.node  the kernels' code emulated on the CPU (cmake and g++)
//   build/cuda/Release/rasterd_cuda.node           the CUDA pipeline, when nvcc is found
// `npm install` runs this after the CPU addon. A missing tool or a failed build is printed and
// the script still exits 0, so the install succeeds and the CPU rasterizer serves; --strict
// makes failures exit 1 instead.
//
// Options:
//   --only emulation|cuda      build one addon (default both)
//   --out DIR                  build root (default raster/cuda/build)
//   --cuda-architectures LIST  CMAKE_CUDA_ARCHITECTURES, e.g. "90" (default $RASTERD_CUDA_ARCHITECTURES or "80;90")
//   --strict                   exit 1 when a requested addon is not built
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { findCmake, findNvcc } from './toolchain.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { values: options } = parseArgs({
  options: {
    only: { type: 'string' },
    out: { type: 'string', default: join(here, 'build') },
    'cuda-architectures': { type: 'string', default: process.env.RASTERD_CUDA_ARCHITECTURES ?? '80;90' },
    strict: { type: 'boolean', default: false },
  },
});
if (options.only !== undefined && options.only !== 'emulation' && options.only !== 'cuda') {
  console.error(`rasterd: --only must be emulation or cuda; got '${options.only}'`);
  process.exit(2);
}

let failed = false;

/** Prints why an addon is not built. Under --strict that fails the run. */
function skip(what, reason) {
  console.log(`rasterd: not building ${what}: ${reason}`);
  failed = true;
}

/** Runs cmake-js for one addon and writes its full log to <out>/<name>.log. Returns true on success. */
function cmakeJsBuild(name, defines) {
  const require = createRequire(join(here, 'package.json'));
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  } catch {
    skip(`the ${name} addon`, 'the cmake-js package is not installed; run `npm install` (it is a devDependency)');
    return false;
  }
  const outDir = resolve(options.out, name);
  mkdirSync(outDir, { recursive: true });
  const args = [cmakeJs, 'build', '--directory', here, '--out', outDir, '--parallel', String(availableParallelism()),
    ...Object.entries(defines).map(([key, value]) => `--CD${key}=${value}`)];
  const started = performance.now();
  const run = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const log = `${process.execPath} ${args.join(' ')}\n${run.stdout ?? ''}${run.stderr ?? ''}${run.error ? `\n${run.error.message}` : ''}`;
  const logPath = join(options.out, `${name}.log`);
  writeFileSync(logPath, log);
  if (run.status !== 0) {
    const tail = log.trimEnd().split('\n').slice(-25).join('\n');
    skip(`the ${name} addon`, `cmake-js failed after ${seconds} s (exit ${run.status ?? run.signal}); full log in ${logPath}:\n${tail}`);
    return false;
  }
  console.log(`rasterd: built the ${name} addon in ${seconds} s (${join(outDir, 'Release')})`);
  return true;
}

const cmake = findCmake();
if (cmake === null) {
  skip('the emulation and CUDA addons', 'cmake is not on PATH; install CMake 3.18 or newer to build them');
} else {
  if (options.only !== 'cuda') cmakeJsBuild('emulation', { RASTERD_CUDA: 'OFF' });
  if (options.only !== 'emulation') {
    const nvcc = findNvcc();
    if (nvcc === null) {
      skip('the cuda addon', 'nvcc is not in $RASTERD_NVCC, $CUDACXX, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin or /usr/local/bin; the CPU rasterizer serves');
    } else {
      cmakeJsBuild('cuda', { RASTERD_CUDA: 'ON', CMAKE_CUDA_COMPILER: nvcc, CMAKE_CUDA_ARCHITECTURES: options['cuda-architectures'] });
    }
  }
}
process.exit(failed && options.strict ? 1 : 0);
