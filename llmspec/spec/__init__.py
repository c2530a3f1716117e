"""Spec layer: the typed spec, its loader, presets and the hardware catalog."""

from llmspec.spec.load import load_spec
from llmspec.spec.schema import Spec

__all__ = ["Spec", "load_spec"]
