"""Data-parallel training over N devices (in-kernel side): one global batch split evenly across
the devices (weak scaling: batch_size samples on each; strong: a global batch of batch_size),
each device computing the loss and gradients of its part, the gradients averaged, and every
replica applying the same update to the same weights. The adapters build the model,
the optimizer and the step (`repro.kernel.frameworks`); this module only replicates them:

- torch: DistributedDataParallel, one process per device (gloo on a CPU, NCCL on GPUs, untried). The
  calling process is rank 0; ranks 1..N-1 are spawned processes that run one step each time rank
  0 does (rank 0 broadcasts "step" or "stop"). They meet through a TCP store on loopback on a
  port the system picks. On a CPU each rank takes threads // N of the run's threads.
- jax: one process; the weights replicated and the batch sharded over a 1-D mesh ("data"); jit
  inserts the all-reduce. CPU devices need XLA_FLAGS set before the backend starts
  (`frameworks.load(..., devices=N)` sets it).
- tensorflow: tf.distribute.MirroredStrategy over the first N logical devices; on a CPU they are
  logical CPUs the adapter configures before TensorFlow initialises its devices. Keras scales each
  replica's loss by 1/N and its optimizer sums the replicas' gradients.

The loss a step returns is the global batch's mean. BatchNorm (ResNet) differs by framework, as
each framework's own data parallelism does: torch's DDP and TensorFlow's MirroredStrategy
normalise each device's part with its own statistics (no SyncBatchNorm), so their loss on N
devices legitimately differs from one device's; JAX's mesh is one program over the global batch,
so its batch statistics are the global batch's (as SyncBatchNorm's).

On a CPU the "devices" share the same cores: they test correctness, not speed.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from repro.kernel.frameworks import DATA_PARALLEL_COMPILE_MODES as COMPILE_MODES
from repro.kernel.frameworks.base import Adapter


@dataclass
class Replicated:
    """A data-parallel training step: `step()` runs one step on every device and returns the
    global batch's mean loss; `net` is rank 0's model (torch: DDP-wrapped), `weights()` its
    trainable weights (the same on every replica); `close()` ends the other ranks."""

    fw: Adapter
    net: object
    step: Callable
    close: Callable[[], None] = field(default=lambda: None)

    def weights(self) -> list[np.ndarray]:
        return trained_weights(self.fw, self.net, self.step)


def split(array: np.ndarray, devices: int, rank: int) -> np.ndarray:
    """Device `rank`'s part of a global batch (its leading axis split evenly)."""
    if len(array) % devices:
        raise ValueError(f"a batch of {len(array)} does not split evenly over {devices} devices")
    part = len(array) // devices
    return array[rank * part : (rank + 1) * part]


def training(
    fw: Adapter,
    model: dict,
    inputs: np.ndarray,
    labels: np.ndarray,
    *,
    devices: int,
    compile: str,
    lr_table,
    attention: str = "fused",
) -> Replicated:
    """One data-parallel training step of `model` over `devices` devices on the global batch
    (`inputs`, `labels`, numpy), built by the adapter `fw`."""
    if compile not in COMPILE_MODES[fw.name]:
        raise ValueError(
            f"compile={compile!r} with devices={devices}; a data-parallel {fw.name} step offers "
            f"{', '.join(COMPILE_MODES[fw.name])}"
        )
    build = {"torch": _torch, "jax": _jax, "tensorflow": _tensorflow}[fw.name]
    return build(fw, model, inputs, labels, devices, compile, list(lr_table), attention)


def trained_weights(fw: Adapter, net, step) -> list[np.ndarray]:
    """The trainable weights, as numpy, in the model's order: of `net` (torch, TensorFlow; a DDP
    wrapper's module), or of a JAX training `step` (its state holds them)."""
    if fw.name == "jax":
        import jax

        return [np.asarray(w) for w in jax.tree_util.tree_leaves(step.params())]
    if fw.name == "tensorflow":
        return [np.asarray(w.numpy()) for w in net.trainable_weights]
    module = getattr(net, "module", net)
    return [p.detach().cpu().numpy().copy() for p in module.parameters()]


# -- torch --------------------------------------------------------------------------------------
def _torch(fw, model, inputs, labels, devices, compile, lr_table, attention) -> Replicated:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    store = dist.TCPStore("127.0.0.1", 0, devices, is_master=True, wait_for_workers=False)
    settings = {
        "threads": fw.threads,
        "seed": fw.seed,
        "precision": fw.precision,
        "deterministic": fw.deterministic,
        "device": fw.requested_device,
        "omp_wait_policy": "unset",  # as the kernel set it: inherited with its environment
    }
    job = (settings, model, inputs, labels, devices, compile, lr_table, attention, store.port)
    spawn = mp.get_context("spawn")
    followers = [
        spawn.Process(target=_follow, args=(rank, *job), daemon=True) for rank in range(1, devices)
    ]
    for process in followers:
        process.start()
    net, run = _torch_replica(fw, store, 0, *job[1:-1])
    atexit.register(lambda: close())  # the other ranks stop with this process

    def step():
        _command(1)
        return run()

    def close():
        if followers:
            _command(0)
            for process in followers:
                process.join(timeout=60)
            dist.destroy_process_group()
            followers.clear()

    return Replicated(fw, net, step, close)


def _command(value: int) -> int:
    """Rank 0 says what every rank does next (1: a step, 0: stop); the others hear it."""
    import torch
    import torch.distributed as dist

    order = torch.tensor([value])
    dist.broadcast(order, src=0)
    return int(order.item())


def _torch_replica(fw, store, rank, model, inputs, labels, devices, compile, lr_table, attention):
    """This rank's DDP-wrapped model and its step (the adapter's, on its part of the batch)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    gpu = fw.device == "gpu"
    if gpu:
        _enough(torch.cuda.device_count(), devices, "torch", "one GPU per device")
    # GPUs: NCCL for the gradients, gloo for rank 0's orders (CPU tensors)
    backend = "cpu:gloo,cuda:nccl" if gpu else "gloo"
    dist.init_process_group(backend, store=store, rank=rank, world_size=devices)
    if gpu:
        fw.torch_device = torch.device("cuda", rank)
        torch.cuda.set_device(fw.torch_device)
    else:  # the ranks share the run's threads (and its cores), rather than each taking them all
        torch.set_num_threads(max(1, fw.threads // devices))
    net = DistributedDataParallel(fw.build(model, attention), device_ids=[rank] if gpu else None)
    x, y = (fw.to_native(split(a, devices, rank)) for a in (inputs, labels))
    local = fw.step(net, x, y, mode="training", compile=compile, lr_table=lr_table)

    def run():
        loss = local()
        dist.all_reduce(loss)  # summed: gloo has no average
        return loss / devices

    return net, run


def _follow(rank, settings, model, inputs, labels, devices, compile, lr_table, attention, port):
    """A spawned rank: build the same replica, then step whenever rank 0 says so."""
    import torch.distributed as dist

    from repro.kernel import frameworks

    fw = frameworks.load("torch", **settings)
    store = dist.TCPStore("127.0.0.1", port, devices, is_master=False)
    _, run = _torch_replica(
        fw, store, rank, model, inputs, labels, devices, compile, lr_table, attention
    )
    while _command(0):
        run()
    dist.destroy_process_group()


# -- jax ----------------------------------------------------------------------------------------
def _jax(fw, model, inputs, labels, devices, compile, lr_table, attention) -> Replicated:
    import jax
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    available = jax.devices(fw.jax_device.platform)
    _enough(len(available), devices, "jax", "on a CPU, load it with devices=N")
    mesh = jax.make_mesh((devices,), ("data",), (AxisType.Auto,), devices=available[:devices])
    fw.replicated = NamedSharding(mesh, PartitionSpec())
    module, variables = fw.build(model, attention)
    variables = jax.device_put(variables, fw.replicated)
    batch = NamedSharding(mesh, PartitionSpec("data"))
    x, y = (jax.device_put(a, batch) for a in (inputs, labels))
    step = fw.step((module, variables), x, y, mode="training", compile=compile, lr_table=lr_table)

    return Replicated(fw, (module, variables), step)


# -- tensorflow ---------------------------------------------------------------------------------
def _tensorflow(fw, model, inputs, labels, devices, compile, lr_table, attention) -> Replicated:
    import tensorflow as tf

    kind = "GPU" if fw.device == "gpu" else "CPU"
    available = tf.config.list_logical_devices(kind)
    _enough(len(available), devices, "tensorflow", "on a CPU, load it with devices=N")
    strategy = tf.distribute.MirroredStrategy([d.name for d in available[:devices]])
    with strategy.scope():
        net = fw.build(model, attention)
        train = fw.train_function(net, lr_table)

    def part(array):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(split(array, devices, ctx.replica_id_in_sync_group))
        )

    x, y = part(inputs), part(labels)

    @tf.function
    def replicated(x, y):
        losses = strategy.run(train, args=(x, y))  # each already scaled by 1/N (Keras)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return Replicated(fw, net, lambda: replicated(x, y))


def _enough(available: int, devices: int, framework: str, how: str) -> None:
    if available < devices:
        raise RuntimeError(f"devices={devices}, but {framework} sees {available}: {how}")
