"""Resolution / aspect / length buckets: (H, W, T) shapes with their own batch size, and which one a clip goes to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from wantrain.errors import WantrainError


@dataclass(frozen=True)
class Bucket:
    """One clip shape (H, W, T) and the batch size of its batches."""

    height: int
    width: int
    frames: int
    batch_size: int

    @property
    def name(self) -> str:
        """`HxWxT`, as in the logged `data/bucket_<H>x<W>x<T>` counts."""
        return f"{self.height}x{self.width}x{self.frames}"

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.height, self.width


def scaled_batch_size(batch_size: int, reference: tuple[int, int, int], shape: tuple[int, int, int]) -> int:
    """`batch_size` at the `reference` (H, W, T), scaled so that B*H*W*T (memory per step) stays about constant."""
    ref, vol = math.prod(reference), math.prod(shape)
    return max(1, int(batch_size * ref / vol + 1e-6))


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def generate_buckets(area: int, aspect_ratios: Sequence[float], num_frames: Sequence[int],
                     multiple: int = 8) -> list[tuple[int, int, int]]:
    """Open-Sora style: for each aspect ratio W/H, the (H, W) of about `area` pixels (multiples of `multiple`),
    combined with each frame count."""
    shapes = []
    for ar in aspect_ratios:
        if ar <= 0:
            raise WantrainError(f"data.buckets.aspect_ratios holds {ar}; aspect ratios (W/H) must be > 0")
        h = _round_to(math.sqrt(area / ar), multiple)
        w = _round_to(math.sqrt(area * ar), multiple)
        shapes += [(h, w, int(t)) for t in num_frames]
    return list(dict.fromkeys(shapes))


def make_buckets(spec, batch_size: int, reference: tuple[int, int, int],
                 image_sizes: bool = False) -> list[Bucket]:
    """Buckets from `data.buckets`: a list of [H, W, T] or [H, W, T, B], or {area, aspect_ratios, num_frames,
    multiple}; None = the single `reference` shape. Batch sizes not given keep B*H*W*T about that of `batch_size`
    clips of the `reference` (H, W, T). With `image_sizes`, a T = 1 bucket is added for every (H, W) without one."""
    if spec is None:
        shapes: list[tuple] = [(*reference, batch_size)]
    elif isinstance(spec, dict) or hasattr(spec, "keys"):
        spec = dict(spec)
        unknown = set(spec) - {"area", "aspect_ratios", "num_frames", "multiple"}
        if unknown or "area" not in spec:
            raise WantrainError(f"data.buckets as a mapping takes area, aspect_ratios, num_frames, multiple; got "
                                f"{sorted(spec)}: e.g. data.buckets={{area:1024,aspect_ratios:[1,1.5,0.667],"
                                "num_frames:[8,4]}")
        shapes = generate_buckets(int(spec["area"]), [float(a) for a in spec.get("aspect_ratios", [1.0])],
                                  [int(t) for t in spec.get("num_frames", [reference[2]])],
                                  int(spec.get("multiple", 8)))
    else:
        shapes = [tuple(int(v) for v in item) for item in spec]
        bad = [list(s) for s in shapes if len(s) not in (3, 4) or min(s) < 1]
        if bad or not shapes:
            raise WantrainError(f"data.buckets entries are [H, W, T] or [H, W, T, batch_size] of positive ints; got "
                                f"{bad or 'an empty list'}: e.g. data.buckets=[[32,32,8],[32,48,8],[48,32,8]]")
    if image_sizes:
        have = {(s[0], s[1]) for s in shapes if s[2] == 1}
        shapes += [(h, w, 1) for h, w in dict.fromkeys((s[0], s[1]) for s in shapes) if (h, w) not in have]
    out = []
    for s in shapes:
        b = s[3] if len(s) == 4 else scaled_batch_size(batch_size, reference, s[:3])
        out.append(Bucket(int(s[0]), int(s[1]), int(s[2]), int(b)))
    names = [b.name for b in out]
    if len(set(names)) != len(names):
        raise WantrainError(f"data.buckets lists a shape twice: {sorted(n for n in names if names.count(n) > 1)}")
    return out


def choose_bucket(buckets: Sequence[Bucket], height: int, width: int, fits: callable,
                  max_upscale: float | None = None) -> Bucket | None:
    """The bucket for an (H, W) source: nearest aspect ratio (W/H, in log) among buckets whose frame count `fits(T)`
    and that need no upscaling past `max_upscale`; then the most frames, then the largest area. None when no bucket
    fits the length; raises TooSmall when only the upscaling limit rules them all out."""
    usable = [b for b in buckets if fits(b.frames)]
    if not usable:
        return None
    if max_upscale is not None:
        small = usable
        usable = [b for b in usable if max(b.height / height, b.width / width) <= max_upscale + 1e-9]
        if not usable:
            smallest = min(small, key=lambda b: b.height * b.width)
            raise TooSmall(f"{width}x{height} source needs more than {max_upscale}x upscaling even for bucket "
                           f"{smallest.name}")
    log_ar = math.log(width / height)
    return min(usable, key=lambda b: (round(abs(math.log(b.width / b.height) - log_ar), 6), -b.frames,
                                      -b.height * b.width))


class TooSmall(Exception):
    """The source is smaller than every bucket it fits allows (data.max_upscale)."""


def describe(buckets: Sequence[Bucket]) -> str:
    """One line per bucket: shape, aspect ratio, batch size, pixels per step."""
    rows = [f"  {b.name:>14}  ar {b.width / b.height:5.2f}  batch {b.batch_size:3d}  "
            f"{b.batch_size * b.height * b.width * b.frames:,} px/step" for b in buckets]
    return "\n".join(rows)
