"""The placement simulator: synthetic traces replayed through the agent's eviction policy
and the usual alternatives, on simulated GPUs. bench/placement.py runs it; how it works
and which module holds what: docs/benchmarks.md, "How the placement simulator works"."""
