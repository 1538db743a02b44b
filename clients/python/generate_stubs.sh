#!/usr/bin/env bash
# Regenerate the Python gRPC stubs in rasterd_client/_proto/ from proto/.
#
# Needs Debian's protobuf-compiler (protoc 3.21) and protobuf-compiler-grpc
# (grpc_python_plugin 1.51):
#   apt-get install -y protobuf-compiler protobuf-compiler-grpc
# Set PROTOC or GRPC_PYTHON_PLUGIN to use other binaries. Debian bookworm's
# python3-grpc-tools bundles protoc 3.5.1, which rejects the proto3 `optional`
# fields in raster_service.proto, so this script does not use it.
#
# Run from any directory: ./clients/python/generate_stubs.sh
set -euo pipefail

client_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$(cd "${client_dir}/../../proto" && pwd)"
out_dir="${client_dir}/rasterd_client/_proto"
protoc="${PROTOC:-protoc}"
plugin="${GRPC_PYTHON_PLUGIN:-$(command -v grpc_python_plugin || true)}"

if ! command -v "${protoc}" >/dev/null; then
  echo "error: ${protoc} not found; install it with: apt-get install -y protobuf-compiler" >&2
  exit 1
fi
if [[ -z "${plugin}" || ! -x "${plugin}" ]]; then
  echo "error: grpc_python_plugin not found; install it with: apt-get install -y protobuf-compiler-grpc" >&2
  exit 1
fi

rm -rf "${out_dir}/rasterd"
mkdir -p "${out_dir}"
"${protoc}" -I"${proto_root}" \
  --python_out="${out_dir}" \
  --grpc_out="${out_dir}" \
  --plugin=protoc-gen-grpc="${plugin}" \
  rasterd/v1/raster_service.proto

# protoc writes imports and module names for a top-level `rasterd` package.
# Rewrite them so that the stubs import from inside rasterd_client and pickled
# messages name a module that exists.
generated="${out_dir}/rasterd/v1"
sed -i 's/^from rasterd\.v1 import /from rasterd_client._proto.rasterd.v1 import /' \
  "${generated}/raster_service_pb2_grpc.py"
sed -i "s/'rasterd\.v1\.raster_service_pb2'/'rasterd_client._proto.rasterd.v1.raster_service_pb2'/" \
  "${generated}/raster_service_pb2.py"

for package_dir in "${out_dir}" "${out_dir}/rasterd" "${generated}"; do
  touch "${package_dir}/__init__.py"
done

echo "generated $(ls "${generated}"/*.py | wc -l) files in ${generated} with $("${protoc}" --version)"
