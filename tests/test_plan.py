"""Parameter validation and bad input: one clear line, exit 2, nothing created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import repro, run_folders

from repro import compare, models, plan
from repro.errors import UserError


def test_defaults_come_from_the_workload_spec():
    p = plan.resolve("resnet-50", "jax")
    assert p.params["batch_size"] == plan.workloads()["resnet-50"]["batch_size"]
    assert p.params["precision"] == "fp32" and p.params["mode"] == "inference"
    assert p.kernel == "jax-cpu"
    assert p.template.name == "image-classification.ipynb"


def test_parameters_are_typed_and_threads_resolved_to_a_number():
    p = plan.resolve("resnet-tiny", "torch", plan.parse_assignments(["batch_size=3", "seed=7"]))
    assert p.params["batch_size"] == 3 and p.params["seed"] == 7
    assert p.params["threads"] == len(os.sched_getaffinity(0))


def test_attention_is_a_run_parameter_built_into_attention_families_and_a_context():
    p = plan.resolve("gpt-mini", "torch", {"attention": "explicit"})
    assert plan.resolve("gpt-mini", "torch").params["attention"] == "fused"  # the default
    assert p.notebook_parameters({})["attention"] == "explicit"  # what papermill injects
    assert models.build_options("gpt", "explicit") == {"attention": "explicit"}
    assert models.build_options("resnet", "explicit") == {}  # no attention: nothing to choose
    with pytest.raises(ValueError, match="choose one of fused, explicit"):
        models.build_options("vit", "flash")

    def run(model_info):  # what compare reads of a run folder
        metrics = {
            "workload": "gpt-mini",
            "kernel": "torch-cpu",
            "params": {"precision": "fp32", "mode": "inference", "batch_size": 2},
            "model": {"config": {}, **model_info},
        }
        return compare.Run(Path("run"), metrics, {})

    fused, explicit = ({"attention": {"kind": k, "kernel": "?"}} for k in ("fused", "explicit"))
    assert compare.context_differences([run(fused), run(explicit)]) == {
        "attention": ["fused", "explicit"]
    }
    assert compare.context_differences([run(fused), run(fused)]) == {}
    assert run({}).context()["attention"] is None  # a ResNet, or a run from before the choice


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workload": "resnet-5000"}, "unknown workload 'resnet-5000'; choose one of: "),
        ({"workload": "resnet-5000"}, "resnet-50, resnet-tiny"),
        ({"framework": "mxnet"}, "choose one of: torch, tensorflow, jax"),
        ({"params": {"batch": "4"}}, "unknown parameter 'batch'; valid parameters: batch_size"),
        ({"params": {"batch_size": "four"}}, "batch_size must be an integer, got 'four'"),
        ({"params": {"batch_size": "0"}}, "batch_size must be >= 1, got 0"),
        ({"params": {"precision": "fp8"}}, "choose one of: fp32, tf32"),
        ({"params": {"attention": "flash"}}, "choose one of: fused, explicit"),
        ({"params": {"device": "tpu"}}, "choose one of: auto, cpu, gpu"),
        (
            {"kernel": "torch-rocm"},
            "unknown kernel 'torch-rocm' for torch; choose one of: torch-cpu",
        ),
    ],
)
def test_bad_input_names_the_valid_choices(kwargs, message):
    args = {"workload": "resnet-tiny", "framework": "torch", **kwargs}
    with pytest.raises(UserError) as error:
        plan.resolve(args.pop("workload"), args.pop("framework"), args.pop("params", None), **args)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "nope"],
        ["run", "resnet-tiny", "-f", "caffe"],
        ["run", "resnet-tiny", "-p", "steps=many"],
        ["run", "resnet-tiny", "-p", "stepz=3"],
        ["run", "resnet-tiny", "-p", "steps"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line_and_creates_nothing(args, runs_dir):
    done = repro(*args, "--runs-dir", str(runs_dir))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("repro: "), done.stderr
    assert run_folders(runs_dir) == [] and not runs_dir.exists()


@pytest.mark.parametrize("template", sorted(set(plan.TASK_TEMPLATES.values())))
def test_template_parameters_cell_matches_the_schema(template):
    import papermill

    declared = set(papermill.inspect_notebook(str(plan.TEMPLATES / template)))
    injected = set(plan.resolve("resnet-tiny", "torch").notebook_parameters({}))
    assert declared == injected
