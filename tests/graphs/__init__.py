"""Graph tests; ``TINY_NET`` is the one-layer graph transformer their runs train."""

TINY_NET = {"name": "graph_transformer", "depth": 1, "width_x": 16, "width_e": 8, "width_y": 8, "heads": 2}
