"""Loading from the model hub without hanging: local cache first, a quick reachability probe, clear errors."""
from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

__all__ = ["HubUnavailableError", "hub_reachable", "hub_error", "from_pretrained_fast"]


class HubUnavailableError(OSError):
    """A model had to come from the model hub, and the hub cannot be reached."""


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the model hub answers at all; says why not. Never waits longer than ``timeout``."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return False, f"{var} is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"cannot connect to {host}:{port} ({exc.__class__.__name__}: {exc})"


def hub_error(model_id: str, what: str, reason: str) -> HubUnavailableError:
    return HubUnavailableError(
        f"Cannot load the {what} {model_id!r}: it is not in the local cache and the model hub is unreachable "
        f"({reason}).\n  To continue offline: use the toy profile (load_profile('toy'), or ASYRP_PROFILE=toy, "
        f"or --profile toy), or download the model on a connected machine with save_pretrained(...) and pass "
        f"that local folder instead of the hub id."
    )


def from_pretrained_fast(cls, model_id: str, what: str, **kwargs):
    """``cls.from_pretrained(model_id)`` that fails in seconds, with a clear message, when offline.

    A local folder loads directly; a hub id is tried from the local cache first, then from the hub
    only if the hub answers.
    """
    if Path(model_id).expanduser().is_dir():
        return cls.from_pretrained(str(Path(model_id).expanduser()), **kwargs)
    if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        raise ValueError(f"{what}: {model_id!r} is neither an existing folder nor a hub id like 'owner/name'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls.from_pretrained(model_id, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    ok, reason = hub_reachable()
    if not ok:
        raise hub_error(model_id, what, reason)
    return cls.from_pretrained(model_id, **kwargs)
