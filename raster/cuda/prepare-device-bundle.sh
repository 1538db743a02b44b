#!/usr/bin/env bash
# Fills .device/ (git-ignored) with everything device-check.sh needs on a machine that has CUDA but
# no Node.js. That is node.xz (this machine's node binary, xz-compressed), node_modules/ (cmake-js
# and the Node-API headers), fixtures/ (the parity sets with their map queries already done), and
# prebuilt/rasterd_cuda.node when the CUDA addon is built here. Fails when the bundle exceeds
# 60 MiB. Run it from anywhere after npm install, which builds the CPU addon it uses.
#
# Carry it with the run tool: carry [".device"], command "bash raster/cuda/device-check.sh".
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bundle=$repo/.device
limit_bytes=$((60 * 1024 * 1024))
cd "$repo"

node_path=$(command -v node) || { echo "prepare-device-bundle: node is not on PATH" >&2; exit 1; }
node_binary=$(readlink -f "$node_path")
mkdir -p "$bundle"

# xz -9 of the 100 MB binary takes minutes on two cores: reuse it while the binary is unchanged.
stamp="$(node --version) $(stat -c '%s %Y' "$node_binary")"
if [[ -f $bundle/node.xz && -f $bundle/node.stamp && "$(cat "$bundle/node.stamp")" == "$stamp" ]]; then
  echo "prepare-device-bundle: node.xz is current ($stamp)"
else
  echo "prepare-device-bundle: compressing $node_binary ($(node --version)) with xz -T2 -9"
  xz -T2 -9 -c "$node_binary" > "$bundle/node.xz.tmp"
  mv "$bundle/node.xz.tmp" "$bundle/node.xz"
  echo "$stamp" > "$bundle/node.stamp"
fi

node --import ./raster/cuda/ts-register.mjs raster/cuda/prepare-device-bundle.mjs "$bundle"

rm -rf "$bundle/prebuilt"
prebuilt=raster/cuda/build/cuda/Release/rasterd_cuda.node
if [[ -f $prebuilt ]]; then
  mkdir -p "$bundle/prebuilt"
  cp "$prebuilt" "$bundle/prebuilt/"
  echo "prepare-device-bundle: included $prebuilt as a fallback for a failed build on the device"
else
  echo "prepare-device-bundle: $prebuilt is not built here; the device must build it"
fi

size=$(du -sb "$bundle" | cut -f1)
echo "prepare-device-bundle: $bundle holds $((size / 1024 / 1024)) MiB"
du -sh "$bundle"/* | sed 's/^/  /'
if (( size > limit_bytes )); then
  echo "prepare-device-bundle: $bundle is over 60 MiB; remove files other than those listed above" >&2
  exit 1
fi
