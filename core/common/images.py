"""Reading, writing and converting images for every model.

Convention inside the core: an image is ``ImageData`` holding float32 numpy
arrays, ``rgb`` HxWx3 and optional ``alpha`` HxW, with an explicit colour space:

* ``"srgb"``: display-encoded values in [0, 1] (8/16-bit PNG, JPEG, ...);
* ``"linear"``: scene-linear values, may exceed 1 (EXR, Blender float buffers).

The networks work on sRGB-encoded values (what the artist sees and what
exemplars/paintings are stored as); ``to_srgb``/``to_linear`` convert at the
edges so results come back in the colour space they came in.

Every failure raises ``ImageError`` with a sentence an artist can act on.
"""

from __future__ import annotations

import glob
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

# 64 megapixels (8192x8192) by default: far above any texture or 4K frame,
# well below what exhausts 24 GiB as float32. Callers may raise it.
DEFAULT_MAX_PIXELS = 8192 * 8192
MIN_SIDE = 8


class ImageError(ValueError):
    """An input image cannot be used; the message says why and what to do."""


@dataclass
class ImageData:
    rgb: np.ndarray  # float32 HxWx3
    alpha: Optional[np.ndarray] = None  # float32 HxW in [0, 1]
    colorspace: str = "srgb"  # "srgb" or "linear"
    bit_depth: int = 8  # of the source: 8, 16 or 32 (float)
    source: str = ""

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def rgba(self) -> np.ndarray:
        alpha = self.alpha if self.alpha is not None else np.ones(self.rgb.shape[:2], np.float32)
        return np.concatenate([self.rgb, alpha[..., None]], axis=-1)


# --------------------------------------------------------------------------- colour

def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.maximum(np.asarray(x, dtype=np.float32), 0.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(np.maximum(x, 0.0031308), 1 / 2.4) - 0.055).astype(np.float32)


def to_srgb(image: ImageData) -> ImageData:
    """sRGB-encoded copy clipped to [0, 1] (the values a network sees)."""
    rgb = linear_to_srgb(image.rgb) if image.colorspace == "linear" else image.rgb
    return replace(image, rgb=np.clip(rgb, 0.0, 1.0).astype(np.float32), colorspace="srgb")


def to_colorspace(rgb_srgb: np.ndarray, colorspace: str) -> np.ndarray:
    """Convert network output (sRGB-encoded) back to ``colorspace``."""
    if colorspace == "linear":
        return srgb_to_linear(rgb_srgb)
    if colorspace == "srgb":
        return np.asarray(rgb_srgb, dtype=np.float32)
    raise ValueError(f"unknown colour space {colorspace!r}")


# --------------------------------------------------------------------------- validation

# Integer images are 8 or 16 bit; int32/int64, bool, complex and object arrays are no image data
# (their scale is unknown and complex parts would be dropped silently).
_ARRAY_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.float16, np.float32, np.float64))


def validate_array(array: np.ndarray, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Check an HxWxC (C in 1..4) or HxW array and return it as float32 HxWxC."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{name}: expected an HxW or HxWxC array with 1-4 channels, got shape {a.shape}")
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(f"{name} is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    if h * w > max_pixels:
        raise ImageError(f"{name} is {w}x{h} pixels, more than the limit of {max_pixels:,} pixels; "
                         "downscale it first or raise the limit")
    if a.dtype not in _ARRAY_DTYPES:
        raise ImageError(f"{name}: pixel type {a.dtype} is not an image type; use uint8, uint16 or float arrays")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    else:
        a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise ImageError(f"{name} contains NaN or infinite values")
    return a


def image_from_array(array: np.ndarray, colorspace: str = "srgb", name: str = "image",
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Wrap an HxW, HxWx1..4 array (uint8, uint16 or float) as ImageData."""
    if colorspace not in ("srgb", "linear"):
        raise ImageError(f"{name}: colour space must be 'srgb' or 'linear', not {colorspace!r}")
    bit_depth = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(np.asarray(array).dtype, 32)
    a = validate_array(array, name, max_pixels)
    c = a.shape[2]
    alpha = None
    if c in (1, 2):
        rgb = np.repeat(a[..., :1], 3, axis=2)
        alpha = a[..., 1] if c == 2 else None
    else:
        rgb = a[..., :3]
        alpha = a[..., 3] if c == 4 else None
    if alpha is not None:
        alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
    return ImageData(np.ascontiguousarray(rgb, dtype=np.float32), alpha, colorspace, bit_depth, name)


# --------------------------------------------------------------------------- reading

def _read_with_pillow(path: Path, max_pixels: int) -> ImageData:
    # Pillow's own bomb check fires only at 2x its limit; check the header ourselves first.
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{path.name} is {w}x{h} pixels, more than the limit of {max_pixels:,} pixels; "
                                 "downscale it first or raise the limit")
            previous_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # we enforce max_pixels above
            try:
                wide = _png_rgb16(path, im)
                if wide is None:
                    im.load()
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
            mode = im.mode
            if wide is not None:
                arr = wide
            elif mode in ("I;16", "I;16B", "I;16L", "I;16N"):
                arr = np.asarray(im, dtype=np.uint16)
            elif mode == "I":
                raw = np.asarray(im, dtype=np.int64)
                # PNG 16-bit grey arrives as mode I holding 0..65535.
                arr = np.clip(raw, 0, 65535).astype(np.uint16)
            elif mode == "F":
                return image_from_array(np.asarray(im, dtype=np.float32), "linear", path.name, max_pixels)
            elif mode in ("L", "LA", "RGB", "RGBA"):
                arr = np.asarray(im)
            elif mode in ("1", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa", "RGBX"):
                has_alpha = "A" in mode or "a" in mode or (mode == "P" and "transparency" in im.info)
                arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
            else:
                raise ImageError(f"{path.name}: unsupported pixel mode {mode!r}")
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{path.name} is not an image file Pillow can read (corrupt, or an unsupported format)") from exc
    except (OSError, SyntaxError, ValueError, struct.error, zlib.error) as exc:
        raise ImageError(f"{path.name} could not be read; the file looks corrupt or truncated ({exc})") from exc
    except Image.DecompressionBombError as exc:  # pragma: no cover - guarded above
        raise ImageError(f"{path.name} is too large to open safely ({exc})") from exc
    return image_from_array(arr, "srgb", path.name, max_pixels)


_PNG_RGB16 = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _png_rgb16(path: Path, im: Image.Image) -> np.ndarray | None:
    """All 16 bits of a 16-bit RGB(A) PNG as uint16 HxWxC, else None.

    Pillow has no 16-bit colour mode and keeps only each sample's high byte. Its
    decoder unfilters the rows before unpacking, so decoding twice, once keeping the
    high bytes ("RGB;16B") and once the low ones (the same bytes read as "RGB;16L"),
    gives both halves of every sample.
    """
    if im.format != "PNG" or len(im.tile) != 1 or im.tile[0].args not in _PNG_RGB16:
        return None
    halves = []
    for rawmode in (im.tile[0].args, _PNG_RGB16[im.tile[0].args]):
        with Image.open(path) as part:
            part.tile = [part.tile[0]._replace(args=rawmode)]
            part.load()
            halves.append(np.asarray(part, dtype=np.uint16))
    return (halves[0] << 8) | halves[1]


def read_exr_channels(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every channel of every part (Blender 5 multilayer renders put each pass in a part of
    its own), plus the first part's header. ImageError when OpenEXR is missing or the file is bad."""
    try:
        import OpenEXR  # optional: Blender hands float buffers over directly, the CLI needs this
    except ImportError as exc:
        raise ImageError(f"{path.name}: reading EXR files needs the 'OpenEXR' Python package "
                         "(pip install OpenEXR, or the add-on's Install Dependencies button), "
                         "or save the frames as 16-bit PNG") from exc
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            header = dict(exr.parts[0].header)
            channels = {name: ch.pixels for part in exr.parts for name, ch in part.channels.items()}
    except Exception as exc:
        raise ImageError(f"{path.name} could not be read as OpenEXR ({exc})") from exc
    return channels, header


def _read_exr(path: Path, max_pixels: int) -> ImageData:
    channels, _ = read_exr_channels(path)
    arr = _exr_colour(channels)
    if arr is None:
        raise ImageError(f"{path.name} has no colour channels (R, G, B or a render's Combined pass)")
    return image_from_array(arr, "linear", path.name, max_pixels)


def _exr_colour(channels: dict) -> np.ndarray | None:
    """Plain R, G, B (+A) channels, else the first view layer's Combined pass of a multilayer render,
    else a lone grey channel (e.g. Y)."""
    combined = sorted({n[:-1] for n in channels if n.endswith(".Combined.R")})  # "ViewLayer.Combined."
    for prefix in ["", *combined]:
        if all(f"{prefix}{c}" in channels for c in "RGB"):
            names = [f"{prefix}{c}" for c in "RGBA" if f"{prefix}{c}" in channels]
            return np.stack([np.asarray(channels[n], dtype=np.float32) for n in names], axis=-1)
    plain = sorted(n for n in channels if "." not in n)
    if len(plain) == 1:
        return np.asarray(channels[plain[0]], dtype=np.float32)
    return None


def _read_npy(path: Path, max_pixels: int) -> ImageData:
    try:
        # The header first: a crafted shape must not make np.load allocate before anything is checked.
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(fh)
        if len(shape) in (2, 3) and shape[0] * shape[1] > max_pixels:
            raise ImageError(f"{path.name} is {shape[1]}x{shape[0]} pixels, more than the limit of "
                             f"{max_pixels:,} pixels; downscale it first or raise the limit")
        if dtype.hasobject or int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > path.stat().st_size:
            raise ValueError(f"its header promises {shape} {dtype} values the file does not hold")
        arr = np.load(path, allow_pickle=False)  # never unpickle
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{path.name} is not a readable .npy array ({exc})") from exc
    colorspace = "srgb" if arr.dtype in (np.uint8, np.uint16) else "linear"
    return image_from_array(arr, colorspace, path.name, max_pixels)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Read any image Pillow reads (8/16-bit, grey, alpha, palette), EXR or .npy."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"image file not found: {p}")
    if p.is_dir():
        raise ImageError(f"{p} is a folder, not an image file")
    if p.stat().st_size == 0:
        raise ImageError(f"{p.name} is empty (0 bytes)")
    suffix = p.suffix.lower()
    if suffix == ".exr":
        return _read_exr(p, max_pixels)
    if suffix == ".npy":
        return _read_npy(p, max_pixels)
    image = _read_with_pillow(p, max_pixels)
    image.source = str(p)
    return image


def load_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Shortcut: sRGB-encoded float32 HxWx3 in [0, 1] (alpha dropped)."""
    return to_srgb(load_image(path, max_pixels)).rgb


# --------------------------------------------------------------------------- writing

def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files an earlier write of ``path`` left behind (a process killed mid-write).

    Only this target's own ``.NAME.*.tmp`` files: one target is never written by two
    writers at once (jobs have unique outputs), so any such file is an orphan.
    """
    try:
        for stale in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*.tmp"):
            stale.unlink(missing_ok=True)
    except OSError:
        pass  # cleaning up must never fail the write itself


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path`` then rename: never a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a read-only or missing folder: name the file the user asked for
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    os.chmod(tmp, _umask_mode())  # mkstemp makes 0600; results are ordinary user files
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk: say which file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def encode_png(array: np.ndarray, bit_depth: int = 8) -> bytes:
    """PNG bytes for HxW or HxWxC (C=1..4) float [0, 1] data, 8 or 16 bits.

    Pillow cannot write 16-bit RGB(A) PNGs, so this encodes PNG directly.
    """
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    h, w, c = a.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    if bit_depth == 8:
        data = (np.clip(a, 0, 1) * 255.0 + 0.5).astype(">u1")
    elif bit_depth == 16:
        data = (np.clip(a, 0, 1) * 65535.0 + 0.5).astype(">u2")
    else:
        raise ValueError("PNG bit depth must be 8 or 16")
    rows = data.reshape(h, w * c * (bit_depth // 8)) if bit_depth == 8 else data.view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows.astype(np.uint8)], axis=1).tobytes()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def save_image(path: str | os.PathLike, image: ImageData | np.ndarray, bit_depth: int = 8) -> Path:
    """Write atomically (never a half-written file). PNG 8/16-bit, JPEG, .npy, EXR.

    A bare array is taken as sRGB-encoded RGB(A). Linear data is encoded to
    sRGB for PNG/JPEG and kept linear for EXR/.npy.
    """
    p = Path(path)
    if isinstance(image, np.ndarray):
        image = image_from_array(image, "srgb", p.name, max_pixels=np.iinfo(np.int64).max)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".exr"):
        rgb = image.rgb if image.colorspace == "linear" else srgb_to_linear(image.rgb)
        data = rgb if image.alpha is None else np.concatenate([rgb, image.alpha[..., None]], axis=-1)
        if suffix == ".npy":
            import io
            buf = io.BytesIO()
            np.save(buf, data.astype(np.float32), allow_pickle=False)
            atomic_write_bytes(p, buf.getvalue())
        else:
            _write_exr(p, data.astype(np.float32))
        return p
    srgb = to_srgb(image)
    data = srgb.rgb if srgb.alpha is None else np.concatenate([srgb.rgb, srgb.alpha[..., None]], axis=-1)
    if suffix == ".png":
        atomic_write_bytes(p, encode_png(data, bit_depth))
        return p
    if suffix in (".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"):
        import io
        mode = "RGBA" if data.shape[2] == 4 and suffix not in (".jpg", ".jpeg", ".bmp") else "RGB"
        arr8 = (np.clip(data[..., : len(mode)], 0, 1) * 255 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr8, mode).save(buf, format=Image.registered_extensions()[suffix], quality=95)
        atomic_write_bytes(p, buf.getvalue())
        return p
    raise ImageError(f"cannot write {p.name}: unsupported extension {suffix!r} (use .png, .jpg, .exr or .npy)")


def _write_exr(path: Path, data: np.ndarray) -> None:
    try:
        import OpenEXR
    except ImportError as exc:
        raise ImageError("writing EXR files needs the 'OpenEXR' Python package (pip install OpenEXR)") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    name = "RGBA" if data.shape[2] == 4 else "RGB"
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    try:
        with OpenEXR.File(header, {name: np.ascontiguousarray(data)}) as exr:
            exr.write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # a full disk or a kill leaves no half-written file behind
        raise


# --------------------------------------------------------------------------- tensors

def to_tensor(rgb: np.ndarray):
    """HxWxC float array -> 1xCxHxW float32 torch tensor (shares no memory)."""
    import torch
    return torch.from_numpy(np.ascontiguousarray(np.asarray(rgb, np.float32).transpose(2, 0, 1))).unsqueeze(0)


def from_tensor(tensor) -> np.ndarray:
    """1xCxHxW or CxHxW tensor -> HxWxC float32 numpy array."""
    t = tensor.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    return np.ascontiguousarray(t.numpy().transpose(1, 2, 0))


def resize_rgb(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """High-quality resize of float HxWxC data (per channel, Pillow 'F' mode)."""
    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c]), mode="F").resize((width, height), Image.LANCZOS))
                for c in range(rgb.shape[2])]
    return np.stack(channels, axis=-1).astype(np.float32)
