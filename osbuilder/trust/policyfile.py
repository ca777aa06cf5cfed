"""Finding and reading policy.json, and the one policy that needs no validator.

Kept apart from policy.py (pydantic models): most pulls run under Debian's packaged
policy, `{"default": [{"type": "insecureAcceptAnything"}]}`, and recognising it takes
a JSON parse, where building the models to validate it would cost more than the
rest of a small pull's start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from osbuilder.errors import UserError
from osbuilder.trust.bounded import read_bounded
from osbuilder.trust.strictjson import InvalidJSON, load_strict

SYSTEM_POLICY = Path("/etc/containers/policy.json")
USER_POLICY = Path(".config/containers/policy.json")  # under $HOME
#: A policy is a few KiB; a bound keeps a wrong path (a disk image) from being read whole.
MAX_POLICY_BYTES = 4 * 1024 * 1024
_ACCEPT_ANYTHING = {"type": "insecureAcceptAnything"}


class PolicyError(UserError):
    """policy.json is unreadable or invalid; the message is `FILE: PATH: what is wrong`."""


def default_policy_path(home: Path | None = None) -> Path:
    """Where the policy is when no --policy is given: the user's, if it exists, else the
    system's (which may not exist: loading then says so)."""
    home = home if home is not None else Path(os.path.expanduser("~"))
    user_policy = home / USER_POLICY
    return user_policy if user_policy.exists() else SYSTEM_POLICY


def read_policy_file(path: Path) -> bytes:
    raw = read_bounded(path, MAX_POLICY_BYTES, "the policy", PolicyError)
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{path}: larger than {MAX_POLICY_BYTES} bytes; not a policy.json")
    return raw


def accepts_anything(raw: bytes) -> bool:
    """Whether `raw` is a valid policy whose every requirement is insecureAcceptAnything
    (so every image is accepted). False for anything else, valid or not: policy.py
    judges those."""
    try:
        data: Any = load_strict(raw)
    except InvalidJSON:
        return False
    if not isinstance(data, dict) or not set(data) <= {"default", "transports"}:
        return False
    lists = [data.get("default")]
    transports = data.get("transports", {})
    if not isinstance(transports, dict):
        return False
    for scopes in transports.values():
        if not isinstance(scopes, dict):
            return False
        lists += scopes.values()
    return all(
        isinstance(requirements, list)
        and requirements
        and all(r == _ACCEPT_ANYTHING for r in requirements)
        for requirements in lists
    )
