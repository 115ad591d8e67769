"""Jupyter's checkpoints kept under one folder (`make lab`: .jupyter/checkpoints/), never beside
a notebook in a run folder. Jupyter's own FileCheckpoints, given a root of its own, falls back to
the system temp dir for a notebook whose mirrored folder does not exist there yet; this class
makes that folder first. Only Jupyter's server imports it (ContentsManager.checkpoints_class)."""

from __future__ import annotations

import os

from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints


class Checkpoints(AsyncFileCheckpoints):
    def checkpoint_path(self, checkpoint_id: str, path: str) -> str:
        parent = path.strip("/").rpartition("/")[0]
        os.makedirs(self._get_os_path(path=parent), exist_ok=True)
        return super().checkpoint_path(checkpoint_id, path)
