"""A saved Keras 3 model as a workload (`model: {arch: keras, config: {file: ...}}`): what the
driver reads from the file, what it refuses in one line, how runs of one file are checked to be
the same model, and (kernel) one tiny saved model run on the JAX, torch and TensorFlow backends."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from conftest import SMALL, in_kernel, read_metrics

from repro.driver import memory, plan
from repro.driver.run import run
from repro.errors import UserError
from repro.kernel import models

CHECK = Path(__file__).with_name("keras_check.py")


def layer(kind: str, name: str, **config) -> dict:
    return {"class_name": kind, "name": name, "config": {"name": name, **config}}


def saved(folder: Path, name: str, layers: list[dict], weights: int = 4000) -> str:
    """A .keras zip as Keras 3 writes one (config.json and weights), of a Functional model whose
    output is its last layer."""
    config = {
        "module": "keras",
        "class_name": "Functional",
        "config": {"name": name, "layers": layers, "output_layers": [layers[-1]["name"], 0, 0]},
    }
    path = folder / f"{name}.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\0" * weights)
    return str(path)


def images(folder: Path, shape=(None, 32, 32, 3), units=7, name="images") -> str:
    return saved(
        folder,
        name,
        [layer("InputLayer", "in", batch_shape=list(shape)), layer("Dense", "head", units=units)],
    )


def tokens(folder: Path, units=50) -> str:
    return saved(
        folder,
        "tokens",
        [
            layer("InputLayer", "in", batch_shape=[None, 12], dtype="int32"),
            layer("Embedding", "embed", input_dim=50, output_dim=8),
            layer("Dense", "head", units=units),
        ],
    )


def keras_spec(file: str, spec_task: str = "image-classification", **config) -> dict:
    """A workload spec of the saved model in `file`, for `spec_task`, with `config` beside it."""
    return {
        "name": "my-keras",
        "task": spec_task,
        "preset": "small",
        "model": {"arch": "keras", "config": {"file": file, **config}},
        "precision": "fp32",
        "batch_size": 2,
        "sequence_length": None if spec_task == "image-classification" else 12,
        "mode": "inference",
    }


def test_a_saved_model_gives_the_inputs_repro_synthesises(tmp_path):
    cfg = models.config({"arch": "keras", "config": {"file": images(tmp_path)}})
    assert (cfg.task, cfg.image_size, cfg.in_channels, cfg.num_classes) == (
        "image-classification",
        32,
        3,
        7,
    )
    batch, labels = models.synthetic_batch(cfg, 2, seed=0)
    assert batch.shape == (2, 32, 32, 3) and labels.max() < 7
    assert cfg.num_params() is None and cfg.flops_per_sample() is None  # the framework counts
    assert cfg.stored_params() == 1000  # the weights file's bytes / 4: the memory estimate's
    given = {
        "file": images(tmp_path, (None, 20, 30, 1), name="odd"),
        "image_size": 24,
    }  # not square: set it
    assert models.config({"arch": "keras", "config": given}).image_size == 24

    lm = {"file": tokens(tmp_path), "task": "causal-lm"}
    cfg = models.config({"arch": "keras", "config": lm})
    assert (cfg.sequence_length, cfg.vocab_size) == (12, 50)
    batch, labels = models.synthetic_batch(cfg, 2, seed=0)
    assert batch.shape == labels.shape == (2, 12) and batch.max() < 50
    assert models.tokens_per_sample(cfg) == 12


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"file": "nowhere.keras"}, "no saved Keras model at"),
        ({"file": 3}, "file must name a saved Keras model"),
        ({"file": "NOT_A_ZIP"}, "is not a Keras 3 saved model"),
        ({"file": "IMAGES", "task": "causal-lm"}, "for a model of 4-D inputs; set task to image"),
        ({"file": "TOKENS"}, "set task to sequence-classification or causal-lm"),
        ({"file": "ODD"}, "image_size: the saved model does not say it"),
        ({"file": "IMAGES", "image_size": 0}, "image_size must be a whole number"),
        ({"file": "IMAGES", "depth": 3}, "unknown KerasConfig keys"),
        (
            {"file": "IMAGES", "image_size": 64},
            "image_size=64, but the saved model takes image_size 32",
        ),
    ],
)
def test_what_a_saved_model_does_not_say_is_asked_for_in_one_line(tmp_path, config, message):
    files = {
        "IMAGES": images(tmp_path),
        "TOKENS": tokens(tmp_path),
        "ODD": images(tmp_path, (None, 20, 30, 1), name="odd"),
        "NOT_A_ZIP": str(tmp_path / "model.keras"),
    }
    Path(files["NOT_A_ZIP"]).write_text("not a zip")
    config = {k: files.get(v, v) if isinstance(v, str) else v for k, v in config.items()}
    with pytest.raises(UserError, match=message) as refused:
        plan.check_spec(keras_spec(**config), "workload file my.yaml")
    assert "\n" not in str(refused.value)


def test_a_spec_whose_task_is_not_its_models_is_refused(tmp_path):
    file = tokens(tmp_path)
    plan.check_spec(keras_spec(file, "causal-lm", task="causal-lm"), "w")
    with pytest.raises(UserError, match="task is causal-lm, but its model is for sequence-class"):
        plan.check_spec(keras_spec(file, "causal-lm", task="sequence-classification"), "w")


def test_a_planned_run_names_its_file_absolutely_and_says_how_sameness_is_checked(
    tmp_path, monkeypatch
):
    images(tmp_path)
    monkeypatch.chdir(tmp_path)  # the file given relative to where repro runs
    spec = plan.check_spec(keras_spec("images.keras"), "w")
    request = plan.resolve("my-keras", "jax", {"batch_size": "4"}, spec=spec)
    model = request.notebook_parameters({})["model"]
    assert model["config"]["file"] == str(tmp_path / "images.keras")  # the kernel runs elsewhere
    assert (
        model["config"]["sha256"] == hashlib.sha256(Path("images.keras").read_bytes()).hexdigest()
    )
    assert spec["model"]["config"]["file"] == "images.keras"  # the user's spec as given
    proof = plan.equivalence(request.workload)
    assert proof["test"] == plan.KERAS_EQUIVALENCE_TEST and "repro compare" in proof["claim"]
    need, how = memory.estimate(request.workload, request.params)
    assert how.startswith("0.00 B parameters x 4 bytes") and need == 1000 * 4 + memory.ALLOWANCE

    images(tmp_path, units=9)  # the file changes: a rerun of the planned spec says so
    with pytest.raises(UserError, match="is not the model this run was planned with"):
        plan.resolve("my-keras", "jax", spec=request.workload)


def outputs(values, **record) -> dict:
    return {
        "sha256": "ab" * 32,
        "seed": 0,
        "precision": "fp32",
        "shape": [1, len(values)],
        "values": values,
        "backend": "jax",
        **record,
    }


def test_runs_of_one_saved_model_are_the_same_model_when_their_outputs_agree():
    base = [1.0, -2.0, 0.5]
    near = [1.0 + 1e-5, -2.0, 0.5]  # within 1e-7 + 1e-5 * 2
    same = models.same_outputs([outputs(base), outputs(near, backend="torch")])
    assert same["same"] and same["backends"] == ["jax", "torch"]
    assert same["max_abs_diff"] == pytest.approx(1e-5) and same["bound"] == pytest.approx(2.01e-5)
    assert models.said(same).startswith("✓ **The same model** on jax, torch: one saved file")
    far = models.same_outputs([outputs(base), outputs([1.0, -2.0, 0.6])])
    assert far["same"] is False and far["max_abs_diff"] == pytest.approx(0.1)
    assert "⚠ **Not the same outputs**" in models.said(far) and "max |diff| 0.1 > 2e-05" in (
        models.said(far)
    )
    assert models.same_outputs([outputs(base), outputs(base, sha256="cd" * 32)])["why"] == (
        "not checked: the runs' files differ"
    )
    bf16 = models.same_outputs([outputs(base, precision="bf16")] * 2)
    assert bf16["same"] is None and "fp32 only" in bf16["why"]
    forged = models.same_outputs([outputs(base), outputs(["1.0", -2.0, 0.5])])
    assert forged["same"] is None and "not numbers" in forged["why"]
    assert models.same_outputs([outputs(base), None]) is None  # a native model among them
    assert models.same_outputs([outputs(base)]) is None


@pytest.mark.kernel
def test_one_saved_model_runs_the_same_on_three_backends(tmp_path):
    """One .keras file, saved once (TensorFlow's Keras), run by repro on Keras' JAX backend
    (training, jit), torch backend (training, eager) and TensorFlow backend (inference): the
    three runs record the same fp32 outputs on one seeded input, count the same parameters, and
    train (the loss falls)."""
    file = in_kernel("tensorflow", CHECK, "save", str(tmp_path))["image"]
    spec = plan.check_spec(keras_spec(file), "test")
    small = dict(arg.split("=", 1) for arg in SMALL[1::2])
    records = {}
    for framework, mode in (
        ("jax", "training"),
        ("torch", "training"),
        ("tensorflow", "inference"),
    ):
        request = plan.resolve(
            "my-keras", framework, {**small, "mode": mode}, spec=spec, runs_dir=tmp_path / "runs"
        )
        records[framework] = metrics = read_metrics(run(request).folder)
        saved_model = metrics["model"]["saved"]
        assert saved_model["backend"] == framework  # Keras' backends are named as repro's
        assert saved_model["runs_as"].startswith("Keras 3.")
        assert metrics["model"]["params_analytic"] is None
        if mode == "training":
            losses = metrics["summary"]["loss"]["curve"]
            assert losses[-1] < losses[0], framework
    same = models.same_outputs([r["model"]["saved"] for r in records.values()])
    assert same["same"], same
    assert same["backends"] == ["jax", "torch", "tensorflow"] and same["max_abs_diff"] > 0
    assert len({r["model"]["params"] for r in records.values()}) == 1  # trainable, every backend
