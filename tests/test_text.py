"""mode=train-to-accuracy on a tokenised text file (repro.tokenfile, repro.kernel.text): the
token file `repro data pydoc` writes, every bad file refused in one line before anything starts,
the contiguous held-out split and next-token accuracy (all without a kernel: the loader is numpy),
then gpt-mini trained on Python's documentation to a next-token accuracy in torch's kernel
through `repro run` and the template, in two processes: the report of record, its spread and its
headline (the digits run in every framework in tests/test_accuracy.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import read_metrics, repro, run_folders
from test_accuracy import refusal

from repro import imagefolder, tokenfile
from repro.driver import datasets, plan
from repro.kernel import accuracy, text

TTA = {"mode": "train-to-accuracy", "batch_size": "8"}


@pytest.fixture(scope="module")
def pydoc(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("data") / "pydoc.npy"
    done = repro("data", "pydoc", str(dest))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{len(np.load(dest)):,} tokens -> {dest}\n"
    return dest


def test_repro_data_pydoc_writes_pythons_documentation_as_byte_tokens_once(pydoc, tmp_path):
    found, tokens = tokenfile.read(pydoc, vocab_size=256)
    assert found.format == ".npy" and found.dtype == "uint16" and found.tokens > 400_000
    assert bytes(tokens.astype(np.uint8)).decode() == datasets.pydoc_text()  # the text, whole
    again = repro("data", "pydoc", str(pydoc))  # never overwritten
    assert again.returncode == 2 and "already exists" in again.stderr
    named = repro("data", "pydoc", str(tmp_path / "pydoc.txt"))
    assert named.returncode == 2 and "ending in .npy" in named.stderr
    assert not (tmp_path / "pydoc.txt").exists() and not list(tmp_path.glob(".*partial"))


def gpt(data, params: dict | None = None, workload: str = "gpt-mini") -> str:
    """The one-line refusal of a time-to-accuracy run of `workload` on `data`."""
    return refusal(data, {**TTA, **(params or {})}, workload)


def test_a_bad_token_file_is_refused_in_one_line_naming_the_fix(tmp_path, pydoc, monkeypatch):
    good = plan.resolve("gpt-mini", "torch", {**TTA, "data": str(pydoc)})
    assert good.params["data"] == str(pydoc) and good.template.name == "train-to-accuracy.ipynb"
    np.arange(512, dtype="<u2").tofile(tmp_path / "train.bin")  # nanoGPT's format
    assert plan.resolve("gpt-mini", "jax", {**TTA, "data": str(tmp_path / "train.bin")})

    def bad(name: str, write) -> str:
        write(tmp_path / name)
        return gpt(tmp_path / name)

    assert "does not exist" in gpt(tmp_path / "missing.npy")
    assert "ends in .npy or .bin" in bad("corpus.txt", lambda p: p.write_text("hello"))
    assert "is not a regular file" in gpt(tmp_path)  # a folder (an image tree) is no token file
    assert "is a link" in bad("link.npy", lambda p: p.symlink_to(pydoc))
    zipped = bad("zip.npy", lambda p: zipfile.ZipFile(p, "w").writestr("a.npy", b""))
    assert "cannot be read as a NumPy array file: it does not start as one" in zipped
    pickled = bad("obj.npy", lambda p: np.save(p, np.array([{}], dtype=object)))
    assert "Python objects" in pickled  # never unpickled
    assert "an array of float64" in bad("f.npy", lambda p: np.save(p, np.ones(600)))
    assert "shape (30, 20)" in bad("2d.npy", lambda p: np.save(p, np.ones((30, 20), "i2")))
    assert "whole number of uint16" in bad("odd.bin", lambda p: p.write_bytes(b"abc"))
    outside = bad("big.npy", lambda p: np.save(p, np.arange(600)))
    assert "token id 599, outside the model's vocabulary (0..511)" in outside
    few = bad("few.npy", lambda p: np.save(p, np.zeros(200, "u2")))
    assert "make 6 windows of 33 and leave 5 to train on, fewer than one batch" in few
    image = refusal(pydoc, {**TTA}, "resnet-tiny")
    assert "is a token file; an image workload trains on an image-folder tree" in image
    assert "sequence-classification workload" in refusal(pydoc, TTA, "bert-mini")
    assert "a tokenised text file" in gpt("")  # data=PATH is needed, and says which kind
    monkeypatch.setenv(imagefolder.MAX_BYTES_VARIABLE, str(pydoc.stat().st_size / 2**21))
    assert "raise REPRO_DATA_MAX_MB" in gpt(pydoc)  # half its size: the bound is the images'


def test_the_end_of_the_file_is_held_out_and_accuracy_counts_every_position(tmp_path):
    ids = np.arange(10_000) % 97  # windows of 33: 303 of them, the last 30 held out
    np.save(tmp_path / "ids.npy", ids.astype(np.uint16))
    data = text.load(str(tmp_path / "ids.npy"), 32, 128)
    windows = ids[: 303 * 33].reshape(303, 33)
    assert len(data.train_y) == 273 and len(data.held_y) == tokenfile.held_out(303) == 30
    assert (data.held_x == windows[-30:, :-1]).all() and (data.held_y == windows[-30:, 1:]).all()
    assert (data.train_x[:, 1:] == data.train_y[:, :-1]).all()  # the next token, everywhere
    assert data.train_x.dtype == np.int64 and data.classes is None
    assert data.sha256 == text.sha256(tmp_path / "ids.npy") and data.summary()["tokens"] == 10_000
    model = {"arch": "gpt", "config": {"vocab_size": 128}}
    assert accuracy.with_classes(model, data) == model  # a language model keeps its vocabulary
    x, y = next(data.batches(8, seed=0))
    assert x.shape == y.shape == (8, 32) and (x[:, 1:] == y[:, :-1]).all()
    assert (next(data.batches(8, seed=0))[0] == x).all()  # the order follows the seed
    assert not (next(data.batches(8, seed=1))[0] == x).all()

    def half_right(inputs):  # right at even positions of every sequence, wrong at odd ones
        guess = (inputs + 1) % 97
        guess[:, 1::2] = -1
        return guess

    held = accuracy.accuracy(half_right, np.asarray, data.held_x, data.held_y, batch=8)
    assert held == 0.5  # 30 sequences in batches of 8: the last padded, its padding not counted
    assert tokenfile.held_out(10**6) == tokenfile.MAX_HELD_OUT  # evaluation stays bounded


@pytest.mark.kernel
def test_torch_trains_gpt_mini_on_pythons_documentation_to_a_next_token_accuracy(pydoc, runs_dir):
    done = repro(
        "run", "gpt-mini", "-f", "torch", "--runs-dir", str(runs_dir),
        "--params", f"mode=train-to-accuracy data={pydoc} batch_size=32 target_accuracy=0.3 "
        "eval_every=25 max_steps=400 max_seconds=300 lr=3e-3 repeats=2 threads=1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    folder = run_folders(runs_dir)[0]
    metrics = read_metrics(folder)
    section = metrics["summary"]["time_to_accuracy"]
    assert metrics["status"] == "ok" and section["reached"], section["curve"]
    assert section["final_accuracy"] >= 0.3 and section["steps"] < 400
    assert section["processes"]["n"] == section["processes"]["reached"] == 2
    held = min(tokenfile.MAX_HELD_OUT, round(section["data"]["tokens"] // 33 * 0.1))
    assert section["data"]["held_out"] == held and section["data"]["sequence_length"] == 32
    assert section["data"]["sha256"] == text.sha256(pydoc)
    assert metrics["model"]["config"]["vocab_size"] == 512  # unchanged by the data
    assert (folder / "plots" / "accuracy_curve.png").is_file()
    report = (folder / "report.ipynb").read_text()
    assert "training / held-out sequences" in report
    assert "time to 30.0% held-out accuracy **" in report  # the headline, from the record
