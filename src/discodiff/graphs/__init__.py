"""Graphs: the JSONL format, the synthetic benchmarks, and categorical diffusion over nodes and edges."""
