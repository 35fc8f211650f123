"""Span attributes say where a model lives, under the names the agent's spans use."""

from __future__ import annotations

from warmpath_common.convert import PlacementInfo
from warmpath_common.telemetry import placement_attributes


def test_an_offloaded_placement_names_its_gpus_layout_and_layers_in_host_ram() -> None:
    info = PlacementInfo(
        "offload",
        (0, 1),
        ("GPU-a", "GPU-b"),
        layer_shares=(0.5, 0.5),
        gpu_layers=60,
        total_layers=80,
        host_memory_bytes=1024,
        expected_slowdown=3.25,
        description="20 of 80 layers offloaded to host RAM, 60 on GPUs 0, 1",
        reason="fits on no set of GPUs",
    )
    attributes = placement_attributes(info)
    assert attributes["warmpath.gpu.indexes"] == [0, 1]
    assert attributes["warmpath.gpu.uuids"] == ["GPU-a", "GPU-b"]
    assert attributes["warmpath.placement.layout"] == "offload"
    assert attributes["warmpath.placement.offloaded_layers"] == 20
    assert attributes["warmpath.placement.total_layers"] == 80
    assert attributes["warmpath.placement.expected_slowdown"] == 3.25
    assert attributes["warmpath.placement.host_memory_bytes"] == 1024
    assert attributes["warmpath.placement.reason"] == "fits on no set of GPUs"
    assert "offloaded to host RAM" in str(attributes["warmpath.placement"])


def test_a_single_gpu_placement_carries_no_offload_attributes() -> None:
    attributes = placement_attributes(PlacementInfo("single", (2,), ("GPU-c",)))
    assert attributes["warmpath.gpu.indexes"] == [2]
    assert attributes["warmpath.placement.layout"] == "single"
    assert not any("offloaded" in key or "reason" in key for key in attributes)
