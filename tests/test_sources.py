"""A user's model as a workload (repro.kernel.models.source, repro.driver.sources): hf: models
built from a directory written by save_pretrained in the test (random weights, nothing
downloaded) and a module: file of the test's own, run end to end in the real torch-cpu kernel.
The parse and validation errors are rows of tests/test_bad_input.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL, in_kernel, read_metrics, repro, run_folders

from repro.driver import sources
from repro.kernel import models
from repro.kernel.models import hf
from repro.kernel.models.source import SourceError, normalise

# Written in the torch-cpu kernel (transformers is there only): a 2-layer BERT with its weights,
# and a ViT as a config alone (weights: random needs nothing else); their parameter counts.
SAVE = """
import json, sys
from pathlib import Path
from transformers import BertConfig, BertForSequenceClassification, ViTConfig
from transformers import ViTForImageClassification

out = Path(sys.argv[1])
bert = BertForSequenceClassification(BertConfig(
    vocab_size=100, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=32, max_position_embeddings=64, num_labels=3))
bert.save_pretrained(out / "bert")
vit = ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
    num_attention_heads=2, intermediate_size=32, num_labels=4,
    architectures=["ViTForImageClassification"])
vit.save_pretrained(out / "vit")
params = lambda m: sum(p.numel() for p in m.parameters())
print(json.dumps({"bert": params(bert), "vit": params(ViTForImageClassification(vit))}))
"""
MODULE = """
import torch

def build():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    return model, torch.zeros(2, 3, 8, 8)
"""


def test_a_source_is_normalised_into_a_family_and_named_after_the_model():
    assert normalise({"source": "hf:org/bert", "weights": "random"}) == {
        "arch": "hf",
        "config": {"ref": "org/bert", "weights": "random"},
    }
    module = normalise({"source": "module:src/my_net.py:build"})
    assert models.config(module).carried == "repro/user/my_net.py"
    assert sources.spec_for("hf:/models/tiny-bert/")["name"] == "hf-tiny-bert"
    assert sources.spec_for("module:src/my_net.py:build")["name"] == "module-my_net-build"


def test_inputs_come_from_the_model_config_or_say_which_field_to_set():
    cfg = models.config(normalise({"source": "hf:a/b"}))
    config = {"vocab_size": 50, "max_position_embeddings": 512, "id2label": {"0": "x", "1": "y"}}
    seq = hf.inputs(config, "sequence-classification", cfg)
    assert seq == {"vocab_size": 50, "sequence_length": hf.SEQUENCE, "num_classes": 2}
    image = {"image_size": [32, 32], "num_channels": 1, "id2label": {"0": "cat"}}
    shape = {"image_size": 32, "in_channels": 1, "num_classes": 1}
    assert hf.inputs(image, "image-classification", cfg) == shape
    with pytest.raises(SourceError, match="no vocab_size.*set vocab_size in the spec"):
        hf.inputs({"max_position_embeddings": 8}, "causal-lm", cfg)
    with pytest.raises(SourceError, match="no max_position_embeddings or .*set sequence_length"):
        hf.inputs({"vocab_size": 8}, "causal-lm", cfg)
    with pytest.raises(SourceError, match="set a square image_size"):
        hf.inputs({**image, "image_size": [32, 64]}, "image-classification", cfg)
    with pytest.raises(SourceError, match="no id2label: set num_classes"):
        hf.inputs({"image_size": 32, "num_channels": 3}, "image-classification", cfg)
    longer = models.config(normalise({"source": "hf:a/b", "sequence_length": 600}))
    with pytest.raises(SourceError, match="exceeds the model's 512 positions"):
        hf.inputs(config, "causal-lm", longer)
    with pytest.raises(SourceError, match="set the task in the spec"):
        hf.task_of(["BertModel"], None)


@pytest.fixture(scope="module")
def hf_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    (folder / "save.py").write_text(SAVE)
    return folder, in_kernel("torch", folder / "save.py", str(folder))


@pytest.mark.kernel
def test_an_hf_directory_runs_with_its_weights_and_the_report_states_the_source(
    hf_models, tmp_path, runs_dir
):
    folder, params = hf_models
    spec = tmp_path / "mine.yaml"  # a workload file of the user's own, naming the weights
    spec.write_text(
        f"name: tiny-bert\ntask: auto\npreset: user\nmodel: {{source: 'hf:{folder}/bert', "
        "weights: pretrained}\nbatch_size: 2\nsequence_length: 16\nprecision: fp32\n"
        "mode: inference\n"
    )
    done = repro("run", str(spec), *SMALL, "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = run_folders(runs_dir)
    metrics = read_metrics(run)
    model, flops = metrics["model"], metrics["summary"]["compute"]
    assert model["params"] == params["bert"] and model["params_analytic"] is None
    source = model["source"]
    assert source["ref"] == str(folder / "bert") and source["weights"] == "pretrained"
    assert source["task"] == "sequence-classification" and source["sequence_length"] == 16
    assert set(source["files_sha256"]) == {"config.json", "model.safetensors"}
    assert source["transformers"] and len(source["sha256"]) == 64
    assert flops["flops_source"] == "framework counter" and flops["flops_per_step"] > 0


@pytest.mark.kernel
def test_an_hf_config_alone_trains_with_random_weights(hf_models, runs_dir):
    folder, params = hf_models
    model = f"hf:{folder}/vit"
    done = repro(
        "run", "--model", model, "-p", "mode=training", *SMALL, "--runs-dir", str(runs_dir)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = run_folders(runs_dir)
    metrics = read_metrics(run)
    assert metrics["model"]["params"] == params["vit"]
    assert metrics["model"]["source"]["image_size"] == 16
    assert metrics["workload"] == "hf-vit" and metrics["params"]["mode"] == "training"


@pytest.mark.kernel
def test_a_module_travels_with_the_report_and_reruns_only_when_trusted(tmp_path, runs_dir):
    (tmp_path / "broken.py").write_text("def build():\n    return 1 / 0\n")
    broken = f"module:{tmp_path / 'broken.py'}:build"
    broken = repro("run", "--model", broken, *SMALL, "--runs-dir", str(runs_dir))
    [line] = broken.stderr.strip().splitlines()  # before anything is made: no run folder
    assert broken.returncode == 2 and "ZeroDivisionError: division by zero" in line
    log = line.rsplit("(traceback in ", 1)[1].rstrip(")")
    assert 'broken.py", line 2, in build' in Path(log).read_text() and not runs_dir.exists()

    (tmp_path / "tiny_net.py").write_text(MODULE)
    model = f"module:{tmp_path / 'tiny_net.py'}:build"
    done = repro("run", "--model", model, *SMALL, "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    [run] = run_folders(runs_dir)
    source = read_metrics(run)["model"]["source"]
    assert read_metrics(run)["model"]["params"] == 3 * 8 * 8 * 5 + 5
    assert source["task"] == "image-classification" and source["num_classes"] == 5
    (tmp_path / "tiny_net.py").unlink()  # the rerun builds from the copy the report carries

    again = tmp_path / "again"
    refused = repro("rerun", str(run), "--runs-dir", str(again))
    assert refused.returncode == 2 and "repro/user/tiny_net.py is new" in refused.stderr
    assert "--trust" in refused.stderr.strip().splitlines()[-1] and not again.exists()
    trusted = repro("rerun", str(run), "--trust", "--runs-dir", str(again))
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    [rerun] = run_folders(again)
    assert read_metrics(rerun)["model"]["source"]["sha256"] == source["sha256"]
    assert (
        json.loads((rerun / "environment.json").read_text())["run"]["code"]
        == json.loads((run / "environment.json").read_text())["run"]["code"]
    )


def test_a_resolved_parameter_count_may_be_a_real_models():
    # BERT-base's 109,483,778 parameters, counted by the probe, are a count, not a layer's width
    from repro.kernel.models.hf import HFConfig

    assert HFConfig.from_dict({"ref": "x", "params": 109_483_778}).params == 109_483_778
    with pytest.raises(ValueError, match="params must be a whole number"):
        HFConfig.from_dict({"ref": "x", "params": 10**14})
