"""Figures of embeddings: a 2-D scatter coloured by class (PCA projection when D > 2).

Figures are built as `matplotlib.figure.Figure` objects, not through pyplot: they need no backend and no
closing, so the library never chooses one (the command-line tasks do, in `reid.tasks.cli`).
"""

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA


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
