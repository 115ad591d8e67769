"""Every workload's model is the same model in PyTorch, TensorFlow and JAX.

Data-driven: each spec in repro/workloads/ is checked. Full presets: the analytic parameter
count matches the published one within 0.5%, and each framework counts exactly the analytic
number (without running the model). Small presets: each framework counts the analytic number,
and seeded, perturbed torch weights transferred into Keras and Flax give the same fp32 outputs
within repro.kernel.models.EQUIVALENCE_ATOL + EQUIVALENCE_RTOL * max|output|, in eval and in
train mode (batch statistics, and BatchNorm's running means afterwards); broken state_dicts are
refused whole, with a message naming the culprit. Families with attention are checked with each
attention (fused, explicit) in every framework, against torch's fused outputs. The driver
process imports no framework: each check runs tests/model_check.py in that framework's pinned
kernel.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest
from conftest import in_kernel
from model_check import BATCH

from repro.driver import plan
from repro.kernel import generation, models, report
from repro.kernel.models.attention import KINDS
from repro.kernel.models.resnet import ResNetConfig

ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).with_name("model_check.py")
README = ROOT / "README.md"
SPECS = plan.workloads()
FULL = [n for n, s in SPECS.items() if s.get("preset") == "full"]
SMALL = [n for n, s in SPECS.items() if s.get("preset") == "small"]
GENERATING = [n for n in SMALL if SPECS[n]["model"]["arch"] in generation.ARCHS]
FRAMEWORKS = ("torch", "tensorflow", "jax")


def model_json(name: str) -> str:
    return json.dumps(SPECS[name]["model"])


def test_every_workload_has_a_preset_kind_and_every_family_a_small_preset():
    assert FULL and SMALL and set(FULL) | set(SMALL) == set(SPECS)
    families = {SPECS[n]["model"]["arch"] for n in SPECS}
    assert families == {SPECS[n]["model"]["arch"] for n in SMALL}
    for name in SMALL:
        assert models.config(SPECS[name]["model"]).num_params() < 5_000_000, name


@pytest.mark.parametrize("name", FULL)
def test_full_presets_match_their_published_parameter_count(name):
    analytic = models.config(SPECS[name]["model"]).num_params()
    published = SPECS[name]["reference_params"]
    print(f"{name}: analytic {analytic:,}, published {published:,}")
    assert abs(analytic / published - 1) <= 0.005


def test_the_readme_states_the_tolerance_the_test_holds():
    stated = re.search(r"\|difference\| <= (\S+) \+ (\S+) x max\|output\|", README.read_text())
    assert stated and tuple(map(float, stated.groups())) == (
        models.EQUIVALENCE_ATOL,
        models.EQUIVALENCE_RTOL,
    )


def test_resnet_config_counts_as_torchvision_and_refuses_unknown_keys():
    assert ResNetConfig().num_params() == 25_557_032  # torchvision resnet50
    assert ResNetConfig(depths=(3, 4, 23, 3)).num_params() == 44_549_160  # resnet101
    assert ResNetConfig().flops_per_sample() == 8_178_368_512  # 4.09 GMACs, "4.1 GFLOPs"
    tiny = dict(SPECS["resnet-tiny"]["model"]["config"])
    del tiny["image_size"]
    cfg = ResNetConfig.from_dict(tiny)  # what a spec leaves out takes the ResNet-50 default
    assert cfg.depths == tuple(tiny["depths"]) and cfg.image_size == 224
    hash(cfg)  # frozen and hashable: usable as a Flax module field
    with pytest.raises(ValueError, match="valid keys are.*depths"):
        ResNetConfig.from_dict({"depth": [3, 4, 6, 3]})


# Keras allocates and initialises the weights it counts: gpt-neo-2.7b took a minute of the test
# run (and 11 GB), vit-huge and vit-large most of the rest (about 20 s), for structures that the
# smaller presets of their families check in the same code (torch and JAX count them all).
KERAS_COUNT_LIMIT = 200_000_000


def countable(name: str, framework: str) -> bool:
    params = models.config(SPECS[name]["model"]).num_params()
    return framework != "tensorflow" or params <= KERAS_COUNT_LIMIT


FLOPS_CHECKED = "bert-mini"  # its FLOPs counted in each framework, in the same kernel process


@cache
def counted(framework: str) -> dict:
    """Every workload's parameters as `framework` counts them ("params"), and FLOPS_CHECKED's
    FLOP counts by the adapter ("flops"), in one kernel process."""
    every = {n: s["model"] for n, s in SPECS.items() if countable(n, framework)}
    flops = model_json(FLOPS_CHECKED)
    return in_kernel(framework, CHECK, "count", framework, json.dumps(every), flops)


@pytest.mark.kernel
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", list(SPECS))
def test_each_framework_counts_the_analytic_parameters(name, framework):
    if not countable(name, framework):
        pytest.skip(f"Keras would allocate {name}'s weights to count them (KERAS_COUNT_LIMIT)")
    assert counted(framework)["params"][name] == models.config(SPECS[name]["model"]).num_params()


@pytest.mark.kernel
def test_keras_models_start_from_distinct_weights_the_same_for_one_seed():
    # one Keras 3 initializer object returns the same values on every call: BERT's q, k and v
    # once started equal in every layer (4 distinct matrices of 17)
    small = {n: s["model"] for n, s in SPECS.items() if s["preset"] == "small"}
    for name, built in in_kernel("tensorflow", CHECK, "initial", json.dumps(small)).items():
        assert built["distinct"] == built["matrices"] and built["reproducible"], (name, built)


def assert_same(result: dict, diff: float, scale: str = "output_max_abs") -> None:
    """`diff` within the equivalence tolerance of `result[scale]`, a max |value|."""
    assert diff <= models.EQUIVALENCE_ATOL + models.EQUIVALENCE_RTOL * result[scale], result


@cache
def torch_reference(name: str, folder: str) -> tuple[str, dict]:
    path = str(Path(folder) / f"{name}.npz")
    return path, in_kernel("torch", CHECK, "reference", model_json(name), path)


@pytest.mark.kernel
@pytest.mark.parametrize("name", SMALL)
def test_fused_and_explicit_attention_give_the_same_outputs_in_torch(name, tmp_path_factory):
    _, result = torch_reference(name, str(tmp_path_factory.getbasetemp()))
    has_attention = models.has_attention(SPECS[name]["model"]["arch"])
    assert set(result["attention_max_abs_diff"]) == ({"explicit"} if has_attention else set())
    for diff in result["attention_max_abs_diff"].values():
        assert_same(result, diff)


@cache
def compared(name: str, framework: str, folder: str) -> dict:
    """The transferred model checked against torch's reference in `framework`'s kernel."""
    reference, _ = torch_reference(name, folder)
    return in_kernel(framework, CHECK, "compare", framework, model_json(name), reference)


@pytest.mark.kernel
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
@pytest.mark.parametrize("name", SMALL)
def test_torch_weights_give_the_same_outputs(name, framework, tmp_path_factory):
    result = compared(name, framework, str(tmp_path_factory.getbasetemp()))
    print(f"{name} {framework} vs torch: {result}")
    refused = result["refused"]  # broken state_dicts: refused whole, the culprit named
    assert "no_such_module" in refused["unmapped"], refused
    assert "not in the torch state_dict" in refused["missing"], refused
    assert "shape mismatch" in refused["shape"], refused
    assert_same(result, result["max_abs_diff"])  # fused attention, where the family has one
    assert_same(result, result["train_max_abs_diff"], "train_output_max_abs")
    assert_same(result, result["running_mean_max_abs_diff"], "running_mean_max_abs")
    has_batchnorm = SPECS[name]["model"]["arch"] == "resnet"
    assert (result["running_means"] > 0) is has_batchnorm, result
    has_attention = models.has_attention(SPECS[name]["model"]["arch"])
    assert set(result["attention_max_abs_diff"]) == ({"explicit"} if has_attention else set())
    for diff in result["attention_max_abs_diff"].values():
        assert_same(result, diff)


MXNET = [n for n, s in SPECS.items() if s["model"]["arch"] == "resnet"]  # its one family


@pytest.mark.kernel
def test_mxnet_counts_the_analytic_parameters():
    """Gluon's ResNets (resnet-tiny and resnet-50) count the analytic parameters; BatchNorm's
    running statistics, Gluon parameters too, are not trained and not counted."""
    every = {n: SPECS[n]["model"] for n in MXNET}
    counted = in_kernel("mxnet", CHECK, "count", "mxnet", json.dumps(every))["params"]
    assert counted == {n: models.config(SPECS[n]["model"]).num_params() for n in MXNET}


@pytest.mark.kernel
@pytest.mark.parametrize("name", [n for n in SMALL if n in MXNET])
def test_torch_weights_give_the_same_outputs_in_mxnet(name, tmp_path_factory):
    """torch's perturbed weights in Gluon's ResNet: the same fp32 outputs, imperative and
    hybridized, in eval and train mode (and the same running means afterwards); broken
    state_dicts refused whole. Training: three steps of each adapter's own training step from
    the same weights give the same losses, and MXNet's AdamW, given the same gradients as
    torch.optim.AdamW, writes the same weights."""
    result = compared(name, "mxnet", str(tmp_path_factory.getbasetemp()))
    print(f"{name} mxnet vs torch: {result}")
    refused = result["refused"]
    assert "no_such_module" in refused["unmapped"], refused
    assert "not in the torch state_dict" in refused["missing"], refused
    assert "shape mismatch" in refused["shape"], refused
    assert_same(result, result["max_abs_diff"])
    assert_same(result, result["compiled_max_abs_diff"]["hybridize"])
    assert_same(result, result["train_max_abs_diff"], "train_output_max_abs")
    assert_same(result, result["running_mean_max_abs_diff"], "running_mean_max_abs")
    assert result["running_means"] > 0, result
    training = result["training"]  # repro's AdamW step: the same losses, the same update
    assert_same({"max": max(training["torch_losses"])}, training["loss_max_abs_diff"], "max")
    assert_same(training, training["adamw_max_abs_diff"], "adamw_max_abs")


@pytest.mark.kernel
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("name", GENERATING)
def test_greedy_generation_gives_the_same_tokens_and_the_cache_the_same_logits(
    name, framework, tmp_path_factory
):
    """mode=generate's own code (the adapter's prefill and decode, default compile mode) with
    each attention: torch's weights give torch's greedy tokens in every framework, and the KV
    cache's logits (a prompt, then one token at a time) are the full forward pass's."""
    folder = str(tmp_path_factory.getbasetemp())
    if framework == "torch":
        generated = torch_reference(name, folder)[1]["generation"]
    else:
        generated = compared(name, framework, folder)["generation"]
    torch_tokens = torch_reference(name, folder)[1]["generation"]["fused"]["tokens"]
    assert len({t for row in torch_tokens for t in row}) > 1, torch_tokens  # not one token
    for kind in KINDS:
        result = generated[kind]
        print(f"{name} {framework} {kind}: {result}")
        assert result["tokens"] == torch_tokens
        assert_same(result, result["kv_max_abs_diff"], "logits_max_abs")


def test_a_counter_that_missed_work_is_not_used():
    counted = {"flops": 300, "forward": 100, "method": "counter", "uncounted": []}
    assert report.judge_counter(counted, 100) == counted  # 3x: a training step
    assert report.judge_counter({**counted, "forward": 96}, 100) == {**counted, "forward": 96}
    short = report.judge_counter({**counted, "forward": 94}, 100)
    assert short["flops"] is None and short["counted"] == 300 and "0.940" in short["reason"]
    named = report.judge_counter({**counted, "uncounted": ["aten.fused_attention"]}, 100)
    assert named["flops"] is None and "no formula for aten.fused_attention" in named["reason"]
    compute = report.efficiency(
        type("Fw", (), {"device_name": lambda _: None, "precision": "fp32"})(),
        {**named, "analytic": 250},
        1.0,
    )
    assert compute["flops_per_step"] == 250 and "aten.fused_attention" in compute["flops_source"]


@pytest.mark.kernel
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_each_counter_counts_fused_attention_as_the_explicit_one(framework):
    """Fused attention's FLOPs are counted (torch's CPU kernel and Keras' Einsums had no formula):
    the same forward count as the explicit attention, no op named uncounted, and the counter's
    figure is the one used; torch's counter without repro's formula names the op it missed."""
    flops = counted(framework)["flops"]
    if framework == "torch":
        assert flops.pop("missed") == ["aten._scaled_dot_product_flash_attention_for_cpu"]
    fused, explicit = (flops[kind]["inference"] for kind in KINDS)
    print(f"{framework}: fused {flops['fused']}, explicit {explicit}")
    assert abs(fused["forward"] / explicit["forward"] - 1) < 1e-3
    analytic = models.config(SPECS[FLOPS_CHECKED]["model"]).flops_per_sample() * BATCH
    for counts in (*flops["fused"].values(), explicit):
        assert counts["uncounted"] == []
        assert report.judge_counter(counts, analytic) == counts  # the counter's figure is used


def test_gpt2_and_gpt_neo_use_the_tanh_gelu_and_a_config_refuses_an_unknown_one():
    assert all(
        models.config(SPECS[n]["model"]).activation == "gelu_tanh"
        for n in ("gpt2-small", "gpt-neo-2.7b", "gpt-mini")  # gpt-mini: the equivalence tests'
    )
    with pytest.raises(ValueError, match="choose one of gelu, gelu_tanh"):
        models.config({"arch": "gpt", "config": {"activation": "relu"}})
