"""The residual add of repro's Keras, Flax and Gluon ResNet-50: does each framework already avoid
the extra buffer that torch's relu(out + identity) allocated (benchmarks/vs_torchvision.py)?

- tensorflow (Keras 3 in a tf.function graph, the adapter's default): TF's own profiler over
  the forwards; the ops of the residual adds (the Keras Add layers, as Grappler rewrote them)
  and of the ReLUs after them, their time per forward and share of all ops' time. Keras has no
  in-place op; TF's element-wise kernels reuse an input buffer that nothing else still reads.
- jax (Flax under jax.jit): the compiled HLO; a loop fusion that reads two activations is a
  residual add fused with its BatchNorms and ReLU (one pass, one output buffer); element-wise
  ops left outside any fusion would each write a buffer.
- mxnet (Gluon): hybridized, the graph's memory planner chooses in-place itself (the same graph
  whatever the Python writes); imperative inference, alternating rounds of the block as it is
  and with the add and ReLU in place (`out += identity`, relu(out=out)): ms per batch, and the
  largest output difference (must be 0).

    .venv/bin/python benchmarks/residual_add.py [--frameworks tensorflow jax mxnet]
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
RESIDUAL = re.compile(r"^[^/]+/add(_\d+)*/")  # ops of a Keras Add layer ("add", "add_3_1", ...)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", nargs="+", default=["tensorflow", "jax", "mxnet"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--in-kernel", help=argparse.SUPPRESS)
    return parser.parse_args()


def batch(args: argparse.Namespace, cfg):
    from repro.kernel import models

    return models.synthetic_batch(cfg, args.batch_size, seed=0)[0]  # (N, H, W, C)


def tensorflow(args: argparse.Namespace, cfg) -> None:
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    from repro.kernel.models import resnet_keras

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    net = resnet_keras.build(cfg)
    forward = tf.function(lambda v: net(v, training=False))
    x = tf.constant(batch(args, cfg))
    graph = forward.get_concrete_function(x).graph
    relus = {
        op.name
        for op in graph.get_operations()
        if op.type == "Relu" and RESIDUAL.match(op.inputs[0].op.name)
    }
    forward(x).numpy()
    folder = tempfile.mkdtemp()
    tf.profiler.experimental.start(folder)
    for _ in range(args.rounds):
        forward(x).numpy()
    tf.profiler.experimental.stop()
    space = xplane_pb2.XSpace()
    space.ParseFromString(next(Path(folder).rglob("*.xplane.pb")).read_bytes())
    total = adds = after = 0
    kinds = set()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name, _, kind = plane.event_metadata[event.metadata_id].name.rpartition(":")
                if "/" not in name:  # not an op of the graph
                    continue
                total += event.duration_ps
                if RESIDUAL.match(name):
                    adds += event.duration_ps
                    kinds.add(kind)
                elif name in relus:
                    after += event.duration_ps
    per = 1e9 * args.rounds  # ps -> ms per forward
    print(
        f"tensorflow {tf.__version__}: residual adds as {sorted(kinds)}: {adds / per:.2f} ms per "
        f"forward ({adds / total:.1%} of all ops' time), their ReLUs {after / per:.2f} ms "
        f"({after / total:.1%}); all ops {total / per:.1f} ms per forward"
    )


def jax(args: argparse.Namespace, cfg) -> None:
    import jax

    from repro.kernel.models import resnet_flax

    module, variables = resnet_flax.build(cfg)
    predict = jax.jit(lambda v, x: module.apply(v, x, train=False))
    hlo = predict.lower(variables, batch(args, cfg)).compile().as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    shapes = dict(re.findall(r"^\s*(%[\w.-]+) = f32\[([\d,]+)\]", entry, re.M))
    weights = set(re.findall(r"^\s*(%[\w.-]+) = \S+ parameter\(", entry, re.M))
    rank4 = {name for name, dims in shapes.items() if dims.count(",") == 3} - weights
    fusions = re.findall(r"= f32\[[\d,]+\]\S* fusion\(([^)]*)\), kind=(\w+)", entry)
    residual = [
        kind
        for operands, kind in fusions
        if len(set(re.findall(r"%[\w.-]+", operands)) & rank4) >= 2
    ]
    loose = re.findall(r"= f32\[\d+,\d+,\d+,\d+\]\S* (add|multiply|maximum|subtract)\(", entry)
    print(
        f"jax {jax.__version__}: fusions reading two activations (residual add with its "
        f"BatchNorms and ReLU): {len(residual)} ({', '.join(sorted(set(residual)))}); "
        f"element-wise ops on activations outside a fusion: {len(loose)}"
    )


def mxnet(args: argparse.Namespace, cfg) -> None:
    import mxnet as mx

    from repro.kernel.models import resnet_gluon

    def in_place(self, F, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return F.relu(out, out=out)

    mx.random.seed(0)
    net = resnet_gluon.build(cfg)
    x = mx.nd.array(batch(args, cfg).transpose(0, 3, 1, 2))
    blocks = [b for stage in range(4) for b in getattr(net, f"layer{stage + 1}")]
    variants = {"as is": type(blocks[0]).hybrid_forward, "in place": in_place}
    times: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {}
    for r in range(args.rounds + 1):  # the first round warms up
        for name in sorted(variants, reverse=r % 2 == 1):
            for b in blocks:
                b.hybrid_forward = variants[name].__get__(b)
            start = time.perf_counter()
            outputs[name] = net(x).asnumpy()
            if r:
                times[name].append(time.perf_counter() - start)
    diff = abs(outputs["as is"] - outputs["in place"]).max()
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    print(
        f"mxnet {mx.__version__} imperative: as is {medians['as is']:.1f} ms per batch, in place "
        f"{medians['in place']:.1f} ms ({medians['in place'] / medians['as is']:.3f}x), "
        f"max output difference {diff:.3g}"
    )


def main() -> None:
    args = arguments()
    if args.in_kernel:
        from repro.kernel.models.resnet import ResNetConfig

        cfg = ResNetConfig()  # ResNet-50, as the resnet-50 workload
        globals()[args.in_kernel](args, cfg)
        return
    from repro.driver import kernels

    print(f"ResNet-50 inference, fp32, batch {args.batch_size}, {args.threads} threads")
    threads = str(args.threads)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["OMP_NUM_THREADS"] = threads
    for framework in args.frameworks:
        python = kernels.ensure(f"{framework}-cpu").python
        cmd = [str(python), __file__, "--in-kernel", framework, *sys.argv[1:]]
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
