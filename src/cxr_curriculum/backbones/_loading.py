"""A backbone's ``weights=`` argument, and matching a state dict to its ``body``: key
forms, first-conv adaptation, errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from ._adapt import adapt_conv_weight
from ._parts import Parts
from ._weights import imagenet_state_dict, load_checkpoint

__all__ = ["WeightsArg", "load_body_state", "load_weights"]

#: What ``Backbone(weights=...)`` takes: ``"imagenet"``, a checkpoint path, a state dict, None.
WeightsArg = str | os.PathLike[str] | Mapping[str, Tensor] | None

_MAX_LISTED = 8


def _strip(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor] | None:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return None


def _to_body_keys(state: Mapping[str, Tensor], parts: Parts) -> dict[str, Tensor]:
    """Accept the Backbone form (``body.*``) or the library's own form (torchvision/timm keys)."""
    state = _strip(state, "module.") or dict(state)  # DistributedDataParallel checkpoints
    body_form = _strip(state, "body.")
    if body_form is not None:
        return body_form
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if parts.head_prefixes and key.startswith(parts.head_prefixes):
            continue
        out[parts.source_prefix + parts.fix_key(key)] = value
    return out


def _listed(keys: list[str]) -> str:
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def load_body_state(
    parts: Parts, state: Mapping[str, Tensor], in_chans: int, origin: str, name: str
) -> None:
    """Load ``state`` into ``parts.body`` strictly, with a clear error on any mismatch.

    Keys may be in the Backbone form (``body.conv1.weight``, as written by
    :meth:`Backbone.save`), the library's own form (``conv1.weight``; the classifier
    keys are dropped and legacy DenseNet keys renamed), optionally behind a
    ``module.`` prefix. A first-conv weight with 3 input channels is adapted to
    ``in_chans`` (RGB kernels summed for one channel; for a ViT the patch embedding), and
    ``parts.adapt_state`` may adapt further (a ViT's positional embeddings of another grid
    are resampled to its own).

    Args:
        parts: The backbone's parts.
        state: The state dict to load.
        in_chans: The backbone's input channels.
        origin: Where ``state`` came from (a file name, ``"state dict"``, ...), for errors.
        name: The backbone name, for errors.

    Raises:
        ValueError: Missing keys, unexpected keys or shape mismatches; the message names
            ``origin`` and lists the keys.
    """
    body_state = parts.adapt_state(_to_body_keys(state, parts))
    conv = body_state.get(parts.first_conv)
    if conv is not None and conv.ndim == 4 and conv.shape[1] == 3 and in_chans != 3:
        body_state[parts.first_conv] = adapt_conv_weight(conv, in_chans)
    expected = parts.body.state_dict()
    for key in expected:  # old checkpoints (e.g. torchvision's DenseNets) predate this buffer
        if key.endswith(".num_batches_tracked") and key not in body_state:
            body_state[key] = torch.zeros_like(expected[key])
    missing = sorted(set(expected) - set(body_state))
    unexpected = sorted(set(body_state) - set(expected))
    wrong_shape = sorted(
        f"{k} {tuple(body_state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(body_state)
        if body_state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} shape mismatches: {_listed(wrong_shape)}")
        raise ValueError(
            f"weights from {origin} do not match backbone {name!r} (in_chans={in_chans}): "
            + "; ".join(problems)
        )
    parts.body.load_state_dict(body_state, strict=True)


def load_weights(parts: Parts, weights: WeightsArg, in_chans: int, name: str) -> str:
    """Load ``weights`` (not None) into ``parts.body``; return where they came from.

    Returns:
        ``"state dict"``, the ImageNet source, or ``"file:<file name>"`` (also what
        :meth:`~cxr_curriculum.backbones.Backbone.from_file` records).

    Raises:
        ValueError: Not ``"imagenet"``, an existing file or a state dict, or weights that
            do not fit the architecture.
    """
    if isinstance(weights, Mapping):
        load_body_state(parts, weights, in_chans, "the given state dict", name)
        return "state dict"
    if isinstance(weights, str) and weights == "imagenet":
        state, source = imagenet_state_dict(name, in_chans)
        load_body_state(parts, state, in_chans, source, name)
        return source
    if isinstance(weights, (str, os.PathLike)):
        file = Path(weights)
        if not file.exists():
            raise ValueError(
                f"weights={str(weights)!r} is neither 'imagenet' nor an existing file; "
                "allowed: None, 'imagenet', a checkpoint path or a state dict"
            )
        load_body_state(parts, load_checkpoint(file), in_chans, str(file), name)
        return f"file:{file.name}"  # also what from_file records
    raise ValueError(
        f"weights must be None, 'imagenet', a path or a state dict, got {type(weights)}"
    )
