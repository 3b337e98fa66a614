"""Instant, training-free texture synthesis: pick an image, get a (tileable) texture."""

from .synthesize import ScaleRecord, SynthesisResult, patch_distance, synthesize

__all__ = ["ScaleRecord", "SynthesisResult", "patch_distance", "synthesize"]
