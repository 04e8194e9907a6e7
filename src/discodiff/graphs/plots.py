"""Pictures of graphs: a grid of drawings (networkx spring layouts, fixed seed), node colours by
category, known parts of a completed graph in black."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import networkx as nx

from .io import Graph

GRID_GRAPHS = 16
"""At most this many graphs per picture."""
LAYOUT_SEED = 0


def draw_graph(ax, graph: Graph, *, known_nodes: Sequence[int] = (), title: str | None = None) -> None:
    """One graph on ``ax``: nodes coloured by category (tab10), known nodes and their edges black."""
    g = graph.to_networkx()
    pos = nx.spring_layout(g, seed=LAYOUT_SEED) if g.number_of_nodes() else {}
    labels = graph.node_labels if graph.node_labels is not None else [0] * graph.num_nodes
    known = set(known_nodes)
    colours = ["black" if v in known else plt.cm.tab10(int(labels[v]) % 10) for v in g.nodes()]
    edge_colours = ["black" if u in known and v in known else "0.55" for u, v in g.edges()]
    size = max(8.0, 120.0 / math.sqrt(max(graph.num_nodes, 1)))
    nx.draw_networkx_edges(g, pos, ax=ax, edge_color=edge_colours, width=0.6)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colours, node_size=size, linewidths=0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=7)


def graph_grid(
    graphs: Sequence[Graph],
    path: Path,
    *,
    known_nodes: Sequence[Sequence[int]] | None = None,
    titles: Sequence[str] | None = None,
) -> Path:
    """Draw up to :data:`GRID_GRAPHS` graphs in a square grid and save a PNG."""
    graphs = list(graphs)[:GRID_GRAPHS]
    cols = max(1, math.ceil(math.sqrt(len(graphs))))
    rows = max(1, math.ceil(len(graphs) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(graphs):
            title = titles[i] if titles else f"n={graphs[i].num_nodes}, m={graphs[i].num_edges}"
            draw_graph(ax, graphs[i], known_nodes=known_nodes[i] if known_nodes else (), title=title)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
