"""The probe panels in a headless Streamlit script, on real one-epoch runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tiller.dashboard import probe_panels
from tiller.dashboard.eval_charts import class_label
from tests.test_probe import cnn_run, mlp_run  # noqa: F401  (fixtures: the probe tests' trained runs)

TIMEOUT_S = 120  # t-SNE and the first import of torch and timm, on a busy CPU


def panel_script(run_dir: str, panel: str) -> None:
    """What the Evaluation page does: the run's stored predictions, then one panel."""
    from pathlib import Path

    import streamlit as st

    from tiller.dashboard import probe_panels
    from tiller.store import Store

    run_dir = Path(run_dir)
    store = Store(run_dir.parent)
    predictions = store.predictions(run_dir.name, 1)
    store.close()
    if panel == "features":
        probe_panels.feature_space_panel(run_dir, predictions)
    elif panel == "gradcam":
        probe_panels.gradcam_panel(run_dir, predictions)
    else:
        images = probe_panels.thumbnails(run_dir, [0, 1], 48)
        st.write("thumbnails: " + "; ".join("none" if image is None else f"{image.shape} {image.dtype}"
                                            for image in images))


def run_panel(run_dir: Path, panel: str) -> AppTest:
    return AppTest.from_function(panel_script, args=(str(run_dir), panel), default_timeout=TIMEOUT_S).run()


def infos(at: AppTest) -> str:
    return "\n".join(str(info.value) for info in at.info)


@pytest.fixture(autouse=True)
def fresh_caches():
    st.cache_data.clear()
    st.cache_resource.clear()


def test_feature_space_panel_draws_pca_tsne_and_purity(mlp_run):
    at = run_panel(mlp_run, "features")
    assert not at.exception
    assert not at.get("plotly_chart")  # nothing is computed until asked
    at.toggle[0].set_value(True).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    assert at.metric[0].label == "k-means cluster purity" and 0 < float(at.metric[0].value) <= 1
    at.radio[0].set_value("correct or wrong").run()
    assert not at.exception and len(at.get("plotly_chart")) == 2


def test_gradcam_panel_shows_image_and_overlay_per_picked_sample(cnn_run):
    at = run_panel(cnn_run, "gradcam")
    assert not at.exception and not at.info
    picked = len(at.multiselect[0].value)
    assert picked >= 1 and len(at.get("image")) == 2 * picked
    at.radio[0].set_value("by index or sample id").run()
    at.text_input[0].set_value("2, nowhere.png").run()
    assert not at.exception
    assert len(at.get("image")) == 2
    assert "nowhere.png" in at.warning[0].value
    at.selectbox[0].set_value("square").run()
    assert not at.exception and len(at.get("image")) == 2


def test_gradcam_panel_explains_why_an_mlp_has_none(mlp_run):
    at = run_panel(mlp_run, "gradcam")
    assert not at.exception
    assert "Grad-CAM needs a convolutional model" in infos(at)


def test_thumbnails_for_images(cnn_run):
    at = run_panel(cnn_run, "thumbnails")
    assert not at.exception
    assert at.markdown[0].value == "thumbnails: (48, 48, 3) uint8; (48, 48, 3) uint8"


@pytest.mark.parametrize("panel", ["features", "gradcam", "thumbnails"])
def test_a_run_without_checkpoint_says_so(mlp_run, tmp_path, panel):
    runs = tmp_path / "runs"
    shutil.copytree(mlp_run.parent, runs)
    shutil.rmtree(runs / mlp_run.name / "checkpoints")
    at = run_panel(runs / mlp_run.name, panel)
    if panel == "features":  # the model loads only once the feature space is asked for
        assert not at.info
        at.toggle[0].set_value(True).run()
    assert not at.exception
    assert "no checkpoint yet" in infos(at)


def test_data_not_on_this_machine_is_named(cnn_run, tmp_path):
    runs = tmp_path / "elsewhere" / "runs"
    shutil.copytree(cnn_run.parent, runs)
    at = run_panel(runs / cnn_run.name, "gradcam")
    assert not at.exception
    assert "the data folder data/shapes is not here" in infos(at)


def test_projections_name_their_axes_and_cut_long_class_names_in_the_legend():
    long = "A very long class name that goes on and on: Pseudomonas aeruginosa resistant strain"
    groups = np.array([long, "<unk>", long], dtype=object)
    fig = probe_panels.scatter_figure(np.zeros((3, 2)), groups, [long, "<unk>"], ["a", "b", "c"], "PCA",
                                      axis="principal component")
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("principal component 1",
                                                                          "principal component 2")
    assert [trace.name for trace in fig.data] == [class_label(long), "&lt;unk&gt;"]
    assert fig.data[0].name.endswith("…")
