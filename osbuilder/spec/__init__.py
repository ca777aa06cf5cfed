"""The spec: YAML with locations, pydantic models, validation and merging."""

from osbuilder.spec.loader import LoadedSpec, SpecInvalid, check_sources, check_specs, load_spec
from osbuilder.spec.model import CONTAINER_SECTIONS, Container, ImageConfig, Spec
from osbuilder.spec.source import Diagnostic, Location, SpecValueError

__all__ = [
    "CONTAINER_SECTIONS",
    "Container",
    "Diagnostic",
    "ImageConfig",
    "LoadedSpec",
    "Location",
    "Spec",
    "SpecInvalid",
    "SpecValueError",
    "check_sources",
    "check_specs",
    "load_spec",
]
