"""The guest's bundles: the kinds it runs are the spec's container sections."""

from __future__ import annotations

from osbuilder.guest.bundle import KINDS
from osbuilder.spec.model import CONTAINER_SECTIONS


def test_the_guest_runs_the_kinds_the_spec_declares() -> None:
    # The guest imports only the standard library (test_guest_boundary.py), so it keeps
    # its own tuple: this keeps it in step with the spec's.
    assert KINDS == CONTAINER_SECTIONS
