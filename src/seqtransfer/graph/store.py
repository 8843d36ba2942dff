"""The graph folder: everything a graph needs, written atomically.

::

    GRAPH_DIR/
        graph.json       networkx node-link data; edges carry weight, H and R
        params.json      the resolved GraphConfig, the H scale, versions
        pca.npz          the shared slice PCA (paper mode)
        features/        per-volume embeddings keyed by content hash and PCA fingerprint
        selections/      TARGET.json written by `seqtransfer select`
        figures/         PNGs written by `seqtransfer graph show`
"""

from __future__ import annotations

import json
import os
import platform
import zipfile
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from seqtransfer.affinity.slice_pca import SlicePCA
from seqtransfer.core.atomic import atomic_path, write_json
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.graph.config import GraphConfig


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers."""
    import importlib.metadata as md

    from seqtransfer import __version__

    versions = {"python": platform.python_version(), "seqtransfer": __version__}
    for name in ("numpy", "scipy", "scikit-learn", "scikit-image", "pot", "torch", "monai", "networkx", "nibabel"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return versions


class GraphStore:
    """Reads and writes one graph folder.

    Args:
        root: the graph folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def graph_path(self) -> Path:
        return self.root / "graph.json"

    @property
    def params_path(self) -> Path:
        return self.root / "params.json"

    @property
    def pca_path(self) -> Path:
        return self.root / "pca.npz"

    def selection_path(self, target: str) -> Path:
        """Where the selection of a target is stored."""
        return self.root / "selections" / f"{target}.json"

    def _feature_path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npy"

    def load_feature(self, key: str) -> np.ndarray | None:
        """A cached per-volume feature, or None when absent or unreadable."""
        path = self._feature_path(key)
        if not path.exists():
            return None
        try:
            return np.load(path)
        except (OSError, ValueError, EOFError):
            return None

    def save_feature(self, key: str, value: np.ndarray) -> None:
        """Cache a per-volume feature atomically."""
        with atomic_path(self._feature_path(key), suffix=".npy") as tmp:
            np.save(tmp, value)

    def _features_path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npz"

    def has_features(self, key: str) -> bool:
        """Whether a multi-array feature is cached (not whether it is readable)."""
        return self._features_path(key).exists()

    def load_features(self, key: str, names: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        """A cached multi-array feature with the given arrays, or None when absent or unreadable."""
        path = self._features_path(key)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return {name: data[name] for name in names}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
            return None

    def save_features(self, key: str, **arrays: np.ndarray) -> None:
        """Cache a multi-array feature atomically (one ``.npz``)."""
        with atomic_path(self._features_path(key), suffix=".npz") as tmp:
            np.savez(tmp, allow_pickle=False, **arrays)

    def has_feature(self, key: str) -> bool:
        """Whether a single-array feature is cached (not whether it is readable)."""
        return self._feature_path(key).exists()

    def save(
        self,
        graph: nx.Graph,
        config: GraphConfig,
        h_scale: float,
        pca: SlicePCA | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write graph, parameters and PCA (each atomically; the graph last)."""
        if pca is not None:
            with atomic_path(self.pca_path, suffix=".npz") as tmp:
                np.savez(
                    tmp,
                    slice_shape=np.array(pca.slice_shape),
                    mean=pca.mean,
                    components=pca.components,
                    explained_variance_ratio=pca.explained_variance_ratio,
                )
        params: dict[str, Any] = {
            "config": config.to_dict(),
            "h_scale": h_scale,
            "h_scale_rule": "median of H over source-source edges",
            "pca_fingerprint": pca.fingerprint() if pca is not None else None,
            "versions": package_versions(),
            # how many labelled cases each target has and how many stand for it in the affinity
            "targets": {
                n: {"labelled_cases": int(d.get("n_cases", 0)), "affinity_cases": len(d.get("affinity_cases", []))}
                for n, d in sorted(graph.nodes(data=True))
                if d.get("role") == "target"
            },
        }
        if self.params_path.exists():
            try:
                previous = json.loads(self.params_path.read_text())
                params["calibration"] = previous.get("calibration")
            except (OSError, json.JSONDecodeError):
                pass
        if extra:
            params.update(extra)
        write_json(self.params_path, params)
        write_json(self.graph_path, nx.node_link_data(graph, edges="links"))

    def load(self) -> tuple[nx.Graph, GraphConfig, float, SlicePCA | None]:
        """Read a stored graph.

        Raises:
            StoreError: the folder is not a graph folder, or a file is corrupt.
        """
        if not self.graph_path.is_file():
            raise StoreError(f"{self.graph_path}: not found (build one with `seqtransfer graph build`)")
        try:
            graph = nx.node_link_graph(json.loads(self.graph_path.read_text()), edges="links")
        except (OSError, json.JSONDecodeError, KeyError, TypeError, nx.NetworkXError) as exc:
            raise StoreError(f"{self.graph_path}: corrupt graph file ({exc})") from exc
        params = self.params()
        try:
            config = GraphConfig.from_dict(params["config"])
            h_scale = float(params["h_scale"])
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise StoreError(f"{self.params_path}: corrupt parameters ({exc})") from exc
        pca = None
        if self.pca_path.exists():
            try:
                with np.load(self.pca_path) as data:
                    pca = SlicePCA(
                        slice_shape=tuple(int(s) for s in data["slice_shape"]),  # type: ignore[arg-type]
                        mean=data["mean"],
                        components=data["components"],
                        explained_variance_ratio=data["explained_variance_ratio"],
                    )
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"{self.pca_path}: corrupt PCA file ({exc})") from exc
            for array in (pca.mean, pca.components, pca.explained_variance_ratio):
                array.setflags(write=False)  # its fingerprint is computed once
            if pca.fingerprint() != params.get("pca_fingerprint"):
                raise StoreError(f"{self.pca_path}: does not match params.json (fingerprint differs)")
        elif config.mode == "paper":
            raise StoreError(f"{self.pca_path}: not found (the graph folder is incomplete)")
        return graph, config, h_scale, pca

    def params(self) -> dict[str, Any]:
        """The raw parameters file.

        Raises:
            StoreError: missing or corrupt.
        """
        try:
            data = json.loads(self.params_path.read_text())
        except FileNotFoundError as exc:
            raise StoreError(f"{self.params_path}: not found (the graph folder is incomplete)") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{self.params_path}: corrupt parameters ({exc})") from exc
        if not isinstance(data, dict):
            raise StoreError(f"{self.params_path}: corrupt parameters (not an object)")
        return data

    def save_graph(self, graph: nx.Graph) -> None:
        """Rewrite only graph.json (e.g. after new node attributes)."""
        write_json(self.graph_path, nx.node_link_data(graph, edges="links"))

    def clone(self, dest: str | Path) -> GraphStore:
        """A copy of this graph folder in ``dest`` (graph, parameters, PCA; not the selections),
        its content-keyed feature cache hard-linked (copied where links are impossible).

        Adding targets to the copy leaves this graph as it is and computes no source feature
        again. An existing ``dest`` graph is kept as it is (a rerun).
        """
        import shutil

        target = GraphStore(dest)
        if target.graph_path.exists():
            return target
        target.root.mkdir(parents=True, exist_ok=True)
        features = self.root / "features"
        if features.is_dir():
            for src in features.rglob("*"):
                if src.is_dir() or src.name.startswith("."):
                    continue
                dst = target.root / "features" / src.relative_to(features)
                if dst.exists():
                    continue
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
        for name in ("pca.npz", "params.json"):
            if (self.root / name).exists():
                with atomic_path(target.root / name, suffix=Path(name).suffix) as tmp:
                    shutil.copyfile(self.root / name, tmp)
        with atomic_path(target.graph_path, suffix=".json") as tmp:  # last: a clone with a graph is complete
            shutil.copyfile(self.graph_path, tmp)
        return target

    def update_params(self, **changes: Any) -> None:
        """Merge keys into params.json."""
        params = self.params()
        params.update(changes)
        write_json(self.params_path, params)
