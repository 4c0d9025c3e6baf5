"""Evaluation panels that need a run's model and inputs, not only its stored predictions:
the feature space (PCA, t-SNE, k-means purity), Grad-CAM, and thumbnails of samples.

torch, timm and the run's data load only when one of these is drawn (``tiller.trainer.engine.probe``
and scikit-learn are imported inside the functions), so pages without them stay light.
A panel that cannot be drawn says why (no checkpoint yet, data folder not on this
machine, a model without a feature map) and never raises into the page.

Tiller keeps two checkpoints, best and last. A panel for an epoch uses whichever holds
that epoch's weights, else the best one, and says so.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import streamlit as st

from tiller.dashboard.display import md_escape
from tiller.dashboard.eval_charts import class_label
from tiller.dashboard.labels import plot_text
from tiller.store.predictions import Predictions

FEATURE_POINTS = 2_000  # samples embedded; t-SNE's time grows faster than linearly with the count
TSNE_ITERATIONS = 500  # sklearn's least is 250; 500 settles and takes half the default 1,000's time
TSNE_INPUT_DIMS = 50  # PCA first, as t-SNE's authors advise: faster, and drops noise dimensions
KMEANS_RESTARTS = 4
CAM_CANDIDATES = 24  # hard samples offered in the Grad-CAM picker
CAM_DEFAULT_SHOWN = 3
CAM_MAX_SHOWN = 8  # each is a backward pass and two images
DISPLAY_SIDE = 192  # px: small inputs (8x8 digits) are enlarged to this, pixel for pixel
PROBES_KEPT = 2  # a probe holds the run's whole validation set in memory
POINT_COLOURS = plotly.colors.qualitative.Plotly + plotly.colors.qualitative.Dark24
CORRECTNESS_COLOURS = {"correct": "#636EFA", "wrong": "#EF553B"}  # blue / red-orange: read on light and dark
PICK_MISTAKES, PICK_UNSURE, PICK_BY_REF = ("most confident mistakes", "least confident correct",
                                           "by index or sample id")


# ------------------------------------------------------------- the three panels


def feature_space_panel(run_dir: Path | str, predictions: Predictions) -> None:
    """PCA and t-SNE of penultimate-layer features, coloured by class or correctness, and
    the k-means cluster purity. Computed when asked: one forward pass per sample, then t-SNE."""
    with _failures_explained():
        _feature_space(Path(run_dir), predictions)


def gradcam_panel(run_dir: Path | str, predictions: Predictions) -> None:
    """Grad-CAM overlays on samples the user picks: hard ones from ``predictions``, or by index or id."""
    with _failures_explained():
        _gradcam_samples(Path(run_dir), predictions)


def thumbnails(run_dir: Path | str, sample_indices: Sequence[int], size: int = 96) -> list[np.ndarray | None]:
    """(size, size, 3) uint8 per validation index; None each for text data or when the data
    cannot be loaded (then an st.info says why)."""
    with _failures_explained():
        probe = _probe_for_epoch(Path(run_dir), None)
        from tiller.trainer.engine.probe import thumbnail

        return [thumbnail(probe, int(i), size) for i in sample_indices]
    return [None] * len(sample_indices)


def snippets(run_dir: Path | str, sample_indices: Sequence[int]) -> list[str | None]:
    """The first words of each validation text (text data's thumbnails); None each for images."""
    with _failures_explained():
        probe = _probe_for_epoch(Path(run_dir), None)
        from tiller.trainer.engine.probe import text_snippet

        if probe.data.kind != "text":
            return [None] * len(sample_indices)
        return [text_snippet(probe, int(i)) for i in sample_indices]
    return [None] * len(sample_indices)


@contextmanager
def _failures_explained() -> Iterator[None]:
    from tiller.trainer.engine.probe import ProbeError

    try:
        yield
    except ProbeError as exc:
        st.info(md_escape(exc))  # plain text: a path's underscores must not turn into italics
    except Exception as exc:  # noqa: BLE001 (torch and timm raise anything; the rest of the page must still draw)
        st.warning(f"This panel failed: {type(exc).__name__}: {md_escape(exc)}")


# --------------------------------------------------------------------- probes


@st.cache_resource(show_spinner=False, max_entries=PROBES_KEPT)
def _probe(run_dir: str, which: str, mtime_ns: int):
    # mtime_ns is only a key: a checkpoint rewritten by a running run gives a new probe.
    from tiller.trainer.engine.probe import load_probe

    return load_probe(Path(run_dir), which)


@st.cache_data(show_spinner=False, max_entries=64)
def _checkpoint_epoch(run_dir: str, which: str, mtime_ns: int) -> int | None:
    from tiller.trainer.engine.probe import checkpoint_epoch

    return checkpoint_epoch(Path(run_dir), which)


def _mtime_ns(run_dir: Path, which: str) -> int:
    from tiller.trainer.engine.checkpoint import checkpoint_path

    path = checkpoint_path(run_dir, which)
    return path.stat().st_mtime_ns if path.is_file() else 0  # 0: load_probe says there is none


def _checkpoint_for(run_dir: Path, epoch: int | None) -> str:
    """"best" or "last": the one holding ``epoch``'s weights, else "best"."""
    if epoch is not None and _checkpoint_epoch(str(run_dir), "best", _mtime_ns(run_dir, "best")) != epoch:
        if _checkpoint_epoch(str(run_dir), "last", _mtime_ns(run_dir, "last")) == epoch:
            return "last"
    return "best"


def _probe_for_epoch(run_dir: Path, epoch: int | None):
    which = _checkpoint_for(run_dir, epoch)
    with st.spinner("Loading the run's model and validation data…"):
        return _probe(str(run_dir), which, _mtime_ns(run_dir, which))


def _note_other_epoch(probe, epoch: int) -> None:
    if probe.epoch != epoch:
        st.caption(f"Using the {probe.which} checkpoint, epoch {probe.epoch}: Tiller keeps only the best and the "
                   f"last epoch's weights, not epoch {epoch}'s.")


# -------------------------------------------------------------- feature space


def _feature_space(run_dir: Path, predictions: Predictions) -> None:
    count = len(predictions.labels)  # not the probe's: loading it (torch, data) waits for the toggle
    shown = min(count, FEATURE_POINTS)
    sampled = f"a seeded random {shown:,} of the {count:,}" if shown < count else f"all {count:,}"
    if not st.toggle(f"Compute the feature space of {sampled} validation samples", key=f"features-{run_dir}",
                     help="One forward pass per sample, then PCA, k-means and t-SNE (seconds to a minute "
                          "on a CPU); cached afterwards."):
        st.caption("Penultimate-layer features, projected to 2-D by PCA and t-SNE, coloured by class or by "
                   "correctness, with k-means cluster purity.")
        return
    probe = _probe_for_epoch(run_dir, predictions.epoch)
    _note_other_epoch(probe, predictions.epoch)
    key = (str(run_dir), probe.which, _mtime_ns(run_dir, probe.which))
    with st.spinner(f"Penultimate-layer features of {shown:,} samples…"):
        indices, features = _features(*key, FEATURE_POINTS)
    if features.shape[1] < 2:
        st.info(f"The model's penultimate layer has {features.shape[1]} unit: nothing to project to 2-D.")
        return
    scored = _predictions_of_probe(probe, predictions)
    colour_by = st.radio("Colour by", ["class", "correct or wrong"], horizontal=True, key=f"colour-{run_dir}")
    groups, order = point_groups(scored, indices, by_class=colour_by == "class")
    hover = point_hover(scored, indices)
    pca_column, tsne_column = st.columns(2)
    pca_column.plotly_chart(scatter_figure(_pca(*key, FEATURE_POINTS), groups, order, hover, "PCA",
                                           axis="principal component"), key=f"pca-{run_dir}", width="stretch")
    with tsne_column, st.spinner(f"t-SNE of {shown:,} points: ten seconds to a minute the first time…"):
        tsne = _tsne(*key, FEATURE_POINTS)
    tsne_column.plotly_chart(scatter_figure(tsne, groups, order, hover, "t-SNE", axis="t-SNE dimension"),
                             key=f"tsne-{run_dir}", width="stretch")
    _purity_note(_kmeans_purity(*key, FEATURE_POINTS), scored.labels[indices], len(scored.class_names))


def point_groups(scored: Predictions, indices: np.ndarray, *, by_class: bool) -> tuple[np.ndarray, list[str]]:
    """Each point's group (its true class, or correct / wrong) and the groups in legend order."""
    labels = scored.labels[indices]
    if by_class:
        return np.asarray(scored.class_names, dtype=object)[labels], list(scored.class_names)
    return np.where(labels == scored.predicted[indices], "correct", "wrong"), list(CORRECTNESS_COLOURS)


def point_hover(scored: Predictions, indices: np.ndarray) -> list[str]:
    names = [plot_text(name) for name in scored.class_names]
    return [f"{plot_text(scored.sample_ids[i])}<br>true {names[scored.labels[i]]} · "
            f"predicted {names[scored.predicted[i]]}" for i in indices]


def _predictions_of_probe(probe, predictions: Predictions) -> Predictions:
    """The stored predictions of the probe's own epoch, so colours match the features' weights."""
    if probe.epoch == predictions.epoch:
        return predictions
    from tiller.trainer.engine.probe import stored_predictions

    return stored_predictions(probe.run_dir, probe.epoch) or predictions


@st.cache_data(show_spinner=False, max_entries=8)
def _features(run_dir: str, which: str, mtime_ns: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    from tiller.trainer.engine.probe import features

    return features(_probe(run_dir, which, mtime_ns), limit)


@st.cache_data(show_spinner=False, max_entries=8)
def _pca(run_dir: str, which: str, mtime_ns: int, limit: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(_features(run_dir, which, mtime_ns, limit)[1])


@st.cache_data(show_spinner=False, max_entries=8)
def _tsne(run_dir: str, which: str, mtime_ns: int, limit: int) -> np.ndarray:
    return tsne_2d(_features(run_dir, which, mtime_ns, limit)[1])


@st.cache_data(show_spinner=False, max_entries=8)
def _kmeans_purity(run_dir: str, which: str, mtime_ns: int, limit: int) -> float:
    indices, features = _features(run_dir, which, mtime_ns, limit)
    labels = _probe(run_dir, which, mtime_ns).data.val_labels.numpy()[indices]
    return kmeans_purity(features, labels)


def tsne_2d(features: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    reduced = PCA(n_components=min(TSNE_INPUT_DIMS, *features.shape), random_state=0).fit_transform(features)
    perplexity = min(30.0, (len(features) - 1) / 3)  # sklearn's default, lowered for tiny validation sets
    return TSNE(n_components=2, perplexity=perplexity, max_iter=TSNE_ITERATIONS, init="pca",
                random_state=0).fit_transform(reduced)


def kmeans_purity(features: np.ndarray, labels: np.ndarray) -> float:
    """k-means with k = the classes present; the share of samples in their cluster's majority class."""
    from sklearn.cluster import KMeans

    k = len(np.unique(labels))
    clusters = KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=0).fit_predict(features)
    majority = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters))
    return float(majority / len(labels))


def _purity_note(purity: float, labels: np.ndarray, classes: int) -> None:
    largest = np.bincount(labels).max() / len(labels)
    st.metric("k-means cluster purity", f"{purity:.3f}")
    st.caption(f"k-means with k = {classes} clusters on the features themselves (not the 2-D views); purity is "
               f"the share of samples whose cluster's majority class is their own class. 1.0: the classes form "
               f"their own clusters. No clustering scores below the largest class's share, {largest:.3f} (what one "
               f"cluster holding everything scores).")


def scatter_figure(points: np.ndarray, groups: np.ndarray, order: Sequence[str], hover: list[str],
                   title: str, axis: str = "dimension") -> go.Figure:
    """One trace per group (a class, or correct / wrong) in ``order``, so the legend toggles each.

    The axes are ``axis`` 1 and 2, without numbers: a projection's coordinates have no unit to read.
    """
    fig = go.Figure()
    for n, name in enumerate(order):
        chosen = np.flatnonzero(groups == name)
        if not len(chosen):
            continue
        colour = CORRECTNESS_COLOURS.get(name) if list(order) == list(CORRECTNESS_COLOURS) else None
        fig.add_trace(go.Scattergl(
            x=points[chosen, 0], y=points[chosen, 1], mode="markers", name=class_label(name),
            marker=dict(size=5, opacity=0.75, color=colour or POINT_COLOURS[n % len(POINT_COLOURS)]),
            text=[hover[i] for i in chosen], hovertemplate="%{text}<extra></extra>",
        ))
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=50, b=10), paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)", legend=dict(itemsizing="constant"))
    fig.update_xaxes(showticklabels=False, title=f"{axis} 1")
    fig.update_yaxes(showticklabels=False, title=f"{axis} 2")
    return fig


# ------------------------------------------------------------------- Grad-CAM


def _gradcam_samples(run_dir: Path, predictions: Predictions) -> None:
    probe = _probe_for_epoch(run_dir, predictions.epoch)
    from tiller.trainer.engine.probe import require_gradcam

    require_gradcam(probe)  # before the pickers: a text or MLP run gets one line saying why
    _note_other_epoch(probe, predictions.epoch)
    picked = _pick_samples(run_dir, predictions)
    options = ["the predicted class", *predictions.class_names]
    explained = st.selectbox("Explain", options, key=f"cam-target-{run_dir}",
                             help="Grad-CAM shows where the model looked for evidence of this class.")
    target = None if explained == options[0] else options.index(explained) - 1
    key = (str(run_dir), probe.which, _mtime_ns(run_dir, probe.which))
    if picked:
        st.caption("Red: where the last convolutional layer found the most evidence for the explained class; "
                   "blue: none.")
    for index in picked:
        heatmap_overlay, checkpoint_class = _gradcam(*key, index, target)
        _gradcam_row(probe, predictions, index, heatmap_overlay, checkpoint_class)


@st.cache_data(show_spinner=False, max_entries=256)
def _gradcam(run_dir: str, which: str, mtime_ns: int, index: int, target: int | None) -> tuple[np.ndarray, int]:
    from tiller.trainer.engine.probe import gradcam

    _heatmap, overlay, predicted = gradcam(_probe(run_dir, which, mtime_ns), index, target)
    return overlay, predicted


def _gradcam_row(probe, predictions: Predictions, index: int, overlay: np.ndarray, checkpoint_class: int) -> None:
    from tiller.trainer.engine.probe import thumbnail

    names = [md_escape(name) for name in predictions.class_names]  # user text, shown in Markdown
    image_column, cam_column, text_column = st.columns([1, 1, 2])
    image_column.image(enlarged(thumbnail(probe, index, probe.data.image_size)), caption="input")
    cam_column.image(enlarged(overlay), caption="Grad-CAM")
    predicted = int(predictions.predicted[index])
    lines = [f"**{md_escape(predictions.sample_ids[index])}** (validation index {index})",
             f"true: {names[int(predictions.labels[index])]}",
             f"predicted at epoch {predictions.epoch}: {names[predicted]} "
             f"(confidence {predictions.probs[index, predicted]:.3f})"]
    if probe.epoch != predictions.epoch:
        lines.append(f"the epoch {probe.epoch} weights shown predict: {names[checkpoint_class]}")
    text_column.markdown("  \n".join(lines))


def enlarged(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """At least about ``side`` pixels wide, pixel for pixel, so an 8x8 digit reads as its
    64 pixels and not as a blur."""
    repeat = max(1, side // image.shape[0])
    return image.repeat(repeat, axis=0).repeat(repeat, axis=1)


def _pick_samples(run_dir: Path, predictions: Predictions) -> list[int]:
    source = st.radio("Samples", [PICK_MISTAKES, PICK_UNSURE, PICK_BY_REF], horizontal=True,
                      key=f"cam-source-{run_dir}")
    if source == PICK_BY_REF:
        raw = st.text_input("Validation indices or sample ids, separated by commas", value="0",
                            key=f"cam-refs-{run_dir}")
        found, unknown = parse_sample_refs(raw, predictions.sample_ids)
        if unknown:
            st.warning(f"Not a validation index or sample id: {md_escape(', '.join(unknown))}")
        if len(found) > CAM_MAX_SHOWN:
            st.caption(f"Showing the first {CAM_MAX_SHOWN} of {len(found)}.")
        return found[:CAM_MAX_SHOWN]
    candidates = hard_samples(predictions, mistakes=source == PICK_MISTAKES, limit=CAM_CANDIDATES)
    if not candidates:
        st.info(f"No {source} at epoch {predictions.epoch}.")
        return []
    return st.multiselect("Show", candidates, default=candidates[:CAM_DEFAULT_SHOWN],
                          max_selections=CAM_MAX_SHOWN, format_func=lambda i: sample_label(predictions, i),
                          key=f"cam-picked-{run_dir}-{source}-{predictions.epoch}")


def hard_samples(predictions: Predictions, *, mistakes: bool, limit: int) -> list[int]:
    """Indices of the most confident mistakes, or of the least confident correct predictions."""
    confidence = predictions.probs.max(axis=1)
    wrong = predictions.predicted != predictions.labels
    chosen = np.flatnonzero(wrong if mistakes else ~wrong)
    order = np.argsort(-confidence[chosen] if mistakes else confidence[chosen], kind="stable")
    return [int(i) for i in chosen[order][:limit]]


def sample_label(predictions: Predictions, index: int) -> str:
    names, predicted = predictions.class_names, int(predictions.predicted[index])
    return (f"{predictions.sample_ids[index]}: {names[int(predictions.labels[index])]} → {names[predicted]} "
            f"({predictions.probs[index, predicted]:.2f})")


def parse_sample_refs(raw: str, sample_ids: list[str]) -> tuple[list[int], list[str]]:
    """Validation indices from "3, 17, digits#120": a sample id, or failing that an index."""
    by_id = {sample_id: i for i, sample_id in enumerate(sample_ids)}
    found, unknown = [], []
    for ref in (part.strip() for part in raw.split(",")):
        if not ref:
            continue
        if ref in by_id:
            found.append(by_id[ref])
        elif ref.isdigit() and int(ref) < len(sample_ids):
            found.append(int(ref))
        else:
            unknown.append(ref)
    return list(dict.fromkeys(found)), unknown
