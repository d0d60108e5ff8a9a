"""Reading weights: ImageNet (torchvision / timm), checkpoint files and state dicts.

Nothing here waits on the network: before any download the host is probed with a
short TCP connect, and a failed download is turned into :class:`WeightsNotAvailableError`
whose message names the file, the cache folder to put it in, and ``weights=path``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import Tensor

from .._artefacts import ArtefactIntegrityError, verify_content
from ._io import _is_safetensors, read_safetensors
from ._timm import timm_imagenet_state_dict
from ._torchvision import imagenet_weights_enum

__all__ = [
    "ArtefactIntegrityError",
    "WeightsNotAvailableError",
    "can_reach",
    "imagenet_state_dict",
    "load_checkpoint",
]

CONNECT_TIMEOUT_S = 3.0


class WeightsNotAvailableError(RuntimeError):
    """Pretrained weights are neither in the local cache nor downloadable (e.g. offline)."""


def can_reach(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the host of ``url`` opens within ``timeout`` seconds."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _torchvision_imagenet(name: str) -> tuple[dict[str, Tensor], str]:
    entry = imagenet_weights_enum(name)
    url = entry.url
    filename = os.path.basename(urlparse(url).path)
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    cached = cache_dir / filename

    def unavailable(reason: str) -> WeightsNotAvailableError:
        return WeightsNotAvailableError(
            f"ImageNet weights for {name!r} ({entry}) are not available: {reason}. "
            f"Download {url} on a machine with internet access and put the file "
            f"{filename!r} in the torch hub cache folder {cache_dir} "
            "(torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it), "
            "or pass weights=<path to a checkpoint file> instead."
        )

    if not cached.exists() and not can_reach(url):
        raise unavailable(f"{cached} does not exist and {urlparse(url).hostname} is unreachable")
    try:
        state = torch.hub.load_state_dict_from_url(
            url, model_dir=str(cache_dir), progress=True, check_hash=True, weights_only=True
        )
    except (URLError, OSError, TimeoutError) as err:
        raise unavailable(f"download failed ({err})") from err
    return state, f"torchvision:{entry}"


def _timm_imagenet(arch: str, in_chans: int) -> tuple[dict[str, Tensor], str]:
    timm_url = "https://huggingface.co"
    if can_reach(timm_url):
        try:
            return timm_imagenet_state_dict(arch, in_chans), f"timm:{arch} pretrained"
        except (URLError, OSError, TimeoutError) as err:
            raise WeightsNotAvailableError(
                f"timm could not fetch ImageNet weights for {arch!r} ({err}); "
                "download them where online (timm.create_model(..., pretrained=True) fills the "
                "Hugging Face cache, HF_HOME) or pass weights=<path to a checkpoint file>"
            ) from err
    cached = _hf_cached_file(arch)
    if cached is None:
        raise WeightsNotAvailableError(
            f"ImageNet weights for timm model {arch!r} are not available: huggingface.co is "
            "unreachable and the weights are not in the Hugging Face cache (HF_HOME). Run "
            f"timm.create_model({arch!r}, pretrained=True) on a machine with internet access "
            "and copy its cache, or pass weights=<path to a checkpoint file> instead."
        )
    state = timm_imagenet_state_dict(arch, in_chans, file=cached)
    return state, f"timm:{arch} pretrained ({cached.name})"


def _hf_cached_file(arch: str) -> Path | None:
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    cfg = timm.models.get_pretrained_cfg(arch)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def imagenet_state_dict(name: str, in_chans: int) -> tuple[dict[str, Tensor], str]:
    """The ImageNet state dict for backbone ``name`` in the library's own key form.

    Args:
        name: A torchvision name (``"resnet18"``) or ``"timm:<arch>"``.
        in_chans: Input channels; only timm adapts the first conv itself here.

    Returns:
        ``(state_dict, source)`` where ``source`` describes the weights (for the sidecar).

    Raises:
        WeightsNotAvailableError: Offline and not cached, or the download failed.
    """
    if name.startswith("timm:"):
        return _timm_imagenet(name.removeprefix("timm:"), in_chans)
    return _torchvision_imagenet(name)


def _unwrap(obj: Any, file: Path) -> dict[str, Tensor]:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping) and len(obj) <= 4:
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{file} does not hold a state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not torch.is_tensor(v)]
    if bad:
        raise ValueError(f"{file}: state dict entries that are not tensors: {bad[:5]}")
    return dict(obj)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read a state dict from a ``.safetensors`` file or a torch file (``weights_only=True``).

    A torch file may hold the state dict itself or a small dict with it under
    ``"state_dict"`` or ``"model"``. A safetensors file is recognised by its contents,
    whatever its name (``Backbone.save`` takes any). Recorded digests are verified: a
    safetensors file against its sidecar and header (see :meth:`Backbone.save`), a torch
    file against the sha256 of its contents when it carries one (the Curriculum's
    checkpoints do).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ArtefactIntegrityError: A recorded sha256 does not match; the message names the file.
        ValueError: The file cannot be read or does not hold a state dict of tensors.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {file}")
    if file.suffix == ".safetensors" or _is_safetensors(file):  # Backbone.save takes any name
        return read_safetensors(file)
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # re-raised with the file name; the cause is kept
        raise ValueError(
            f"could not read checkpoint {file} (safetensors, or torch.load with "
            f"weights_only=True): {type(err).__name__}: {err}"
        ) from err
    if isinstance(obj, dict):
        obj = verify_content(obj, file, "delete it or restore it from a backup")
    return _unwrap(obj, file)
