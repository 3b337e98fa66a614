"""CPU-only guards against device and dtype mismatches (no GPU needed).

Every family's forward, generate and train-step paths run with the model on
PyTorch's ``meta`` device under ``strict_devices()``: any op that mixes tensors
of two devices raises, as CUDA does (meta alone lets e.g. a CPU input through a
meta convolution). A CPU tensor that reaches the model therefore fails here just
as it would on an NVIDIA card. Meta tensors hold no values, so the train-step
tests also prove a step never reads a number back to the host (``.item()``,
``float()``, ``bool()`` and ``.cpu()`` all raise on meta). A lint checks that tensor factories in ``core/``
say where their tensor lives, and the out-of-memory fallbacks are driven by a
real ``torch.OutOfMemoryError`` raised from a tiny wrapper module.
"""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from core.texture_gan import TextureGANConfig, TextureGenerator
from core.texture_gan.model import Generator, build_models

META = torch.device("meta")
ROOT = Path(__file__).resolve().parents[2]

# Ops that legitimately take tensors of two devices (CUDA accepts them too).
_CROSS_DEVICE_OPS = {"aten.copy_.default", "aten._copy_from.default", "aten._copy_from_and_resize.default",
                     "aten._to_copy.default", "aten.index.Tensor", "aten.index_put_.default",
                     "aten.lift_fresh.default"}


class _SameDevice(TorchDispatchMode):
    """Raise on any op whose tensor arguments live on two devices (0-dim CPU scalars aside, as on CUDA)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if str(func) not in _CROSS_DEVICE_OPS:
            flat, _ = tree_flatten((args, kwargs))
            devices = {t.device for t in flat if isinstance(t, torch.Tensor)
                       and not (t.device.type == "cpu" and t.dim() == 0)}
            if len(devices) > 1:
                raise RuntimeError(f"Expected all tensors to be on the same device, but {func} got "
                                   f"{sorted(map(str, devices))}")
        return func(*args, **kwargs)


@contextlib.contextmanager
def strict_devices():
    with _SameDevice():
        yield


def test_strict_devices_catches_what_meta_alone_lets_through():
    conv = torch.nn.Conv2d(3, 4, 3).to(META)
    conv(torch.zeros(1, 3, 8, 8))  # plain meta: a CPU input slips through a meta conv
    with strict_devices(), pytest.raises(RuntimeError, match="same device"):
        conv(torch.zeros(1, 3, 8, 8))
    with strict_devices():
        assert conv(torch.zeros(1, 3, 8, 8, device=META)).device == META


# --------------------------------------------------------------------------- texture GAN

GAN_TINY = dict(local_dim=8, global_dim=4, periodic_dim=4, g_channels=(32, 16, 8), d_channels=(16, 32),
                crop_size=32, batch_size=2, stats_scales=2, preview_every=0)


@pytest.mark.parametrize("tileable", [True, False])
@pytest.mark.parametrize("tile_size", [None, 64])
def test_texture_gan_generates_on_the_model_device(tileable, tile_size):
    g, _ = build_models(TextureGANConfig(**GAN_TINY), seed=0)
    model = TextureGenerator(g, {"training_config": {}}, "tiny", META)
    with strict_devices():
        image = model.generate_tensor(150, 70, seed=3, tileable=tileable, variation=0.4, tile_size=tile_size)
    assert image.device == META and tuple(image.shape) == (1, 3, 70, 150)  # 64 px tiles: 3x2 of them


def test_texture_gan_train_step_runs_on_the_model_device():
    from core.texture_gan import train as gan_train

    cfg = TextureGANConfig(**GAN_TINY)
    exemplar = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0), device="cpu")
    with strict_devices():
        trainer = gan_train.GANTrainer(cfg, [exemplar], crop=32, seed=0, device=META)
        losses = trainer.step()
    assert {k: v.device for k, v in losses.items()} == {k: META for k in ("d", "g_adv", "stats")}


# --------------------------------------------------------------------------- texture VAE

def test_texture_vae_paths_run_on_the_model_device():
    from core.texture_vae import TextureVAE, TextureVAEConfig, TextureVAENet
    from core.texture_vae.ops import fit_latents, resample_periodic, variation_noise

    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=16, batch_size=2)
    vae = TextureVAE(TextureVAENet(cfg), cfg, device=META)
    x = torch.rand(1, 3, 24, 16, generator=torch.Generator().manual_seed(0), device="cpu")
    with strict_devices():
        mean = vae._run(lambda net, t: net.encode(t)[0], x)
        assert mean.device == META and tuple(mean.shape) == (1, 2, 6, 4)
        z = fit_latents(mean, 5, 7)
        z = z + variation_noise(z, seed=3)
        out = resample_periodic(vae._run(lambda net, t: net.decode(t), z), 19, 27)
        assert out.device == META and tuple(out.shape) == (1, 3, 19, 27)
        recon, mu, logvar = vae.net(x.to(META), torch.Generator().manual_seed(1))
        assert recon.device == META


def test_texture_vae_train_step_runs_on_the_model_device():
    from core.texture_vae import TextureVAEConfig
    from core.texture_vae import train as vae_train

    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=16, batch_size=2,
                           variation_stats_weight=0.03)
    exemplar = np.random.default_rng(0).random((24, 24, 3), dtype=np.float32)
    with strict_devices():
        trainer = vae_train.VAETrainer(cfg, [exemplar], seed=0, device=META)
        losses = trainer.step(0, steps=10)
    assert set(losses) == {"l1", "kl", "stats", "vary_stats", "loss"}
    assert all(v.device == META for v in losses.values())


# --------------------------------------------------------------------------- style

def _style_net():
    from core.style.transformer import TransformerConfig, TransformerNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TransformerNet(TransformerConfig(base_channels=4, residual_blocks=1)).eval()


def test_style_forward_and_tiles_run_on_the_model_device():
    from core.style.apply import StyleModel
    from core.style.tiling import stylize_tiled

    net = _style_net().to(META)
    with strict_devices(), torch.no_grad():
        assert net(torch.zeros(1, 3, 30, 42, device=META)).device == META
        assert stylize_tiled(net, torch.zeros(1, 3, 70, 90, device=META), tile_size=32).device == META
        model = StyleModel(_style_net(), {"name": "tiny"}, META)
        out = model.stylize_tensor(torch.rand(1, 3, 40, 40, device="cpu"), tile_size=32)
    assert out.device == META and tuple(out.shape) == (1, 3, 40, 40)


def test_half_precision_net_accepts_float_frames_untiled_and_tiled():
    """The CUDA fp16 crash ('Input type (float) and bias type (c10::Half)'), reproduced on the CPU."""
    from core.style.tiling import stylize_tiled

    net = _style_net()
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0), device="cpu")
    with torch.no_grad():
        ref = net(x)
        half = _style_net().half()
        untiled = half(x)
        tiled = stylize_tiled(half, x, tile_size=32, stats_max_side=80)
    assert untiled.dtype == torch.float32 and tiled.dtype == torch.float32
    # fp16 rounding only (activations stay O(1); ~1e-3 relative).
    assert (untiled - ref).abs().max() < 2e-2 and (tiled - ref).abs().max() < 2e-2


def test_half_precision_multi_style_model_paints_as_float_and_answers_in_float():
    """The bundled multi-style network runs fp16 on CUDA (its conditional norms' style rows, the mix and the
    palette match in between): the same plumbing in fp16 on the CPU, against fp32."""
    from core.style.multistyle import MultiStyleConfig, MultiStyleModel, MultiStyleNet

    def model(half):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = MultiStyleNet(MultiStyleConfig(4, 1, 2, "linear"))
        with torch.no_grad():  # distinct style rows, so the mix matters
            for m in net.norms():
                m.weight.add_(torch.randn(m.weight.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
        styles = [{"name": "a"}, {"name": "b"}]
        return MultiStyleModel(net, {"styles": styles}, torch.device("cpu"), half=half)

    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0), device="cpu")
    full, half = model(False), model(True)
    assert not full.half and half.half and next(half.net.parameters()).dtype == torch.float16
    for mix in ("a", {"a": 0.3, "b": 0.7}):
        ref = full.stylize_tensor(x, full.mix_vector(mix))
        for tile in (None, 32):
            out = half.stylize_tensor(x, half.mix_vector(mix), tile_size=tile)
            assert out.dtype == torch.float32 and out.shape == ref.shape
            assert (out - ref).abs().max() < 3e-2, (mix, tile)  # fp16 rounding only
    assert float((full.stylize_tensor(x, full.mix_vector("a")) - full.stylize_tensor(x, full.mix_vector("b")))
                 .abs().max()) > 0.05


# --------------------------------------------------------------------------- lint: factories say their device

FACTORIES = {"zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange", "linspace",
             "logspace", "tensor", "eye", "normal", "bernoulli", "multinomial", "zeros_like", "ones_like",
             "rand_like", "randn_like", "empty_like", "full_like"}
_LIKE = {f for f in FACTORIES if f.endswith("_like")}  # these follow their input's device unless told
# (file, function): why its factories need no device=.
ALLOWED = {("core/common/quality.py", "copy_check"): "numpy in, numbers out: every tensor in it is a CPU "
                                                      "tensor from to_tensor, whatever device the models use"}


def _undeviced_factories(source: str, path: str = "") -> list[tuple[int, str]]:
    """(line, call) for each torch factory without ``device=`` whose result is not obviously placed.

    Accepted without ``device=``: ``*_like`` factories and ``out=`` (they inherit a tensor's device);
    module state (inside ``nn.Parameter(...)``/``register_buffer``: it moves with ``.to``);
    draws converted to host scalars (``int()/float()/bool()``); and values passed straight to
    ``.copy_(...)`` or followed by ``.to(...)`` (a CPU-generator draw, moved right after).
    """
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    allowed_functions = {fn for (file, fn) in ALLOWED if file == path}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef) and fn.name in allowed_functions:
            for node in ast.walk(fn):
                node._allowed = True
    found = []
    for node in ast.walk(tree):
        if getattr(node, "_allowed", False):
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                and node.func.attr in FACTORIES):
            continue
        if node.func.attr in _LIKE or any(k.arg in ("device", "out") for k in node.keywords):
            continue
        placed = False
        child, parent = node, parents.get(node)
        while parent is not None and not placed:
            if isinstance(parent, ast.Attribute) and parent.attr in ("to", "cuda"):
                placed = True
            elif isinstance(parent, ast.Call) and child in parent.args:
                name = parent.func.attr if isinstance(parent.func, ast.Attribute) else getattr(parent.func, "id", "")
                placed = name in ("Parameter", "register_buffer", "int", "float", "bool", "copy_")
                break
            elif not isinstance(parent, (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Subscript, ast.Attribute,
                                         ast.Call)):
                break
            child, parent = parent, parents.get(parent)
        if not placed:
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_lint_catches_a_factory_without_device():
    assert _undeviced_factories("import torch\nx = torch.zeros(3)\n") == [(2, "torch.zeros(3)")]
    assert _undeviced_factories("x = torch.randn(3, generator=g) * 2\n") != []
    ok = ("x = torch.zeros(3, device=d)\ny = torch.randn(3, generator=g).to(d)\nn = int(torch.randint(4, (1,)))\n"
          "p = nn.Parameter(torch.ones(3))\nw.copy_(torch.randn(w.shape, generator=g) * 0.1)\n"
          "z = (torch.rand(2, generator=g) * 2 - 1).to(d, dtype)\nb = bool(torch.rand(1) < 0.5)\n")
    assert _undeviced_factories(ok) == []


def test_core_tensor_factories_state_their_device():
    problems = [f"{path.relative_to(ROOT)}:{line}: {call}"
                for path in sorted((ROOT / "core").rglob("*.py"))
                for line, call in _undeviced_factories(path.read_text(), path.relative_to(ROOT).as_posix())]
    assert not problems, "tensor factories without device= (add device=, or .to(device) right after):\n" + \
        "\n".join(problems)


# --------------------------------------------------------------------------- out-of-memory fallbacks

class _OOMAbove(Generator):
    """The real generator, except that canvases over ``limit`` noise pixels raise a real allocator error."""

    limit = 0

    def body(self, x, fine):
        if x.shape[2] * x.shape[3] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.numel() * 4096} bytes")
        return super().body(x, fine)


def test_texture_gan_out_of_memory_falls_back_to_tiles():
    cfg = TextureGANConfig(**GAN_TINY)
    g, _ = build_models(cfg, seed=0)
    small = _OOMAbove(cfg)
    small.load_state_dict(g.state_dict())
    small.limit = 40 * 40  # noise pixels: small tiles plus their margins fit, the 300x200 canvas does not
    reference = TextureGenerator(g, {"training_config": {}}, "ref", torch.device("cpu"))
    starved = TextureGenerator(small, {"training_config": {}}, "oom", torch.device("cpu"))
    want = reference.generate(300, 200, seed=2)
    got = starved.generate(300, 200, seed=2)
    assert "tiles" in starved.last_message and "memory" in starved.last_message
    np.testing.assert_allclose(got, want, atol=1e-4)  # tiles equal one pass up to float rounding
    small.limit = 0  # nothing fits, not even the smallest tile: a clear error, on the CPU already
    with pytest.raises(MemoryError, match="memory"):
        starved.generate(64, 64, seed=2)


def test_training_and_inference_report_their_device(tmp_path):
    from core.common.procedural import make_exemplar
    from core.texture_gan import load_texture_gan, train_texture_gan
    from core.texture_vae import TextureVAEConfig, load_texture_vae, train_texture_vae

    exemplar = make_exemplar("rust", 40, seed=1)
    seen = []
    out = train_texture_gan([exemplar], tmp_path / "g.safetensors", 1, config=TextureGANConfig(**GAN_TINY),
                            device="cpu", progress=seen.append)
    assert seen and all(p.extra["device"] == "cpu" for p in seen)
    model = load_texture_gan(out, device="cpu")
    assert model.config["device"] == "cpu"
    model.generate(16, 16)
    assert model.last_device == "cpu"
    seen.clear()
    cfg = TextureVAEConfig(base_channels=4, channel_mult=(1, 2), latent_channels=2, crop_size=16, batch_size=2)
    vae = load_texture_vae(train_texture_vae([exemplar], tmp_path / "v.safetensors", 1, config=cfg, device="cpu",
                                             progress=seen.append), device="cpu")
    assert seen[-1].extra["device"] == "cpu" and vae.metadata["device"] == "cpu"
    vae.reconstruct(exemplar)
    assert vae.last_device == "cpu"


def test_device_defaults_scale_the_batch_on_cuda_only():
    from core.texture_vae import TextureVAEConfig

    assert TextureGANConfig.for_device("cpu") == TextureGANConfig()  # CPU recipes stay as they were
    assert TextureVAEConfig.for_device("cpu") == TextureVAEConfig()
    assert TextureGANConfig.for_device("cuda").batch_size == 16
    assert TextureGANConfig.for_device("cuda", batch_size=4).batch_size == 4  # explicit fields win
    assert TextureVAEConfig.for_device("cuda").crop_size > TextureVAEConfig().crop_size


def test_block_seeded_noise_depends_on_seed_and_shape_only():
    from core.common.device import NOISE_CHUNK, chunked_randn

    shape = (1, 3, 1000, 1100)  # 3.3 blocks: the last one partial
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = chunked_randn(shape, seed=7)
        torch.set_num_threads(4)
        assert torch.equal(chunked_randn(shape, seed=7), one)  # bit-identical for any thread count
    finally:
        torch.set_num_threads(previous)
    flat = one.view(-1)
    assert not torch.equal(flat[:1000], flat[NOISE_CHUNK:NOISE_CHUNK + 1000])  # blocks are independent
    assert abs(float(one.mean())) < 0.01 and abs(float(one.std()) - 1) < 0.01
    assert not torch.equal(chunked_randn(shape, seed=8), one)


def test_style_out_of_memory_falls_back_to_tiles():
    from core.style.apply import FALLBACK_TILE, StyleModel
    from core.style.tiling import stylize_tiled
    from core.style.transformer import TransformerNet

    class OOMAbove(TransformerNet):
        """The real network, except that frames over ``limit`` pixels raise a real allocator error."""

        limit = 300_000  # the 1024 px statistics pass and 512 px tiles fit, the 1100x300 frame does not

        def forward(self, x):
            if x.shape[-1] * x.shape[-2] > self.limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
            return super().forward(x)

    net = _style_net()
    starved = OOMAbove(net.config)
    starved.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 300, 1100, generator=torch.Generator().manual_seed(0), device="cpu")
    with pytest.warns(UserWarning, match=f"{FALLBACK_TILE}px tiles"):
        got = StyleModel(starved, {"name": "oom"}, torch.device("cpu")).stylize_tensor(x)
    with torch.no_grad():
        want = stylize_tiled(net, x, FALLBACK_TILE)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
