"""Instant, training-free texture synthesis: pick an image, get a (tileable) texture."""

from .synthesize import ScaleRecord, SynthesisResult, patch_distance, synthesize

# Raised whenever the default output changes (2: the full-resolution quilt became the default layout; 3: its
# seams blended in the gradient domain; 4: slanted courses straightened first; 5: the blending screened, so a
# seam's correction stays near it; 6: a photographed running bond's lattice keeps its stagger), so caches of
# synthesized tiles (the texture GAN's distillation targets) are rebuilt.
SYNTHESIS_VERSION = 6

__all__ = ["SYNTHESIS_VERSION", "ScaleRecord", "SynthesisResult", "patch_distance", "synthesize"]
