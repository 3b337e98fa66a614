"""The deterministic formulations CUDA trainings take under deterministic algorithms (core/common/deterministic.py)
equal PyTorch's own layers, forward and backward. On the CPU both paths run, so a wrong index or weight fails here
long before a GPU slot would notice a resumed training drifting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.common.deterministic import (CircularConv2d, ReflectionPad2d, circular_pad, circular_upsample2x,
                                      deterministic_path, keeps_channels_last, reflect_pad, reflect_pad_channels_last)


def _grads(fn, x, weights):
    x = x.detach().requires_grad_(True)
    y = fn(x)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    return y.detach(), grad


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 8, 8), (1, 1, 2, 3)])
def test_circular_upsample_by_shifts_equals_the_interpolation_of_a_wrapped_copy(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    weights = torch.randn((shape[0], shape[1], 2 * shape[2], 2 * shape[3]), generator=gen, dtype=torch.float64)

    def reference(t):  # what the GAN's and the VAE's upsampling layers computed before this module
        return F.interpolate(F.pad(t, (1, 1, 1, 1), mode="circular"), scale_factor=2, mode="bilinear",
                             align_corners=False)[:, :, 2:-2, 2:-2]

    y0, g0 = _grads(reference, x, weights)
    y1, g1 = _grads(lambda t: circular_upsample2x(t, force_shifts=True), x, weights)
    assert torch.allclose(y0, y1, atol=1e-12) and torch.allclose(g0, g1, atol=1e-12)
    assert torch.equal(circular_upsample2x(x), reference(x))  # the CPU keeps PyTorch's call


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (3, 3, 3, 3), (2, 0, 0, 3), (0, 1, 2, 0), (5, 7, 5, 4)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_circular_pad_by_concatenation_equals_pytorchs_bit_for_bit(pad, channels_last):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn((2, 3, 5, 7), generator=gen)  # float32: the training dtype, where summing order would show
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weights = torch.randn((2, 3, 5 + pad[2] + pad[3], 7 + pad[0] + pad[1]), generator=gen)
    y0, g0 = _grads(lambda t: F.pad(t, pad, mode="circular"), x, weights)
    y1, g1 = _grads(lambda t: circular_pad(t, pad), x, weights)
    assert torch.equal(y0, y1) and torch.equal(g0, g1)
    assert circular_pad(x, pad).is_contiguous(memory_format=torch.channels_last) == channels_last
    with torch.no_grad():  # inference's one-copy canvas: the same values and layout
        y2 = circular_pad(x, pad)
    assert torch.equal(y2, y0) and y2.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.equal(circular_pad(x.detach(), pad), y0)  # nothing to differentiate: also the canvas
    with pytest.raises(RuntimeError):  # wider than the image: PyTorch's own refusal
        circular_pad(x, (8, 0, 0, 0))


def test_circular_conv_is_a_drop_in_for_pytorchs():
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, padding_mode="circular")
    conv = CircularConv2d(4, 6, 3, stride=2, padding=1)
    conv.load_state_dict(ref.state_dict())
    assert conv.padding_mode == "circular" and list(conv.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 4, 9, 8, requires_grad=True)
    y0, y1 = ref(x), conv(x)
    assert torch.equal(y0, y1)
    g0 = torch.autograd.grad(y0.square().sum(), [x, *ref.parameters()])
    g1 = torch.autograd.grad(y1.square().sum(), [x, *conv.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (4, 4, 4, 4), (2, 0, 0, 3), (0, 1, 2, 0)])
def test_reflect_pad_by_gathers_equals_reflection_padding(pad):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((2, 3, 6, 9), generator=gen, dtype=torch.float64)
    out_shape = (2, 3, 6 + pad[2] + pad[3], 9 + pad[0] + pad[1])
    weights = torch.randn(out_shape, generator=gen, dtype=torch.float64)
    y0, g0 = _grads(lambda t: F.pad(t, pad, mode="reflect"), x, weights)
    y1, g1 = _grads(lambda t: reflect_pad(t, pad, force_gather=True), x, weights)
    assert torch.equal(y0, y1) and torch.allclose(g0, g1, atol=1e-12)
    with pytest.raises(ValueError, match="larger input"):
        reflect_pad(x, (9, 0, 0, 0), force_gather=True)


@pytest.mark.parametrize("pad", [(1, 1, 1, 1), (4, 4, 4, 4), (2, 0, 0, 3), (0, 1, 2, 0)])
def test_reflect_pad_by_mirrored_slices_equals_reflection_padding_and_keeps_channels_last(pad):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn((2, 5, 6, 9), generator=gen, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    out_shape = (2, 5, 6 + pad[2] + pad[3], 9 + pad[0] + pad[1])
    weights = torch.randn(out_shape, generator=gen, dtype=torch.float64)
    y0, g0 = _grads(lambda t: F.pad(t, pad, mode="reflect"), x, weights)
    y1, g1 = _grads(lambda t: reflect_pad_channels_last(t, pad), x, weights)
    assert torch.equal(y0, y1) and torch.allclose(g0, g1, atol=1e-12)
    assert reflect_pad_channels_last(x, pad).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # inference writes the frame once into a padded canvas: the same values
        y2 = reflect_pad_channels_last(x, pad)
    assert torch.equal(y0, y2) and y2.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="larger input"):
        reflect_pad_channels_last(x, (0, 0, 6, 0))


def test_only_channels_last_tensors_off_the_cpu_take_the_mirrored_slices():
    nchw = torch.ones(1, 3, 4, 4, device="meta")
    assert keeps_channels_last(nchw.contiguous(memory_format=torch.channels_last))
    assert not keeps_channels_last(nchw)
    assert not keeps_channels_last(torch.ones(1, 3, 4, 4).contiguous(memory_format=torch.channels_last))  # CPU
    assert not keeps_channels_last(torch.ones(1, 1, 4, 4, device="meta"))  # one channel: both layouts at once
    out = ReflectionPad2d(2)(nchw.contiguous(memory_format=torch.channels_last))
    assert out.shape == (1, 3, 8, 8) and out.is_contiguous(memory_format=torch.channels_last)


def test_the_pad_layer_is_a_drop_in_for_pytorchs():
    layer = ReflectionPad2d(2)
    assert isinstance(layer, torch.nn.ReflectionPad2d) and layer.state_dict() == {}  # checkpoints unchanged
    x = torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(layer(x), torch.nn.ReflectionPad2d(2)(x))


def test_only_cuda_under_deterministic_algorithms_takes_the_other_path():
    x = torch.ones(1, 1, 4, 4, requires_grad=True)
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        assert not deterministic_path(x)  # a CPU tensor: PyTorch's kernels are deterministic there
        meta = torch.ones(1, 1, 4, 4, device="meta", requires_grad=True)
        assert not deterministic_path(meta)
    finally:
        torch.use_deterministic_algorithms(before)
