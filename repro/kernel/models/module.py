"""`module:` — the user's own code: `module: path/to/file.py:function` (stdlib only here; the
build is in module_torch.py).

The contract: `function()`, called with no arguments, returns a torch.nn.Module, or a pair
`(model, example)` where `example` is one batch of its input: images (N, C, H, W) float with
H == W, or token ids (N, T) integer. The input shape comes from the example, else from the
spec (image_size and in_channels, or vocab_size and sequence_length); the task and class count
from the model's output on one sample: (1, classes) is classification, (1, T, vocabulary) a
causal LM. The model's forward takes that one tensor and returns logits.

The file is code: it travels in the report's code snapshot (repro/user/<its name>, beside the
library), the kernel builds from that copy, and a rerun of the report runs it only with --trust.
Only this one file travels: what it imports must be installed in the kernel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from repro.kernel.models.config_base import Text
from repro.kernel.models.source import SourceConfig

CARRIED = "repro/user"  # where the file travels in the code snapshot, by its own name
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.py")  # a plain name (snapshot.SAFE_PATH)


@dataclass(frozen=True)
class ModuleConfig(SourceConfig):
    file: Text = ""  # the user's file, as given
    function: Text = ""  # the function in it that returns the model
    sha256: Text | None = None  # the file's, recorded by the probe

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.function.isidentifier():
            raise ValueError(f"module: function {self.function!r} is not a Python name")

    @property
    def carried(self) -> str:
        """The file's path in the code snapshot."""
        return f"{CARRIED}/{self.file.replace(chr(92), '/').rsplit('/', 1)[-1]}"
