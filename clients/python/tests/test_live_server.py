"""The client against a live rasterd server: parity with nuPlan's rasters and error mapping.

The `live_server` fixture starts `node bin/rasterd.js serve` on 127.0.0.1 with
the shared fixtures' maps, and skips these tests when the server is not built.
"""

from __future__ import annotations

import math
from typing import Any, List

import grpc
import numpy as np
import pytest

from fake_nuplan import (
    RASTER_MODEL_ARGUMENTS,
    DetectionsTracks,
    EgoState,
    FakeMap,
    FakeScenario,
    PlannerInitialization,
    PlannerInput,
    SimulationHistoryBuffer,
    StateSE2,
    TrackedObjects,
    TrackedObjectType,
    make_agent,
    pacifica_parameters,
)
from fixture_data import CLIENT_ROOT, ParityScene, ParitySet, describe_mismatch, load_parity_set
from rasterd_client import (
    Pose,
    RasterClient,
    RasterConfig,
    RasterdDeadlineError,
    RasterdInvalidArgumentError,
    RasterdNotFoundError,
    RasterRequest,
    TrackedObject,
)
from rasterd_client import EgoState as ClientEgoState

TOWN_A = load_parity_set("town-a")
TOWN_A_CONFIG = load_parity_set("town-a-config")
EXAMPLE_YAML = CLIENT_ROOT / "examples" / "raster_model_rasterd.yaml"


def scene_params(parity_set: ParitySet, name: str) -> List[Any]:
    if parity_set is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"parity set {name} not found"))]
    return [pytest.param(scene, id=scene.id) for scene in parity_set.scenes]


def assert_bit_identical(actual: np.ndarray, expected: np.ndarray, scene_id: str) -> None:
    assert actual.dtype == np.float32, scene_id
    assert actual.shape == expected.shape, scene_id
    identical = np.array_equal(actual.view(np.uint32), expected.view(np.uint32))
    assert identical, f"{scene_id}: {describe_mismatch(actual, expected)}"


def first_scene() -> ParityScene:
    if TOWN_A is None:
        pytest.skip("parity set town-a not found")
    return TOWN_A.scenes[0]


# Server metadata


def test_list_maps_has_town_a(live_client):
    maps = {map_info.name: map_info for map_info in live_client.list_maps()}
    assert "town-a" in maps
    assert maps["town-a"].version == "1.0.0"


def test_server_info(live_client):
    info = live_client.server_info()
    assert info.version
    assert info.device in ("cpu", "cuda")
    assert "town-a" in [map_info.name for map_info in info.maps]


def test_health_serving(live_client):
    assert live_client.health() == "SERVING"


# Parity with nuPlan's RasterFeatureBuilder


@pytest.mark.parametrize("scene", scene_params(TOWN_A, "town-a"))
def test_rasterize_matches_nuplan(live_client, scene):
    raster = live_client.rasterize(TOWN_A.map_name, scene.ego, scene.tracked_objects, TOWN_A.config)
    assert_bit_identical(raster, TOWN_A.expected(scene.id), scene.id)


@pytest.mark.parametrize("scene", scene_params(TOWN_A_CONFIG, "town-a-config"))
def test_rasterize_config_matches_nuplan(live_client, scene):
    # Custom size, pixel size, offset, thickness and map feature order.
    raster = live_client.rasterize(TOWN_A_CONFIG.map_name, scene.ego, scene.tracked_objects, TOWN_A_CONFIG.config)
    assert_bit_identical(raster, TOWN_A_CONFIG.expected(scene.id), scene.id)


def test_batch_matches_nuplan(live_client):
    first_scene()
    requests = [RasterRequest(TOWN_A.map_name, scene.ego, scene.tracked_objects, TOWN_A.config) for scene in TOWN_A.scenes]

    rasters = live_client.rasterize_batch(requests)

    assert len(rasters) == len(TOWN_A.scenes)
    for scene, raster in zip(TOWN_A.scenes, rasters):
        assert_bit_identical(raster, TOWN_A.expected(scene.id), scene.id)


def test_batch_mixes_configs(live_client):
    first_scene()
    if TOWN_A_CONFIG is None:
        pytest.skip("parity set town-a-config not found")
    pairs = list(zip(TOWN_A.scenes[:5], TOWN_A_CONFIG.scenes[:5]))
    requests = []
    for default_scene, config_scene in pairs:
        requests.append(RasterRequest(TOWN_A.map_name, default_scene.ego, default_scene.tracked_objects))
        requests.append(
            RasterRequest(TOWN_A_CONFIG.map_name, config_scene.ego, config_scene.tracked_objects, TOWN_A_CONFIG.config)
        )

    rasters = live_client.rasterize_batch(requests)

    for index, (default_scene, config_scene) in enumerate(pairs):
        assert_bit_identical(rasters[2 * index], TOWN_A.expected(default_scene.id), default_scene.id)
        assert_bit_identical(rasters[2 * index + 1], TOWN_A_CONFIG.expected(config_scene.id), config_scene.id)


def test_stream_matches_nuplan(live_client):
    first_scene()
    with live_client.stream(TOWN_A.map_name, TOWN_A.config) as stream:
        for scene in TOWN_A.scenes:
            raster = stream.rasterize(scene.ego, scene.tracked_objects)
            assert_bit_identical(raster, TOWN_A.expected(scene.id), scene.id)


def test_two_streams_interleaved(live_server):
    first_scene()
    with RasterClient(live_server.target, timeout=30.0) as client:
        with client.stream(TOWN_A.map_name) as first, client.stream(TOWN_A.map_name) as second:
            for scene_a, scene_b in zip(TOWN_A.scenes[:10], reversed(TOWN_A.scenes[-10:])):
                raster_a = first.rasterize(scene_a.ego, scene_a.tracked_objects)
                raster_b = second.rasterize(scene_b.ego, scene_b.tracked_objects)
                assert_bit_identical(raster_a, TOWN_A.expected(scene_a.id), scene_a.id)
                assert_bit_identical(raster_b, TOWN_A.expected(scene_b.id), scene_b.id)


# The nuPlan adapter end to end, with stand-ins for nuPlan's classes


def nuplan_step(scene: ParityScene) -> tuple:
    """Build nuPlan-style EgoState and DetectionsTracks stand-ins for a parity scene."""
    pose = scene.ego.rear_axle
    ego_state = EgoState(StateSE2(pose.x, pose.y, pose.heading), pacifica_parameters())
    agents = [
        make_agent(
            TrackedObjectType[agent["type"].upper()],
            agent["x"],
            agent["y"],
            agent["heading"],
            agent["length"],
            agent["width"],
            agent["height"],
            agent.get("track_token"),
        )
        for agent in scene.raw["agents"]
    ]
    return ego_state, DetectionsTracks(TrackedObjects(agents))


def test_adapter_simulation_matches_nuplan(live_server, nuplan_adapter):
    first_scene()
    builder = nuplan_adapter.RemoteRasterFeatureBuilder(**RASTER_MODEL_ARGUMENTS, target=live_server.target, timeout=30.0)
    initialization = PlannerInitialization([], StateSE2(0.0, 0.0, 0.0), FakeMap(TOWN_A.map_name))

    for scene in TOWN_A.scenes:
        ego_state, detections = nuplan_step(scene)
        history = SimulationHistoryBuffer(ego_states=[ego_state], observations=[detections])
        feature = builder.get_features_from_simulation(PlannerInput(iteration=None, history=history), initialization)
        assert_bit_identical(feature.data, TOWN_A.expected(scene.id), scene.id)


def test_adapter_scenario_matches_nuplan(live_server, nuplan_adapter):
    scene = first_scene()
    builder = nuplan_adapter.RemoteRasterFeatureBuilder(**RASTER_MODEL_ARGUMENTS, target=live_server.target, timeout=30.0)
    ego_state, detections = nuplan_step(scene)

    feature = builder.get_features_from_scenario(FakeScenario(ego_state, detections, FakeMap(TOWN_A.map_name)))

    assert_bit_identical(feature.data, TOWN_A.expected(scene.id), scene.id)


def test_example_yaml_matches_nuplan(live_server, nuplan_adapter):
    yaml = pytest.importorskip("yaml")
    scene = first_scene()
    with open(EXAMPLE_YAML, encoding="utf-8") as file:
        model_config = yaml.safe_load(file)
    (builder_config,) = model_config["feature_builders"]

    assert builder_config["_target_"] == "rasterd_client.nuplan.RemoteRasterFeatureBuilder"
    arguments = {key: value for key, value in builder_config.items() if not key.startswith("_")}
    assert arguments["num_input_channels"] == "${model.num_input_channels}"
    arguments["num_input_channels"] = model_config["num_input_channels"]
    arguments["target"] = live_server.target
    builder = nuplan_adapter.RemoteRasterFeatureBuilder(**arguments)
    ego_state, detections = nuplan_step(scene)

    feature = builder.get_features_from_scenario(FakeScenario(ego_state, detections, FakeMap(TOWN_A.map_name)))

    assert_bit_identical(feature.data, TOWN_A.expected(scene.id), scene.id)


# Errors


def test_unknown_map_raises_not_found(live_client):
    scene = first_scene()
    with pytest.raises(RasterdNotFoundError) as raised:
        live_client.rasterize("no-such-map", scene.ego, scene.tracked_objects)
    assert raised.value.code is grpc.StatusCode.NOT_FOUND
    assert "no-such-map" in raised.value.details


def test_unknown_map_in_batch_raises_not_found(live_client):
    scene = first_scene()
    requests = [RasterRequest(TOWN_A.map_name, scene.ego), RasterRequest("no-such-map", scene.ego)]
    with pytest.raises(RasterdNotFoundError):
        live_client.rasterize_batch(requests)


def test_unknown_map_in_stream_raises_not_found(live_client):
    scene = first_scene()
    with live_client.stream("no-such-map") as stream:
        with pytest.raises(RasterdNotFoundError):
            stream.rasterize(scene.ego, scene.tracked_objects)
        assert stream.closed


def test_nan_ego_raises_invalid_argument(live_client):
    scene = first_scene()
    pose = scene.ego.rear_axle
    ego = ClientEgoState(Pose(math.nan, pose.y, pose.heading))
    with pytest.raises(RasterdInvalidArgumentError) as raised:
        live_client.rasterize(TOWN_A.map_name, ego, scene.tracked_objects)
    assert raised.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details, "the server should say which field is invalid"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(RasterConfig(target_pixel_size=-1.0), id="negative-pixel-size"),
        pytest.param(RasterConfig(target_width=0, target_height=0), id="zero-size"),
        pytest.param(RasterConfig(map_features={"NO_SUCH_LAYER": 1.0}), id="unknown-layer"),
    ],
)
def test_bad_config_raises_invalid_argument(live_client, config):
    scene = first_scene()
    with pytest.raises(RasterdInvalidArgumentError) as raised:
        live_client.rasterize(TOWN_A.map_name, scene.ego, scene.tracked_objects, config)
    assert raised.value.details


def test_infinite_object_raises_invalid_argument(live_client):
    scene = first_scene()
    bad_object = TrackedObject(Pose(scene.ego.rear_axle.x, math.inf, 0.0), 4.0, 2.0, 1.5, "vehicle")
    with pytest.raises(RasterdInvalidArgumentError):
        live_client.rasterize(TOWN_A.map_name, scene.ego, [bad_object])


def test_tiny_deadline_raises_deadline_error(live_server):
    scene = first_scene()
    with RasterClient(live_server.target, timeout=1e-6) as client:
        with pytest.raises(RasterdDeadlineError) as raised:
            client.rasterize(TOWN_A.map_name, scene.ego, scene.tracked_objects)
    assert raised.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_server_still_serves_after_errors(live_client):
    scene = first_scene()
    raster = live_client.rasterize(TOWN_A.map_name, scene.ego, scene.tracked_objects)
    assert_bit_identical(raster, TOWN_A.expected(scene.id), scene.id)
