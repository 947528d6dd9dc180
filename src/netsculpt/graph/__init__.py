"""Read-only views of a model: the captured ATen graph, channel groups, and (elsewhere) blocks."""

from netsculpt.graph.capture import Captured, capture, normalize_inputs, run_model
from netsculpt.graph.channels import Group, Member, StructureGraph, build_graph

__all__ = [
    "Captured",
    "Group",
    "Member",
    "StructureGraph",
    "build_graph",
    "capture",
    "normalize_inputs",
    "run_model",
]
