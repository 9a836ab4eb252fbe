"""Orbax checkpoints of a chunk of runs, with a fingerprint against misuse.

Orbax writes each step into a temporary directory and renames it when the
write has finished, so a crash mid-write leaves the previous step as the
latest one. The fingerprint (method, config, seeds, data shape) is stored
beside the arrays and compared before anything is loaded, so resuming with
other settings fails with a clear message instead of loading wrong weights.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from deepclust_jax.errors import CheckpointError


class Checkpointer:
  """Saves and restores ``{"params", "state", "opt_states"}`` plus a JSON position."""

  def __init__(self, directory: str | pathlib.Path, fingerprint: dict[str, Any],
               keep: int = 2):
    self.directory = pathlib.Path(directory).absolute()
    self.fingerprint = fingerprint
    self._manager = ocp.CheckpointManager(
        self.directory,
        # Synchronous: training waits for each save anyway, and async saves warn.
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=False),
        item_names=("state", "meta"),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, position: dict[str, Any]) -> None:
    meta = {"fingerprint": self.fingerprint, "position": position}
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def read_position(self, step: int) -> dict[str, Any]:
    """The training position saved with ``step``, after checking the fingerprint.

    Raises:
      CheckpointError: the checkpoint is unreadable or belongs to another run.
    """
    path = self.directory / str(step)
    try:
      meta = self._manager.restore(
          step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types for unreadable files
      raise CheckpointError(
          f"checkpoint {path} is corrupt or unreadable ({_reason(e)});"
          " delete it or run without --resume") from None
    saved = meta.get("fingerprint", {}) if isinstance(meta, dict) else {}
    if saved != self.fingerprint:
      diff = sorted(k for k in set(self.fingerprint) | set(saved)
                    if self.fingerprint.get(k) != saved.get(k))
      raise CheckpointError(
          f"checkpoint {path} was written by a different run (differs in: "
          f"{', '.join(diff)}); use another --out directory or run without --resume")
    return meta["position"]

  def restore_state(self, step: int, abstract_state: Any) -> Any:
    """Restores the arrays of ``step`` into the structure of ``abstract_state``."""
    try:
      return self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state)))["state"]
    except Exception as e:
      raise CheckpointError(
          f"checkpoint {self.directory / str(step)} does not match this model's "
          f"parameters or is corrupt ({_reason(e)}); delete it or run without "
          "--resume") from None

  def close(self) -> None:
    self._manager.close()


def _reason(e: BaseException, limit: int = 300) -> str:
  """Orbax's error in one line: without TensorStore's spec dump, at most ``limit`` characters."""
  text = " ".join(str(e).split("[tensorstore_spec=")[0].split())
  text = f"{type(e).__name__}: {text}"
  return text if len(text) <= limit else text[:limit - 3] + "..."


def abstract(tree: Any) -> Any:
  """Shape/dtype skeleton of ``tree`` (what orbax restores into)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
