"""Paths to the repository's fixtures and loaders for the parity sets (scenes and nuPlan's rasters)."""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from rasterd_client import EgoState, Pose, RasterConfig, TrackedObject

CLIENT_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT = CLIENT_ROOT.parents[1]
SHARED_FIXTURES = REPO_ROOT.parent / "shared" / "fixtures"
RASTERD_BIN = REPO_ROOT / "bin" / "rasterd.js"


def maps_root() -> Optional[Path]:
    """Return the maps root for the test server: $RASTERD_TEST_MAPS_ROOT, else the shared fixtures' maps."""
    candidates = [SHARED_FIXTURES / "maps", REPO_ROOT / "test" / "fixtures" / "maps"]
    override = os.environ.get("RASTERD_TEST_MAPS_ROOT")
    if override:
        candidates.insert(0, Path(override))
    for candidate in candidates:
        if (candidate / "nuplan-maps-v1.0.json").is_file():
            return candidate
    return None


def parity_set_dir(name: str) -> Optional[Path]:
    """Return the folder of parity set `name`: the repository's copy, else the shared fixtures' one."""
    for candidate in (REPO_ROOT / "test" / "fixtures" / "parity" / name, SHARED_FIXTURES / "parity" / name):
        if (candidate / "scenes.json").is_file():
            return candidate
    return None


@dataclass
class ParityScene:
    """One planner step of a parity set, converted to client types."""

    id: str
    ego: EgoState
    tracked_objects: List[TrackedObject]
    raw: Dict[str, Any]


@dataclass
class ParitySet:
    """A parity set: its map, the builder settings that differ from nuPlan's defaults, and its scenes."""

    directory: Path
    map_name: str
    config: Optional[RasterConfig]
    raw_config: Dict[str, Any]
    scenes: List[ParityScene]

    def expected(self, scene_id: str) -> np.ndarray:
        """Load nuPlan's raster for a scene: gzip of little-endian float32, shaped like the set's rasters."""
        with gzip.open(self.directory / "expected" / f"{scene_id}.f32.gz", "rb") as file:
            data = file.read()
        width = self.raw_config.get("target_width", 224)
        height = self.raw_config.get("target_height", 224)
        return np.frombuffer(data, dtype="<f4").reshape(width, height, 4)


def load_parity_set(name: str) -> Optional[ParitySet]:
    """Load parity set `name`, or return None when neither copy exists."""
    directory = parity_set_dir(name)
    if directory is None:
        return None

    with open(directory / "scenes.json", encoding="utf-8") as file:
        document = json.load(file)

    raw_config = document.get("config") or {}
    scenes = [_scene_from_fixture(scene) for scene in document["scenes"]]
    config = RasterConfig(**raw_config) if raw_config else None
    return ParitySet(directory, document["map"], config, raw_config, scenes)


def _scene_from_fixture(scene: Dict[str, Any]) -> ParityScene:
    ego = scene["ego"]
    tracked_objects = [
        TrackedObject(
            center=Pose(agent["x"], agent["y"], agent["heading"]),
            length=agent["length"],
            width=agent["width"],
            height=agent["height"],
            type=agent["type"],
            track_token=agent.get("track_token", ""),
        )
        for agent in scene["agents"]
    ]
    return ParityScene(
        id=scene["id"],
        ego=EgoState(rear_axle=Pose(ego["x"], ego["y"], ego["heading"])),
        tracked_objects=tracked_objects,
        raw=scene,
    )


def describe_mismatch(actual: np.ndarray, expected: np.ndarray) -> str:
    """Summarize where two rasters of equal shape differ, per channel, for an assertion message."""
    channel_names = ["ego", "agents", "roadmap", "baseline_paths"]
    different = actual.view(np.uint32) != expected.view(np.uint32)
    parts = []
    for channel in range(actual.shape[-1]):
        count = int(different[..., channel].sum())
        if count:
            name = channel_names[channel] if channel < len(channel_names) else str(channel)
            max_difference = float(np.abs(actual[..., channel] - expected[..., channel]).max())
            parts.append(f"{name}: {count} values differ, max |difference| {max_difference:.3g}")
    return "; ".join(parts) or "no difference"
