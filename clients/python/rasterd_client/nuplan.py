"""RemoteRasterFeatureBuilder: nuPlan's RasterFeatureBuilder, computed by a rasterd server.

Swap it in for nuPlan's builder in a model config: it takes the same arguments,
plus the server address, and returns the same Raster feature. Importing this
module needs nuplan-devkit. Attribute names follow nuplan-devkit's main branch.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

try:
    from nuplan.planning.simulation.observation.observation_type import DetectionsTracks
    from nuplan.planning.training.preprocessing.feature_builders.abstract_feature_builder import (
        AbstractFeatureBuilder,
    )
    from nuplan.planning.training.preprocessing.features.raster import Raster
except ImportError as error:
    raise ImportError(
        "rasterd_client.nuplan needs nuplan-devkit and its dependencies "
        f"(importing {error.name or 'nuplan'} failed: {error}). Install it with: pip install nuplan-devkit"
    ) from error

from rasterd_client.client import DEFAULT_TARGET, RasterClient
from rasterd_client.types import (
    EgoState,
    Pose,
    RasterConfig,
    RoadmapMode,
    TrackedObject,
    TrackedObjectType,
    VehicleParameters,
)

if TYPE_CHECKING:
    from nuplan.common.actor_state.ego_state import EgoState as NuplanEgoState
    from nuplan.common.maps.abstract_map import AbstractMap
    from nuplan.planning.scenario_builder.abstract_scenario import AbstractScenario
    from nuplan.planning.simulation.planner.abstract_planner import PlannerInitialization, PlannerInput
    from nuplan.planning.training.preprocessing.features.abstract_model_feature import AbstractModelFeature


class RemoteRasterFeatureBuilder(AbstractFeatureBuilder):
    """Build nuPlan's "raster" feature on a rasterd server.

    The raster is (target_width, target_height, 4) float32 with the channels ego,
    agents, roadmap and baseline paths, equal bit for bit to RasterFeatureBuilder's
    in the server's exact roadmap mode. The map name comes from `map_api.map_name`,
    so the server must have loaded that map.

    The gRPC client is created on first use in each process and left out when the
    builder is pickled, so the builder can be sent to worker processes.
    """

    def __init__(
        self,
        map_features: Union[Mapping[str, float], Sequence[Tuple[str, float]]],
        num_input_channels: int,
        target_width: int,
        target_height: int,
        target_pixel_size: float,
        ego_width: float,
        ego_front_length: float,
        ego_rear_length: float,
        ego_longitudinal_offset: float,
        baseline_path_thickness: int,
        target: str = DEFAULT_TARGET,
        timeout: Optional[float] = 10.0,
        roadmap_mode: Optional[Union[RoadmapMode, str]] = None,
        copy_raster: bool = True,
    ) -> None:
        """Store the raster settings and the server address.

        :param map_features: SemanticMapLayer name -> colour in [0, 1], in drawing order.
        :param num_input_channels: channels that the model expects. The raster has 4.
        :param target_width: [px] raster width.
        :param target_height: [px] raster height.
        :param target_pixel_size: [m] pixel size.
        :param ego_width: [m] ego box width.
        :param ego_front_length: [m] rear axle to front bumper.
        :param ego_rear_length: [m] rear axle to rear bumper.
        :param ego_longitudinal_offset: fraction of the raster to shift the ego by; 0.0 centres it.
        :param baseline_path_thickness: [px] baseline path line thickness.
        :param target: rasterd server address, "host:port".
        :param timeout: [s] deadline of each call; None waits forever.
        :param roadmap_mode: None or "exact" for nuPlan's roadmap, "tiles" for the faster approximation.
        :param copy_raster: return a writable copy, like nuPlan's builder; False returns the read-only
            view of the response bytes and saves one copy per step.
        """
        self.map_features = map_features
        self.num_input_channels = num_input_channels
        self.target_width = target_width
        self.target_height = target_height
        self.target_pixel_size = target_pixel_size
        self.ego_width = ego_width
        self.ego_front_length = ego_front_length
        self.ego_rear_length = ego_rear_length
        self.ego_longitudinal_offset = ego_longitudinal_offset
        self.baseline_path_thickness = baseline_path_thickness
        self.target = target
        self.timeout = timeout
        self.copy_raster = copy_raster

        self.raster_config = RasterConfig(
            map_features=list(map_features.items()) if isinstance(map_features, Mapping) else list(map_features),
            target_width=target_width,
            target_height=target_height,
            target_pixel_size=target_pixel_size,
            ego_width=ego_width,
            ego_front_length=ego_front_length,
            ego_rear_length=ego_rear_length,
            ego_longitudinal_offset=ego_longitudinal_offset,
            baseline_path_thickness=baseline_path_thickness,
            roadmap_mode=roadmap_mode,
        )
        # Convert now so that a bad setting fails at construction, not at the first step.
        self.raster_config.to_proto()

        self._client: Optional[RasterClient] = None
        self._client_pid: Optional[int] = None

    @classmethod
    def get_feature_unique_name(cls) -> str:
        """Return "raster", the name under which nuPlan's RasterFeatureBuilder stores its feature."""
        return "raster"

    @classmethod
    def get_feature_type(cls) -> Type[AbstractModelFeature]:
        """Return nuPlan's Raster feature class."""
        return Raster  # type: ignore[no-any-return]

    def get_features_from_scenario(self, scenario: AbstractScenario) -> Raster:
        """Rasterize the scenario's initial ego state and tracked objects."""
        return self.compute_feature(scenario.initial_ego_state, scenario.initial_tracked_objects, scenario.map_api)

    def get_features_from_simulation(
        self, current_input: PlannerInput, initialization: PlannerInitialization
    ) -> Raster:
        """Rasterize the newest ego state and observation of the simulation history.

        Raises TypeError unless the observation is DetectionsTracks.
        """
        history = current_input.history
        ego_state = history.ego_states[-1]
        observation = history.observations[-1]
        if not isinstance(observation, DetectionsTracks):
            raise TypeError(
                f"RemoteRasterFeatureBuilder needs DetectionsTracks observations, got {type(observation).__name__}"
            )
        return self.compute_feature(ego_state, observation, initialization.map_api)

    def compute_feature(self, ego_state: NuplanEgoState, detections: DetectionsTracks, map_api: AbstractMap) -> Raster:
        """Send one step to the server and wrap the raster in nuPlan's Raster.

        Raises RuntimeError when the raster's channel count differs from
        num_input_channels, as RasterFeatureBuilder does, and RasterdError
        subclasses when the call fails.
        """
        raster = self.client.rasterize(
            map_api.map_name,
            ego_state_from_nuplan(ego_state),
            tracked_objects_from_nuplan(detections),
            self.raster_config,
        )
        if raster.ndim != 3 or raster.shape[-1] != self.num_input_channels:
            raise RuntimeError(
                f"raster from {self.target} has shape {raster.shape}, "
                f"expected {self.num_input_channels} channels in the last dimension"
            )
        if self.copy_raster:
            raster = raster.copy()
        return Raster(data=raster)

    @property
    def client(self) -> RasterClient:
        """The RasterClient of this process, created on first use."""
        # gRPC channels do not survive fork, so a forked worker opens its own.
        pid = os.getpid()
        if self._client is None or self._client_pid != pid:
            self._client = RasterClient(self.target, timeout=self.timeout)
            self._client_pid = pid
        return self._client

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_client_pid"] = None
        return state


def ego_state_from_nuplan(ego_state: NuplanEgoState) -> EgoState:
    """Convert nuPlan's EgoState: the rear-axle pose and `car_footprint.vehicle_parameters`."""
    rear_axle = ego_state.rear_axle
    parameters = ego_state.car_footprint.vehicle_parameters
    vehicle = VehicleParameters(
        width=parameters.width,
        front_length=parameters.front_length,
        rear_length=parameters.rear_length,
        wheel_base=parameters.wheel_base,
        cog_position_from_rear_axle=parameters.cog_position_from_rear_axle,
        # nuPlan's VehicleParameters.height may be None. The raster does not use it.
        height=parameters.height if parameters.height is not None else 0.0,
    )
    return EgoState(rear_axle=Pose(rear_axle.x, rear_axle.y, rear_axle.heading), vehicle=vehicle)


def tracked_objects_from_nuplan(detections: DetectionsTracks) -> List[TrackedObject]:
    """Convert DetectionsTracks to TrackedObjects, keeping nuPlan's order (TrackedObjects sorts by type)."""
    converted = []
    for tracked_object in detections.tracked_objects.tracked_objects:
        center = tracked_object.center
        box = tracked_object.box
        converted.append(
            TrackedObject(
                center=Pose(center.x, center.y, center.heading),
                length=box.length,
                width=box.width,
                height=box.height,
                type=_object_type_from_nuplan(tracked_object.tracked_object_type),
                track_token=tracked_object.track_token or "",
            )
        )
    return converted


def _object_type_from_nuplan(object_type: Any) -> TrackedObjectType:
    """Map nuPlan's TrackedObjectType to ours by its integer value, checking that the names agree."""
    member = TrackedObjectType.parse(int(object_type.value))
    fullname = getattr(object_type, "fullname", None)
    if fullname is not None and fullname.upper() != member.name:
        raise ValueError(f"nuPlan tracked object type {fullname!r} has value {member.value}, which rasterd calls {member.name.lower()!r}")
    return member
