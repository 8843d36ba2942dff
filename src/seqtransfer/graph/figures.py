"""Figures of the graph: the graph with landmark and path (paper Fig. 1 and 3), the heatmap."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402

from seqtransfer.core.atomic import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def node_order(graph: nx.Graph) -> list[str]:
    """Nodes sorted by role, collection, site, modality, objective (blocks in the heatmap)."""

    def key(n: str) -> tuple[str, ...]:
        d = graph.nodes[n]
        return (
            d.get("role", ""),
            d.get("collection", ""),
            d.get("site", ""),
            d.get("modality", ""),
            d.get("objective", ""),
        )

    return sorted(graph.nodes, key=key)


def plot_graph(
    graph: nx.Graph,
    path: Path,
    target: str | None = None,
    landmark: str | None = None,
    transfer_path: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw the source graph; highlight the target, the landmark and the transfer path.

    Nodes are placed by Kamada-Kawai with the affinity w as the distance, so close tasks sit
    close; colour is the modality, marker size the number of training samples.
    """
    shown = graph
    if target is not None:
        # the target's edges to non-candidates (same site) are not drawn
        keep = [n for n, d in graph.nodes(data=True) if d.get("role") == "source" or n == target]
        shown = graph.subgraph(keep)
    else:
        shown = graph.subgraph([n for n, d in graph.nodes(data=True) if d.get("role") == "source"])
    fig, ax = plt.subplots(figsize=(10, 8))
    if shown.number_of_nodes() == 0:
        ax.set_axis_off()
        return _save(fig, path)
    dist = dict(nx.shortest_path_length(shown, weight="weight")) if shown.number_of_edges() else {}
    try:
        pos = nx.kamada_kawai_layout(shown, dist=dist) if dist else nx.circular_layout(shown)
    except Exception:  # disconnected or degenerate: fall back to a force layout
        pos = nx.spring_layout(shown, seed=0)
    modalities = sorted({d.get("modality", "") for _, d in shown.nodes(data=True)})
    cmap = plt.get_cmap("tab10")
    colour = {m: cmap(i % 10) for i, m in enumerate(modalities)}
    weights = (
        np.array([d["weight"] for _, _, d in shown.edges(data=True)]) if shown.number_of_edges() else np.array([1.0])
    )
    w_lo, w_hi = float(weights.min()), float(weights.max())
    alphas = [0.05 + 0.25 * (1 - (d["weight"] - w_lo) / (w_hi - w_lo + 1e-12)) for _, _, d in shown.edges(data=True)]
    nx.draw_networkx_edges(shown, pos, ax=ax, edge_color="grey", alpha=alphas, width=0.6)
    sizes = [30 + 4 * float(d.get("n_train", 1)) for _, d in shown.nodes(data=True)]
    nx.draw_networkx_nodes(
        shown,
        pos,
        ax=ax,
        node_color=[colour[d.get("modality", "")] for _, d in shown.nodes(data=True)],
        node_size=sizes,
        linewidths=0.5,
        edgecolors="black",
    )
    if transfer_path and len(transfer_path) > 1:
        path_edges = list(pairwise(transfer_path))
        nx.draw_networkx_edges(shown, pos, edgelist=path_edges, ax=ax, edge_color="crimson", width=3.0)
        nx.draw_networkx_nodes(
            shown,
            pos,
            nodelist=list(transfer_path[1:-1]),
            ax=ax,
            node_color="orange",
            node_size=160,
            edgecolors="black",
        )
    if landmark is not None and landmark in shown:
        nx.draw_networkx_nodes(
            shown,
            pos,
            nodelist=[landmark],
            ax=ax,
            node_color="crimson",
            node_shape="*",
            node_size=600,
            edgecolors="black",
        )
    if target is not None and target in shown:
        nx.draw_networkx_nodes(
            shown,
            pos,
            nodelist=[target],
            ax=ax,
            node_color="limegreen",
            node_shape="s",
            node_size=300,
            edgecolors="black",
        )
    labelled = set(transfer_path or []) | {n for n in (target, landmark) if n}
    if shown.number_of_nodes() <= 30:
        labelled = set(shown.nodes)
    nx.draw_networkx_labels(shown, pos, labels={n: n for n in labelled if n in shown}, ax=ax, font_size=7)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colour[m], label=m) for m in modalities]
    if landmark:
        handles.append(plt.Line2D([], [], marker="*", ls="", color="crimson", markersize=12, label="landmark"))
    if target:
        handles.append(plt.Line2D([], [], marker="s", ls="", color="limegreen", label="target"))
    if transfer_path and len(transfer_path) > 2:
        handles.append(plt.Line2D([], [], color="crimson", lw=3, label="transfer path"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title or (f"Source graph and transfer path to {target}" if target else "Source graph"))
    ax.set_axis_off()
    return _save(fig, path)


def plot_heatmap(graph: nx.Graph, path: Path, attribute: str = "weight", title: str | None = None) -> Path:
    """Heatmap of an edge attribute between all nodes (blank where no edge)."""
    order = node_order(graph)
    index = {n: i for i, n in enumerate(order)}
    matrix = np.full((len(order), len(order)), np.nan)
    for a, b, d in graph.edges(data=True):
        matrix[index[a], index[b]] = matrix[index[b], index[a]] = d[attribute]
    size = max(6.0, min(22.0, 0.16 * len(order) + 3))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="viridis_r" if attribute == "weight" else "viridis", interpolation="nearest")
    fig.colorbar(
        image,
        ax=ax,
        shrink=0.7,
        label={"weight": "affinity w (distance)", "H": "image distance H", "R": "label similarity R"}.get(
            attribute, attribute
        ),
    )
    if len(order) <= 160:
        font = 6 if len(order) <= 60 else 4
        ax.set_xticks(range(len(order)), order, rotation=90, fontsize=font)
        ax.set_yticks(range(len(order)), order, fontsize=font)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    n_sources = sum(graph.nodes[n].get("role") == "source" for n in order)
    if 0 < n_sources < len(order):  # a line between the sources and the targets
        for line in (ax.axhline, ax.axvline):
            line(n_sources - 0.5, color="black", lw=0.8)
    ax.set_title(title or f"Task affinity ({attribute}); blank = no edge")
    return _save(fig, path)
