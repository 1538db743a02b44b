"""Stand-ins for the nuplan-devkit classes that rasterd_client.nuplan touches.

Attribute and module names follow nuplan-devkit's main branch, so the adapter
under test reads exactly what it would read from nuPlan's objects. Only the
attributes the adapter needs are here. `install(monkeypatch)` puts these classes
into sys.modules as fake `nuplan.*` modules for one test.
"""

from __future__ import annotations

import abc
import enum
import sys
import types
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np


# RasterFeatureBuilder's arguments in nuPlan's raster_model.yaml.
RASTER_MODEL_ARGUMENTS: Dict[str, Any] = dict(
    map_features={"LANE": 1.0, "INTERSECTION": 1.0, "STOP_LINE": 0.5, "CROSSWALK": 0.5},
    num_input_channels=4,
    target_width=224,
    target_height=224,
    target_pixel_size=0.5,
    ego_width=2.297,
    ego_front_length=4.049,
    ego_rear_length=1.127,
    ego_longitudinal_offset=0.0,
    baseline_path_thickness=1,
)


@dataclass(frozen=True)
class StateSE2:
    """nuplan.common.actor_state.state_representation.StateSE2: x, y [m] and heading [rad]."""

    x: float
    y: float
    heading: float


class VehicleParameters:
    """nuplan.common.actor_state.vehicle_parameters.VehicleParameters, constructor order included."""

    def __init__(
        self,
        width: float,
        front_length: float,
        rear_length: float,
        cog_position_from_rear_axle: float,
        wheel_base: float,
        vehicle_name: str,
        vehicle_type: str,
        height: Optional[float] = None,
    ) -> None:
        self.width = width
        self.front_length = front_length
        self.rear_length = rear_length
        self.cog_position_from_rear_axle = cog_position_from_rear_axle
        self.wheel_base = wheel_base
        self.vehicle_name = vehicle_name
        self.vehicle_type = vehicle_type
        self.height = height
        self.length = front_length + rear_length


def pacifica_parameters() -> VehicleParameters:
    """nuPlan's default ego vehicle [m]."""
    return VehicleParameters(2.297, 4.049, 1.127, 1.67, 3.089, "pacifica", "gen1", 1.777)


@dataclass
class CarFootprint:
    """nuplan.common.actor_state.car_footprint.CarFootprint: only `vehicle_parameters` is read."""

    rear_axle: StateSE2
    vehicle_parameters: VehicleParameters


class EgoState:
    """nuplan.common.actor_state.ego_state.EgoState: `rear_axle` and `car_footprint` are read."""

    def __init__(self, rear_axle: StateSE2, vehicle_parameters: VehicleParameters) -> None:
        self._car_footprint = CarFootprint(rear_axle, vehicle_parameters)

    @property
    def rear_axle(self) -> StateSE2:
        return self._car_footprint.rear_axle

    @property
    def car_footprint(self) -> CarFootprint:
        return self._car_footprint


class TrackedObjectType(enum.Enum):
    """nuplan.common.actor_state.tracked_objects_types.TrackedObjectType: `.value` is the int, `.fullname` the name."""

    VEHICLE = 0
    PEDESTRIAN = 1
    BICYCLE = 2
    TRAFFIC_CONE = 3
    BARRIER = 4
    CZONE_SIGN = 5
    GENERIC_OBJECT = 6
    EGO = 7

    @property
    def fullname(self) -> str:
        return self.name.lower()


@dataclass
class OrientedBox:
    """nuplan.common.actor_state.oriented_box.OrientedBox: centre pose and size [m]."""

    center: StateSE2
    length: float
    width: float
    height: float


class Agent:
    """nuplan.common.actor_state.agent.Agent, through SceneObject: box, type, track token."""

    def __init__(self, tracked_object_type: TrackedObjectType, oriented_box: OrientedBox, track_token: Optional[str]):
        self._tracked_object_type = tracked_object_type
        self._box = oriented_box
        self._track_token = track_token

    @property
    def tracked_object_type(self) -> TrackedObjectType:
        return self._tracked_object_type

    @property
    def box(self) -> OrientedBox:
        return self._box

    @property
    def center(self) -> StateSE2:
        return self._box.center

    @property
    def track_token(self) -> Optional[str]:
        return self._track_token


class TrackedObjects:
    """nuplan.common.actor_state.tracked_objects.TrackedObjects, which sorts its objects by type value."""

    def __init__(self, tracked_objects: Optional[List[Agent]] = None) -> None:
        self.tracked_objects = sorted(tracked_objects or [], key=lambda item: item.tracked_object_type.value)


class Observation(abc.ABC):
    """nuplan.planning.simulation.observation.observation_type.Observation."""

    @classmethod
    def detection_type(cls) -> str:
        return cls.__name__


@dataclass
class DetectionsTracks(Observation):
    """nuplan.planning.simulation.observation.observation_type.DetectionsTracks."""

    tracked_objects: TrackedObjects


@dataclass
class Sensors(Observation):
    """nuplan.planning.simulation.observation.observation_type.Sensors."""

    pointcloud: Optional[Dict[Any, Any]] = None
    images: Optional[Dict[Any, Any]] = None


@dataclass
class FakeMap:
    """An AbstractMap with only `map_name`."""

    map_name: str


@dataclass
class SimulationHistoryBuffer:
    """nuplan.planning.simulation.history.simulation_history_buffer.SimulationHistoryBuffer, as lists."""

    ego_states: List[EgoState]
    observations: List[Observation]


@dataclass(frozen=True)
class PlannerInitialization:
    """nuplan.planning.simulation.planner.abstract_planner.PlannerInitialization."""

    route_roadblock_ids: List[str]
    mission_goal: StateSE2
    map_api: FakeMap


@dataclass(frozen=True)
class PlannerInput:
    """nuplan.planning.simulation.planner.abstract_planner.PlannerInput."""

    iteration: Any
    history: SimulationHistoryBuffer
    traffic_light_data: Optional[List[Any]] = None


@dataclass
class FakeScenario:
    """An AbstractScenario with only its initial state and map."""

    initial_ego_state: EgoState
    initial_tracked_objects: DetectionsTracks
    map_api: FakeMap


class AbstractModelFeature(abc.ABC):
    """nuplan.planning.training.preprocessing.features.abstract_model_feature.AbstractModelFeature."""


@dataclass
class Raster(AbstractModelFeature):
    """nuplan.planning.training.preprocessing.features.raster.Raster: `data` is (H, W, C) or batched."""

    data: np.ndarray

    def __post_init__(self) -> None:
        if self.data.ndim not in (3, 4):
            raise RuntimeError(f"Raster needs 3 or 4 dimensions, got {self.data.ndim}")


class AbstractFeatureBuilder(abc.ABC):
    """nuplan.planning.training.preprocessing.feature_builders.abstract_feature_builder.AbstractFeatureBuilder."""

    @classmethod
    @abc.abstractmethod
    def get_feature_type(cls) -> Any:
        ...

    @classmethod
    @abc.abstractmethod
    def get_feature_unique_name(cls) -> str:
        ...

    @abc.abstractmethod
    def get_features_from_simulation(self, current_input: PlannerInput, initialization: PlannerInitialization) -> Any:
        ...

    @abc.abstractmethod
    def get_features_from_scenario(self, scenario: FakeScenario) -> Any:
        ...


# Fake module name -> the names it exports.
MODULE_CONTENTS: Dict[str, Dict[str, Any]] = {
    "nuplan.common.actor_state.state_representation": {"StateSE2": StateSE2},
    "nuplan.common.actor_state.vehicle_parameters": {"VehicleParameters": VehicleParameters},
    "nuplan.common.actor_state.car_footprint": {"CarFootprint": CarFootprint},
    "nuplan.common.actor_state.ego_state": {"EgoState": EgoState},
    "nuplan.common.actor_state.tracked_objects_types": {"TrackedObjectType": TrackedObjectType},
    "nuplan.common.actor_state.oriented_box": {"OrientedBox": OrientedBox},
    "nuplan.common.actor_state.agent": {"Agent": Agent},
    "nuplan.common.actor_state.tracked_objects": {"TrackedObjects": TrackedObjects},
    "nuplan.planning.simulation.observation.observation_type": {
        "Observation": Observation,
        "DetectionsTracks": DetectionsTracks,
        "Sensors": Sensors,
    },
    "nuplan.planning.simulation.history.simulation_history_buffer": {
        "SimulationHistoryBuffer": SimulationHistoryBuffer
    },
    "nuplan.planning.simulation.planner.abstract_planner": {
        "PlannerInitialization": PlannerInitialization,
        "PlannerInput": PlannerInput,
    },
    "nuplan.planning.training.preprocessing.features.abstract_model_feature": {
        "AbstractModelFeature": AbstractModelFeature
    },
    "nuplan.planning.training.preprocessing.features.raster": {"Raster": Raster},
    "nuplan.planning.training.preprocessing.feature_builders.abstract_feature_builder": {
        "AbstractFeatureBuilder": AbstractFeatureBuilder,
        "AbstractModelFeature": AbstractModelFeature,
    },
}


def install(monkeypatch: Any) -> None:
    """Register the fake `nuplan.*` modules, and their parent packages, in sys.modules for one test."""
    modules: Dict[str, types.ModuleType] = {}
    for module_name, contents in MODULE_CONTENTS.items():
        parts = module_name.split(".")
        for depth in range(1, len(parts)):
            package_name = ".".join(parts[:depth])
            if package_name not in modules:
                package = types.ModuleType(package_name)
                package.__path__ = []  # marks it as a package
                modules[package_name] = package
        module = types.ModuleType(module_name)
        module.__dict__.update(contents)
        modules[module_name] = module

    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)


def make_agent(
    object_type: TrackedObjectType,
    x: float,
    y: float,
    heading: float,
    length: float,
    width: float,
    height: float,
    track_token: Optional[str] = None,
) -> Agent:
    """Build an Agent with a box centred at (x, y) [m] with `heading` [rad]."""
    return Agent(object_type, OrientedBox(StateSE2(x, y, heading), length, width, height), track_token)

