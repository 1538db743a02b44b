"""Conversion between the client's dataclasses and rasterd.v1 messages."""

from __future__ import annotations

import enum
import pickle

import numpy as np
import pytest

from rasterd_client import (
    EgoState,
    Pose,
    RasterConfig,
    RoadmapMode,
    TrackedObject,
    TrackedObjectType,
    VehicleParameters,
)
from rasterd_client._proto.rasterd.v1 import raster_service_pb2 as pb2
from rasterd_client.types import build_request, map_feature_pairs, tensor_to_array


@pytest.mark.parametrize(
    "value, expected",
    [
        ("vehicle", TrackedObjectType.VEHICLE),
        ("traffic_cone", TrackedObjectType.TRAFFIC_CONE),
        ("GENERIC_OBJECT", TrackedObjectType.GENERIC_OBJECT),
        (TrackedObjectType.BICYCLE, TrackedObjectType.BICYCLE),
        (1, TrackedObjectType.PEDESTRIAN),
        (np.int64(5), TrackedObjectType.CZONE_SIGN),
        (pb2.BARRIER, TrackedObjectType.BARRIER),
    ],
)
def test_object_type_parse(value, expected):
    assert TrackedObjectType.parse(value) is expected


def test_object_type_parse_fullname():
    class NuplanStyleType(enum.Enum):
        EGO = 7

        @property
        def fullname(self) -> str:
            return self.name.lower()

    assert TrackedObjectType.parse(NuplanStyleType.EGO) is TrackedObjectType.EGO


def test_object_type_values_match_proto():
    for member in TrackedObjectType:
        assert pb2.TrackedObjectType.Value(member.name) == member.value


@pytest.mark.parametrize("value, error", [("truck", ValueError), (8, ValueError), (-1, ValueError), (True, TypeError), (1.0, TypeError)])
def test_object_type_parse_rejects(value, error):
    with pytest.raises(error):
        TrackedObjectType.parse(value)


def test_unknown_type_name_message():
    with pytest.raises(ValueError, match="unknown tracked object type 'truck'.*traffic_cone"):
        TrackedObjectType.parse("truck")


def test_build_request_fields():
    vehicle = VehicleParameters(2.0, 3.5, 1.0, 2.8, 1.4, 1.6)
    ego = EgoState(Pose(664222.9, 3997652.1, 1.9), vehicle)
    tracked_object = TrackedObject(Pose(10.0, 20.0, -0.5), 4.5, 1.8, 1.6, "bicycle", "token-1")

    request = build_request("town-a", ego, [tracked_object], include_timings=True)

    assert request.map_name == "town-a"
    assert request.ego.rear_axle == pb2.Pose(x=664222.9, y=3997652.1, heading=1.9)
    assert request.ego.vehicle == pb2.VehicleParameters(
        width=2.0, front_length=3.5, rear_length=1.0, wheel_base=2.8, cog_position_from_rear_axle=1.4, height=1.6
    )
    assert len(request.tracked_objects) == 1
    converted = request.tracked_objects[0]
    assert converted.center == pb2.Pose(x=10.0, y=20.0, heading=-0.5)
    assert (converted.length, converted.width, converted.height) == (4.5, 1.8, 1.6)
    assert converted.type == pb2.BICYCLE
    assert converted.track_token == "token-1"
    assert request.include_timings
    assert not request.HasField("config")


def test_ego_without_vehicle_leaves_it_unset():
    request = build_request("town-a", EgoState(Pose(1.0, 2.0, 3.0)), [])
    assert not request.ego.HasField("vehicle")


def test_bare_pose_is_ego_rear_axle():
    request = build_request("town-a", Pose(1.0, 2.0, 3.0), [])
    assert request.ego.rear_axle == pb2.Pose(x=1.0, y=2.0, heading=3.0)
    assert not request.ego.HasField("vehicle")


def test_build_request_rejects_other_ego():
    with pytest.raises(TypeError, match="ego must be an EgoState or a Pose"):
        build_request("town-a", (1.0, 2.0, 3.0), [])


def test_empty_config_sets_nothing():
    message = RasterConfig().to_proto()
    assert message == pb2.RasterConfig()
    for name in ("target_width", "target_pixel_size", "ego_longitudinal_offset", "baseline_path_thickness"):
        assert not message.HasField(name)


def test_config_zero_values_are_sent():
    # 0.0 is a real setting (the ego at the centre), so it must reach the server as set.
    message = RasterConfig(ego_longitudinal_offset=0.0).to_proto()
    assert message.HasField("ego_longitudinal_offset")
    assert message.ego_longitudinal_offset == 0.0


def test_config_all_fields():
    config = RasterConfig(
        map_features={"LANE": 0.7, "CROSSWALK": 0.3, "STOP_LINE": 0.9},
        target_width=160,
        target_height=160.0,
        target_pixel_size=0.25,
        ego_width=2.297,
        ego_front_length=4.049,
        ego_rear_length=1.127,
        ego_longitudinal_offset=0.2,
        baseline_path_thickness=np.int32(2),
        roadmap_mode="tiles",
    )
    message = config.to_proto()

    assert [(feature.layer, feature.color) for feature in message.map_features] == [
        ("LANE", 0.7),
        ("CROSSWALK", 0.3),
        ("STOP_LINE", 0.9),
    ]
    assert (message.target_width, message.target_height) == (160, 160)
    assert message.target_pixel_size == 0.25
    assert (message.ego_width, message.ego_front_length, message.ego_rear_length) == (2.297, 4.049, 1.127)
    assert message.ego_longitudinal_offset == 0.2
    assert message.baseline_path_thickness == 2
    assert message.roadmap_mode == pb2.ROADMAP_MODE_TILES


def test_map_features_pairs_keep_order():
    class Layer(enum.Enum):
        INTERSECTION = 1

    pairs = map_feature_pairs([("STOP_LINE", 0.5), (Layer.INTERSECTION, 1), ("LANE", 1.0)])
    assert pairs == [("STOP_LINE", 0.5), ("INTERSECTION", 1.0), ("LANE", 1.0)]


def test_map_features_rejects_bad_item():
    with pytest.raises(ValueError, match="pair"):
        map_feature_pairs(["LANE"])


@pytest.mark.parametrize("value", [224.5, "224", True, float("nan")])
def test_config_rejects_non_integer_size(value):
    with pytest.raises(ValueError, match="target_width must be an integer"):
        RasterConfig(target_width=value).to_proto()


@pytest.mark.parametrize("value, expected", [("exact", RoadmapMode.EXACT), ("TILES", RoadmapMode.TILES), (0, RoadmapMode.UNSPECIFIED)])
def test_roadmap_mode_parse(value, expected):
    assert RoadmapMode.parse(value) is expected


def test_roadmap_mode_rejects_unknown():
    with pytest.raises(ValueError, match="unknown roadmap mode"):
        RoadmapMode.parse("fast")


def test_tensor_to_array_view():
    values = np.arange(2 * 3 * 4, dtype="<f4").reshape(2, 3, 4)
    tensor = pb2.Tensor(shape=[2, 3, 4], dtype=pb2.FLOAT32, data=values.tobytes())

    array = tensor_to_array(tensor)

    assert array.dtype == np.float32
    assert array.shape == (2, 3, 4)
    assert np.array_equal(array, values)
    assert not array.flags.writeable
    assert not array.flags.owndata


def test_tensor_to_array_rejects_wrong_size():
    tensor = pb2.Tensor(shape=[2, 3, 4], dtype=pb2.FLOAT32, data=b"\x00" * 95)
    with pytest.raises(ValueError, match="needs 96 bytes, got 95"):
        tensor_to_array(tensor)


def test_tensor_to_array_uint8():
    tensor = pb2.Tensor(shape=[2, 2, 1], dtype=pb2.UINT8, data=bytes([0, 1, 2, 255]))
    array = tensor_to_array(tensor)
    assert array.dtype == np.uint8
    assert array.ravel().tolist() == [0, 1, 2, 255]


def test_dataclasses_pickle():
    ego = EgoState(Pose(1.0, 2.0, 3.0), VehicleParameters.pacifica())
    assert pickle.loads(pickle.dumps(ego)) == ego


def test_request_messages_pickle():
    # The generated module name was rewritten so that pickle can find the message classes.
    request = build_request("town-a", Pose(1.0, 2.0, 3.0), [])
    assert pickle.loads(pickle.dumps(request)) == request
