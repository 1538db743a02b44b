"""Blocking gRPC client for the rasterd.v1.RasterService."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import grpc
import numpy as np

from rasterd_client._proto.rasterd.v1 import raster_service_pb2 as pb2
from rasterd_client._proto.rasterd.v1 import raster_service_pb2_grpc as pb2_grpc
from rasterd_client.errors import (
    UNAVAILABLE_HINT,
    RasterdDeadlineError,
    RasterdError,
    RasterdUnavailableError,
    error_from_rpc,
)
from rasterd_client.types import (
    EgoState,
    MapInfo,
    Pose,
    RasterConfig,
    RasterRequest,
    RasterResult,
    ServerInfo,
    TrackedObject,
    build_request,
    tensor_to_array,
)

logger = logging.getLogger("rasterd_client")

DEFAULT_TARGET = "localhost:50051"

ResponseT = TypeVar("ResponseT")

# grpc.health.v1.HealthCheckResponse.ServingStatus values.
HEALTH_STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class RasterClient:
    """Client for one rasterd server.

    `timeout` is the deadline of each call [s] (None waits forever). In a stream it
    applies to each step. Calls that fail with UNAVAILABLE are tried up to
    `retry_attempts` times in all, sleeping `retry_backoff` [s] before the first
    retry and doubling the sleep up to `max_retry_backoff` [s]. Other errors are
    raised at once as RasterdError subclasses.

    The client is thread-safe, but a RasterStream is not. Close the client, or
    use it as a context manager, to release its channel.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: Optional[float] = 10.0,
        *,
        retry_attempts: int = 3,
        retry_backoff: float = 0.1,
        max_retry_backoff: float = 2.0,
        credentials: Optional[grpc.ChannelCredentials] = None,
        channel_options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        """Open a channel to `target` ("host:port"). gRPC connects on the first call.

        `credentials` switches to a TLS channel. `channel_options` are extra gRPC
        channel arguments and override the defaults set here.
        """
        if retry_attempts < 1:
            raise ValueError(f"retry_attempts must be at least 1, got {retry_attempts}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive or None, got {timeout}")

        self.target = target
        self.timeout = timeout
        self.retry_attempts = retry_attempts
        self.retry_backoff = retry_backoff
        self.max_retry_backoff = max_retry_backoff

        options = {
            # A batch of 224 x 224 x 4 float32 rasters is 0.8 MB per step, so gRPC's
            # default 4 MB receive limit would cap batches at 5 steps.
            "grpc.max_receive_message_length": -1,
            # gRPC's default reconnect backoff grows from 1 s to 120 s, so the
            # retries above would hit a channel that has not tried to reconnect yet.
            "grpc.initial_reconnect_backoff_ms": max(1, int(retry_backoff * 1000)),
            "grpc.max_reconnect_backoff_ms": max(1, int(max_retry_backoff * 1000)),
        }
        options.update(dict(channel_options))

        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=list(options.items()))
        else:
            self._channel = grpc.secure_channel(target, credentials, options=list(options.items()))
        self._stub = pb2_grpc.RasterServiceStub(self._channel)
        self._health_check = self._channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=_encode_health_request,
            response_deserializer=_decode_health_response,
        )

    def close(self) -> None:
        """Close the channel and cancel the calls in flight."""
        self._channel.close()

    def __enter__(self) -> "RasterClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def rasterize(
        self,
        map_name: str,
        ego: Union[EgoState, Pose],
        tracked_objects: Iterable[TrackedObject] = (),
        config: Optional[RasterConfig] = None,
    ) -> np.ndarray:
        """Rasterize one step and return the (H, W, C) float32 raster.

        Channels are ego, agents, roadmap and baseline paths, as nuPlan's
        RasterFeatureBuilder orders them. The array is a read-only view of the
        response bytes. `config=None` keeps the server's defaults.
        """
        request = build_request(map_name, ego, tracked_objects, config)
        response = self._call("Rasterize", self._stub.Rasterize, request)
        return tensor_to_array(response.raster)

    def rasterize_with_timings(
        self,
        map_name: str,
        ego: Union[EgoState, Pose],
        tracked_objects: Iterable[TrackedObject] = (),
        config: Optional[RasterConfig] = None,
    ) -> RasterResult:
        """Rasterize one step like `rasterize` and also return channel names and server stage timings."""
        request = build_request(map_name, ego, tracked_objects, config, include_timings=True)
        response = self._call("Rasterize", self._stub.Rasterize, request)
        return RasterResult.from_proto(response)

    def rasterize_batch(self, requests: Iterable[Union[RasterRequest, Sequence[Any]]]) -> List[np.ndarray]:
        """Rasterize independent steps in one call and return their rasters in request order.

        Each request is a RasterRequest or a (map_name, ego, tracked_objects[, config])
        tuple. Steps may use different maps and configs.
        """
        batch = pb2.RasterizeBatchRequest()
        for request in requests:
            if not isinstance(request, RasterRequest):
                request = RasterRequest(*request)
            batch.requests.append(build_request(request.map_name, request.ego, request.tracked_objects, request.config))

        response = self._call("RasterizeBatch", self._stub.RasterizeBatch, batch)
        if len(response.responses) != len(batch.requests):
            raise RasterdError(
                f"RasterizeBatch on {self.target} returned {len(response.responses)} rasters "
                f"for {len(batch.requests)} requests"
            )
        return [tensor_to_array(item.raster) for item in response.responses]

    def stream(self, map_name: str, config: Optional[RasterConfig] = None) -> "RasterStream":
        """Open a RasterizeStream for one simulation on `map_name`.

        Send each step with RasterStream.rasterize. Close the stream, or use it as a
        context manager, when the simulation ends.
        """
        return RasterStream(self, map_name, config)

    def list_maps(self) -> List[MapInfo]:
        """Return the maps that the server has loaded."""
        response = self._call("ListMaps", self._stub.ListMaps, pb2.ListMapsRequest())
        return [MapInfo.from_proto(map_info) for map_info in response.maps]

    def server_info(self) -> ServerInfo:
        """Return the server's version, active device and loaded maps."""
        response = self._call("GetServerInfo", self._stub.GetServerInfo, pb2.GetServerInfoRequest())
        return ServerInfo.from_proto(response)

    def health(self, service: str = "") -> str:
        """Return the grpc.health.v1 status of `service` ("" is the whole server), e.g. "SERVING"."""
        return self._call("Health/Check", self._health_check, service)

    def wait_until_ready(self, timeout: float = 60.0, poll_interval: float = 0.2) -> None:
        """Block until the server reports SERVING, polling every `poll_interval` [s] for up to `timeout` [s].

        A server without the gRPC health service counts as ready once ListMaps
        succeeds. Raises RasterdUnavailableError with the last error when the time
        runs out.
        """
        deadline = time.monotonic() + timeout
        last_problem = "no answer yet"
        while True:
            call_timeout = max(0.05, min(2.0, deadline - time.monotonic()))
            try:
                status = self._health_check("", timeout=call_timeout)
                if status == "SERVING":
                    return
                last_problem = f"health status {status}"
            except grpc.RpcError as error:
                if error.code() is grpc.StatusCode.UNIMPLEMENTED:
                    if self._list_maps_succeeds(call_timeout):
                        return
                    last_problem = "ListMaps failed"
                else:
                    last_problem = f"{error.code().name}: {error.details()}"

            if time.monotonic() + poll_interval > deadline:
                raise RasterdUnavailableError(
                    f"rasterd server at {self.target} was not ready after {timeout} s ({last_problem}). "
                    f"{UNAVAILABLE_HINT}",
                    grpc.StatusCode.UNAVAILABLE,
                    last_problem,
                )
            time.sleep(poll_interval)

    def _list_maps_succeeds(self, timeout: float) -> bool:
        try:
            self._stub.ListMaps(pb2.ListMapsRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return True

    def _call(self, method: str, rpc: Callable[..., ResponseT], request: Any) -> ResponseT:
        """Call a unary RPC, retrying UNAVAILABLE with exponential backoff, and translate errors."""
        backoff = self.retry_backoff
        for attempt in range(1, self.retry_attempts + 1):
            try:
                return rpc(request, timeout=self.timeout)
            except grpc.RpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE or attempt == self.retry_attempts:
                    raise error_from_rpc(error, self.target, method, attempt) from error
                logger.warning(
                    "%s on %s unavailable (attempt %d of %d): %s. Retrying in %.3f s",
                    method,
                    self.target,
                    attempt,
                    self.retry_attempts,
                    error.details(),
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2.0, self.max_retry_backoff)
        raise AssertionError("unreachable: the loop returns or raises")


# Queue markers between RasterStream and its threads.
_END_OF_REQUESTS = object()
_END_OF_RESPONSES = object()


class RasterStream:
    """A RasterizeStream for one simulation: each `rasterize` sends a step and returns its raster.

    Responses come back in request order. A step that fails or exceeds the
    client's timeout closes the stream, because a late response would otherwise
    be returned for the next step. The stream is not retried on UNAVAILABLE.
    One thread should use a stream at a time.
    """

    def __init__(self, client: RasterClient, map_name: str, config: Optional[RasterConfig] = None) -> None:
        self.map_name = map_name
        self.config = config
        self._client = client
        self._requests: "queue.Queue[Any]" = queue.Queue()
        self._responses: "queue.Queue[Any]" = queue.Queue()
        self._closed = False
        self._call = client._stub.RasterizeStream(self._iterate_requests())
        # gRPC's blocking iterator has no per-item timeout, so a thread reads the
        # responses and `rasterize` waits on the queue with the client's timeout.
        self._reader = threading.Thread(target=self._read_responses, name="rasterd-stream-reader", daemon=True)
        self._reader.start()

    @property
    def closed(self) -> bool:
        """Whether the stream was closed, by `close` or by an error."""
        return self._closed

    def rasterize(
        self,
        ego: Union[EgoState, Pose],
        tracked_objects: Iterable[TrackedObject] = (),
        config: Optional[RasterConfig] = None,
    ) -> np.ndarray:
        """Send one step and return its (H, W, C) float32 raster, a read-only view of the response bytes.

        `config` overrides the stream's config for this step.
        """
        if self._closed:
            raise RasterdError(f"RasterizeStream to {self._client.target} for map {self.map_name!r} is closed")

        step_config = config if config is not None else self.config
        self._requests.put(build_request(self.map_name, ego, tracked_objects, step_config))

        timeout = self._client.timeout
        try:
            item = self._responses.get(timeout=timeout)
        except queue.Empty:
            self._abort()
            raise RasterdDeadlineError(
                f"RasterizeStream on {self._client.target} timed out: no response within {timeout} s",
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ) from None

        if isinstance(item, grpc.RpcError):
            self._abort()
            raise error_from_rpc(item, self._client.target, "RasterizeStream") from item
        if item is _END_OF_RESPONSES:
            self._abort()
            raise RasterdError(f"RasterizeStream on {self._client.target} ended before it returned a response for the step")
        return tensor_to_array(item.raster)

    def close(self) -> None:
        """End the stream and wait up to the client's timeout for the server to finish it."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_END_OF_REQUESTS)
        self._reader.join(timeout=self._client.timeout)
        if self._reader.is_alive():
            self._call.cancel()

    def __enter__(self) -> "RasterStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _abort(self) -> None:
        self._closed = True
        self._requests.put(_END_OF_REQUESTS)
        self._call.cancel()

    def _iterate_requests(self) -> Iterator[pb2.RasterizeRequest]:
        while True:
            request = self._requests.get()
            if request is _END_OF_REQUESTS:
                return
            yield request

    def _read_responses(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
        except grpc.RpcError as error:
            self._responses.put(error)
        else:
            self._responses.put(_END_OF_RESPONSES)


def _encode_health_request(service: str) -> bytes:
    """Serialize grpc.health.v1.HealthCheckRequest{service} (field 1, a string) by hand.

    Generated stubs would register grpc.health.v1 messages in protobuf's default
    descriptor pool, which rejects grpcio-health-checking's copy of the same names.
    """
    data = service.encode("utf-8")
    if not data:
        return b""
    return b"\x0a" + _encode_varint(len(data)) + data


def _decode_health_response(data: bytes) -> str:
    """Parse grpc.health.v1.HealthCheckResponse and return its status name (field 1, an enum)."""
    status = 0
    position = 0
    while position < len(data):
        key, position = _decode_varint(data, position)
        field_number, wire_type = key >> 3, key & 0x7
        if wire_type == 0:
            value, position = _decode_varint(data, position)
            if field_number == 1:
                status = value
        elif wire_type == 1:
            position += 8
        elif wire_type == 2:
            length, position = _decode_varint(data, position)
            position += length
        elif wire_type == 5:
            position += 4
        else:
            raise ValueError(f"malformed HealthCheckResponse: wire type {wire_type}")
    return HEALTH_STATUS_NAMES.get(status, str(status))


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_varint(data: bytes, position: int) -> Tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if position >= len(data):
            raise ValueError("malformed HealthCheckResponse: truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
