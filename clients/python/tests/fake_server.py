"""An in-process RasterService for client tests that need no rasterd server.

Each raster is filled with the request's ego x, so tests can tell which
response belongs to which request. Queued failures abort the next calls with a
chosen gRPC status.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Iterator, List, Optional, Tuple

import grpc
import numpy as np

from rasterd_client._proto.rasterd.v1 import raster_service_pb2 as pb2
from rasterd_client._proto.rasterd.v1 import raster_service_pb2_grpc as pb2_grpc

DEFAULT_FAKE_SHAPE = (6, 5, 4)


class FakeRasterService(pb2_grpc.RasterServiceServicer):
    """RasterService that records requests and returns rasters filled with the ego x."""

    def __init__(self) -> None:
        self.target = ""
        self.requests: List[pb2.RasterizeRequest] = []
        self.failures: List[Tuple[grpc.StatusCode, str]] = []
        self.delay_s = 0.0
        self._lock = threading.Lock()

    def fail_next(self, code: grpc.StatusCode, details: str, times: int = 1) -> None:
        """Abort the next `times` calls with `code` and `details`."""
        with self._lock:
            self.failures.extend([(code, details)] * times)

    def Rasterize(self, request: pb2.RasterizeRequest, context: grpc.ServicerContext) -> pb2.RasterizeResponse:
        self._record(request)
        self._fail_or_wait(context)
        return make_response(request)

    def RasterizeBatch(
        self, request: pb2.RasterizeBatchRequest, context: grpc.ServicerContext
    ) -> pb2.RasterizeBatchResponse:
        for item in request.requests:
            self._record(item)
        self._fail_or_wait(context)
        return pb2.RasterizeBatchResponse(responses=[make_response(item) for item in request.requests])

    def RasterizeStream(
        self, request_iterator: Iterator[pb2.RasterizeRequest], context: grpc.ServicerContext
    ) -> Iterator[pb2.RasterizeResponse]:
        for request in request_iterator:
            self._record(request)
            self._fail_or_wait(context)
            yield make_response(request)

    def ListMaps(self, request: pb2.ListMapsRequest, context: grpc.ServicerContext) -> pb2.ListMapsResponse:
        self._fail_or_wait(context)
        return pb2.ListMapsResponse(maps=[fake_map_info()])

    def GetServerInfo(self, request: pb2.GetServerInfoRequest, context: grpc.ServicerContext) -> pb2.ServerInfo:
        self._fail_or_wait(context)
        return pb2.ServerInfo(version="0.0.0-fake", device="cpu", gpu_name="", gpu_memory_bytes=0, maps=[fake_map_info()])

    def _record(self, request: pb2.RasterizeRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _fail_or_wait(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            context.abort(*failure)
        if self.delay_s:
            time.sleep(self.delay_s)


def fake_map_info() -> pb2.MapInfo:
    """Return the one map that the fake server lists."""
    return pb2.MapInfo(
        name="fake-town", version="1.0.0", projected_crs="EPSG:32617", layer_counts={"LANE": 12, "STOP_LINE": 3}
    )


def make_response(request: pb2.RasterizeRequest) -> pb2.RasterizeResponse:
    """Build a raster of (target_width, target_height, 4) or DEFAULT_FAKE_SHAPE filled with the ego x."""
    config = request.config
    shape = (
        config.target_width if config.HasField("target_width") else DEFAULT_FAKE_SHAPE[0],
        config.target_height if config.HasField("target_height") else DEFAULT_FAKE_SHAPE[1],
        DEFAULT_FAKE_SHAPE[2],
    )
    raster = np.full(shape, request.ego.rear_axle.x, dtype="<f4")
    response = pb2.RasterizeResponse(
        raster=pb2.Tensor(shape=list(shape), dtype=pb2.FLOAT32, data=raster.tobytes()),
        channels=["ego", "agents", "roadmap", "baseline_paths"],
    )
    if request.include_timings:
        response.timings.CopyFrom(pb2.StageTimings(roadmap_us=12.5, total_us=40.0))
    return response


def _health_check(request: bytes, context: grpc.ServicerContext) -> bytes:
    # HealthCheckResponse{status: SERVING} for the whole server, NOT_SERVING otherwise.
    return b"\x08\x01" if request == b"" else b"\x08\x02"


def start_fake_server(
    with_health: bool = False, port: int = 0, service: Optional[FakeRasterService] = None
) -> Tuple[FakeRasterService, grpc.Server]:
    """Start a FakeRasterService on `port` of 127.0.0.1, or a free port when it is 0.

    `with_health` adds grpc.health.v1.Health/Check. `service` reuses an existing
    service object, so its recorded requests carry over.
    """
    service = service if service is not None else FakeRasterService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb2_grpc.add_RasterServiceServicer_to_server(service, server)
    if with_health:
        # Without serializers gRPC passes the raw message bytes through.
        handler = grpc.unary_unary_rpc_method_handler(_health_check)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": handler}),))
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    service.target = f"127.0.0.1:{port}"
    return service, server
