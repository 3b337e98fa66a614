"""Device selection: CUDA, then MPS, then CPU, unless the caller asks for one."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """Return the device to run on.

    ``preference`` is ``"auto"`` (or None), ``"cuda"``, ``"mps"``, ``"cpu"`` or a
    torch.device. The environment variable ``NEURAL_TEXTURES_DEVICE`` overrides
    ``auto`` so tests and CI can pin the CPU. Asking for an unavailable device is
    an error, not a silent fallback: the artist chose it on purpose.
    """
    if isinstance(preference, torch.device):
        return preference
    pref = (preference or "auto").lower()
    if pref == "auto":
        pref = os.environ.get("NEURAL_TEXTURES_DEVICE", "auto").lower()
    if pref == "auto":
        if torch.cuda.is_available():
            enable_fast_cuda_math()
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA was requested but this PyTorch build sees no CUDA GPU "
                               f"(torch {torch.__version__}). Choose 'auto' or 'cpu'.")
        enable_fast_cuda_math()
        return torch.device(pref)
    if pref == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise RuntimeError("MPS was requested but is not available on this machine. Choose 'auto' or 'cpu'.")
        return torch.device("mps")
    if pref == "cpu":
        return torch.device("cpu")
    raise ValueError(f"Unknown device {preference!r}; expected one of {', '.join(DEVICE_CHOICES)}")


DETERMINISTIC_ENV = "NEURAL_TEXTURES_DETERMINISTIC"


def enable_fast_cuda_math() -> None:
    """TF32 tensor cores for fp32 matmuls and convolutions (10-bit mantissa products,
    fp32 sums): several times faster on Ampere and later, well inside what these
    models' outputs (8-bit images, stochastic training) can resolve. CPU maths is untouched.
    With ``NEURAL_TEXTURES_DETERMINISTIC=1`` CUDA also runs deterministically (``make_cuda_deterministic``)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if os.environ.get(DETERMINISTIC_ENV, "") not in ("", "0"):
        make_cuda_deterministic()


def make_cuda_deterministic() -> None:
    """Same inputs, same bits on CUDA, so a resumed training equals a straight one there too (the CUDA suite
    asserts it; the CPU's kernels already are). cuDNN and cuBLAS pick deterministic algorithms (slower ones,
    so only where asked), and the layers of ``core.common.deterministic`` avoid the atomic backward kernels
    PyTorch has no deterministic version of. ``warn_only``: an operation still without one warns, naming itself.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts: set it early
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def host_array(tensor: torch.Tensor):
    """A float32 numpy array of ``tensor`` (laid out as it is), made contiguous where it is. From CUDA through
    page-locked memory: the H200 bench's 4096² texture spent 164 of its 460 ms in a pageable copy of a permuted
    view. (The pinned blocks come from PyTorch's caching host allocator, so repeated calls reuse them.)"""
    import numpy as np

    t = tensor.detach().float().contiguous()
    if t.is_cuda:
        host = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=True)
        host.copy_(t)
        return host.numpy()
    return np.ascontiguousarray(t.cpu().numpy(), dtype=np.float32)


def host_to_device(tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor (a draw from a seeded CPU generator) on ``device`` without the host waiting for the device.

    A copy from pageable memory makes CUDA synchronise the stream before it starts, ``non_blocking`` or not; on
    CUDA the tensor goes through page-locked memory first. ``pin_memory`` takes it from PyTorch's caching host
    allocator, which records the copy's stream and hands the block out again only once the copy is done."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    # Asynchronous only from pinned memory on CUDA: elsewhere (MPS) a plain copy, whose source may be freed after.
    return tensor.to(device=device, dtype=dtype or tensor.dtype, non_blocking=cuda)


def tensors_to_device(tensors, device: torch.device | str) -> list[torch.Tensor]:
    """Several CPU tensors of one dtype on ``device`` in one copy (``host_to_device``), in their shapes."""
    tensors = list(tensors)
    if torch.device(device).type == "cpu" or not tensors:
        return tensors
    if len({t.dtype for t in tensors}) > 1 or any(t.device.type != "cpu" for t in tensors):
        return [host_to_device(t, device) for t in tensors]  # one buffer holds one dtype, and host tensors
    flat = host_to_device(torch.cat([t.reshape(-1) for t in tensors]), device)
    return [part.view(t.shape) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def adam(params, device: torch.device, **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam``, fused into a few kernels on CUDA: the first H200 run found the trainings host-bound,
    and the default (foreach) path launches several kernels per parameter group and step. Elsewhere the foreach
    path, whose numbers are the per-parameter loop's bit for bit on the CPU (PyTorch's CPU default is the loop:
    seven operations and a host read of the step count per parameter). The state dict is the same either way,
    so a training continues across devices."""
    kind = torch.device(device).type
    return torch.optim.Adam(params, fused=True if kind == "cuda" else None, foreach=True if kind == "cpu" else None,
                            **kwargs)


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """``torch.nn.utils.clip_grad_norm_`` on the foreach kernels on the CPU and CUDA: a few operators per step
    instead of several per parameter (PyTorch's CPU default is the loop; the numbers are the same bit for bit).
    Other devices (MPS, the tests' meta) keep PyTorch's default."""
    params = [p for p in parameters if p.grad is not None]
    foreach = True if params and all(p.device.type in ("cpu", "cuda") for p in params) else None
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=foreach)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """``optimizer.load_state_dict`` with each moment laid out like its parameter.

    A saved moment comes back contiguous; a channels-last parameter (the CUDA trainings') then has moments with
    other strides, which the fused CUDA Adam refuses ("must have same dtype, device, and layout"; the second H200
    run). The values are unchanged, so a resume stays bit-identical.

    The optimiser keeps the implementation it was built with (``adam``: fused on CUDA, foreach elsewhere): PyTorch
    takes a saved group's ``fused`` and ``foreach`` flags too, so a CUDA training resumed from a state saved on
    the CPU ran Adam unfused, several launches per parameter a step."""
    saved = state_dict.get("param_groups", [])
    if len(saved) == len(optimizer.param_groups):
        state_dict = {**state_dict, "param_groups": [
            {**group, **{k: own[k] for k in ("fused", "foreach") if k in own}}
            for group, own in zip(saved, optimizer.param_groups)]}
    optimizer.load_state_dict(state_dict)
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if (isinstance(value, torch.Tensor) and value.shape == param.shape
                        and value.stride() != param.stride()):
                    optimizer.state[param][name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision where it is safe: fp16/bf16 autocast on CUDA, nothing elsewhere.

    CPU autocast to bf16 is slower than fp32 on most CPUs and MPS autocast is
    still patchy, so both run in fp32.
    """
    if enabled and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


# oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) under which bf16 convolutions still run on native instructions.
_BF16_ISAS = ("ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")


def _onednn_isa_cap() -> str:
    """oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``), upper case; "ALL" when unset."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper() or "ALL"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 convolutions natively (AVX512-BF16 or AMX, e.g. Zen 4, Sapphire Rapids): on
    an AMD EPYC VGG19's forward and backward took ~0.55x the fp32 time (but see ``BF16_FASTER_SHARE``); elsewhere
    bf16 is emulated and slower."""
    if _onednn_isa_cap() not in _BF16_ISAS:
        return False
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


# "0": loss networks stay fp32 everywhere (the bench's baseline); "1": bf16 wherever the CPU has the instructions,
# unmeasured; unset or "auto": where the CPU has them and a short timing here says they are faster.
LOSS_BF16_ENV = "NEURAL_TEXTURES_LOSS_BF16"
# Native instructions are not enough: on an Intel Xeon with AVX512-BF16 (no AMX) the materials GAN's step took 4.0 s
# with its VGG19 in bf16 against 2.8 s in fp32 (one thread), where an AMD EPYC with the same instructions went
# 1.77 -> 1.27 s. So bf16 is measured once per process (``cpu_bf16_measured_faster``) and taken only when it is
# clearly faster: this share of the fp32 time or less.
BF16_FASTER_SHARE = 0.85


def _loss_bf16_choice() -> str:
    """``LOSS_BF16_ENV``, lower case: "0" and "1" override, anything else (unset: "auto") measures."""
    return os.environ.get(LOSS_BF16_ENV, "auto").strip().lower()


def cpu_bf16_measured_faster() -> bool:
    """Whether convolutions like a loss network's (forward and back to the input, frozen weights) run faster under
    bf16 autocast, channels-last (as ``perception`` runs them there), than in fp32 on this CPU: timed alternately,
    fastest of five each, about half a second once per ISA cap and thread count."""
    return _bf16_timing(_onednn_isa_cap(), torch.get_num_threads())


@functools.lru_cache(maxsize=None)
def _bf16_timing(isa: str, threads: int) -> bool:
    # Asked from inside a caller's no_grad or inference mode too (a loss's targets are often computed there).
    with torch.inference_mode(False), torch.enable_grad():
        gen, cpu = torch.Generator().manual_seed(0), torch.device("cpu")  # a timing of this CPU
        convs = [torch.randn(c_out, c_in, 3, 3, generator=gen, device=cpu) * 0.05
                 for c_out, c_in in ((64, 64), (128, 64), (128, 128))]
        x = torch.rand(1, 64, 96, 96, generator=gen, device=cpu)

        def one_pass(bf16: bool) -> float:
            image = (x.contiguous(memory_format=torch.channels_last) if bf16 else x.clone()).requires_grad_(True)
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                h = F.relu(F.conv2d(image, convs[0], padding=1))
                h = F.relu(F.conv2d(F.max_pool2d(h, 2), convs[1], padding=1))
                h = F.relu(F.conv2d(h, convs[2], padding=1))
            h.float().square().mean().backward()
            return time.perf_counter() - start

        times = {True: [], False: []}
        for _ in range(6):  # the first of each warms oneDNN's kernels up and is dropped
            for bf16 in (False, True):
                times[bf16].append(one_pass(bf16))
    return min(times[True][1:]) <= BF16_FASTER_SHARE * min(times[False][1:])


def fast_bf16(device: torch.device | str) -> bool:
    """Whether bf16 autocast makes convolutions faster on ``device``: CUDA with bf16; a CPU with native bf16 where
    it measures faster (``LOSS_BF16_ENV`` overrides)."""
    choice = _loss_bf16_choice()
    if choice == "0":
        return False
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not cpu_has_native_bf16():
        return False
    return choice == "1" or cpu_bf16_measured_faster()


def loss_precision(device: torch.device | str) -> str:
    """What ``loss_network_autocast`` runs on ``device``, and why, in words (for reports)."""
    if fast_bf16(device):
        return "bf16"
    device = torch.device(device)
    if _loss_bf16_choice() == "0":
        return "fp32 (asked for)"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "fp32 (native bf16 measured slower here)"
    return "fp32 (no native bf16)"


def loss_network_autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast for a frozen network that only feeds a training loss (VGG19's texture statistics), where
    it is faster (``fast_bf16``); fp32 elsewhere. The loss's own randomness dwarfs the rounding: on the materials
    GAN, the generator's gradient through the whole-exemplar term keeps a cosine of 0.90-0.9995 to the fp32 one,
    against 0.37-0.45 between two fp32 draws of the term's random projections."""
    device = torch.device(device)
    if enabled and fast_bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocator errors after which tiling or the CPU may still succeed."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text or "mps backend out of memory" in text


def free_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def seeded_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator seeded for exact reproducibility (never the global RNG)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


# Elements per independently seeded block of ``chunked_randn``: small enough to spread a
# 4096^2 texture's noise over every core, large enough that seeding costs nothing.
NOISE_CHUNK = 1 << 20


def chunked_randn(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Seeded standard-normal CPU tensor, drawn block by block on all CPU threads.

    Block i (``NOISE_CHUNK`` elements in row-major order) comes from its own CPU
    generator seeded with (seed, i), so the values depend on the seed and shape
    only: identical for every device they are then moved to and for any thread
    count. One generator would draw a 4096^2 texture's noise on one core, slower
    than a GPU generates the whole texture.
    """
    out = torch.empty(shape, dtype=torch.float32, device="cpu")
    flat = out.view(-1)
    n = flat.numel()
    starts = range(0, n, NOISE_CHUNK)

    def draw(start: int) -> None:
        gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + start // NOISE_CHUNK) % (1 << 63))
        block = flat[start:start + NOISE_CHUNK]
        torch.randn(block.shape, generator=gen, out=block)

    workers = min(len(starts), max(1, torch.get_num_threads()))
    if workers <= 1:
        for start in starts:
            draw(start)
    else:  # torch releases the GIL inside randn, so the blocks fill in parallel
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(draw, starts))
    return out
