"""What a rerun may change in a stage that already has progress.

A stage's settings and data are hashed into the run manifest; a rerun whose stage
differs from a started one is refused, naming the fields that differ, so that two runs
are never silently mixed. One change is allowed on request: with
``Curriculum(..., resume="continue")`` a stage that has not finished may change its
optimiser settings (:data:`OPTIMISER_FIELDS`, e.g. a lower ``lr`` after a
``NonFiniteLossError``) and continue from its last checkpoint. The manifest records each
such change with the step it took effect at, and keeps the earlier settings hashes so
that the checkpoint written before the change is still accepted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["OPTIMISER_FIELDS", "ResumeError", "accept_change", "diff", "now"]


class ResumeError(ValueError):
    """A checkpoint folder cannot be resumed with these stages and settings.

    The message names what differs (settings, seed, a missing checkpoint) and the way
    out (``resume="continue"``, ``resume="never"`` or another ``checkpoint_dir``).
    """


#: Stage settings that ``resume="continue"`` lets change for a stage that has not finished.
OPTIMISER_FIELDS = (
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "warmup_steps",
    "warmup_fraction",
    "final_lr_ratio",
    "clip_grad_norm",
)
_MISSING = "<missing>"


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``["lr: 0.1 -> 0.02", "method.temperature: 0.5 -> 0.2"]`` between two settings."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += diff(old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def accept_change(root: Path, old: dict[str, Any], new: dict[str, Any], resume: str) -> None:
    """Record an allowed ``resume="continue"`` change in ``new``, or raise ``ValueError``.

    Args:
        root: the checkpoint folder (for messages).
        old: the stage's entry in the manifest on disk (it has progress).
        new: the entry built from the stage as configured now; updated in place.
        resume: the Curriculum's ``resume`` option.

    Raises:
        ValueError: the change is not allowed; the message names the fields that differ
            and what the user can do.
    """
    i = int(old["index"])
    changes = diff(old.get("config"), new["config"])
    if old.get("data_fingerprint") != new["data_fingerprint"]:
        changes.append("data: the dataset's files, length or subset changed")
    old_cfg, new_cfg = old.get("config") or {}, new["config"]
    fields = {k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k)}
    optimiser_only = bool(fields) and fields <= set(OPTIMISER_FIELDS)
    optimiser_only = optimiser_only and old.get("data_fingerprint") == new["data_fingerprint"]
    what = "; ".join(changes or ["settings differ"])
    prefix = f"stage {i} ({old.get('name')}) in {root} was run with other settings: {what}. "
    done = old.get("status") == "done"
    if optimiser_only and not done:
        if resume == "continue":
            kept = (root / str(old.get("folder")) / "last.pt").is_file()
            at_step = int(old.get("steps_done", 0)) if kept else 0
            new["changes"] = [
                *old.get("changes", []),
                {"at_step": at_step, "changed": changes, "time": now()},
            ]
            new["accepted_hashes"] = [*old.get("accepted_hashes", []), old["config_hash"]]
            return
        hint = "To continue from its last checkpoint with these settings, pass resume='continue'."
    elif optimiser_only:
        hint = (
            "The stage has finished, so new settings would not change its weights; restore "
            "its settings."
        )
    else:
        hint = f"Only {', '.join(OPTIMISER_FIELDS)} may change (with resume='continue')."
    raise ResumeError(
        f"{prefix}{hint} Use another checkpoint_dir, or resume='never' to start over."
    )
