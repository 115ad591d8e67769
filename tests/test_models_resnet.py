"""ResNet specifics: the analytic config, and train-mode BatchNorm semantics (batch statistics,
momentum) across torch, Keras and Flax. Parameter counts and eval-mode equivalence are checked
for every family by tests/test_models.py.

The driver process has no framework; each framework check runs tests/resnet_check.py in that
framework's pinned kernel interpreter and reads back one JSON line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import in_kernel

from repro.models.resnet import ResNetConfig

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tests" / "resnet_check.py"
FRAMEWORKS = ("torch", "tensorflow", "jax")
RESNET50_PARAMS = 25_557_032  # torchvision resnet50
TINY = ResNetConfig(depths=(1, 1, 1, 1), width=16, num_classes=10, image_size=64)
TOLERANCE = 1e-4  # max |logit difference|, fp32


# -- analytic config (driver only) --------------------------------------------------------


def test_resnet50_param_count_and_flops() -> None:
    cfg = ResNetConfig()
    assert cfg.num_params() == RESNET50_PARAMS
    assert ResNetConfig(depths=(3, 4, 23, 3)).num_params() == 44_549_160  # resnet101
    assert cfg.flops_per_sample() == 8_178_368_512  # 4.09 GMACs, the usual "4.1 GFLOPs"


def test_from_dict() -> None:
    cfg = ResNetConfig.from_dict({"depths": [1, 1, 1, 1], "width": 16, "num_classes": 10})
    assert cfg.depths == (1, 1, 1, 1) and cfg.width == 16 and cfg.image_size == 224
    hash(cfg)  # frozen and hashable: usable as a Flax module field
    with pytest.raises(ValueError, match="valid keys are.*depths"):
        ResNetConfig.from_dict({"depth": [3, 4, 6, 3]})


# -- same weights, same outputs ------------------------------------------------------------


@pytest.fixture(scope="session")
def torch_reference(tmp_path_factory) -> Path:
    """Tiny torch ResNet (random BN stats) with its input and outputs, saved as .npz."""
    path = tmp_path_factory.mktemp("resnet") / "torch_reference.npz"
    stats = in_kernel("torch", CHECK, "reference", str(path))
    assert stats["logit_std"] > 0.05, f"degenerate reference logits: {stats}"
    return path


@pytest.mark.kernel
@pytest.mark.parametrize("framework", ["tensorflow", "jax"])
def test_transfer_matches_torch(torch_reference: Path, framework: str) -> None:
    result = in_kernel(framework, CHECK, "compare", framework, str(torch_reference))
    print(f"{framework} vs torch: {result}")
    for key in ("max_abs_diff", "train_max_abs_diff", "running_mean_max_abs_diff"):
        assert result[key] < TOLERANCE, f"{framework} vs torch {key} = {result[key]:.3g}"
    # broken state_dicts are refused whole, with a message naming the culprit
    errors = result["errors"]
    assert errors["unmapped"] and "layer9" in errors["unmapped"], errors
    assert errors["shape"] and "fc" in errors["shape"] and "(11,)" in errors["shape"], errors
    assert errors["missing"] and "bn3" in errors["missing"], errors
