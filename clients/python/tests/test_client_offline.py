"""RasterClient against the in-process fake RasterService and against a port where nothing listens."""

from __future__ import annotations

import logging
import time

import grpc
import numpy as np
import pytest

from conftest import free_port
from fake_server import start_fake_server
from rasterd_client import (
    EgoState,
    Pose,
    RasterClient,
    RasterConfig,
    RasterdDeadlineError,
    RasterdError,
    RasterdInvalidArgumentError,
    RasterdNotFoundError,
    RasterdUnavailableError,
    RasterRequest,
    TrackedObject,
)


def ego_at(x: float) -> EgoState:
    return EgoState(Pose(x, 0.0, 0.0))


def test_rasterize_returns_view(fake_service):
    with RasterClient(fake_service.target, timeout=5.0) as client:
        raster = client.rasterize("fake-town", ego_at(7.0), [TrackedObject(Pose(1.0, 2.0, 0.0), 4.0, 2.0, 1.5, "vehicle")])

    assert raster.shape == (6, 5, 4)
    assert raster.dtype == np.float32
    assert np.all(raster == 7.0)
    assert not raster.flags.writeable
    assert not raster.flags.owndata
    assert fake_service.requests[0].tracked_objects[0].type == 0


def test_rasterize_sends_config(fake_service):
    config = RasterConfig(map_features=[("LANE", 1.0)], target_width=8, target_height=8, target_pixel_size=0.5)
    with RasterClient(fake_service.target) as client:
        raster = client.rasterize("fake-town", ego_at(1.0), [], config)

    assert raster.shape == (8, 8, 4)
    sent = fake_service.requests[0].config
    assert sent.target_pixel_size == 0.5
    assert [feature.layer for feature in sent.map_features] == ["LANE"]


def test_rasterize_with_timings(fake_service):
    with RasterClient(fake_service.target) as client:
        result = client.rasterize_with_timings("fake-town", ego_at(3.0))

    assert fake_service.requests[0].include_timings
    assert result.channels == ["ego", "agents", "roadmap", "baseline_paths"]
    assert result.timings is not None
    assert result.timings.roadmap_us == 12.5
    assert result.timings.total_us == 40.0
    assert np.all(result.raster == 3.0)


def test_batch_keeps_order(fake_service):
    requests = [RasterRequest("fake-town", ego_at(float(index))) for index in range(5)]
    requests.append(("fake-town", ego_at(5.0), [], RasterConfig(target_width=3, target_height=3)))

    with RasterClient(fake_service.target) as client:
        rasters = client.rasterize_batch(requests)

    assert len(rasters) == 6
    for index, raster in enumerate(rasters):
        assert np.all(raster == float(index))
    assert rasters[5].shape == (3, 3, 4)


def test_batch_over_default_message_limit(fake_service):
    # 8 rasters of 224 x 224 x 4 float32 are 6.4 MB, above gRPC's default 4 MB receive limit.
    config = RasterConfig(target_width=224, target_height=224)
    requests = [RasterRequest("fake-town", ego_at(float(index)), [], config) for index in range(8)]

    with RasterClient(fake_service.target) as client:
        rasters = client.rasterize_batch(requests)

    assert [raster.shape for raster in rasters] == [(224, 224, 4)] * 8


def test_stream_keeps_order(fake_service):
    with RasterClient(fake_service.target, timeout=5.0) as client:
        with client.stream("fake-town") as stream:
            rasters = [stream.rasterize(ego_at(float(index))) for index in range(20)]

        assert stream.closed

    for index, raster in enumerate(rasters):
        assert np.all(raster == float(index))
    assert [request.map_name for request in fake_service.requests] == ["fake-town"] * 20


def test_stream_config_override(fake_service):
    with RasterClient(fake_service.target, timeout=5.0) as client:
        with client.stream("fake-town", RasterConfig(target_width=4, target_height=4)) as stream:
            first = stream.rasterize(ego_at(1.0))
            second = stream.rasterize(ego_at(2.0), config=RasterConfig(target_width=2, target_height=2))

    assert first.shape == (4, 4, 4)
    assert second.shape == (2, 2, 4)


def test_stream_rejects_step_after_close(fake_service):
    with RasterClient(fake_service.target, timeout=5.0) as client:
        stream = client.stream("fake-town")
        stream.rasterize(ego_at(1.0))
        stream.close()
        stream.close()

        with pytest.raises(RasterdError, match="is closed"):
            stream.rasterize(ego_at(2.0))


def test_stream_error_closes_stream(fake_service):
    with RasterClient(fake_service.target, timeout=5.0) as client:
        stream = client.stream("nowhere")
        fake_service.fail_next(grpc.StatusCode.NOT_FOUND, "map 'nowhere' is not loaded")

        with pytest.raises(RasterdNotFoundError, match="map 'nowhere' is not loaded"):
            stream.rasterize(ego_at(1.0))

        assert stream.closed


def test_stream_step_timeout(fake_service):
    fake_service.delay_s = 1.0
    with RasterClient(fake_service.target, timeout=0.2) as client:
        stream = client.stream("fake-town")

        with pytest.raises(RasterdDeadlineError, match="no response within 0.2 s"):
            stream.rasterize(ego_at(1.0))

        assert stream.closed


def test_list_maps_and_server_info(fake_service):
    with RasterClient(fake_service.target) as client:
        maps = client.list_maps()
        info = client.server_info()

    assert [map_info.name for map_info in maps] == ["fake-town"]
    assert maps[0].layer_counts == {"LANE": 12, "STOP_LINE": 3}
    assert maps[0].projected_crs == "EPSG:32617"
    assert info.version == "0.0.0-fake"
    assert info.device == "cpu"
    assert [map_info.name for map_info in info.maps] == ["fake-town"]


@pytest.mark.parametrize(
    "code, error_class",
    [
        (grpc.StatusCode.INVALID_ARGUMENT, RasterdInvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, RasterdNotFoundError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, RasterdDeadlineError),
        (grpc.StatusCode.INTERNAL, RasterdError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, RasterdError),
    ],
)
def test_status_maps_to_exception(fake_service, code, error_class):
    fake_service.fail_next(code, "server message for the test")

    with RasterClient(fake_service.target) as client:
        with pytest.raises(error_class) as raised:
            client.rasterize("fake-town", ego_at(1.0))

    assert type(raised.value) is error_class
    assert raised.value.code is code
    assert raised.value.details == "server message for the test"
    assert "server message for the test" in str(raised.value)
    assert len(fake_service.requests) == 1, "only UNAVAILABLE is retried"


def test_exception_hierarchy():
    for error_class in (RasterdUnavailableError, RasterdInvalidArgumentError, RasterdNotFoundError, RasterdDeadlineError):
        assert issubclass(error_class, RasterdError)
    assert issubclass(RasterdUnavailableError, ConnectionError)
    assert issubclass(RasterdInvalidArgumentError, ValueError)
    assert issubclass(RasterdDeadlineError, TimeoutError)


def test_unavailable_is_retried(fake_service, caplog):
    fake_service.fail_next(grpc.StatusCode.UNAVAILABLE, "warming up", times=2)

    with caplog.at_level(logging.WARNING, logger="rasterd_client"):
        with RasterClient(fake_service.target, retry_attempts=3, retry_backoff=0.01) as client:
            raster = client.rasterize("fake-town", ego_at(4.0))

    assert np.all(raster == 4.0)
    assert len(fake_service.requests) == 3
    retry_records = [record for record in caplog.records if "unavailable" in record.getMessage()]
    assert len(retry_records) == 2


def test_unavailable_after_all_attempts(fake_service):
    fake_service.fail_next(grpc.StatusCode.UNAVAILABLE, "warming up", times=5)

    with RasterClient(fake_service.target, retry_attempts=2, retry_backoff=0.01) as client:
        with pytest.raises(RasterdUnavailableError, match="2 attempts"):
            client.list_maps()


def test_stopped_server_raises_unavailable():
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()

    with RasterClient(target, timeout=5.0, retry_attempts=3, retry_backoff=0.05) as client:
        with pytest.raises(RasterdUnavailableError) as raised:
            client.rasterize("town-a", ego_at(1.0))

    message = str(raised.value)
    assert target in message
    assert "Is `rasterd serve` running on it?" in message
    assert "3 attempts" in message
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5.0, "backoff of 0.05 s and 0.1 s should end well before the deadline"


def test_retry_reaches_late_server():
    # The first attempt finds nothing on the port, and a later one reaches the
    # server started meanwhile, which shows that the channel reconnects between retries.
    service, server = start_fake_server()
    port = int(service.target.rsplit(":", 1)[1])
    server.stop(grace=None)

    with RasterClient(f"127.0.0.1:{port}", timeout=5.0, retry_attempts=1) as client:
        with pytest.raises(RasterdUnavailableError):
            client.list_maps()

        _, restarted = start_fake_server(port=port, service=service)
        try:
            client.retry_attempts = 10
            assert [map_info.name for map_info in client.list_maps()] == ["fake-town"]
        finally:
            restarted.stop(grace=None)


def test_deadline_raises_deadline_error(fake_service):
    with RasterClient(fake_service.target, timeout=1e-6) as client:
        with pytest.raises(RasterdDeadlineError) as raised:
            client.rasterize("fake-town", ego_at(1.0))

    assert raised.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert fake_service.target in str(raised.value)


def test_slow_call_raises_deadline_error(fake_service):
    fake_service.delay_s = 1.0
    with RasterClient(fake_service.target, timeout=0.1) as client:
        with pytest.raises(RasterdDeadlineError):
            client.list_maps()


def test_health_check():
    service, server = start_fake_server(with_health=True)
    try:
        with RasterClient(service.target) as client:
            assert client.health() == "SERVING"
            assert client.health("rasterd.v1.RasterService") == "NOT_SERVING"
            client.wait_until_ready(timeout=5.0)
    finally:
        server.stop(grace=None)


def test_wait_until_ready_falls_back_to_list_maps(fake_service):
    # The fake service has no health service, so readiness comes from ListMaps.
    with RasterClient(fake_service.target) as client:
        client.wait_until_ready(timeout=5.0)


def test_wait_until_ready_times_out():
    target = f"127.0.0.1:{free_port()}"
    with RasterClient(target) as client:
        with pytest.raises(RasterdUnavailableError, match="not ready after 0.5 s"):
            client.wait_until_ready(timeout=0.5, poll_interval=0.1)


def test_client_rejects_bad_settings():
    with pytest.raises(ValueError, match="retry_attempts"):
        RasterClient("127.0.0.1:1", retry_attempts=0)
    with pytest.raises(ValueError, match="timeout"):
        RasterClient("127.0.0.1:1", timeout=0)
