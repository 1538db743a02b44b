"""RemoteRasterFeatureBuilder with stand-ins for nuPlan's classes, against the fake RasterService."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import fake_nuplan
from conftest import ADAPTER_MODULE, forget_adapter_module
from fake_nuplan import (
    RASTER_MODEL_ARGUMENTS,
    DetectionsTracks,
    EgoState,
    FakeMap,
    FakeScenario,
    PlannerInitialization,
    PlannerInput,
    Raster,
    Sensors,
    SimulationHistoryBuffer,
    StateSE2,
    TrackedObjects,
    TrackedObjectType,
    VehicleParameters,
    make_agent,
    pacifica_parameters,
)
from fixture_data import CLIENT_ROOT
from rasterd_client import RasterdNotFoundError
from rasterd_client._proto.rasterd.v1 import raster_service_pb2 as pb2

def make_builder(nuplan_adapter: Any, target: str, **overrides: Any) -> Any:
    arguments = dict(RASTER_MODEL_ARGUMENTS, target=target, timeout=5.0)
    arguments.update(overrides)
    return nuplan_adapter.RemoteRasterFeatureBuilder(**arguments)


def ego_at(x: float, y: float = 3997652.0, heading: float = 0.3, parameters: VehicleParameters = None) -> EgoState:
    return EgoState(StateSE2(x, y, heading), parameters or pacifica_parameters())


def sample_detections() -> DetectionsTracks:
    agents = [
        make_agent(TrackedObjectType.PEDESTRIAN, 10.0, 20.0, 1.0, 0.6, 0.6, 1.7, "walker"),
        make_agent(TrackedObjectType.VEHICLE, 11.0, 21.0, -0.5, 4.8, 1.9, 1.6, "car"),
        make_agent(TrackedObjectType.TRAFFIC_CONE, 12.0, 22.0, 0.0, 0.4, 0.4, 0.7, None),
    ]
    return DetectionsTracks(TrackedObjects(agents))


def test_builder_is_feature_builder(nuplan_adapter):
    builder = make_builder(nuplan_adapter, "127.0.0.1:1")
    assert isinstance(builder, fake_nuplan.AbstractFeatureBuilder)
    assert builder.get_feature_unique_name() == "raster"
    assert builder.get_feature_type() is Raster
    assert nuplan_adapter.RemoteRasterFeatureBuilder.get_feature_unique_name() == "raster"


def test_builder_keeps_nuplan_attributes(nuplan_adapter):
    builder = make_builder(nuplan_adapter, "127.0.0.1:1")
    for name, value in RASTER_MODEL_ARGUMENTS.items():
        assert getattr(builder, name) == value


def test_simulation_request(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target)
    ego_state = ego_at(664222.5)
    history = SimulationHistoryBuffer(ego_states=[ego_at(1.0), ego_state], observations=[Sensors(), sample_detections()])
    current_input = PlannerInput(iteration=None, history=history)
    initialization = PlannerInitialization(route_roadblock_ids=[], mission_goal=StateSE2(0, 0, 0), map_api=FakeMap("fake-town"))

    feature = builder.get_features_from_simulation(current_input, initialization)

    assert isinstance(feature, Raster)
    assert feature.data.shape == (224, 224, 4)
    assert feature.data.dtype == np.float32
    assert np.all(feature.data == np.float32(664222.5)), "the newest ego state must be used"
    assert feature.data.flags.writeable, "copy_raster defaults to a writable copy, like nuPlan's builder"

    (request,) = fake_service.requests
    assert request.map_name == "fake-town"
    assert request.ego.rear_axle == pb2.Pose(x=664222.5, y=3997652.0, heading=0.3)
    assert request.ego.vehicle == pb2.VehicleParameters(
        width=2.297, front_length=4.049, rear_length=1.127, wheel_base=3.089, cog_position_from_rear_axle=1.67, height=1.777
    )


def test_tracked_objects_in_nuplan_order(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target)
    scenario = FakeScenario(ego_at(5.0), sample_detections(), FakeMap("fake-town"))

    builder.get_features_from_scenario(scenario)

    objects = fake_service.requests[0].tracked_objects
    # TrackedObjects sorts by type value: vehicle (0), pedestrian (1), traffic cone (3).
    assert [item.type for item in objects] == [pb2.VEHICLE, pb2.PEDESTRIAN, pb2.TRAFFIC_CONE]
    assert [item.track_token for item in objects] == ["car", "walker", ""]
    assert objects[0].center == pb2.Pose(x=11.0, y=21.0, heading=-0.5)
    assert (objects[0].length, objects[0].width, objects[0].height) == (4.8, 1.9, 1.6)


def test_config_from_arguments(nuplan_adapter, fake_service):
    builder = make_builder(
        nuplan_adapter,
        fake_service.target,
        map_features={"LANE": 0.7, "CROSSWALK": 0.3, "STOP_LINE": 0.9},
        target_width=160,
        target_height=160,
        target_pixel_size=0.25,
        ego_longitudinal_offset=0.2,
        baseline_path_thickness=2,
    )
    scenario = FakeScenario(ego_at(5.0), sample_detections(), FakeMap("fake-town"))

    feature = builder.get_features_from_scenario(scenario)

    assert feature.data.shape == (160, 160, 4)
    config = fake_service.requests[0].config
    assert [(feature.layer, feature.color) for feature in config.map_features] == [
        ("LANE", 0.7),
        ("CROSSWALK", 0.3),
        ("STOP_LINE", 0.9),
    ]
    assert (config.target_width, config.target_height, config.target_pixel_size) == (160, 160, 0.25)
    assert (config.ego_width, config.ego_front_length, config.ego_rear_length) == (2.297, 4.049, 1.127)
    assert config.HasField("ego_longitudinal_offset")
    assert config.ego_longitudinal_offset == 0.2
    assert config.baseline_path_thickness == 2
    assert config.roadmap_mode == pb2.ROADMAP_MODE_UNSPECIFIED


def test_vehicle_without_height(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target)
    parameters = VehicleParameters(2.0, 3.8, 1.0, 1.5, 2.9, "test", "car", height=None)
    scenario = FakeScenario(ego_at(5.0, parameters=parameters), DetectionsTracks(TrackedObjects()), FakeMap("fake-town"))

    builder.get_features_from_scenario(scenario)

    vehicle = fake_service.requests[0].ego.vehicle
    assert (vehicle.width, vehicle.front_length, vehicle.rear_length) == (2.0, 3.8, 1.0)
    assert (vehicle.wheel_base, vehicle.cog_position_from_rear_axle, vehicle.height) == (2.9, 1.5, 0.0)
    assert len(fake_service.requests[0].tracked_objects) == 0


def test_simulation_rejects_other_observation(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target)
    history = SimulationHistoryBuffer(ego_states=[ego_at(1.0)], observations=[Sensors()])
    current_input = PlannerInput(iteration=None, history=history)
    initialization = PlannerInitialization([], StateSE2(0, 0, 0), FakeMap("fake-town"))

    with pytest.raises(TypeError, match="needs DetectionsTracks observations, got Sensors"):
        builder.get_features_from_simulation(current_input, initialization)

    assert fake_service.requests == []


def test_channel_count_mismatch(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target, num_input_channels=3)
    scenario = FakeScenario(ego_at(5.0), sample_detections(), FakeMap("fake-town"))

    with pytest.raises(RuntimeError, match="expected 3 channels"):
        builder.get_features_from_scenario(scenario)


def test_view_without_copy(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target, copy_raster=False)
    scenario = FakeScenario(ego_at(5.0), sample_detections(), FakeMap("fake-town"))

    feature = builder.get_features_from_scenario(scenario)

    assert not feature.data.flags.writeable


def test_server_error_passes_through(nuplan_adapter, fake_service):
    import grpc

    builder = make_builder(nuplan_adapter, fake_service.target)
    fake_service.fail_next(grpc.StatusCode.NOT_FOUND, "map 'fake-town' is not loaded")
    scenario = FakeScenario(ego_at(5.0), sample_detections(), FakeMap("fake-town"))

    with pytest.raises(RasterdNotFoundError, match="not loaded"):
        builder.get_features_from_scenario(scenario)


def test_bad_setting_fails_at_construction(nuplan_adapter):
    with pytest.raises(ValueError, match="target_width must be an integer"):
        make_builder(nuplan_adapter, "127.0.0.1:1", target_width=224.5)


def test_builder_pickles_without_channel(nuplan_adapter, fake_service):
    builder = make_builder(nuplan_adapter, fake_service.target)
    scenario = FakeScenario(ego_at(5.0), sample_detections(), FakeMap("fake-town"))
    builder.get_features_from_scenario(scenario)

    restored = pickle.loads(pickle.dumps(builder))

    assert restored._client is None
    assert restored.target == fake_service.target
    assert np.all(restored.get_features_from_scenario(scenario).data == 5.0)


def test_import_without_nuplan(monkeypatch):
    forget_adapter_module()
    monkeypatch.setitem(sys.modules, "nuplan", None)  # makes `import nuplan` fail as if it were not installed
    try:
        with pytest.raises(ImportError, match=r"pip install nuplan-devkit"):
            importlib.import_module(ADAPTER_MODULE)
    finally:
        forget_adapter_module()


def test_client_import_needs_no_nuplan():
    # A fresh interpreter shows which modules importing the client pulls in.
    code = (
        "import sys, rasterd_client; "
        "loaded = [name for name in sys.modules if name.split('.')[0] == 'nuplan']; "
        "print(','.join(loaded))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=CLIENT_ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == ""
