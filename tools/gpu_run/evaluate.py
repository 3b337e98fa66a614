"""Is a GPU-trained model better than the CPU-trained one? Both measured by the model's own ``evaluate`` hook
(tools/zoo/__init__.py) in one process, on one device, with the same inputs.

``python -m tools.gpu_run.evaluate NAME CANDIDATE_DIR REFERENCE_DIR DEVICE PROFILE OUT_JSON``
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def decide(gpu: dict, cpu: dict | None) -> tuple[bool, str]:
    """Keep the GPU-trained model only where its score (lower is better) beats the CPU-trained one's."""
    score = gpu.get("score")
    if not isinstance(score, (int, float)) or not math.isfinite(score):
        return False, f"its evaluation gave no finite score ({score!r})"
    if cpu is None:
        return True, f"score {score:.4g}; no CPU-trained model to beat, so it is the first one"
    base = cpu.get("score")
    if not isinstance(base, (int, float)) or not math.isfinite(base):
        return True, f"score {score:.4g}; the CPU-trained model scored {base!r}"
    if score < base:
        return True, f"score {score:.4g} beats the CPU-trained {base:.4g} (lower is better)"
    return False, f"score {score:.4g} does not beat the CPU-trained {base:.4g} (lower is better)"


def compare(name: str, candidate: Path, reference: Path, device: str, profile: str) -> dict:
    from tools import zoo

    module = zoo.recipe(name)
    if not hasattr(module, "evaluate"):
        return {"kept": False, "reason": "its module has no evaluate() hook: trained and reported, never kept"}
    gpu = module.evaluate(candidate, device=device, profile=profile)
    try:
        cpu = module.evaluate(reference, device=device, profile=profile)
    except FileNotFoundError as missing:
        cpu = None
        # The model files are git-ignored (rewritten from the committed states), so a machine that got only the
        # working tree has the CPU-trained state without its model: that is no reason to replace it unmeasured.
        states = [p.relative_to(candidate) for p in Path(candidate).rglob("*.train.safetensors")]
        if any((Path(reference) / rel).is_file() for rel in states):
            return {"kept": False, "gpu_quality": gpu, "cpu_quality": None,
                    "reason": f"the CPU-trained model has a training state but no model file to measure ({missing}); "
                              "carry the model files (build.py gpu-run --prepare) or judge by eye (--unpack --keep)"}
    kept, reason = decide(gpu, cpu)
    return {"kept": kept, "reason": reason, "gpu_quality": gpu, "cpu_quality": cpu}


if __name__ == "__main__":
    name, candidate, reference, device, profile, out = sys.argv[1:7]
    result = compare(name, Path(candidate), Path(reference), device, profile)
    Path(out).write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float), flush=True)
