"""benchmarks/provenance.py: the block every study report opens with."""

import subprocess
from importlib import metadata

import numpy as np

from benchmarks.provenance import REPO, provenance, with_provenance


def test_provenance_records_commit_versions_hardware_and_command():
    record = provenance(["benchmarks/trend.py", "--steps", "300", "train.precision=bf16"])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert record["commit"] == head.stdout.strip()
    assert record["libraries"]["numpy"] == np.__version__
    assert record["libraries"]["torch"] == metadata.version("torch")
    assert record["cpu_count"] >= 1
    assert record["command"] == "python benchmarks/trend.py --steps 300 train.precision=bf16"


def test_the_block_follows_the_title():
    record = {"commit": "abc123", "uncommitted_changes": True, "python": "3.11.7",
              "libraries": {"numpy": "2.4.6", "jax": "not installed"}, "platform": "Linux-x86_64",
              "cpu": "AMD EPYC", "cpu_count": 2, "command": "python benchmarks/trend.py --steps 3"}
    text = with_provenance("# Trend study\n\nCIFAR-10, 3 steps.\n", record)
    assert text.splitlines()[:4] == ["# Trend study", "", "## Provenance", ""]
    assert "- commit: `abc123` (with uncommitted changes)" in text
    assert "- libraries: Python 3.11.7, numpy 2.4.6, jax not installed" in text
    assert "- hardware: AMD EPYC, 2 CPUs, Linux-x86_64" in text
    assert "- command: `python benchmarks/trend.py --steps 3`" in text
    assert text.endswith("\nCIFAR-10, 3 steps.\n")
    untitled = with_provenance("| a | b |\n", record)
    assert untitled.startswith("## Provenance") and untitled.endswith("| a | b |\n")
