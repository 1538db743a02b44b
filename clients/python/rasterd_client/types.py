"""Plain dataclasses for the rasterd.v1 request and response messages, and their proto conversion.

Coordinates are in the map frame (UTM for nuPlan maps) [m] and headings in [rad].
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from rasterd_client._proto.rasterd.v1 import raster_service_pb2 as pb2


class TrackedObjectType(enum.IntEnum):
    """Object class, with the integer values of nuPlan's TrackedObjectType."""

    VEHICLE = pb2.VEHICLE
    PEDESTRIAN = pb2.PEDESTRIAN
    BICYCLE = pb2.BICYCLE
    TRAFFIC_CONE = pb2.TRAFFIC_CONE
    BARRIER = pb2.BARRIER
    CZONE_SIGN = pb2.CZONE_SIGN
    GENERIC_OBJECT = pb2.GENERIC_OBJECT
    EGO = pb2.EGO

    @classmethod
    def parse(cls, value: Any) -> "TrackedObjectType":
        """Convert a member, its integer value or its name to a member.

        Names are matched case-insensitively, so nuPlan's full names ('vehicle',
        'traffic_cone', ...) work. An object with a `fullname` attribute, such as a
        member of nuPlan's own enum, is matched by that name. Raises ValueError
        for unknown names and values.
        """
        if isinstance(value, cls):
            return value

        fullname = getattr(value, "fullname", None)
        if isinstance(fullname, str):
            value = fullname

        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                known = ", ".join(member.name.lower() for member in cls)
                raise ValueError(f"unknown tracked object type {value!r}; expected one of: {known}") from None

        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            try:
                return cls(int(value))
            except ValueError:
                raise ValueError(f"unknown tracked object type value {value}; expected 0 to {len(cls) - 1}") from None

        raise TypeError(f"tracked object type must be a TrackedObjectType, an int or a name, got {type(value).__name__}")


class RoadmapMode(enum.IntEnum):
    """How the server builds the roadmap channel."""

    UNSPECIFIED = pb2.ROADMAP_MODE_UNSPECIFIED  # the server's default, which is EXACT
    EXACT = pb2.ROADMAP_MODE_EXACT  # polygons filled per step, bit-identical to nuPlan
    TILES = pb2.ROADMAP_MODE_TILES  # sampled from tiles built at map load; faster, not bit-exact

    @classmethod
    def parse(cls, value: Any) -> "RoadmapMode":
        """Convert a member, its integer value or its name ('exact', 'tiles') to a member."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError(f"unknown roadmap mode {value!r}; expected 'exact' or 'tiles'") from None
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return cls(int(value))
        raise TypeError(f"roadmap mode must be a RoadmapMode, an int or a name, got {type(value).__name__}")


@dataclass(frozen=True)
class Pose:
    """A 2D pose in the map frame: position [m] and heading [rad]."""

    x: float
    y: float
    heading: float

    def to_proto(self) -> pb2.Pose:
        """Convert to a rasterd.v1.Pose message."""
        return pb2.Pose(x=float(self.x), y=float(self.y), heading=float(self.heading))


@dataclass(frozen=True)
class VehicleParameters:
    """Ego vehicle dimensions, as in nuPlan's VehicleParameters [m].

    The server treats a missing or all-zero message as nuPlan's default vehicle,
    the Chrysler Pacifica (see `pacifica()`).
    """

    width: float
    front_length: float  # rear axle to front bumper
    rear_length: float  # rear axle to rear bumper
    wheel_base: float
    cog_position_from_rear_axle: float
    height: float = 0.0

    @classmethod
    def pacifica(cls) -> "VehicleParameters":
        """Return the Chrysler Pacifica's parameters, nuPlan's default ego vehicle."""
        return cls(
            width=2.297,
            front_length=4.049,
            rear_length=1.127,
            wheel_base=3.089,
            cog_position_from_rear_axle=1.67,
            height=1.777,
        )

    def to_proto(self) -> pb2.VehicleParameters:
        """Convert to a rasterd.v1.VehicleParameters message."""
        return pb2.VehicleParameters(
            width=float(self.width),
            front_length=float(self.front_length),
            rear_length=float(self.rear_length),
            wheel_base=float(self.wheel_base),
            cog_position_from_rear_axle=float(self.cog_position_from_rear_axle),
            height=float(self.height),
        )


@dataclass(frozen=True)
class EgoState:
    """The ego vehicle: its rear-axle pose and, optionally, its dimensions.

    `vehicle=None` leaves the parameters unset, so the server uses the Pacifica.
    """

    rear_axle: Pose
    vehicle: Optional[VehicleParameters] = None

    def to_proto(self) -> pb2.EgoState:
        """Convert to a rasterd.v1.EgoState message."""
        message = pb2.EgoState(rear_axle=self.rear_axle.to_proto())
        if self.vehicle is not None:
            message.vehicle.CopyFrom(self.vehicle.to_proto())
        return message


@dataclass(frozen=True)
class TrackedObject:
    """A detected object: box centre pose, box size [m], class and track id.

    `type` accepts a TrackedObjectType, its integer value or nuPlan's name
    ('vehicle', 'pedestrian', 'bicycle', 'traffic_cone', 'barrier', 'czone_sign',
    'generic_object', 'ego').
    """

    center: Pose
    length: float
    width: float
    height: float
    type: Union[TrackedObjectType, int, str]
    track_token: str = ""

    def to_proto(self) -> pb2.TrackedObject:
        """Convert to a rasterd.v1.TrackedObject message; raises ValueError for an unknown type."""
        return pb2.TrackedObject(
            center=self.center.to_proto(),
            length=float(self.length),
            width=float(self.width),
            height=float(self.height),
            type=int(TrackedObjectType.parse(self.type)),
            track_token=self.track_token or "",
        )


MapFeatures = Union[Mapping[Any, float], Sequence[Tuple[Any, float]]]

# RasterConfig fields that map one to one onto proto3 `optional` scalars.
_INT_CONFIG_FIELDS = ("target_width", "target_height", "baseline_path_thickness")
_FLOAT_CONFIG_FIELDS = (
    "target_pixel_size",
    "ego_width",
    "ego_front_length",
    "ego_rear_length",
    "ego_longitudinal_offset",
)


@dataclass(frozen=True)
class RasterConfig:
    """Raster settings with the meaning of nuPlan's RasterFeatureBuilder arguments.

    Every field left at None keeps the server's default, which is nuPlan's
    raster_model.yaml: 224 x 224 px of 0.5 m, LANE 1.0, INTERSECTION 1.0,
    STOP_LINE 0.5, CROSSWALK 0.5, and the Pacifica's ego box.

    `map_features` maps nuPlan SemanticMapLayer names (or enum members) to their
    colour in [0, 1]. It is a dict or a list of (layer, colour) pairs, and its
    order is the drawing order.
    """

    map_features: Optional[MapFeatures] = None
    target_width: Optional[int] = None  # [px]
    target_height: Optional[int] = None  # [px]
    target_pixel_size: Optional[float] = None  # [m]
    ego_width: Optional[float] = None  # [m]
    ego_front_length: Optional[float] = None  # [m] rear axle to front bumper
    ego_rear_length: Optional[float] = None  # [m] rear axle to rear bumper
    ego_longitudinal_offset: Optional[float] = None  # fraction of the raster; 0.0 puts the ego at the centre
    baseline_path_thickness: Optional[int] = None  # [px]
    roadmap_mode: Optional[Union[RoadmapMode, int, str]] = None

    def to_proto(self) -> pb2.RasterConfig:
        """Convert to a rasterd.v1.RasterConfig message, setting only the fields that are not None."""
        message = pb2.RasterConfig()

        if self.map_features is not None:
            for layer, color in map_feature_pairs(self.map_features):
                message.map_features.add(layer=layer, color=color)

        for name in _INT_CONFIG_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(message, name, _integral(name, value))

        for name in _FLOAT_CONFIG_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(message, name, float(value))

        if self.roadmap_mode is not None:
            message.roadmap_mode = int(RoadmapMode.parse(self.roadmap_mode))

        return message


def map_feature_pairs(map_features: MapFeatures) -> List[Tuple[str, float]]:
    """Convert map features (dict or pairs, layer names or enum members) to ordered (name, colour) pairs."""
    items: Iterable[Tuple[Any, float]]
    if isinstance(map_features, Mapping):
        items = map_features.items()
    else:
        items = map_features

    pairs = []
    for item in items:
        try:
            layer, color = item
        except (TypeError, ValueError):
            raise ValueError(f"map feature must be a (layer, colour) pair, got {item!r}") from None
        layer_name = layer if isinstance(layer, str) else getattr(layer, "name", None)
        if not isinstance(layer_name, str):
            raise TypeError(f"map feature layer must be a name or an enum member, got {layer!r}")
        pairs.append((layer_name, float(color)))
    return pairs


def _integral(name: str, value: Any) -> int:
    """Return `value` as an int, raising ValueError (naming the field) unless it is integral."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise ValueError(f"{name} must be an integer, got {value!r}")


@dataclass(frozen=True)
class RasterRequest:
    """One step for RasterClient.rasterize_batch: the arguments of RasterClient.rasterize."""

    map_name: str
    ego: Union[EgoState, Pose]
    tracked_objects: Sequence[TrackedObject] = ()
    config: Optional[RasterConfig] = None


def build_request(
    map_name: str,
    ego: Union[EgoState, Pose],
    tracked_objects: Iterable[TrackedObject],
    config: Optional[RasterConfig] = None,
    include_timings: bool = False,
) -> pb2.RasterizeRequest:
    """Build a rasterd.v1.RasterizeRequest; a bare Pose is taken as the rear axle of a Pacifica."""
    if isinstance(ego, Pose):
        ego = EgoState(rear_axle=ego)
    if not isinstance(ego, EgoState):
        raise TypeError(f"ego must be an EgoState or a Pose, got {type(ego).__name__}")

    request = pb2.RasterizeRequest(map_name=map_name, ego=ego.to_proto(), include_timings=include_timings)
    request.tracked_objects.extend([tracked_object.to_proto() for tracked_object in tracked_objects])
    if config is not None:
        request.config.CopyFrom(config.to_proto())
    return request


_NUMPY_DTYPES = {
    pb2.FLOAT32: np.dtype("<f4"),
    pb2.FLOAT16: np.dtype("<f2"),
    pb2.UINT8: np.dtype("u1"),
}


def tensor_to_array(tensor: pb2.Tensor) -> np.ndarray:
    """Return the tensor's data as a read-only numpy view of its bytes, shaped as `tensor.shape`.

    The server sends float32 rasters, little-endian and row-major, so the result is
    (H, W, C) float32. The array wraps the message's `data` bytes object through
    np.frombuffer without a further copy, so it is read-only. Call `.copy()` for a
    writable array. Raises ValueError if the byte count does not match the shape.
    """
    dtype = _NUMPY_DTYPES.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unsupported tensor dtype {tensor.dtype}")

    shape = tuple(int(size) for size in tensor.shape)
    data = tensor.data
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_bytes:
        raise ValueError(f"tensor of shape {shape} and dtype {dtype} needs {expected_bytes} bytes, got {len(data)}")

    return np.frombuffer(data, dtype=dtype).reshape(shape)


@dataclass(frozen=True)
class StageTimings:
    """Server-side time per stage of one raster [us]."""

    map_query_us: float
    roadmap_us: float
    agents_us: float
    baselines_us: float
    ego_us: float
    serialization_us: float
    total_us: float

    @classmethod
    def from_proto(cls, message: pb2.StageTimings) -> "StageTimings":
        """Convert from a rasterd.v1.StageTimings message."""
        return cls(
            map_query_us=message.map_query_us,
            roadmap_us=message.roadmap_us,
            agents_us=message.agents_us,
            baselines_us=message.baselines_us,
            ego_us=message.ego_us,
            serialization_us=message.serialization_us,
            total_us=message.total_us,
        )


@dataclass(frozen=True)
class RasterResult:
    """A raster with its channel names ("ego", "agents", "roadmap", "baseline_paths") and stage timings."""

    raster: np.ndarray
    channels: List[str]
    timings: Optional[StageTimings]

    @classmethod
    def from_proto(cls, response: pb2.RasterizeResponse) -> "RasterResult":
        """Convert from a rasterd.v1.RasterizeResponse; timings is None when the server sent none."""
        timings = StageTimings.from_proto(response.timings) if response.HasField("timings") else None
        return cls(raster=tensor_to_array(response.raster), channels=list(response.channels), timings=timings)


@dataclass(frozen=True)
class MapInfo:
    """A map that the server has loaded, with its feature count per layer."""

    name: str
    version: str
    projected_crs: str
    layer_counts: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, message: pb2.MapInfo) -> "MapInfo":
        """Convert from a rasterd.v1.MapInfo message."""
        return cls(
            name=message.name,
            version=message.version,
            projected_crs=message.projected_crs,
            layer_counts=dict(message.layer_counts),
        )


@dataclass(frozen=True)
class ServerInfo:
    """Server version, active device ("cpu" or "cuda"), GPU name and memory [bytes], and loaded maps."""

    version: str
    device: str
    gpu_name: str
    gpu_memory_bytes: int
    maps: List[MapInfo]

    @classmethod
    def from_proto(cls, message: pb2.ServerInfo) -> "ServerInfo":
        """Convert from a rasterd.v1.ServerInfo message."""
        return cls(
            version=message.version,
            device=message.device,
            gpu_name=message.gpu_name,
            gpu_memory_bytes=message.gpu_memory_bytes,
            maps=[MapInfo.from_proto(map_info) for map_info in message.maps],
        )
