"""repro's PyTorch models vs Hugging Face transformers' implementations of the same configs.

BERT-base (sequence classification) and GPT-2 small (LM head, tied) at T = 128, 512 and 1024
tokens, and ViT-B/16 (image classification), each with attention fused (repro's default; HF's
attn_implementation="sdpa") and explicit (HF's "eager"): random weights, fp32 inference under
torch.inference_mode, the same batch, inputs and torch.set_num_threads in one process. For each
model and length the four variants (repro and transformers, fused and explicit) run in turn, one
forward each per round, so drifts in machine speed hit all alike; after warm-up each figure is
the median of `--repeats` rounds. Prints a table of samples/s with the ratio
repro/transformers (target >= 0.97), and repro's fused/explicit speed-up.

`--weights` checks instead that they are the same models: transformers' random weights, moved
into repro's model by name (GPT-2's Conv1D weights transposed; strict: every tensor of each side
used), give the same logits; prints max |repro - transformers| / max |transformers| per model.

    .venv/bin/python benchmarks/vs_transformers.py [--repeats 5] [--batch-size 1] [--threads 0]
    .venv/bin/python benchmarks/vs_transformers.py --weights

transformers never enters a pinned kernel: the first run installs it (pinned below, with its light
dependencies, no torch) into the ignored folder .bench/site, which the torch-cpu kernel's Python
then reads after its own packages (those win: the same torch and numpy as every repro run).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / ".bench" / "site"
TRANSFORMERS = "transformers==5.23.0"
LENGTHS = (128, 512, 1024)
ATTENTIONS = ("fused", "explicit")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards first")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="0: every core available")
    parser.add_argument("--weights", action="store_true", help="check weights, not speed")
    parser.add_argument("--in-kernel", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def launch(args: argparse.Namespace) -> int:
    """Driver side: install transformers into .bench/site if needed, rerun in the kernel."""
    from repro.driver import kernels

    if not (SITE / "transformers").is_dir():
        print(f"installing {TRANSFORMERS} into {SITE.relative_to(ROOT)}", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", SITE, TRANSFORMERS],
            check=True,
        )
    python = kernels.ensure("torch-cpu").python
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([python, __file__, "--in-kernel", *sys.argv[1:]], env=env).returncode


def hf_model(arch: str, cfg, attention: str):
    """transformers' model of the same config, random weights, eval mode."""
    import transformers as hf

    common = {"attn_implementation": "sdpa" if attention == "fused" else "eager"}
    if arch == "bert":
        config = hf.BertConfig(
            vocab_size=cfg.vocab_size,
            hidden_size=cfg.hidden,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.intermediate,
            hidden_act="gelu",  # exact erf GELU, as repro's
            max_position_embeddings=cfg.max_position,
            type_vocab_size=cfg.type_vocab,
            layer_norm_eps=cfg.layer_norm_eps,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            num_labels=cfg.num_classes,
        )
        model = hf.BertForSequenceClassification._from_config(config, **common)
    elif arch == "gpt":
        config = hf.GPT2Config(
            vocab_size=cfg.vocab_size,
            n_positions=cfg.context,
            n_embd=cfg.width,
            n_layer=cfg.layers,
            n_head=cfg.heads,
            n_inner=cfg.hidden,
            activation_function="gelu_new" if cfg.tanh_gelu else "gelu",  # cfg.activation
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=cfg.layer_norm_eps,
            tie_word_embeddings=cfg.tie_embeddings,
            use_cache=False,
        )
        model = hf.GPT2LMHeadModel._from_config(config, **common)
    else:
        config = hf.ViTConfig(
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            num_channels=cfg.in_channels,
            hidden_size=cfg.width,
            num_hidden_layers=cfg.depth,
            num_attention_heads=cfg.heads,
            intermediate_size=cfg.mlp_dim,
            hidden_act="gelu",
            layer_norm_eps=cfg.layer_norm_eps,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            qkv_bias=True,
            num_labels=cfg.num_classes,
        )
        model = hf.ViTForImageClassification._from_config(config, **common)
    return model.eval()


CASES = [("bert-base", t) for t in LENGTHS] + [("gpt2-small", t) for t in LENGTHS]
CASES.append(("vit-base", None))


def cases(args: argparse.Namespace):
    """Kernel side: (name, length, model, cfg, inputs) of each case, torch's threads set."""
    sys.path.append(str(SITE))  # after the kernel's own packages
    import numpy as np
    import torch
    import transformers

    from repro.driver import plan
    from repro.kernel import models

    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    specs = plan.workloads()
    timing = f", median of {args.repeats} after {args.warmup} warm-up forwards"
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {threads} threads, "
        f"batch {args.batch_size}, fp32 inference{'' if args.weights else timing}\n"
    )
    for name, length in CASES:
        model = plan.effective_model(specs[name], length)
        if model["arch"] == "bert" and length:  # positions for the longest sequence
            config = {**model["config"], "max_position": max(512, length)}
            model = {**model, "config": config}
        cfg = models.config(model)
        x, _ = models.synthetic_batch(cfg, args.batch_size, seed=0)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2) if x.ndim == 4 else x))
        yield name, length, model, cfg, x


# transformers' ViT names -> repro's (timm's layout); BERT's and GPT-2's are repro's already
VIT_NAMES = [
    (r"^vit\.layers\.(\d+)\.", r"blocks.\1."),
    (
        r"attention\.([qkv])_proj",
        lambda m: "attn." + {"q": "query", "k": "key", "v": "value"}[m[1]],
    ),
    (r"attention\.o_proj", "attn.proj"),
    (r"layernorm_before", "norm1"),
    (r"layernorm_after", "norm2"),
    (r"^vit\.embeddings\.cls_token", "cls_token"),
    (r"^vit\.embeddings\.position_embeddings", "pos_embed"),
    (r"^vit\.embeddings\.patch_embeddings\.projection", "patch_embed.proj"),
    (r"^vit\.layernorm", "norm"),
    (r"^classifier", "head"),
]


def repro_state(arch: str, state: dict) -> dict:
    """transformers' state_dict under repro's names and layouts."""
    out = {}
    for key, tensor in state.items():
        if arch == "gpt" and key == "lm_head.weight":
            continue  # tied to transformer.wte.weight
        if arch == "gpt" and re.search(r"c_(attn|proj|fc)\.weight$", key):
            tensor = tensor.t()  # Conv1D (in, out) -> Linear (out, in)
        for pattern, name in VIT_NAMES if arch == "vit" else ():
            key = re.sub(pattern, name, key)
        out[key] = tensor
    return out


def weights(args: argparse.Namespace) -> None:
    """Kernel side: transformers' weights in repro's model, the logits of each compared."""
    import torch

    from repro.kernel import models

    header = (
        "| model | T | attention | activation | max |diff| / max |logit| |\n|---|---|---|---|---|"
    )
    for i, (name, length, model, cfg, x) in enumerate(cases(args)):
        if not i:  # below the versions line cases() prints first
            print(header)
        for attention in ATTENTIONS:
            torch.manual_seed(0)
            theirs = hf_model(model["arch"], cfg, attention)
            ours = models.native(model["arch"], "torch").build(cfg, attention=attention).eval()
            ours.load_state_dict(repro_state(model["arch"], theirs.state_dict()), strict=True)
            with torch.inference_mode():
                a, b = ours(x), theirs(x).logits
            diff = float((a - b).abs().max() / b.abs().max())
            activation = getattr(cfg, "activation", "gelu")
            print(
                f"| {name} | {length or cfg.num_tokens} | {attention} | {activation} | {diff:.2e} |"
            )


def measure(args: argparse.Namespace) -> None:
    """Kernel side: build each pair, time it, print the table."""
    import torch

    from repro.kernel import models

    header = "| model | T | attention | repro samples/s | transformers samples/s | repro/hf |"
    speed: dict[tuple, dict[str, float]] = {}
    for i, (name, length, model, cfg, x) in enumerate(cases(args)):
        if not i:  # below the versions line cases() prints first
            print(header + "\n|---|---|---|---|---|---|", flush=True)
        built = {}  # (implementation, attention) -> model; all four timed in turn
        for attention in ATTENTIONS:
            torch.manual_seed(0)
            ours = models.native(model["arch"], "torch").build(cfg, attention=attention).eval()
            theirs = hf_model(model["arch"], cfg, attention)
            counts = [sum(p.numel() for p in m.parameters()) for m in (ours, theirs)]
            assert counts[0] == counts[1], f"{name}: parameters {counts}: not the same config"
            built["repro", attention], built["hf", attention] = ours, theirs
        times: dict[tuple, list[float]] = {key: [] for key in built}
        with torch.inference_mode():
            for net in built.values():
                for _ in range(args.warmup):
                    net(x)
            for _ in range(args.repeats):
                for key, net in built.items():
                    start = time.perf_counter()
                    net(x)
                    times[key].append(time.perf_counter() - start)
        del built
        rate = {key: args.batch_size / statistics.median(t) for key, t in times.items()}
        for attention in ATTENTIONS:
            ours, theirs = rate["repro", attention], rate["hf", attention]
            speed[name, length, attention] = {"repro": ours, "hf": theirs}
            print(
                f"| {name} | {length or cfg.num_tokens} | {attention} | {ours:.2f} | "
                f"{theirs:.2f} | {ours / theirs:.3f} |",
                flush=True,
            )
    print("\n| model | T | repro fused/explicit | transformers sdpa/eager |\n|---|---|---|---|")
    for name, length in CASES:
        fused, explicit = speed[name, length, "fused"], speed[name, length, "explicit"]
        print(
            f"| {name} | {length or '-'} | {fused['repro'] / explicit['repro']:.3f} | "
            f"{fused['hf'] / explicit['hf']:.3f} |"
        )


if __name__ == "__main__":
    options = arguments()
    if options.in_kernel:
        (weights if options.weights else measure)(options)
    else:
        sys.exit(launch(options))
