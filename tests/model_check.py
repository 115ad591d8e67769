"""Model checks run inside ONE framework's kernel; tests/test_models.py drives them.

    python model_check.py count FRAMEWORK MODELS [MODEL]  counted trainable parameters of each
                                                        (and MODEL's FLOPs by the adapter)
    python model_check.py reference MODEL OUT.npz       torch: perturbed weights, inputs, outputs
    python model_check.py compare FRAMEWORK MODEL REF    transfer torch weights, run, diff

Families with attention run both attentions (repro.kernel.models.attention): the reference is
torch's fused attention, and torch's explicit attention with the same weights, and Keras' and
Flax's fused and explicit attention with the transferred weights, are each diffed against it.
Train mode is diffed too: the outputs (batch statistics where a family has BatchNorm; no family
has dropout) and every running mean afterwards (BatchNorm momentum), compared sorted, so without
a name map. Families that generate (repro.kernel.generation.ARCHS) also run greedy generation with
the KV cache through the framework adapter's own code (`mode=generate`'s), with each attention:
the tokens must be torch's, and the logits the cache gave each token (the prompt at once, then
one token at a time) must match one full forward pass over the prompt and the tokens fed back.

MODEL is a workload's `model` entry as JSON ({"arch": ..., "config": {...}}); MODELS a JSON
object of them by workload name, counted in one process (a framework import costs seconds).
Prints one JSON object as its last line. Counting never runs a model: torch builds on the meta
device and JAX through jax.eval_shape, so full-size presets cost no memory there; Keras has no
abstract build and allocates the weights.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np

from repro.kernel import frameworks, generation, models
from repro.kernel.models.attention import KINDS
from repro.kernel.models.transfer import TransferError, load_torch_state

BATCH, SEED = 2, 0
PROMPT, NEW_TOKENS = 8, 16  # generation: the first tokens of the input as the prompt; tokens made


def count(framework: str, model: dict) -> int:
    cfg, native = models.config(model), models.native(model["arch"], framework)
    if framework == "torch":
        import torch

        with torch.device("meta"):
            return sum(p.numel() for p in native.build(cfg).parameters())
    if framework == "jax":
        import jax

        variables = jax.eval_shape(lambda: native.build(cfg, seed=SEED)[1])
        return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables["params"]))
    if framework == "mxnet":  # allocates the weights too; BatchNorm statistics are not trained
        net = native.build(cfg)
        return sum(
            int(np.prod(p.shape)) for p in native.parameters(net).values() if p.grad_req != "null"
        )
    net = native.build(cfg)
    counted = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
    del net
    import keras

    keras.backend.clear_session()  # free a full-size model before building the next one
    return counted


def initial_weights(model: dict) -> dict:
    """A Keras model's initial weights, built twice from one seed: how many of its matrices
    there are, how many differ from one another, and whether the second build is the first."""
    import hashlib

    import keras

    def digests() -> list[str]:
        keras.utils.set_random_seed(SEED)
        net = models.native(model["arch"], "tensorflow").build(models.config(model))
        return [
            hashlib.sha256(np.asarray(w).tobytes()).hexdigest()
            for w in net.trainable_weights
            if len(w.shape) >= 2
        ]

    first = digests()
    return {"matrices": len(first), "distinct": len(set(first)), "reproducible": first == digests()}


def to_torch_layout(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x  # images NHWC -> NCHW


def sorted_values(arrays) -> np.ndarray:
    """Every element of `arrays`, sorted: running statistics compared without a name map."""
    return np.sort(np.concatenate([np.ravel(a) for a in arrays])) if arrays else np.zeros(0)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def reference(model: dict, path: str) -> dict:
    """A torch model whose every weight is perturbed (fresh LayerNorm/BN weights are 1 and 0,
    which would hide a mis-mapped tensor; small initial weights keep activations in the linear
    range, which would hide a wrong nonlinearity), its inputs and its eval-mode outputs."""
    import torch

    fw = adapter("torch", model)
    cfg, native = models.config(model), models.native(model["arch"], "torch")
    torch.manual_seed(SEED)
    net = native.build(cfg).eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.mul_(torch.empty_like(t).uniform_(0.5, 2.0))
            else:
                # large enough that activations reach GELU's curved range and attention peaks:
                # a tanh GELU or a wrong LayerNorm epsilon must show in the outputs
                t.mul_(torch.empty_like(t).uniform_(0.5, 1.5)).add_(0.1 * torch.randn_like(t))
        x, _ = models.synthetic_batch(cfg, BATCH, SEED)
        inputs = torch.from_numpy(np.ascontiguousarray(to_torch_layout(x)))
        y = net(inputs).numpy()
        diffs = {}
        for kind in KINDS[1:] if models.has_attention(model["arch"]) else ():
            other = torch_build(native, cfg, kind, net)
            diffs[kind] = float(np.max(np.abs(other(inputs).numpy() - y)))
        state = {f"state/{k}": v.numpy().copy() for k, v in net.state_dict().items()}
        trained = {}
        if model["arch"] == "resnet":  # the training step too: AdamW from the same weights
            with torch.enable_grad():
                trained = train_steps(
                    frameworks.load("torch", seed=SEED), torch_copy(native, cfg, net)
                )
        y_train = net.train()(inputs).numpy()  # batch statistics; updates the running ones
        means = [b.numpy() for n, b in net.named_buffers() if n.endswith("running_mean")]
        generated = generate_all(fw, model, lambda kind: torch_build(native, cfg, kind, net), x)
    if trained:
        trained["adamw/after"] = adamw_torch()
    np.savez(
        path, x=x, y=y, y_train=y_train, running_means=sorted_values(means), **state, **trained
    )
    np.savez(path.removesuffix(".npz") + ".tokens.npz", **generated.pop("tokens"))
    return {
        "generation": generated,
        "output_std": float(y.std()),
        "output_max_abs": float(np.max(np.abs(y))),
        "tensors": len(state),
        "attention_max_abs_diff": diffs,  # torch's other attentions vs its fused one
    }


# AdamW steps compared across frameworks, at repro's default peak rate (resnet): the losses must
# match; the weights are reported, not held to the tolerance: Adam's first step is lr * sign(g),
# so an element whose gradient is fp noise (a sum that cancels) moves by up to 2 lr apart.
# repro's AdamW itself is checked on given gradients (adamw_reference), where no noise enters.
TRAIN_STEPS, TRAIN_LR = 3, 1e-3


def adamw_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A weight vector, TRAIN_STEPS gradients for it (some near zero, some large) and the
    learning rate of each step: what both frameworks' AdamW are given."""
    rng = np.random.default_rng(SEED)
    w = rng.standard_normal(64).astype(np.float32)
    scale = np.geomspace(1e-10, 10, 64).astype(np.float32)
    grads = (rng.standard_normal((TRAIN_STEPS, 64)) * scale).astype(np.float32)
    return w, grads, np.array([1e-3, 5e-4, 2e-3])[:TRAIN_STEPS]


def adamw_torch() -> np.ndarray:
    """torch.optim.AdamW with repro's settings on adamw_inputs: the weights after each step."""
    import torch

    from repro.kernel.frameworks.base import OPTIMIZER as o

    w, grads, lrs = adamw_inputs()
    weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
    optimizer = torch.optim.AdamW(
        [weight],
        lr=1.0,
        betas=(o["beta1"], o["beta2"]),
        eps=o["eps"],
        weight_decay=o["weight_decay"],
    )
    after = []
    for g, lr in zip(grads, lrs, strict=True):
        optimizer.param_groups[0]["lr"] = float(lr)
        weight.grad = torch.from_numpy(g.copy())
        optimizer.step()
        after.append(weight.detach().numpy().copy())
    return np.stack(after)


def adamw_mxnet() -> np.ndarray:
    """The MXNet adapter's AdamW on adamw_inputs, as the Gluon Trainer calls it."""
    import mxnet as mx

    from repro.kernel.frameworks.base import OPTIMIZER as o
    from repro.kernel.frameworks.mxnet import AdamW

    w, grads, lrs = adamw_inputs()
    optimizer = AdamW(o["beta1"], o["beta2"], o["eps"], learning_rate=1.0, wd=o["weight_decay"])
    weight = mx.nd.array(w)
    state = optimizer.create_state(0, weight)
    after = []
    for g, lr in zip(grads, lrs, strict=True):
        optimizer.set_learning_rate(float(lr))
        optimizer.update(0, weight, mx.nd.array(g), state)
        after.append(weight.asnumpy())
    return np.stack(after)


def torch_copy(native, cfg, net):
    """A fresh torch model holding `net`'s weights (to train without touching `net`)."""
    other = native.build(cfg)
    other.load_state_dict(net.state_dict())
    return other


def train_steps(fw, net) -> dict:
    """TRAIN_STEPS of the adapter's own training step (its default compile mode, repro's AdamW)
    on the seeded batch: {"train/loss": each step's loss, "trained/<torch key>": every trainable
    weight afterwards, in torch's layout}."""
    model_cfg = net.cfg
    x, labels = models.synthetic_batch(model_cfg, BATCH, SEED)
    lr_table = np.full(TRAIN_STEPS, TRAIN_LR)
    compile = frameworks.COMPILE_MODES[fw.name][0]
    train, _ = fw.trainer(net, compile, lr_table)
    inputs, labels = fw.to_native(x), fw.to_native(labels)
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = train(inputs, labels)
        fw.sync(loss)
        losses.append(fw.to_float(loss))
    if fw.name == "torch":
        weights = {k: p.detach().numpy().copy() for k, p in net.named_parameters()}
    else:  # mxnet: Gluon names -> torch's (resnet_transfer.GLUON_NAMES, in reverse)
        from repro.kernel.models.resnet_gluon import parameters

        torch_name = {"gamma": "weight", "beta": "bias"}
        weights = {}
        for name, p in parameters(net).items():
            if p.grad_req != "null":
                module, _, tensor = name.rpartition(".")
                weights[f"{module}.{torch_name.get(tensor, tensor)}"] = p.data().asnumpy()
    return {"train/loss": np.array(losses), **{f"trained/{k}": v for k, v in weights.items()}}


def torch_build(native, cfg, kind: str, net):
    other = native.build(cfg, attention=kind).eval()
    other.load_state_dict(net.state_dict())
    return other


def full_logits(framework: str, net, ids: np.ndarray) -> np.ndarray:
    """The logits of one full forward pass (no cache) over ids (N, T)."""
    if framework == "torch":
        import torch

        with torch.no_grad():
            return net(torch.from_numpy(ids)).numpy()
    if framework == "jax":
        module, variables = net
        return np.asarray(module.apply(variables, ids))
    return np.asarray(net(ids, training=False))


def adapter(framework: str, model: dict):
    """The framework's adapter, for the families that generate: loaded first, before the
    framework runs anything (TensorFlow sets its thread pools only before it starts)."""
    if model["arch"] in generation.ARCHS:
        return frameworks.load(framework, seed=SEED)
    return None


def flop_counts(framework: str, model: dict) -> dict:
    """The adapter's FLOP counts of a fresh model on the seeded batch: an inference step with
    each attention, a training step with the fused one; torch also says what its counter
    misses without repro's fused-attention formula."""
    fw = frameworks.load(framework, seed=SEED)
    x, labels = models.synthetic_batch(models.config(model), BATCH, SEED)
    inputs, labels = fw.to_native(x), fw.to_native(labels)
    counts = {}
    for kind in KINDS:
        net, modes = fw.build(model, kind), ("inference", "training")[: 2 if kind == "fused" else 1]
        counts[kind] = {mode: fw.count_flops(net, inputs, labels, mode) for mode in modes}
    if framework == "torch":
        counts["missed"] = torch_counter_names_what_it_missed(model)
    return counts


def torch_counter_names_what_it_missed(model: dict) -> list[str]:
    """torch's counter without the fused-attention formula repro adds: what it names uncounted."""
    import torch

    from repro.kernel.frameworks.base import missed_work
    from repro.kernel.frameworks.torch import flop_counter

    net = models.native(model["arch"], "torch").build(models.config(model)).eval()
    x, _ = models.synthetic_batch(models.config(model), BATCH, SEED)
    counter = flop_counter()
    del counter.flop_registry[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu]
    with counter, torch.no_grad():
        net(torch.from_numpy(np.ascontiguousarray(to_torch_layout(x))))
    return missed_work(counter.uncounted)


def generate_all(fw, model: dict, build, x: np.ndarray) -> dict:
    """For each attention, with `build(kind)`'s net: the greedy tokens of the adapter's generation
    (its default compile mode) on the first PROMPT tokens of x, and the logits the cache gave
    each of them against one full forward pass (no cache) over the prompt and the tokens fed
    back. {"tokens": {}} for a family that does not generate."""
    if fw is None:
        return {"tokens": {}}
    framework = fw.name
    compile = frameworks.COMPILE_MODES[framework][0]
    result, tokens = {"tokens": {}}, {}
    for kind in KINDS:
        net = build(kind)
        prompt = x[:, :PROMPT]
        tokens[kind], cached = generation.greedy(fw, net, fw.to_native(prompt), NEW_TOKENS, compile)
        # the same logits from one pass over the prompt and every fed token, without a cache
        sequence = np.concatenate([prompt, tokens[kind][:, :-1]], axis=1)
        full = full_logits(framework, net, sequence)[:, PROMPT - 1 :]
        result[kind] = {
            "tokens": tokens[kind].tolist(),
            "kv_max_abs_diff": max_abs_diff(cached, full),
            "logits_max_abs": float(np.max(np.abs(full))),
        }
    result["tokens"] = tokens
    return result


def compare(framework: str, model: dict, path: str) -> dict:
    fw = adapter(framework, model)
    cfg, native = models.config(model), models.native(model["arch"], framework)
    ref = np.load(path)
    state = {k.removeprefix("state/"): ref[k] for k in ref.files if k.startswith("state/")}

    @functools.cache  # each attention's model built once (the transfers rewrite every weight)
    def build(kind: str):
        options = models.build_options(model["arch"], kind)
        return native.build(cfg, **options, **({"seed": SEED} if framework == "jax" else {}))

    net = build(KINDS[0])
    first = sorted(state)[0]
    broken = {  # each must be refused whole, before anything is written
        "unmapped": {**state, "no_such_module.weight": np.zeros(3, np.float32)},
        "missing": {k: v for k, v in state.items() if k != first},
        "shape": {**state, first: np.zeros((state[first].shape[0] + 1, *state[first].shape[1:]))},
    }
    refused = {}  # case -> the error's message, or None
    for case, bad in broken.items():
        try:
            load_torch_state(model["arch"], framework, bad, net)
            refused[case] = None
        except TransferError as error:
            refused[case] = str(error)

    def diff(net) -> float:
        net = load_torch_state(model["arch"], framework, state, net)
        if framework == "mxnet":
            y = net(mxnet_input(ref["x"])).asnumpy()
        elif framework == "tensorflow":
            y = np.asarray(net(ref["x"], training=False))
        else:
            module, variables = net
            y = np.asarray(module.apply(variables, ref["x"], train=False))
        return float(np.max(np.abs(y - ref["y"])))

    def train_diffs(net) -> tuple[float, float]:
        """Train mode: |outputs - torch's| and |sorted running means afterwards - torch's|."""
        net = load_torch_state(model["arch"], framework, state, net)
        if framework == "mxnet":
            from mxnet import autograd

            with autograd.record(train_mode=True):  # batch statistics
                out = net(mxnet_input(ref["x"]))
            out.backward()  # MXNet updates BatchNorm's running statistics in the backward pass
            y = out.asnumpy()
            params = native.parameters(net).items()
            means = [p.data().asnumpy() for name, p in params if name.endswith("running_mean")]
        elif framework == "tensorflow":
            import keras

            y = np.asarray(net(ref["x"], training=True))
            weights = [w for w in net.non_trainable_weights if w.path.endswith("moving_mean")]
            means = [keras.ops.convert_to_numpy(w) for w in weights]
        else:
            from flax import traverse_util

            module, variables = net
            y, updates = module.apply(variables, ref["x"], train=True, mutable=["batch_stats"])
            stats = traverse_util.flatten_dict(updates.get("batch_stats", {}))
            means = [np.asarray(v) for key, v in stats.items() if key[-1] == "mean"]
        return (
            max_abs_diff(np.asarray(y), ref["y_train"]),
            max_abs_diff(sorted_values(means), ref["running_means"]),
        )

    def transferred(kind: str):
        return load_torch_state(model["arch"], framework, state, build(kind))

    others = KINDS[1:] if models.has_attention(model["arch"]) else ()
    train, running = train_diffs(net)
    compiled, training = {}, {}  # MXNet: its hybridized graph and its training step
    if framework == "mxnet":
        hybrid = build(KINDS[0])
        hybrid.hybridize(static_alloc=True, static_shape=True)
        compiled["hybridize"] = diff(hybrid)
        fresh = load_torch_state(model["arch"], framework, state, native.build(cfg))
        trained = train_steps(frameworks.load("mxnet", seed=SEED), fresh)
        weights = [k for k in ref.files if k.startswith("trained/")]
        assert sorted(weights) == sorted(k for k in trained if k.startswith("trained/"))
        training = {
            "losses": trained["train/loss"].tolist(),
            "torch_losses": ref["train/loss"].tolist(),
            "loss_max_abs_diff": max_abs_diff(trained["train/loss"], ref["train/loss"]),
            "weight_max_abs_diff": max(max_abs_diff(trained[k], ref[k]) for k in weights),
            "weight_max_abs": max(float(np.max(np.abs(ref[k]))) for k in weights),
            "adamw_max_abs_diff": max_abs_diff(adamw_mxnet(), ref["adamw/after"]),
            "adamw_max_abs": float(np.max(np.abs(ref["adamw/after"]))),
            "lr": TRAIN_LR,
            "steps": TRAIN_STEPS,
        }
    return {
        "compiled_max_abs_diff": compiled,
        "training": training,
        "max_abs_diff": diff(net),
        "output_max_abs": float(np.max(np.abs(ref["y"]))),
        "train_max_abs_diff": train,
        "train_output_max_abs": float(np.max(np.abs(ref["y_train"]))),
        "running_mean_max_abs_diff": running,
        "running_mean_max_abs": float(np.max(np.abs(ref["running_means"]), initial=0.0)),
        "running_means": int(ref["running_means"].size),
        "refused": refused,
        "attention_max_abs_diff": {kind: diff(build(kind)) for kind in others},
        "generation": generated(fw, model, ref["x"], path, transferred),
    }


def mxnet_input(x: np.ndarray):
    """Images NHWC -> the NCHW NDArray the Gluon model takes."""
    import mxnet as mx

    return mx.nd.array(np.ascontiguousarray(to_torch_layout(x)), dtype=np.float32)


def generated(fw, model: dict, x: np.ndarray, path: str, build) -> dict:
    """generate_all with `build(kind)`'s transferred weights, each attention's tokens checked
    against those of torch's fused attention (same_tokens)."""
    result = generate_all(fw, model, build, x)
    result.pop("tokens")
    reference = np.load(path.removesuffix(".npz") + ".tokens.npz")
    for kind in set(result) & set(KINDS):
        result[kind]["same_tokens"] = result[kind]["tokens"] == reference["fused"].tolist()
        result[kind]["torch_tokens"] = reference["fused"].tolist()
    return result


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command, *args = sys.argv[1:]
    if command == "count":  # FLOP counts first: the adapter sets TensorFlow's threads up front
        flops = flop_counts(args[0], json.loads(args[2])) if args[2:] else {}
        every = json.loads(args[1]).items()
        result = {"params": {name: count(args[0], model) for name, model in every}, "flops": flops}
    elif command == "initial":
        result = {name: initial_weights(model) for name, model in json.loads(args[0]).items()}
    elif command == "reference":
        result = reference(json.loads(args[0]), args[1])
    else:
        result = compare(args[0], json.loads(args[1]), args[2])
    print(json.dumps(result))
