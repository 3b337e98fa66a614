"""What a photograph's large-scale structure is, so synthesis can keep it: lighting, slant and lattice.

* ``flatten_lighting``: a photograph of a wall is rarely lit evenly (a lamp, the sky, vignetting). Copying
  pieces from its bright and its dark side next to each other gives a patchwork of brightness, and the
  matching then prefers pieces from one side. A plane fitted to the log-luminance is that lighting:
  divided out before matching, it leaves the texture itself. A texture without a gradient fits a nearly
  flat plane and stays exactly as it is.
* ``straighten``: a wall or floor photographed at a slant has courses that fan out towards a vanishing
  point (the brick photo's turn by 18 degrees across it). No two blocks of such an exemplar share a tilt,
  so a quilt of them breaks its courses wherever blocks meet. The dominant line direction of each part of
  the exemplar (structure tensor) gives the vanishing point; a homography sends it to infinity, so the
  courses run parallel (at their mean direction). Exemplars without a strong line direction (stones, gravel)
  or with parallel lines (a uniform tilt quilts well) are left exactly as they are.
* ``find_lattice``: regular textures (brick courses, tiles, planks) repeat along one or two vectors. The
  autocorrelation of the (flattened) luminance peaks at those vectors; pieces copied at offsets that differ
  by whole lattice vectors continue each other's courses and mortar lines, so the block start
  (``block_field``) snaps its offsets to the lattice.
* ``block_field``: the output tiled by exemplar blocks from random places (a nearest-neighbour field that
  is piecewise a translation), cells whole inside each block; the matching then heals the block borders.
  The "quilted" layout starts from quilted blocks instead (``quilting.py``: blocks that fit their
  neighbours, joined along the cheapest seam), falling back to these for exemplars too small to overlap
  blocks and for canvases too large for quilting's per-block loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Lighting: the fit runs on a small copy; a quadratic surface has no texture-sized detail to remove.
LIGHT_FIT_SIDE = 64
# A plane: a quadratic also bends to the random shades of a few dozen bricks (measured on evenly lit walls
# of 32 bricks: quadratic fits spanned up to x1.44 in brightness, planes up to x1.21).
LIGHT_DEGREE = 1
# Below this brightness span (max / min of the fitted field) the exemplar counts as evenly lit and is left
# exactly as it is: a texture's own random large-scale shading spans up to ~x1.2 (above).
LIGHT_MIN_SPAN = 1.3
# Curved lighting (a flash's hot spot, a lens's vignette, a window's falloff), which a plane cannot take out: a
# quadratic, used when it explains at least LIGHT_CURVED_MIN_SHARE of the variance of the log-luminance's
# LIGHT_TEST_GRID^2 block means (by chance, 5 terms explain ~0.02 of 256 shuffled means, at most 0.09 of 64
# shuffles). Measured: the 20 texture photographs 0.00-0.24 (bark with moss 0.47, lit from one side), the project's
# material exemplars and evenly lit procedural walls and stones at most ~0.2; six of the photographs under a
# flash that falls to half at the corners 0.20-0.78 (five of six over 0.25), under an off-centre hot spot 0.94-0.98.
# A texture's own large shades explain as much as a faint vignette, so that one stays.
LIGHT_CURVED_MIN_SHARE = 0.25
LIGHT_TEST_GRID = 16
# Blown-out highlights (every channel at least BLOWN_OUT_LEVEL) hold no texture; above this share of an exemplar
# the synthesizer says so. The project's 36 photographs and exemplars: at most 0.3 %; a photograph whose middle a
# hot spot has burnt out: 21 %.
BLOWN_OUT_LEVEL = 0.98
BLOWN_OUT_WARN_SHARE = 0.02
BURNT_RIM = 3  # pixels around a burnt-out area that its glare has flattened too
# Straightening: the exemplar is cut into STRAIGHTEN_GRID x STRAIGHTEN_GRID parts, each with its dominant line
# direction and coherence (1: all gradients parallel). It counts as a line texture when the parts' mean
# coherence is at least this (measured: brick walls and courses 0.35-0.65, planks 0.95, cobblestones 0.07-0.3,
# large tiles 0.01-0.35: their two line families cancel)...
STRAIGHTEN_GRID = 4
STRAIGHTEN_MIN_COHERENCE = 0.45
# ...and is straightened only when its lines fan out by more than this (weighted RMS angle of the parts' lines
# to their mean direction, degrees): a few degrees of a hand-held shot look parallel, and the warp's
# resampling softens the pixels (measured: a 4-degree turn of the stone-wall photo, sharp and quilted well
# before, doubled its synthesis ratio).
STRAIGHTEN_MIN_DEGREES = 3.0
# The warp must bring that fan to at most this share (measured again on the warped exemplar): a slant's
# does, wavy grain's does not.
STRAIGHTEN_MAX_RESIDUAL = 0.5
STRAIGHTEN_ROUNDS = 3
# The straightened exemplar is the largest centred rectangle (of the exemplar's aspect) inside the warped
# one; when that keeps less than this share of each side, the exemplar is left as it is.
STRAIGHTEN_MIN_KEEP = 0.6
# Lattice: a peak of the normalised autocorrelation counts if at least this strong (1 = exact repeat)...
PEAK_MIN = 0.3
# ...and at least this many pixels from the origin, and the lattice repeats at least twice in the exemplar.
PEAK_MIN_RADIUS = 4
MIN_REPEATS = 2
# Two lattice vectors are independent when the sine of their angle is at least this.
MIN_SINE = 0.35
# A lattice point's autocorrelation falls by at least this share of its height in every direction.
RIDGE_DROP = 0.15
# A ridge's foot (a course repeat) moves along the ridge to where the joints across the courses repeat too,
# when their autocorrelation there beats the foot's by this much (running bond: half a brick along).
JOINT_PHASE_GAIN = 0.1


# --------------------------------------------------------------------------- lighting

def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3] @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _light_basis(rows: int, cols: int, degree: int) -> torch.Tensor:
    """Polynomial terms in y and x over [-1, 1]^2 up to ``degree`` (the constant first), one column each."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, rows, dtype=torch.float64, device="cpu"),
                          torch.linspace(-1, 1, cols, dtype=torch.float64, device="cpu"), indexing="ij")
    terms = [y ** i * x ** j for i in range(degree + 1) for j in range(degree + 1 - i)]
    return torch.stack([t.flatten() for t in terms], dim=1)


def _explained_share(basis: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """The share of each map's variance (maps: N x pixels) that a least-squares fit on ``basis`` explains."""
    centred = maps - maps.mean(dim=1, keepdim=True)
    coef = torch.linalg.lstsq(basis, centred.T).solution
    residual = centred.T - basis @ coef
    return 1.0 - (residual ** 2).sum(0) / (centred ** 2).sum(1).clamp_min(1e-12)


def _curved_lighting(log_luminance: torch.Tensor) -> bool:
    """Whether a quadratic's shape is the photograph's lighting rather than its texture's shades
    (LIGHT_CURVED_MIN_SHARE): it explains enough of the block means of ``log_luminance`` (H x W)."""
    means = F.interpolate(log_luminance[None, None], size=(LIGHT_TEST_GRID, LIGHT_TEST_GRID), mode="area")[0, 0]
    share = _explained_share(_light_basis(LIGHT_TEST_GRID, LIGHT_TEST_GRID, 2), means.flatten()[None])
    return bool(share[0] >= LIGHT_CURVED_MIN_SHARE)


def lighting_field(rgb: np.ndarray) -> np.ndarray:
    """The exemplar's smooth lighting (HxW, mean 1 in the log domain): a quadratic fitted to log-luminance where
    its shape is lighting (``_curved_lighting``), else a fitted plane; all ones when that spans less than
    LIGHT_MIN_SPAN (evenly lit)."""
    h, w = rgb.shape[:2]
    log_luminance = torch.from_numpy(np.log(_luminance(rgb) + 0.02)).double()
    small = F.interpolate(log_luminance[None, None], size=(min(h, LIGHT_FIT_SIDE), min(w, LIGHT_FIT_SIDE)),
                          mode="area")[0, 0]

    def fitted(degree: int) -> torch.Tensor:
        coef = torch.linalg.lstsq(_light_basis(*small.shape, degree), small.flatten()[:, None]).solution[:, 0]
        # The constant term is the texture's brightness, not its lighting. The surface is summed term by term
        # from a column and a row (no pixels x terms matrix at full size).
        y = torch.linspace(-1, 1, h, dtype=torch.float64, device="cpu")[:, None]
        x = torch.linspace(-1, 1, w, dtype=torch.float64, device="cpu")[None, :]
        powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
        return sum(float(c) * y ** i * x ** j for c, (i, j) in zip(coef[1:], powers[1:]))

    if min(h, w) >= LIGHT_TEST_GRID and _curved_lighting(log_luminance):
        fit = fitted(2)
    else:
        fit = fitted(LIGHT_DEGREE)
        if float(fit.max() - fit.min()) < math.log(LIGHT_MIN_SPAN):
            return np.ones((h, w), dtype=np.float32)
    return torch.exp(fit - fit.mean()).float().numpy()


def blown_out_share(rgb: np.ndarray) -> float:
    """The share of pixels burnt out to white (every channel at least BLOWN_OUT_LEVEL)."""
    return float((rgb[..., :3].min(axis=-1) >= BLOWN_OUT_LEVEL).mean())


def burnt_out_mask(rgb: np.ndarray) -> np.ndarray | None:
    """Where the exemplar is burnt out to white (HxW float32, 1 there), grown by a few pixels to take the burnt
    area's soft rim; None when that is under BLOWN_OUT_WARN_SHARE (a photo's specular glints are texture)."""
    if blown_out_share(rgb) < BLOWN_OUT_WARN_SHARE:
        return None
    burnt = torch.from_numpy(np.ascontiguousarray(rgb[..., :3].min(axis=-1) >= BLOWN_OUT_LEVEL, dtype=np.float32))
    grown = F.max_pool2d(burnt[None, None], BURNT_RIM * 2 + 1, stride=1, padding=BURNT_RIM)[0, 0]
    return grown.numpy()


def flatten_lighting(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the exemplar with its smooth lighting divided out, that lighting field)."""
    light = lighting_field(rgb)
    return np.clip(rgb / light[..., None], 0.0, 1.0).astype(np.float32), light


def relight(rgb: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Put a lighting field (resized to the output) back onto a synthesized texture."""
    h, w = rgb.shape[:2]
    field = F.interpolate(torch.from_numpy(np.ascontiguousarray(light))[None, None], size=(h, w),
                          mode="bilinear", align_corners=False)[0, 0].numpy()
    return np.clip(rgb * field[..., None], 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- slant

def line_directions(rgb: np.ndarray, grid: int = STRAIGHTEN_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per part of a ``grid`` x ``grid`` split: (centres as (x, y) pixels, the dominant line direction in
    radians (x right, y down; the lines run perpendicular to the mean gradient), coherence in [0, 1])."""
    # The 5x5 binomial blur as two 1-D passes in numpy: torch's float64 2-D convolution takes its slow
    # reference path (37 ms at 512 px, three calls a synthesis; host time on a GPU too), this one ~1 ms.
    padded = np.pad(np.asarray(_luminance(rgb), dtype=np.float64), 2, mode="edge")
    taps = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16
    rows = sum(t * padded[i:padded.shape[0] - 4 + i] for i, t in enumerate(taps))
    lum = torch.from_numpy(sum(t * rows[:, j:rows.shape[1] - 4 + j] for j, t in enumerate(taps)))
    gx = lum[1:-1, 2:] - lum[1:-1, :-2]
    gy = lum[2:, 1:-1] - lum[:-2, 1:-1]
    h, w = gx.shape
    centres, angles, coherence = [], [], []
    for i in range(grid):
        for j in range(grid):
            part = (slice(i * h // grid, (i + 1) * h // grid), slice(j * w // grid, (j + 1) * w // grid))
            xx, yy, xy = float((gx[part] ** 2).sum()), float((gy[part] ** 2).sum()), float((gx[part] * gy[part]).sum())
            gradient = 0.5 * math.atan2(2 * xy, xx - yy)
            angles.append(gradient + math.pi / 2)
            coherence.append(math.hypot(xx - yy, 2 * xy) / max(xx + yy, 1e-12))
            centres.append(((j + 0.5) * w / grid + 1, (i + 0.5) * h / grid + 1))
    return np.array(centres), np.array(angles), np.array(coherence)


def straightening(rgb: np.ndarray) -> np.ndarray | None:
    """The 3x3 homography that makes the exemplar's fanning lines parallel, from centred exemplar coordinates
    (pixels over half the longer side) to the same coordinates of the straightened exemplar; None to leave
    the exemplar as it is (no strong line direction, lines already parallel, or a fan the warp cannot undo).

    Refined over up to STRAIGHTEN_ROUNDS: a wall's cross joints pull each part's measured direction a little
    further from the mean, so one fit over-corrects (a synthetic wall's 8.6-degree fan came out reversed at
    2.9 degrees); each round fits the fan left in the exemplar as warped so far, and the straightest round
    is kept."""
    found = _straightest(rgb)
    return None if found is None else found[0]


def _straightest(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``straightening``'s homography and the exemplar warped by it, or None."""
    directions = line_directions(rgb)
    _, angles, coherence = directions
    if coherence.mean() < STRAIGHTEN_MIN_COHERENCE:
        return None
    before = fan(angles, coherence)
    if math.degrees(before) < STRAIGHTEN_MIN_DEGREES:
        return None
    best, best_fan = None, before
    forward, shape = None, rgb.shape[:2]
    for _ in range(STRAIGHTEN_ROUNDS):
        step = _fan_correction(shape, *directions)  # fitted on the exemplar as warped so far
        if step is None:
            break
        forward = step if forward is None else step @ forward
        view = _warped(rgb, forward)
        if view is None:
            break
        directions, shape = line_directions(view), view.shape[:2]
        round_fan = fan(directions[1], directions[2])
        if round_fan < best_fan:
            best, best_fan = (forward, view), round_fan
        if math.degrees(round_fan) < STRAIGHTEN_MIN_DEGREES / 2:  # parallel within what the parts can tell apart
            break
    return best if best is not None and best_fan <= STRAIGHTEN_MAX_RESIDUAL * before else None


def _fan_correction(shape: tuple[int, int], centres: np.ndarray, angles: np.ndarray, coherence: np.ndarray
                    ) -> np.ndarray | None:
    """One fit, from an image's ``line_directions``: the homography sending the vanishing point of the parts'
    lines to infinity, turned so the lines keep their mean direction (a uniform tilt quilts well: every block
    shares it); None when the lines are parallel already (their vanishing point beyond 100 half-sides)."""
    h, w = shape
    p = (centres - np.array([w / 2, h / 2])) / (max(h, w) / 2)  # centred, about [-1, 1]
    normals = np.stack([-np.sin(angles), np.cos(angles)], axis=1)
    offsets = (normals * p).sum(axis=1)
    # the point nearest every part's line (least squares of the distances)
    gram = (normals * coherence[:, None]).T @ normals
    v = np.linalg.lstsq(gram, (normals * (coherence * offsets)[:, None]).sum(axis=0), rcond=1e-9)[0]
    if not np.isfinite(v).all() or np.hypot(*v) > 100:
        return None
    mean = _mean_direction(angles, coherence)
    project = np.eye(3)
    project[2, :2] = -v / float(v @ v)  # the line through v, normal to v, goes to infinity: v with it
    turn = (mean - math.atan2(v[1], v[0]) + math.pi / 2) % math.pi - math.pi / 2  # lines have no sign
    rotate = np.array([[math.cos(turn), -math.sin(turn), 0], [math.sin(turn), math.cos(turn), 0], [0, 0, 1]])
    return rotate @ project


def _mean_direction(angles: np.ndarray, weights: np.ndarray) -> float:
    return 0.5 * math.atan2(float((weights * np.sin(2 * angles)).sum()), float((weights * np.cos(2 * angles)).sum()))


def fan(angles: np.ndarray, weights: np.ndarray) -> float:
    """Weighted RMS angle (radians) between line directions and their mean: how far the lines fan out."""
    off = (angles - _mean_direction(angles, weights) + math.pi / 2) % math.pi - math.pi / 2
    return float(np.sqrt((weights * off ** 2).sum() / max(float(weights.sum()), 1e-12)))


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def _warped(rgb: np.ndarray, forward: np.ndarray) -> np.ndarray | None:
    """``rgb`` warped by ``forward`` (centred coordinates), cropped to the largest centred rectangle of its
    aspect inside the warp, at the pixel size of its centre; None when that keeps less than
    STRAIGHTEN_MIN_KEEP of each side."""
    h, w = rgb.shape[:2]
    scale = max(h, w) / 2
    backward = np.linalg.inv(forward)
    half = np.array([w, h]) / 2 / scale
    edge = np.linspace(-1, 1, 33)
    border = np.concatenate([np.stack([edge, np.full_like(edge, s)], 1) for s in (-1, 1)]
                            + [np.stack([np.full_like(edge, s), edge], 1) for s in (-1, 1)])

    def inside(keep: float) -> bool:
        source = _apply(backward, border * half * keep)
        return bool(np.isfinite(source).all() and (np.abs(source) <= half * (1 - 1e-6)).all())

    low, high = 0.0, 1.0
    for _ in range(20):
        mid = (low + high) / 2
        low, high = (mid, high) if inside(mid) else (low, mid)
    if low < STRAIGHTEN_MIN_KEEP:
        return None
    out_h, out_w = max(1, int(h * low)), max(1, int(w * low))
    ys, xs = np.meshgrid((np.arange(out_h) + 0.5 - out_h / 2) / scale, (np.arange(out_w) + 0.5 - out_w / 2) / scale,
                         indexing="ij")
    source = _apply(backward, np.stack([xs.ravel(), ys.ravel()], axis=1))
    grid = torch.from_numpy(source / half).float().view(1, out_h, out_w, 2)  # grid_sample's [-1, 1]
    image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32))[None]
    out = F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False)[0]
    return np.clip(out.numpy().transpose(1, 2, 0), 0.0, 1.0).astype(np.float32)


def straighten(rgb: np.ndarray) -> np.ndarray:
    """The exemplar with its fanning lines made parallel (``straightening``), cropped to the largest centred
    rectangle of its aspect inside the warp; the exemplar itself (the same array) when nothing fans."""
    found = _straightest(rgb)
    return rgb if found is None else found[1]


# --------------------------------------------------------------------------- lattice

@dataclass
class Lattice:
    """Up to two repeat vectors (dy, dx) in exemplar pixels, with their autocorrelation strength."""

    vectors: list[tuple[float, float]]
    strengths: list[float]

    def scaled(self, factor: float) -> "Lattice":
        return Lattice([(dy * factor, dx * factor) for dy, dx in self.vectors], list(self.strengths))


def autocorrelation(grey: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation (1 at the origin, centred), each lag divided by its overlap so that long
    lags are not penalised for overlapping less."""
    g = torch.from_numpy(np.asarray(grey, dtype=np.float64))
    g = g - g.mean()
    h, w = g.shape
    pad = (2 * h, 2 * w)

    def corr(a: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft2(a, s=pad)
        return torch.fft.irfft2(spec * spec.conj(), s=pad)

    overlap = corr(torch.ones_like(g)).clamp_min(1.0)
    ac = corr(g) / overlap
    ac = ac / ac[0, 0].clamp_min(1e-12)
    return torch.fft.fftshift(ac).numpy()  # origin at (2h // 2, 2w // 2) = (h, w)


def _drops(ac: np.ndarray, ys: np.ndarray, xs: np.ndarray, step: np.ndarray) -> np.ndarray:
    """How far the autocorrelation falls ``step`` pixels away from each peak, along 8 directions
    (peaks x 8): a peak of a lattice falls in every direction, a ridge (a mortar line shifted along
    itself) not along the ridge."""
    h, w = ac.shape
    angles = np.arange(8) * np.pi / 8
    out = []
    for a in angles:
        oy, ox = np.round(np.sin(a) * step).astype(int), np.round(np.cos(a) * step).astype(int)
        ahead = ac[np.clip(ys + oy, 0, h - 1), np.clip(xs + ox, 0, w - 1)]
        behind = ac[np.clip(ys - oy, 0, h - 1), np.clip(xs - ox, 0, w - 1)]
        out.append(ac[ys, xs] - 0.5 * (ahead + behind))
    return np.stack(out, axis=1)


def find_lattice(rgb: np.ndarray) -> Lattice | None:
    """The exemplar's repeat vectors, shortest first; None when it does not repeat (stones, bark, grass).

    Candidates are local maxima of the autocorrelation within half the exemplar (every lag seen over half
    the image or more), at least PEAK_MIN strong. A candidate that falls off in every direction is a lattice
    point; one that stays high along a line is a ridge (rows that repeat, shifted along themselves freely,
    as brick courses do along their length at lags other than a whole brick): its foot, the ridge point
    nearest the origin, is a repeat of the rows only. The first vector is the shortest of the strongest
    candidates, the second the shortest independent lattice point; a texture that repeats along one axis
    only (planks) gets one vector.
    """
    grey = _luminance(rgb)
    h, w = grey.shape
    ac_t = torch.from_numpy(autocorrelation(grey))[None, None]
    local_max = (ac_t == F.max_pool2d(ac_t, 5, stride=1, padding=2))[0, 0].numpy()
    ac = ac_t[0, 0].numpy()
    ys, xs = np.nonzero(local_max & (ac >= PEAK_MIN))
    dy, dx = ys - h, xs - w
    radius = np.hypot(dy, dx)
    keep = ((radius >= PEAK_MIN_RADIUS) & (np.abs(dy) <= h / MIN_REPEATS) & (np.abs(dx) <= w / MIN_REPEATS)
            & ((dy > 0) | ((dy == 0) & (dx > 0))))  # one of each +-v pair
    if not keep.any():
        return None
    ys, xs, dy, dx, radius = ys[keep], xs[keep], dy[keep], dx[keep], radius[keep]
    strength = ac[ys, xs]
    drops = _drops(ac, ys, xs, np.maximum(2.0, radius / 4))
    sharp = drops.min(axis=1) >= RIDGE_DROP * strength
    # Ridges: replace the candidate by its foot (projection on the ridge's normal).
    along = np.argmin(drops, axis=1) * np.pi / 8
    ny, nx = np.cos(along), -np.sin(along)  # unit normal of the ridge direction (sin a, cos a)
    foot = dy * ny + dx * nx
    vy = np.where(sharp, dy, foot * ny).astype(np.float64)
    vx = np.where(sharp, dx, foot * nx).astype(np.float64)
    length = np.hypot(vy, vx)
    valid = length >= PEAK_MIN_RADIUS
    if not valid.any():
        return None
    # The first vector: the shortest among those nearly as strong as the strongest (harmonics of a
    # period are also peaks, a little weaker; a lone strong long peak beats a faint short one).
    strong = valid & (strength >= 0.8 * strength[valid].max())
    first = int(np.argmin(np.where(strong, length, np.inf)))
    vectors = [(float(vy[first]), float(vx[first]))]
    strengths = [float(strength[first])]
    second = _second_vector(vectors[0], vy, vx, length, valid & sharp)
    if not sharp[first] and second is not None:
        # A foot repeats the courses only. With a second vector it would put one course straight under the
        # next (stack bond), where a running bond's joints sit half a brick along: its superlattice lets the
        # quilt shift a course by half a brick. The course's true repeat is the ridge point where the joints
        # across the courses repeat too.
        moved = _joint_phase(grey, ac, vectors[0], along[first])
        moved_second = None if moved is None else _second_vector(moved, vy, vx, length, valid & sharp)
        if moved_second is not None:
            vectors[0], second = moved, moved_second
    if second is not None:
        vectors.append((float(vy[second]), float(vx[second])))
        strengths.append(float(strength[second]))
    return Lattice(vectors, strengths)


def _second_vector(first: tuple[float, float], vy: np.ndarray, vx: np.ndarray, length: np.ndarray,
                   candidates: np.ndarray) -> int | None:
    """The shortest candidate independent of ``first`` (index), or None."""
    fy, fx = first
    sine = np.abs(vy * fx - vx * fy) / np.maximum(1e-9, length * max(1e-9, math.hypot(fy, fx)))
    independent = candidates & (sine >= MIN_SINE)
    return int(np.argmin(np.where(independent, length, np.inf))) if independent.any() else None


def _joint_phase(grey: np.ndarray, ac: np.ndarray, foot: tuple[float, float], along: float
                 ) -> tuple[float, float] | None:
    """The point on the ridge through ``foot`` (direction ``along``: (sin, cos)) nearest the foot where the
    joints across the courses repeat, or None where they repeat no better there than at the foot (stack bond,
    planks with random joints) or where the image as a whole (``ac``, its autocorrelation) repeats no better
    there (a weave's diagonal: a ridge of near-exact repeats, its foot one of them).

    The joints are the luminance's edges across the ridge: its derivative along the ridge, which the courses'
    own lines (along the ridge) do not have. Their autocorrelation is read along the ridge within half the
    exemplar."""
    h, w = grey.shape
    d = np.array([math.sin(along), math.cos(along)])
    g = torch.from_numpy(np.asarray(grey, dtype=np.float32))[None, None]
    g = F.avg_pool2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # the photo's grain is not a joint
    dy = g[..., 2:, 1:-1] - g[..., :-2, 1:-1]
    dx = g[..., 1:-1, 2:] - g[..., 1:-1, :-2]
    joints = (d[0] * F.pad(dy, (1, 1, 1, 1)) + d[1] * F.pad(dx, (1, 1, 1, 1))).abs()[0, 0].numpy()
    joint_ac = autocorrelation(joints)

    def on_ridge(t: np.ndarray, across: np.ndarray | int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Lags ``t`` px along the ridge and ``across`` px off it, rounded, within half the exemplar."""
        py = np.round(foot[0] + t * d[0] - across * d[1])
        px = np.round(foot[1] + t * d[1] + across * d[0])
        inside = (np.abs(py) <= h / MIN_REPEATS) & (np.abs(px) <= w / MIN_REPEATS)
        return t[inside], py[inside].astype(int), px[inside].astype(int)

    reach = int(min(h, w) / MIN_REPEATS)
    t, py, px = on_ridge(np.arange(-reach, reach + 1))
    # Smoothed along the ridge: joints that vary by a few px in a photograph give a broad, ragged peak.
    values = np.convolve(np.pad(joint_ac[py + h, px + w], 4, mode="edge"), np.ones(9) / 9, mode="valid")
    at_foot = float(values[np.argmin(np.abs(t))])
    best = float(values.max())
    if best < at_foot + JOINT_PHASE_GAIN:
        return None
    # The nearest peak nearly as strong as the best: further ones are its repeats along the ridge.
    peak = np.r_[False, (values[1:-1] >= values[:-2]) & (values[1:-1] >= values[2:]), False]
    near = np.flatnonzero(peak & (values >= at_foot + 0.75 * (best - at_foot)))
    if not len(near):
        return None
    t0 = t[near[np.argmin(np.abs(t[near]))]]
    # Centred on the image's own repeat nearby: within 6 px along the ridge and 2 across it.
    along_t, across = np.meshgrid(np.arange(t0 - 6, t0 + 7), np.arange(-2, 3), indexing="ij")
    _, py, px = on_ridge(along_t.ravel(), across.ravel())
    k = int(np.argmax(ac[py + h, px + w]))
    # A better repeat of the whole image than the foot, or the foot was one already (a weave's diagonal).
    if ac[py[k] + h, px[k] + w] <= ac[int(round(foot[0])) + h, int(round(foot[1])) + w]:
        return None
    vy_, vx_ = float(py[k]), float(px[k])
    if vy_ < 0 or (vy_ == 0 and vx_ < 0):  # one of each +-v pair, as the candidates
        vy_, vx_ = -vy_, -vx_
    return vy_, vx_


def lattice_regularity(rgb: np.ndarray, lattice: Lattice, reach: int = 2) -> float:
    """How strongly ``rgb`` repeats on ``lattice``: the mean over its vectors of the normalised autocorrelation
    of the luminance at that lag (the highest within ``reach`` px, so a period a pixel off still counts). A brick
    wall whose courses wave or whose bricks change length falls toward 0 where its photograph reads ~0.5-0.9;
    the VGG19 statistics barely see the difference."""
    ac = autocorrelation(_luminance(np.asarray(rgb, np.float32)))
    h, w = rgb.shape[:2]
    values = []
    for dy, dx in lattice.vectors:
        y, x = int(round(h + dy)), int(round(w + dx))
        window = ac[max(0, y - reach): y + reach + 1, max(0, x - reach): x + reach + 1]
        values.append(float(window.max()) if window.size else 0.0)
    return float(np.mean(values))


def lattice_frequencies(lattice: Lattice, max_frequency: float, reach: int = 2) -> tuple[tuple[float, float], ...]:
    """The lattice's Fourier frequencies (fy, fx) in cycles per pixel, up to ``max_frequency`` on either axis:
    the reciprocal lattice's points m b1 + n b2 (|m|, |n| <= ``reach``; with one vector v, k v / |v|^2 for
    k <= reach + 1), one of each +-f pair, lowest first. A pattern that repeats on the lattice is a sum of
    waves at exactly these frequencies."""
    vectors = np.asarray(lattice.vectors, np.float64)
    if len(vectors) == 1:
        basis = [vectors[0] / float(vectors[0] @ vectors[0])]
        combos = [(k,) for k in range(1, reach + 2)]
    else:
        inverse = np.linalg.inv(vectors[:2])  # vectors @ inverse = I: the reciprocal basis is its columns
        basis = [inverse[:, 0], inverse[:, 1]]
        combos = [(m, n) for m in range(-reach, reach + 1) for n in range(-reach, reach + 1) if (m, n) != (0, 0)]
    found: set[tuple[float, float]] = set()
    for combo in combos:
        fy, fx = (round(float(v), 6) + 0.0 for v in sum(k * b for k, b in zip(combo, basis)))  # + 0.0: no -0.0
        if fy < 0 or (fy == 0 and fx < 0):
            fy, fx = -fy + 0.0, -fx + 0.0
        if 0 < max(abs(fy), abs(fx)) <= max_frequency:
            found.add((fy, fx))
    return tuple(sorted(found, key=lambda f: (abs(f[0]) + abs(f[1]), f)))


def snap_offset(offset: tuple[float, float], anchor: tuple[float, float], lattice: Lattice | None
                ) -> tuple[float, float]:
    """The offset nearest ``offset`` that differs from ``anchor`` by whole lattice vectors (free along an
    axis the lattice does not repeat on)."""
    if lattice is None:
        return offset
    a = np.array(lattice.vectors[0])
    b = (np.array(lattice.vectors[1]) if len(lattice.vectors) > 1
         else np.array([-a[1], a[0]]) / max(1e-9, float(np.hypot(*a))))  # unit normal: not snapped
    basis = np.stack([a, b], axis=1)
    # Cramer's rule: np.linalg.solve goes through LAPACK, whose threads took ~5 ms a call on a busy 2-core
    # machine, and this runs once per block.
    (p, q), (r, t) = basis
    dy, dx = np.asarray(offset, dtype=np.float64) - np.asarray(anchor, dtype=np.float64)
    det = p * t - q * r
    coef = np.array([(dy * t - q * dx) / det, (p * dx - r * dy) / det])
    coef[0] = round(coef[0])
    if len(lattice.vectors) > 1:
        coef[1] = round(coef[1])
    snapped = np.asarray(anchor, dtype=np.float64) + basis @ coef
    return float(snapped[0]), float(snapped[1])


# --------------------------------------------------------------------------- which layout

def layout_for(lattices: list[Lattice | None]) -> str:
    """The layout ``synthesize(layout="auto")`` uses: "blocks" when any exemplar repeats on a lattice, else
    "sliced".

    Blocks copy whole courses and cells, which a repeating texture needs: on unseen tiles sliced measured
    2.84 vs blocks 1.31 (SW ratio, 2 seeds). The rule assumed sliced is better where nothing repeats (one
    seed said so); two seeds say blocks are as good or better there too (rock 1.67 vs 2.24, bark 1.74 vs
    2.35; docs/synth_photos_before_after.md), so "blocks" stays the default and "auto" is only offered.
    """
    return "blocks" if any(lattice is not None for lattice in lattices) else "sliced"


# --------------------------------------------------------------------------- the block start

def block_field(regions: list[tuple[int, int, int, int]], lattices: list[Lattice | None], height: int,
                width: int, block: int, patch: int, gen: torch.Generator, periodic: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """An NNF (fy, fx) tiling the output with blocks copied from random places of the exemplars.

    ``regions``: each exemplar's (top, left, height, width) in the atlas; ``lattices``: each exemplar's
    lattice at this scale. Every block copies one exemplar at one offset; offsets of blocks from the same
    exemplar differ by whole lattice vectors, so courses run on across block borders.
    """
    r = patch // 2
    device = gen.device  # the field lives where its generator draws
    fy = torch.empty(height, width, dtype=torch.long, device=device)
    fx = torch.empty(height, width, dtype=torch.long, device=device)
    anchors = [(float(torch.randint(1 << 16, (1,), generator=gen)), float(torch.randint(1 << 16, (1,), generator=gen)))
               for _ in regions]
    ys = torch.arange(height, device=device).view(-1, 1)
    xs = torch.arange(width, device=device).view(1, -1)
    # Exemplars take turns in a random order, so each gets its share of blocks (not a lucky draw).
    order = torch.randperm(len(regions), generator=gen, device=device).tolist()
    count = 0
    for top in range(0, height, block):
        for left in range(0, width, block):
            bh, bw = min(block, height - top), min(block, width - left)
            k = order[count % len(order)]
            count += 1
            ey, ex, eh, ew = regions[k]
            # Source rows of the block: top + oy .. top + oy + bh - 1 must be valid centres of exemplar k.
            lo_y, hi_y = ey + r - top, ey + eh - r - bh - top
            lo_x, hi_x = ex + r - left, ex + ew - r - bw - left
            oy = lo_y + float(torch.rand(1, generator=gen)) * max(0, hi_y - lo_y)
            ox = lo_x + float(torch.rand(1, generator=gen)) * max(0, hi_x - lo_x)
            sy, sx = snap_offset((oy, ox), anchors[k], lattices[k])
            if lo_y <= sy <= hi_y and lo_x <= sx <= hi_x:
                oy, ox = sy, sx
            else:  # the snapped place falls off the exemplar: try the neighbouring lattice cells
                oy, ox = _snap_inside((oy, ox), anchors[k], lattices[k], (lo_y, hi_y, lo_x, hi_x))
            block_y, block_x = ys[top: top + bh], xs[:, left: left + bw]
            fy[top: top + bh, left: left + bw] = (block_y + round(oy)).clamp(ey + r, ey + eh - r - 1)
            fx[top: top + bh, left: left + bw] = (block_x + round(ox)).clamp(ex + r, ex + ew - r - 1)
    if periodic:
        # A random grid phase: the wrap border is then no likelier to be a block border than any other line.
        shift = (int(torch.randint(height, (1,), generator=gen)), int(torch.randint(width, (1,), generator=gen)))
        fy, fx = fy.roll(shift, dims=(0, 1)), fx.roll(shift, dims=(0, 1))
    return fy, fx


def _snap_inside(offset: tuple[float, float], anchor: tuple[float, float], lattice: Lattice | None,
                 bounds: tuple[float, float, float, float]) -> tuple[float, float]:
    """The lattice-snapped offset nearest ``offset`` inside ``bounds``; ``offset`` itself when none is."""
    if lattice is None:
        return offset
    lo_y, hi_y, lo_x, hi_x = bounds
    best, best_d = offset, math.inf
    vecs = lattice.vectors
    base = snap_offset(offset, anchor, lattice)
    for i in range(-3, 4):
        for j in range(-3, 4) if len(vecs) > 1 else (0,):
            cy = base[0] + i * vecs[0][0] + (j * vecs[1][0] if len(vecs) > 1 else 0.0)
            cx = base[1] + i * vecs[0][1] + (j * vecs[1][1] if len(vecs) > 1 else 0.0)
            if lo_y <= cy <= hi_y and lo_x <= cx <= hi_x:
                d = (cy - offset[0]) ** 2 + (cx - offset[1]) ** 2
                if d < best_d:
                    best, best_d = (cy, cx), d
    return best
