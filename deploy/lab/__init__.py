"""The multi-host lab: siku nodes in Linux network namespaces (run `python -m deploy.lab`)."""

from deploy.lab.lab import PORT, Lab, LabNode, LabSpec, layout
from deploy.lab.netns import (
    Host,
    LabError,
    LinkStats,
    Segment,
    Shaping,
    clean_all,
    clean_stale,
    missing_requirements,
    segment,
)

__all__ = [
    "PORT",
    "Host",
    "Lab",
    "LabError",
    "LabNode",
    "LabSpec",
    "LinkStats",
    "Segment",
    "Shaping",
    "clean_all",
    "clean_stale",
    "layout",
    "missing_requirements",
    "segment",
]
