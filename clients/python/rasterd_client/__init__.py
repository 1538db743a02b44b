"""Python client for rasterd, a gRPC service that builds nuPlan's bird's-eye-view raster features.

    from rasterd_client import RasterClient, EgoState, Pose, TrackedObject

    with RasterClient("localhost:50051") as client:
        raster = client.rasterize("us-nv-las-vegas-strip", EgoState(Pose(x, y, heading)), objects)

`rasterd_client.nuplan` contains RemoteRasterFeatureBuilder, a drop-in for nuPlan's
RasterFeatureBuilder. Importing it needs nuplan-devkit.
"""

from rasterd_client.client import DEFAULT_TARGET, RasterClient, RasterStream
from rasterd_client.errors import (
    RasterdDeadlineError,
    RasterdError,
    RasterdInvalidArgumentError,
    RasterdNotFoundError,
    RasterdUnavailableError,
)
from rasterd_client.types import (
    EgoState,
    MapInfo,
    Pose,
    RasterConfig,
    RasterRequest,
    RasterResult,
    RoadmapMode,
    ServerInfo,
    StageTimings,
    TrackedObject,
    TrackedObjectType,
    VehicleParameters,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TARGET",
    "EgoState",
    "MapInfo",
    "Pose",
    "RasterClient",
    "RasterConfig",
    "RasterRequest",
    "RasterResult",
    "RasterStream",
    "RasterdDeadlineError",
    "RasterdError",
    "RasterdInvalidArgumentError",
    "RasterdNotFoundError",
    "RasterdUnavailableError",
    "RoadmapMode",
    "ServerInfo",
    "StageTimings",
    "TrackedObject",
    "TrackedObjectType",
    "VehicleParameters",
]
