"""Write embedding-cache shards: every original member unchanged + KEY.t5.npy (L_i, D) / KEY.dit.npy (N, D) float16."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VIDEO_EXTS = ("mp4", "webm", "mkv", "avi", "mov")
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
Member = tuple[tarfile.TarInfo, bytes | None]  # (header, data); data is None for non-files


def _to_unit_range(frame: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8 (H, W, 3) -> center-cropped, resized (3, resolution, resolution) float32 in [-1, 1]."""
    x = torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1).float()[None] / 127.5 - 1.0  # (1, 3, H, W)
    h, w = x.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(-1.0, 1.0)


class FirstFrameLoader:
    """Default `load_image`: KEY.jpg (or png/webp) when present, else the first frame of the video (PyAV);
    center-cropped and resized to `resolution` -> (3, resolution, resolution) in [-1, 1]. Picklable."""

    def __init__(self, resolution: int = 256) -> None:
        self.resolution = resolution

    def __call__(self, sample: dict[str, bytes]) -> torch.Tensor:
        """Decode the conditioning image of one sample dict (extension -> bytes)."""
        for ext in IMAGE_EXTS:
            if ext in sample:
                from PIL import Image

                with Image.open(io.BytesIO(sample[ext])) as img:
                    return _to_unit_range(np.asarray(img.convert("RGB")), self.resolution)
        for ext in VIDEO_EXTS:
            if ext in sample:
                import av

                with av.open(io.BytesIO(sample[ext])) as container:
                    for frame in container.decode(video=0):
                        return _to_unit_range(frame.to_ndarray(format="rgb24"), self.resolution)
                raise ValueError(f"video {sample.get('__key__')}.{ext} has no frames")
        raise KeyError(f"sample {sample.get('__key__')} has no image ({IMAGE_EXTS}) nor video ({VIDEO_EXTS}) member")


def _npy_bytes(array: np.ndarray) -> bytes:
    """Serialize an array as .npy float16 without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float16), allow_pickle=False)
    return buf.getvalue()


def iter_tar_samples(path: str | os.PathLike) -> Iterator[tuple[str | None, list[Member]]]:
    """Yield (key, members) for consecutive members sharing a webdataset key; key None for keyless members."""
    from webdataset.tariterators import base_plus_ext

    key, members = None, []
    with tarfile.open(path, "r|*") as tar:
        for info in tar:
            data = tar.extractfile(info).read() if info.isfile() else None
            k = base_plus_ext(info.name)[0] if info.isfile() else None
            if members and (k != key or k is None):
                yield key, members
                members = []
            key = k
            members.append((info, data))
    if members:
        yield key, members


def is_complete(path: str | os.PathLike) -> bool:
    """True if `path` is a whole tar: every member's data present and the end-of-archive blocks written."""
    try:
        with tarfile.open(path, "r") as tar:
            members = tar.getmembers()
        end = 0
        if members:
            last = members[-1]
            end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
        with open(path, "rb") as f:
            f.seek(end)
            return f.read(2 * tarfile.BLOCKSIZE) == bytes(2 * tarfile.BLOCKSIZE)
    except (OSError, tarfile.TarError, EOFError):
        return False


def _new_member(template: tarfile.TarInfo, name: str, data: bytes) -> Member:
    """A regular-file header for a new member, with the sample's mtime and owner."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), template.mtime, 0o644
    info.uid, info.gid, info.uname, info.gname = template.uid, template.gid, template.uname, template.gname
    return info, data


def _encode_batch(
    batch: list[tuple[str, list[Member]]],
    text_encoder: Callable | None,
    image_encoder: Callable | None,
    load_image: Callable[[dict[str, bytes]], torch.Tensor],
    text_name: str,
    image_name: str,
    caption_ext: str,
    stats: dict[str, int],
) -> list[dict[str, bytes]]:
    """Run the encoders on a batch of samples -> per sample {member name: npy bytes}."""
    samples = [{**{base_ext(i.name): d for i, d in m if d is not None}, "__key__": k} for k, m in batch]
    new: list[dict[str, bytes]] = [{} for _ in batch]
    if text_encoder is not None:
        idx = [j for j, s in enumerate(samples) if caption_ext in s]
        stats["missing_caption"] += len(batch) - len(idx)
        if idx:
            captions = [samples[j][caption_ext].decode("utf-8").strip() for j in idx]
            emb, mask = text_encoder(captions)  # (B, L, D), (B, L)
            for row, j in enumerate(idx):
                new[j][f"{samples[j]['__key__']}.{text_name}.npy"] = _npy_bytes(emb[row][mask[row]].cpu().numpy())
            stats[text_name] += len(idx)
    if image_encoder is not None:
        images, idx = [], []
        for j, s in enumerate(samples):
            try:
                images.append(load_image(s))
                idx.append(j)
            except Exception:  # noqa: BLE001 - any decoding failure skips this sample's image
                stats["undecodable_image"] += 1
        if idx:
            tokens = image_encoder(torch.stack(images))  # (B, N, D)
            for row, j in enumerate(idx):
                new[j][f"{samples[j]['__key__']}.{image_name}.npy"] = _npy_bytes(tokens[row].cpu().numpy())
            stats[image_name] += len(idx)
    return new


def base_ext(name: str) -> str:
    """Extension of a member name in the webdataset sense ("dir/k1.t5.npy" -> "t5.npy")."""
    from webdataset.tariterators import base_plus_ext

    return base_plus_ext(name)[1] or ""


def encode_shard(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    text_encoder: Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]] | None,
    image_encoder: Callable[[torch.Tensor], torch.Tensor] | None,
    load_image: Callable[[dict[str, bytes]], torch.Tensor] | None = None,
    batch_size: int = 16,
    text_name: str = "t5",
    image_name: str = "dit",
    caption_ext: str = "txt",
) -> dict[str, int]:
    """Copy shard `src` to `dst` (atomically) adding KEY.<text_name>.npy and KEY.<image_name>.npy; returns counts."""
    load_image = load_image or FirstFrameLoader(getattr(image_encoder, "resolution", 256))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    stats = {"samples": 0, text_name: 0, image_name: 0, "missing_caption": 0, "undecodable_image": 0}

    def flush(out: tarfile.TarFile, batch: list[tuple[str, list[Member]]]) -> None:
        news = _encode_batch(batch, text_encoder, image_encoder, load_image, text_name, image_name, caption_ext, stats)
        for (key, members), new in zip(batch, news):
            for info, data in members:
                if info.isfile() and info.name in new:
                    continue  # an older cached embedding of the same name is replaced
                out.addfile(info, io.BytesIO(data) if data is not None else None)
            for name, data in new.items():
                info, data = _new_member(members[0][0], name, data)
                out.addfile(info, io.BytesIO(data))

    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
            batch: list[tuple[str, list[Member]]] = []
            for key, members in iter_tar_samples(src):
                if key is None:
                    for info, data in members:
                        out.addfile(info, io.BytesIO(data) if data is not None else None)
                    continue
                batch.append((key, members))
                stats["samples"] += 1
                if len(batch) == batch_size:
                    flush(out, batch)
                    batch = []
            if batch:
                flush(out, batch)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return stats


def encode_shards(
    shards: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    text_encoder: Callable | None,
    image_encoder: Callable | None,
    load_image: Callable[[dict[str, bytes]], torch.Tensor] | None = None,
    batch_size: int = 16,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    **kwargs,
) -> list[dict]:
    """Encode this rank's shards (shards[rank::world_size]) into out_dir/<same name>, skipping complete
    outputs (resumable per shard); returns one stats row per shard (with "status": written|skipped|error)."""
    from tqdm import tqdm

    rows = []
    mine = list(shards)[rank::world_size]
    for src in tqdm(mine, desc=f"encode rank {rank}", disable=not progress or rank != 0, unit="shard"):
        dst = Path(out_dir) / Path(src).name
        if dst.exists() and is_complete(dst):
            rows.append({"shard": str(src), "status": "skipped"})
            continue
        try:
            stats = encode_shard(src, dst, text_encoder, image_encoder, load_image, batch_size, **kwargs)
            rows.append({"shard": str(src), "status": "written", **stats})
        except (OSError, tarfile.TarError, EOFError) as err:
            rows.append({"shard": str(src), "status": "error", "error": f"{err.__class__.__name__}: {err}"})
    return rows
