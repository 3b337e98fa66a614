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
        # The model files are git-ignored (rewritten from the committed states), and carry has room for few of
        # them, so the machine may have the CPU-trained state without its model: write it here from the state.
        states = [p.relative_to(candidate) for p in Path(candidate).rglob("*.train.safetensors")]
        committed = [rel for rel in states if (Path(reference) / rel).is_file()]
        if committed:
            try:
                cpu = _evaluate_from_states(module, Path(reference), committed, device, profile)
            except Exception as exc:  # noqa: BLE001 - any failure here only means "not measured"
                return {"kept": False, "gpu_quality": gpu, "cpu_quality": None,
                        "reason": f"the CPU-trained model has a training state but no model file ({missing}), and "
                                  f"writing it from the state failed ({type(exc).__name__}: {exc}); judge by eye "
                                  "(--unpack --keep)"}
    kept, reason = decide(gpu, cpu)
    return {"kept": kept, "reason": reason, "gpu_quality": gpu, "cpu_quality": cpu}


def _evaluate_from_states(module, reference: Path, states: list[Path], device: str, profile: str) -> dict:
    """Write the CPU-trained model from its committed state (the zoo's ``train(0)``: no step taken) in a scratch
    copy, so the reference tree is left as it is, and evaluate it."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpu_run_reference_") as scratch:
        for rel in states:
            (Path(scratch) / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(reference / rel, Path(scratch) / rel)
        # the states were trained with the CPU profile (the rehearsal's with the tiny one)
        module.train(0, device=device, profile="tiny" if profile == "tiny" else "cpu", out_dir=Path(scratch))
        return module.evaluate(Path(scratch), device=device, profile=profile)


if __name__ == "__main__":
    name, candidate, reference, device, profile, out = sys.argv[1:7]
    result = compare(name, Path(candidate), Path(reference), device, profile)
    Path(out).write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float), flush=True)
