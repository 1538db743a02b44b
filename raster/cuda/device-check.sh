#!/usr/bin/env bash
# The CUDA addon's device check, for a machine with an NVIDIA GPU, nvcc and CMake but no Node.js
# (the H200 of the run tool). Needs .device/ from prepare-device-bundle.sh.
#
#   bash raster/cuda/device-check.sh              build the CUDA addon, check every parity set bit
#                                                 for bit, measure batch 1, 8, 64 and 256 throughput
#   bash raster/cuda/device-check.sh --self-test  the same flow on the CPU emulation, without CUDA
#
# Writes gpu-report.json, device-check.log and the build log to $OUT (the run tool's output
# folder), or to .device/out when OUT is unset. Exits 0 only when every raster matched.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle=$repo/.device
mode=cuda
case "${1:-}" in
  "") ;;
  --self-test) mode=self-test ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac
out=${OUT:-$bundle/out}
mkdir -p "$out"

check() {
  local started work node node_version build_started addon source status
  started=$(date +%s)
  echo "device-check: mode $mode, repository $repo, output $out, $(date -u +%FT%TZ)"

  for required in node.xz node_modules fixtures/manifest.json; do
    if [[ ! -e $bundle/$required ]]; then
      echo "device-check: $bundle/$required is missing; run raster/cuda/prepare-device-bundle.sh first"
      return 1
    fi
  done

  # Everything below happens in a scratch folder, so that nothing but .device/ and the sources is used.
  work=$(mktemp -d /tmp/rasterd-device-check.XXXXXX)
  # The build logs go to $out before the scratch folder is removed, also after a failure.
  trap "cp '$work'/build/*.log '$out'/ 2>/dev/null || true; rm -rf '$work'" RETURN

  node=$work/node
  if command -v xz >/dev/null; then
    xz -dc "$bundle/node.xz" > "$node"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$bundle/node.xz" "$node"
  fi
  chmod +x "$node"
  node_version=$("$node" --version)
  echo "device-check: node $node_version"

  mkdir -p "$work/src/raster/cuda" "$work/src/raster/native"
  find "$repo/raster/cuda" -maxdepth 1 -type f -exec cp {} "$work/src/raster/cuda/" \;
  cp "$repo"/raster/native/*.hpp "$work/src/raster/native/"
  export NODE_PATH=$bundle/node_modules

  build_started=$(date +%s)
  if [[ $mode == self-test ]]; then
    "$node" "$work/src/raster/cuda/build.mjs" --only emulation --out "$work/build" --strict
    addon=$work/build/emulation/Release/rasterd_cuda_emu.node
    source=built
  else
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; fi
    # Hopper only, to halve the compile time. build.mjs's default also targets sm_80.
    if "$node" "$work/src/raster/cuda/build.mjs" --only cuda --out "$work/build" --cuda-architectures "${RASTERD_CUDA_ARCHITECTURES:-90}" --strict; then
      addon=$work/build/cuda/Release/rasterd_cuda.node
      source=built
    elif [[ -f $bundle/prebuilt/rasterd_cuda.node ]]; then
      echo "device-check: the build failed (log above); using the addon built by prepare-device-bundle.sh"
      addon=$bundle/prebuilt/rasterd_cuda.node
      source=prebuilt
    else
      echo "device-check: the build failed and .device/prebuilt has no addon"
      return 1
    fi
  fi
  "$node" -e 'const [addon, source, seconds] = process.argv.slice(1);
    console.log(JSON.stringify({ addon, source, buildSeconds: Number(seconds) }));' \
    "$addon" "$source" "$(( $(date +%s) - build_started ))" > "$work/build-info.json"

  local check_args=(--addon "$addon" --fixtures "$bundle/fixtures" --out "$out" --build-info "$work/build-info.json")
  if [[ $mode == self-test ]]; then
    # The emulation draws about a thousand rasters/s on two cores, so small batches and few runs only exercise the code.
    check_args+=(--self-test --batches 1,8 --runs 2 --warmup 1)
  fi
  status=0
  "$node" "$work/src/raster/cuda/device-check.mjs" "${check_args[@]}" || status=$?
  echo "device-check: finished in $(( $(date +%s) - started )) s with status $status"
  return "$status"
}

# A pipeline instead of exec > >(tee): the log is complete when the script exits.
status=0
check 2>&1 | tee "$out/device-check.log" || status=${PIPESTATUS[0]}
exit "$status"
