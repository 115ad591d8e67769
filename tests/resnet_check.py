"""ResNet checks run inside ONE framework's interpreter; tests/test_models_resnet.py drives them.

    python resnet_check.py reference OUT.npz          # torch: random BN stats; save weights, x, y
    python resnet_check.py compare FRAMEWORK REF.npz  # transfer torch weights, run, diff

FRAMEWORK is torch, tensorflow or jax. Prints one JSON object as its last stdout line. Imports
numpy and the one framework it is asked about, never two frameworks in one process.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from repro.models.resnet import ResNetConfig

TINY = ResNetConfig(depths=(1, 1, 1, 1), width=16, num_classes=10, image_size=64)
SEED = 0
BATCH = 4


def reference(path: str) -> dict:
    """Tiny torch ResNet with random BN affine params and running stats (else gamma=1, beta=0,
    mean=0, var=1 would hide a mis-mapped BN tensor). Saves its weights, the input, the eval
    logits, and the train-mode logits + stem BN running mean after one train step."""
    import torch

    from repro.models import resnet_torch

    torch.manual_seed(SEED)
    model = resnet_torch.build(TINY)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    state = {f"state/{k}": v.numpy().copy() for k, v in model.state_dict().items()}
    x = torch.randn(BATCH, TINY.in_channels, TINY.image_size, TINY.image_size)  # NCHW
    with torch.no_grad():
        y = model.eval()(x)
        y_train = model.train()(x)  # batch statistics; updates the running stats
    bn1_mean = model.bn1.running_mean.numpy()
    np.savez(path, x=x.numpy(), y=y.numpy(), y_train=y_train.numpy(), bn1_mean=bn1_mean, **state)
    return {"logit_std": float(y.std()), "logit_max_abs": float(y.abs().max())}


def transfer_target(framework: str):
    """(transfer, target, forward), forward(transfer(state, target), x_nhwc, train) giving
    (logits, stem BN running mean afterwards)."""
    from repro.models import resnet_transfer as transfer

    if framework == "tensorflow":
        import keras

        from repro.models import resnet_keras

        def keras_transfer(state, model):  # in place; hand the model on
            transfer.torch_state_to_keras(state, model)
            return model

        def keras_forward(model, x, train):
            y = keras.ops.convert_to_numpy(model(x, training=train))
            return y, keras.ops.convert_to_numpy(model.get_layer("bn1").moving_mean)

        return keras_transfer, resnet_keras.build(TINY), keras_forward
    if framework == "jax":
        import jax

        from repro.models import resnet_flax

        module, variables = resnet_flax.build(TINY, seed=SEED)

        def flax_forward(variables, x, train):
            apply = jax.jit(module.apply, static_argnames=("train", "mutable"))
            y, updates = apply(variables, x, train=train, mutable=("batch_stats",))
            return np.asarray(y), np.asarray(updates["batch_stats"]["bn1"]["mean"])

        return transfer.torch_state_to_flax, variables, flax_forward
    raise ValueError(f"no transfer target for {framework!r}")


def compare(framework: str, path: str) -> dict:
    from repro.models.transfer import TransferError

    ref = np.load(path)
    state = {k.removeprefix("state/"): ref[k] for k in ref.files if k.startswith("state/")}
    x = ref["x"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    transfer, target, forward = transfer_target(framework)
    # broken state_dicts must raise before writing anything (so target stays usable)
    bad_inputs = {
        "unmapped": {**state, "layer9.0.conv1.weight": np.zeros((1, 1, 1, 1), np.float32)},
        "shape": {**state, "fc.bias": np.zeros(TINY.num_classes + 1, np.float32)},
        "missing": {k: v for k, v in state.items() if k != "layer1.0.bn3.running_var"},
    }
    errors: dict[str, str | None] = {}
    for case, bad in bad_inputs.items():
        try:
            transfer(bad, target)
            errors[case] = None
        except TransferError as e:
            errors[case] = str(e)
    y, _ = forward(transfer(state, target), x, train=False)
    y_train, bn1_mean = forward(transfer(state, target), x, train=True)

    def max_diff(a, b):
        return float(np.max(np.abs(a - b)))

    return {
        "max_abs_diff": max_diff(y, ref["y"]),  # eval: running stats
        "train_max_abs_diff": max_diff(y_train, ref["y_train"]),  # train: batch stats
        "running_mean_max_abs_diff": max_diff(bn1_mean, ref["bn1_mean"]),  # momentum
        "errors": errors,
    }


def main(argv: list[str]) -> None:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    mode, *args = argv
    if mode == "reference":
        result = reference(*args)
    elif mode == "compare":
        result = compare(*args)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
