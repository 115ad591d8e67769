"""repro's torch ResNet-50 against torchvision's and timm's `resnet50`, the same weights.

One state_dict (torchvision's random init, BatchNorm's affine parameters and running statistics
perturbed so that every tensor counts) loads strictly into all three models: module names are
torchvision's in each, so load_state_dict(strict=True) is the whole transfer, and the logits
must agree exactly (or within float noise). Then fp32 inference under torch.inference_mode, the
same seeded batch, threads and OpenMP wait policy as a repro run (prepare_process), alternating
rounds (each runs every model once, the order rotating, so drifts in machine speed hit all
alike). Prints each model's median
wall time per batch (and its fastest), the median CPU time and minor page faults of the process
per batch (on a shared machine the CPU time is the steadier figure: waiting for a core is not
in it; fresh pages for a new buffer are), repro's medians divided by the model's (above 1:
repro is slower) and the largest logit difference from repro's.
`--before` adds repro's model as it was before the in-place residual add (relu(out + identity)
in every block) for the gap that change closed.

torchvision cannot be installed beside the torch-cpu kernel's torch (PyPI's torchvision fails
to import: 'operator torchvision::nms does not exist'), so this runs in a throwaway venv; it
installs nothing itself. On x86_64 (pip takes both from the machine's disk, a CUDA build of
about 5.5 GB that runs on the CPU; see /work/.library/env/machines/python.md):

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/tv/bin/python benchmarks/vs_torchvision.py [--batch-size 8] [--threads 2] [--rounds 12]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # repro's model code, from this checkout

RESNET50_PARAMS = 25_557_032  # torchvision's resnet50, as tests/test_models.py holds


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12, help="timed forwards per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per model first")
    parser.add_argument("--before", action="store_true", help="also repro before the change")
    return parser.parse_args()


def shared_state(torchvision_net) -> dict:
    """torchvision's weights with BatchNorm perturbed (random init leaves it the identity)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in torchvision_net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for tensor, low, high in (
                    (m.weight, 0.5, 1.5),
                    (m.bias, -0.2, 0.2),
                    (m.running_mean, -0.2, 0.2),
                    (m.running_var, 0.5, 2.0),
                ):
                    tensor.copy_(torch.rand(tensor.shape, generator=gen) * (high - low) + low)
    return torchvision_net.state_dict()


def relu_of_sum(self, x):
    """repro's Bottleneck.forward before the residual add was made in place."""
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    return self.relu(out + identity)


def usage() -> tuple[float, float, int]:
    """(wall seconds, this process's CPU seconds, its minor page faults so far)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), ru.ru_utime + ru.ru_stime, ru.ru_minflt


def build(args: argparse.Namespace) -> dict:
    """{name: eval-mode model}, every one holding the same state_dict (strict both ways)."""
    import timm
    import torchvision

    from repro.kernel.models import resnet_torch
    from repro.kernel.models.resnet import ResNetConfig

    reference = torchvision.models.resnet50(weights=None)
    state = shared_state(reference)
    nets = {"repro": resnet_torch.build(ResNetConfig()), "torchvision": reference}
    if args.before:
        nets["repro before"] = resnet_torch.build(ResNetConfig())
        for m in nets["repro before"].modules():
            if isinstance(m, resnet_torch.Bottleneck):
                m.forward = relu_of_sum.__get__(m)
    nets["timm"] = timm.create_model("resnet50", pretrained=False)
    for name, net in nets.items():
        net.load_state_dict(state, strict=True)
        count = sum(p.numel() for p in net.parameters())
        assert count == RESNET50_PARAMS, (name, count)
        net.eval()
    return nets


def main() -> None:
    args = arguments()
    from repro.kernel.frameworks import prepare_process

    prepare_process(args.threads, deterministic=False)  # as repro's runs: OpenMP threads sleep
    import numpy as np
    import timm
    import torch
    import torchvision

    from repro.kernel import models
    from repro.kernel.models.resnet import ResNetConfig

    torch.set_num_threads(args.threads)
    nets = build(args)
    x, _ = models.synthetic_batch(ResNetConfig(), args.batch_size, seed=0)  # repro's own input
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in nets}
    logits = {}
    names = list(nets)
    with torch.inference_mode():
        for name in names:
            for _ in range(args.warmup):
                logits[name] = nets[name](x)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                before = usage()
                nets[name](x)  # CPU ops are synchronous
                samples[name].append(tuple(b - a for a, b in zip(before, usage(), strict=True)))
    print(
        f"ResNet-50, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"timm {timm.__version__}; fp32 inference, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {args.rounds} alternating rounds after "
        f"{args.warmup} warm-up forwards each\n"
    )
    print(
        "| model | wall ms/batch | min | CPU ms/batch | page faults/batch | repro's wall, CPU "
        "time / this | max abs logit diff |"
    )
    print("|---|---|---|---|---|---|---|")
    medians = {
        name: [statistics.median(column) for column in zip(*rows, strict=True)]
        for name, rows in samples.items()
    }
    wall, cpu, _ = medians["repro"]
    for name in names:
        diff = (logits[name] - logits["repro"]).abs().max().item()
        w, c, faults = medians[name]
        fastest = min(row[0] for row in samples[name])
        print(
            f"| {name} | {w * 1e3:.1f} | {fastest * 1e3:.1f} | {c * 1e3:.1f} | {faults:.0f} | "
            f"{wall / w:.3f}, {cpu / c:.3f} | {diff:.3g} |"
        )
    print(f"\nmax |logit| of repro's: {logits['repro'].abs().max().item():.3g}")


if __name__ == "__main__":
    main()
