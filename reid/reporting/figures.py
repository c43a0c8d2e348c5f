"""Figures of embeddings: a 2-D scatter coloured by class (PCA projection when D > 2), and the distance
histograms of same- and different-identity pairs with the verification threshold.

Figures are built as `matplotlib.figure.Figure` objects, not through pyplot: they need no backend and no
closing, so the library never chooses one (the command-line tasks do, in `reid.tasks.cli`).
"""

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from reid.retrieval.verification import Verification, far_key


def project_2d(embeddings: np.ndarray) -> tuple[np.ndarray, str]:
    """(N, D) -> (N, 2) points and axis description: the embedding itself for D <= 2, else PCA."""
    if embeddings.shape[1] == 2:
        return embeddings, "embedding dimensions"
    if embeddings.shape[1] == 1:
        return np.column_stack([embeddings[:, 0], np.zeros(len(embeddings))]), "embedding (1-D)"
    pca = PCA(n_components=2).fit(embeddings)
    explained = pca.explained_variance_ratio_.sum()
    return pca.transform(embeddings), f"PCA of {embeddings.shape[1]}-D embedding ({explained:.0%} variance)"


def embedding_scatter(
    embeddings: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], title: str
) -> Figure:
    """Scatter plot of embeddings (N, D) with one colour per label (N,) and a legend of class names."""
    points, axes_note = project_2d(embeddings)
    figure = Figure(figsize=(7, 6), dpi=100)
    ax = figure.subplots()
    cmap = matplotlib.colormaps["tab10" if labels.max() < 10 else "tab20"]
    for label in np.unique(labels):
        chosen = labels == label
        name = class_names[label] if label < len(class_names) else str(label)
        ax.scatter(
            points[chosen, 0], points[chosen, 1], s=3, alpha=0.6, color=cmap(label % cmap.N), label=name
        )
    ax.set_title(title)
    ax.set_xlabel(axes_note)
    ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    return figure


def verification_histograms(verification: Verification, title: str) -> Figure:
    """The distance histograms of positive (same identity) and negative pairs, each as a share of its pairs,
    with the threshold at `verification.far` drawn as a vertical line and the AUC and TARs in the legend."""
    v = verification
    used = np.flatnonzero(v.positive_counts + v.negative_counts)
    last = used[-1] + 2 if len(used) else len(v.edges)
    edges = v.edges[:last]
    figure = Figure(figsize=(7, 4), dpi=100)
    ax = figure.subplots()
    for counts, total, colour, name in (
        (v.positive_counts, v.num_positive, "tab:green", "same identity"),
        (v.negative_counts, v.num_negative, "tab:red", "different identities"),
    ):
        ax.stairs(
            counts[: last - 1] / total, edges, color=colour, fill=True, alpha=0.4, label=f"{name} ({total:,})"
        )
    tars = ", ".join(
        f"{far_key(f).removeprefix('tar_at_far_')}: {tar:.3f}" for f, tar in v.tar_at_far.items()
    )
    ax.axvline(
        v.threshold, color="black", linestyle="--", label=f"threshold {v.threshold:.3g} at FAR {v.far:g}"
    )
    ax.set_title(f"{title}\nROC AUC {v.roc_auc:.4f}; TAR at FAR {tars}", fontsize=9)
    ax.set_xlabel("Euclidean distance")
    ax.set_ylabel("share of pairs")
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def distance_histogram(
    groups: dict[str, np.ndarray], title: str, colours: dict[str, str] | None = None
) -> Figure:
    """Overlaid histograms of distances, one per named group (e.g. true and false matches), on shared bins,
    in the group's colour from `colours` (else matplotlib's next); empty groups are left out."""
    groups = {name: values for name, values in groups.items() if len(values)}
    figure = Figure(figsize=(6, 3.5), dpi=100)
    ax = figure.subplots()
    everything = np.concatenate(list(groups.values())) if groups else np.zeros(1)
    bins = np.histogram_bin_edges(everything, bins=40)
    for name, values in groups.items():
        colour = (colours or {}).get(name)
        ax.hist(values, bins=bins, alpha=0.6, color=colour, label=f"{name} ({len(values)})")
    ax.set_title(title)
    ax.set_xlabel("Euclidean distance")
    ax.set_ylabel("matches")
    if groups:
        ax.legend(frameon=False)
    figure.tight_layout()
    return figure
