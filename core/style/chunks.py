"""The engine-neutral chunk contract: any worker stylizes any range of an animation.

The temporal loop (``temporal.stylize_sequence``) carries each stylized frame
into the next one, so an animation cannot simply be cut into pieces: a piece
that starts cold at its first frame flickers against the end of the piece
before it. A chunk ``START-END`` with warm-up ``W`` therefore starts cold at
``START - W`` (or at the first frame of the sequence), runs the loop through the
warm-up frames and throws them away, and writes frames ``START..END`` only.
After ``W`` frames the temporal blend has forgotten the cold start (its weight
decays like ``temporal_weight ** W``), so the chunk joins its neighbour with no
more flicker than between any two frames inside it; ``DEFAULT_WARMUP`` is the
measured smallest ``W`` that keeps chunk borders within 10 % of the inside
(``benchmarks/bench_farm.py``).

Frame numbers are the trailing digits of the file names (``frame_0042.exr`` is
42), as Blender, Flamenco and ``frameChunker`` count them. Outputs are named as
the single-machine run names them (``output_path``), and every file is written
atomically (temp file + rename, ``save_image``), so a chunk that is retried
after a crash writes the same bytes again and never leaves half a file.

Cross-fade (``overlap`` K > 0, optional): a chunk also runs K frames past its
END and keeps them as its *tail*; the chunk that starts right after it keeps
its own first K frames as its *head*. Both halves go to ``<out>/.overlap/`` as
lossless ``.npy``; whichever of the two chunks finishes second blends them
(linear ramp from the tail to the head) and writes the final frames. Each side
writes its half before looking for the other, so at least one sees both; if
both do, they write the same bytes. Overlap therefore needs every chunk of the
range to run (a farm job does that).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..common.images import ImageData, image_from_array, load_image, save_image
from ..common.jobs import CancelToken, ProgressCallback, check_cancel, report

# Smallest warm-up whose chunk borders flicker within 10 % of the frames inside the chunks, on the
# rendered test sequence (tools/render_motion_sequence.py) with the bundled fast styles at the default
# temporal weight 0.7; see benchmarks/bench_farm.py and the README's Render farm section for the figures.
DEFAULT_WARMUP = 6
DEFAULT_CHUNK_SIZE = 24
OVERLAP_FOLDER = ".overlap"
OUTPUT_SUFFIXES = (".png", ".exr", ".npy", ".jpg")
_TRAILING_DIGITS = re.compile(r"(\d+)$")


# ----------------------------------------------------------------------------- frames and names

def frame_number(path: str | os.PathLike) -> int | None:
    """Trailing digits of the file name's stem (``shot_0042.exr`` -> 42), or None."""
    match = _TRAILING_DIGITS.search(Path(path).stem)
    return int(match.group(1)) if match else None


def numbered_frames(files: Sequence[str | os.PathLike]) -> dict[int, Path]:
    """Frame number -> file, for a sorted list of frame files; every file must be numbered, once."""
    frames: dict[int, Path] = {}
    for f in files:
        n = frame_number(f)
        if n is None:
            raise ValueError(f"{Path(f).name} has no frame number at the end of its name (like frame_0001.png); "
                             "chunked and farm runs find frames by number")
        if n in frames:
            raise ValueError(f"{Path(f).name} and {frames[n].name} are both frame {n}")
        frames[n] = Path(f)
    return dict(sorted(frames.items()))


def parse_frame_range(text: str) -> tuple[int, int]:
    """``"START-END"`` (or one number) -> (START, END), END >= START >= 0."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
    if not match:
        raise ValueError(f"--frames {text!r}: expected START-END, like 1-48")
    start = int(match.group(1))
    end = int(match.group(2)) if match.group(2) is not None else start
    if end < start:
        raise ValueError(f"--frames {text!r}: END is before START")
    return start, end


def plan_chunks(start: int, end: int, chunk_size: int) -> list[tuple[int, int]]:
    """Consecutive (first, last) ranges of ``chunk_size`` frames covering START..END exactly once."""
    if chunk_size < 1:
        raise ValueError("the chunk size must be at least 1 frame")
    return [(s, min(s + chunk_size - 1, end)) for s in range(start, end + 1, chunk_size)]


def output_path(out_dir: str | os.PathLike, frame_file: str | os.PathLike) -> Path:
    """Where the single-machine run writes a frame's result: same stem, same kind of file (else PNG)."""
    f = Path(frame_file)
    return Path(out_dir) / (f.stem + (f.suffix if f.suffix.lower() in OUTPUT_SUFFIXES else ".png"))


def _bit_depth(image: ImageData) -> int:
    return 16 if image.bit_depth == 16 else 8


# ----------------------------------------------------------------------------- the style

@dataclass(frozen=True)
class StyleSpec:
    """What to stylize with, as plain data so a farm worker can rebuild it (see ``build``).

    ``method``: "model" (a trained fast model, ``style`` is its .safetensors),
    "adain" (``style`` is any painting; ``model`` an AdaIN decoder or the
    bundled one; ``options`` may hold ``max_gain``) or "optimize" (``style`` is
    any painting; ``options`` are ``stylize_optimize``'s settings).
    """

    style: str
    method: str = "model"
    model: str | None = None
    alpha: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_path(cls, style: str | os.PathLike, **kwargs) -> "StyleSpec":
        """A .safetensors file (or file.safetensors#style) is a fast model; any image is a painting, by optimisation."""
        method = "model" if str(style).partition("#")[0].lower().endswith(".safetensors") else "optimize"
        return cls(str(style), kwargs.pop("method", method), **kwargs)

    def build(self, device=None, cancel: CancelToken | None = None):
        """The model or frame stylizer ``stylize_sequence`` takes (loads weights: do it once per worker)."""
        if self.method == "model":  # a single-style file, or file.safetensors#style of the multi-style network
            from .multistyle import load_fast_style
            return load_fast_style(self.style, device=device)
        if self.method == "adain":
            from .adain import AdaINStylizer, bundled_decoder_path, load_adain_model
            decoder = load_adain_model(self.model or bundled_decoder_path(), device)
            return AdaINStylizer(decoder, load_image(self.style), self.alpha, **self.options)  # e.g. max_gain
        if self.method == "optimize":
            from .optimize import OptimizationStylizer
            return OptimizationStylizer(load_image(self.style), device=device, cancel=cancel, **self.options)
        raise ValueError(f"unknown style method {self.method!r}: model, adain or optimize")


# ----------------------------------------------------------------------------- one chunk

@dataclass
class ChunkResult:
    start: int
    end: int
    written: list[str]
    warmup_frames: int  # frames run and discarded before START (fewer than W at the start of a sequence)


def stylize_chunk(model, files: Sequence[str | os.PathLike], out_dir: str | os.PathLike, start: int, end: int,
                  warmup: int = DEFAULT_WARMUP, overlap: int = 0, *, strength: float = 1.0,
                  temporal_weight: float = 0.7, use_vectors: bool = True, flows_dir: str | os.PathLike | None = None,
                  tile_size: int | None = None, progress: ProgressCallback | None = None,
                  cancel: CancelToken | None = None, warn: Callable[[str], None] | None = None) -> ChunkResult:
    """Stylize frames START..END of the sequence ``files`` into ``out_dir`` (see the module docstring).

    ``model``: a ``StyleModel`` or frame stylizer (``StyleSpec.build``). Only
    frames in START-W..END(+overlap) are read. ``progress`` gets one report per
    frame written, counting START..END.
    """
    from .blender_passes import frames_with_flows
    from .temporal import stylize_sequence

    if warmup < 0 or overlap < 0:
        raise ValueError("the warm-up and the overlap are frame counts (0 or more)")
    frames = numbered_frames(files)
    if start not in frames or end not in frames:
        have = f"{min(frames)}-{max(frames)}" if frames else "none"
        raise ValueError(f"frames {start}-{end} are not all in the sequence (it has frames {have})")
    numbers = list(frames)
    first_index, last_index = numbers.index(start), numbers.index(end)
    run_from = max(0, first_index - warmup)
    run_to = min(len(numbers) - 1, last_index + overlap)
    run_numbers = numbers[run_from:run_to + 1]
    run_files = [frames[n] for n in run_numbers]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = set(numbers[first_index:first_index + overlap]) if overlap and first_index > 0 else set()
    head &= set(numbers[first_index:last_index + 1])

    frame_iter, vector_flows = frames_with_flows(run_files, use_vectors=use_vectors, warn=warn)
    flows = vector_flows
    if flows_dir is not None:  # per-frame .npy flows take precedence over the Vector pass
        folder = Path(flows_dir)
        flows = [np.load(folder / (f.stem + ".npy"), allow_pickle=False) if (folder / (f.stem + ".npy")).exists()
                 else None for f in run_files]
        frame_iter = (frame for frame, _ in zip(frame_iter, vector_flows))  # keep the pass reader in step
    results = stylize_sequence(model, frame_iter, flows, strength=strength, temporal_weight=temporal_weight,
                               tile_size=tile_size, cancel=cancel)
    written: list[str] = []
    total = last_index - first_index + 1
    for number, frame_file, result in zip(run_numbers, run_files, results):
        check_cancel(cancel)
        if number < start:
            continue  # warm-up: run for its state, never written
        if number > end:
            _save_overlap_half(out, frame_file, result, "tail")
            _blend_if_complete(out, frame_file, result, overlap, numbers.index(number) - last_index - 1)
            continue
        if number in head:
            _save_overlap_half(out, frame_file, result, "head")
            if _blend_if_complete(out, frame_file, result, overlap, numbers.index(number) - first_index):
                written.append(str(output_path(out, frame_file)))
        else:
            target = output_path(out, frame_file)
            save_image(target, result, bit_depth=_bit_depth(result))
            written.append(str(target))
        report(progress, number - start + 1, total, f"frame {number}")
    return ChunkResult(start, end, written, first_index - run_from)


def _overlap_file(out: Path, frame_file: Path, half: str) -> Path:
    return out / OVERLAP_FOLDER / f"{frame_file.stem}.{half}.npy"


def _save_overlap_half(out: Path, frame_file: Path, result: ImageData, half: str) -> None:
    (out / OVERLAP_FOLDER).mkdir(exist_ok=True)
    save_image(_overlap_file(out, frame_file, half), result)


def _blend_if_complete(out: Path, frame_file: Path, like: ImageData, overlap: int, position: int) -> bool:
    """Write the final cross-faded frame when both halves exist; True when written.

    ``position``: 0 for the later chunk's first frame, up to ``overlap - 1``.
    """
    tail_file, head_file = _overlap_file(out, frame_file, "tail"), _overlap_file(out, frame_file, "head")
    if not (tail_file.exists() and head_file.exists()):
        return False
    weight = (position + 1) / (overlap + 1)  # share of the later chunk's own frame: a linear ramp
    tail, head = load_image(tail_file), load_image(head_file)
    data = (1.0 - weight) * tail.rgb + weight * head.rgb
    if head.alpha is not None and tail.alpha is not None:
        data = np.concatenate([data, ((1.0 - weight) * tail.alpha + weight * head.alpha)[..., None]], axis=-1)
    image = image_from_array(data.astype(np.float32), "linear", frame_file.name, max_pixels=np.iinfo(np.int64).max)
    save_image(output_path(out, frame_file), image, bit_depth=_bit_depth(like))
    return True


# ----------------------------------------------------------------------------- a whole range, here

def stylize_chunked(model, files: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                    frames: tuple[int, int] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                    warmup: int = DEFAULT_WARMUP, overlap: int = 0, progress: ProgressCallback | None = None,
                    cancel: CancelToken | None = None, **options) -> list[str]:
    """Every chunk of a range one after another in this process: what a farm does, on one machine.

    The reference the farm runs are compared with (same chunks, same frames).
    """
    numbers = list(numbered_frames(files))
    start, end = frames or (numbers[0], numbers[-1])
    if overlap > chunk_size:
        raise ValueError(f"the overlap ({overlap}) cannot be longer than a chunk ({chunk_size} frames)")
    chunks = [(s, e) for s, e in plan_chunks(start, end, chunk_size)]
    written: list[str] = []
    total, done = sum(1 for n in numbers if start <= n <= end), 0
    for s, e in chunks:
        inside = [i for i in numbers if s <= i <= e]
        if not inside:
            continue
        result = stylize_chunk(model, files, out_dir, inside[0], inside[-1], warmup, overlap, cancel=cancel,
                               **options)
        written += result.written
        done += len(inside)
        report(progress, done, total, f"frames {s}-{e}")
    return written
