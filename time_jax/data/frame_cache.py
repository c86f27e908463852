"""The packed frame cache: every frame of a dataset, image-encoded, in ArrayRecord shards.

Decoding compressed video (a GOP per seek) is the host's bottleneck at small TIME cells;
frames stored one by one as JPEG cost one small, independent decode each (libjpeg-turbo
through ``simplejpeg``, which releases the GIL, straight into the clip's array), and a
JPEG decodes at 1/2, 1/4 or 1/8 size (DCT scaling) for little more than the cost of
reading it, so the decode cost follows the cell size rather than growing with N² cells
of full frames. `short_side_for` is the stored size a config needs. This module owns the format: `write_cache` writes a cache (the
CLI `time_jax.data.pack` calls it), `load_splits` lists its records and `PackedReader`
reads their frames (``dataset.source='packed'``, ``dataset.packed_dir=DIR``).

A cache folder::

    DIR/train/          the split folder of the train records (`write_packed`)
    DIR/eval/           ... of the eval records
    DIR/splits.json     written last; its presence marks a complete cache

``splits.json``::

    {"class_names": [...], "train": N, "eval": M, "dataset": name, "split": split,
     "short_side": int | null, "failed": {"train": [video, ...], "eval": [...]}}

``train`` and ``eval`` count the input records, ``failed`` names those of them that did
not decode (they are in the split indexes too).

Layout of one split folder (``DIR/train``, ``DIR/eval``)::

    data-00000.array_record ...   one ArrayRecord record per video (group_size:1)
    index.json                    written last; its presence marks a complete split

``index.json``::

    {"version": 1, "short_side": int | null, "shards": ["data-00000.array_record", ..],
     "records": [[shard, position, label, num_frames, video_id], ...],   # input order
     "failed": [{"record": i, "path": .., "video_id": .., "error": ..}, ...],
     "num_failed": int}

Every input record has an entry, in input order; a record whose source failed to
decode has ``shard = position = num_frames = null`` and is listed in ``failed``.
`packed_records` still yields it (so counts match the protocol) and `PackedReader`
raises `DecodeError` for it, so the pipeline reports it as a bad file exactly as it
would have reported the original.

One ArrayRecord record (our own format, no pickle)::

    b"TJPK" | uint32 little-endian L | L bytes of JSON header | frame payloads

with header ``{"label", "video_id", "num_frames", "codec", "dtype", "shape": [h, w, c],
"sizes": [bytes of frame 0, ...]}`` and payloads concatenated in frame order. Codecs:
``'jpeg'`` for uint8 frames with 1 or 3 channels (quality `JPEG_QUALITY`); ``'png16'``
(16-bit grayscale PNG, lossless) for single-channel integer depth within
``[0, 65535]``, read back as uint16; ``'npy'`` (``np.save`` bytes, lossless) for any
other frames, e.g. float depth.
"""

from __future__ import annotations

import collections
import concurrent.futures
import io
import json
import logging
import math
import os
import struct
import threading
from typing import Iterable, Iterator, Sequence

from array_record.python import array_record_module
import cv2
import numpy as np
import simplejpeg

from time_jax.data.base import Chooser, ClipReader, DecodeError, ProtocolError, Record
from time_jax.data.base import Splits

SPLITS_FILE = "splits.json"
INDEX_FILE = "index.json"
JPEG_QUALITY = 90
SHARD_BYTES = 1 << 30  # a new shard starts once the current one holds this many bytes
_MAGIC = b"TJPK"
_VERSION = 1
# Uncompressed: the payloads are JPEG / PNG already. group_size:1 for random access.
_WRITER_OPTIONS = "group_size:1,uncompressed"


# ----------------------------------------------------------------------------------
# Frame encoding.
# ----------------------------------------------------------------------------------

def _codec(frames: np.ndarray) -> str:
  if frames.dtype == np.uint8 and frames.shape[-1] in (1, 3):
    return "jpeg"
  if (frames.shape[-1] == 1 and np.issubdtype(frames.dtype, np.integer)
      and (frames.size == 0 or (frames.min() >= 0 and frames.max() <= 65535))):
    return "png16"
  return "npy"


def _resize(frame: np.ndarray, size: tuple[int, int], codec: str) -> np.ndarray:
  """``frame [h, w, c]`` resized to ``size = (w', h')``."""
  if codec == "jpeg":
    # Area averaging: each stored pixel is the mean of the pixels it covers.
    out = cv2.resize(np.ascontiguousarray(frame), size, interpolation=cv2.INTER_AREA)
    return out.reshape(size[1], size[0], frame.shape[-1])
  # Depth: nearest keeps raw values (no blending across the 0 = invalid holes).
  h, w = frame.shape[:2]
  ys = ((np.arange(size[1]) + 0.5) * h / size[1]).astype(np.int64)
  xs = ((np.arange(size[0]) + 0.5) * w / size[0]).astype(np.int64)
  return frame[ys][:, xs]


def _short_side_size(h: int, w: int, short_side: int | None) -> tuple[int, int] | None:
  """``(w', h')`` with the short side ``short_side``; None when no downscale is needed."""
  if short_side is None or min(h, w) <= short_side:
    return None
  s = short_side / min(h, w)
  return (short_side if w <= h else round(w * s)), (short_side if h < w else round(h * s))


def _encode_frame(frame: np.ndarray, codec: str) -> bytes:
  if codec == "jpeg":
    gray = frame.shape[-1] == 1
    return simplejpeg.encode_jpeg(np.ascontiguousarray(frame), quality=JPEG_QUALITY,
                                  colorspace="GRAY" if gray else "RGB",
                                  colorsubsampling="Gray" if gray else "420")
  if codec == "png16":
    ok, png = cv2.imencode(".png", np.ascontiguousarray(frame[..., 0].astype(np.uint16)))
    if not ok:
      raise ValueError("could not encode a depth frame as 16-bit PNG")
    return png.tobytes()
  buf = io.BytesIO()
  np.save(buf, np.ascontiguousarray(frame), allow_pickle=False)
  return buf.getvalue()


def encode_video(frames: np.ndarray, record: Record, *,
                 short_side: int | None = None) -> bytes:
  """One packed record: all frames of a video, resized and image-encoded.

  Args:
    frames: ``[T, H, W, C]``, T >= 1: uint8 RGB (C = 3) or gray, or raw depth (C = 1).
    record: label and video_id are stored with the frames.
    short_side: frames whose short side is longer are downscaled to it (aspect kept);
      None keeps them. Frames are never upscaled.

  Returns:
    The record bytes (format in the module docstring).
  """
  if frames.ndim != 4 or frames.shape[0] == 0:
    raise ValueError(f"encode_video({record.name!r}): expected [T>=1, H, W, C] frames, "
                     f"got {frames.shape}.")
  codec = _codec(frames)
  size = _short_side_size(frames.shape[1], frames.shape[2], short_side)
  payloads = []
  for frame in frames:
    if size is not None:
      frame = _resize(frame, size, codec)
    payloads.append(_encode_frame(frame, codec))
  h, w = (frames.shape[1], frames.shape[2]) if size is None else (size[1], size[0])
  header = json.dumps({
      "label": int(record.label), "video_id": record.name,
      "num_frames": int(frames.shape[0]), "codec": codec,
      "dtype": "uint16" if codec == "png16" else frames.dtype.str,
      "shape": [h, w, int(frames.shape[3])], "sizes": [len(p) for p in payloads],
  }).encode("utf-8")
  return b"".join([_MAGIC, struct.pack("<I", len(header)), header, *payloads])


def _parse(data: bytes) -> tuple[dict, int]:
  """``(header, offset of the first payload)`` of a packed record."""
  if data[:4] != _MAGIC:
    raise DecodeError("not a packed time_jax record (bad magic bytes)")
  (length,) = struct.unpack("<I", data[4:8])
  return json.loads(data[8:8 + length].decode("utf-8")), 8 + length


def _decode_frame(payload: bytes, header: dict) -> np.ndarray:
  """A 'png16' or 'npy' frame: ``[h, w, c]`` in the stored dtype."""
  if header["codec"] == "npy":
    return np.load(io.BytesIO(payload), allow_pickle=False)
  arr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED)
  if arr is None:
    raise DecodeError(f"{header['video_id']}: a packed depth frame does not decode")
  return arr.astype(np.uint16).reshape(*arr.shape[:2], header["shape"][2])


def _decode_jpegs(payloads: list[bytes], header: dict,
                  draft_size: int | None) -> np.ndarray:
  """JPEG frames decoded into one uint8 ``[k, h, w, c]`` array, at the largest of the
  DCT reductions 1/2, 1/4, 1/8 that keeps the short side ``>= draft_size``.

  (libjpeg-turbo also scales by other multiples of 1/8, but those run slower than a
  full-size decode; the powers of two have SIMD kernels.)
  """
  gray = header["shape"][2] == 1
  colorspace = "GRAY" if gray else "RGB"
  try:
    h, w, _, _ = simplejpeg.decode_jpeg_header(payloads[0])
    factor = 1
    while draft_size and factor < 8 and min(-(-h // (2 * factor)),
                                            -(-w // (2 * factor))) >= draft_size:
      factor *= 2
    h, w = -(-h // factor), -(-w // factor)
    out = np.empty((len(payloads), h, w, header["shape"][2]), np.uint8)
    for i, payload in enumerate(payloads):
      simplejpeg.decode_jpeg(payload, colorspace=colorspace, min_height=h, min_width=w,
                             buffer=out[i])
  except ValueError as e:  # corrupt data, or a frame of another size
    raise DecodeError(f"{header['video_id']}: a packed JPEG frame does not decode ({e})") \
        from e
  return out


def decode_video(data: bytes, indices: np.ndarray | None = None, *,
                 draft_size: int | None = None) -> np.ndarray:
  """The frames ``indices`` (default all) of a packed record.

  Args:
    data: a record from `encode_video`.
    indices: int ``[k]`` frame indices in ``[0, num_frames)``; each distinct index is
      decoded once (sorted distinct indices come back without a copy).
    draft_size: JPEG frames decode at reduced size with their short side still
      ``>= draft_size`` (never below it, and never above the stored size).

  Returns:
    ``[k, h, w, c]`` in the stored dtype (png16: uint16).
  """
  header, offset = _parse(data)
  t = header["num_frames"]
  indices = np.arange(t) if indices is None else np.asarray(indices, np.int64)
  if indices.size and (indices.min() < 0 or indices.max() >= t):
    raise ValueError(f"{header['video_id']}: frame indices {indices.tolist()} outside "
                     f"[0, {t}).")
  if not indices.size:
    h, w, c = header["shape"]
    return np.zeros((0, h, w, c), np.dtype(header["dtype"]))
  starts = np.concatenate([[0], np.cumsum(header["sizes"])]) + offset
  unique, inverse = np.unique(indices, return_inverse=True)
  payloads = [data[starts[i]:starts[i + 1]] for i in unique.tolist()]
  if header["codec"] == "jpeg":
    frames = _decode_jpegs(payloads, header, draft_size)
  else:
    frames = np.stack([_decode_frame(p, header) for p in payloads])
  if len(unique) == len(indices) and np.array_equal(unique, indices):
    return frames
  return frames[inverse.reshape(-1)]


# ----------------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------------

def _all_frames(num_frames: int) -> np.ndarray:
  return np.arange(num_frames)


def _pack_one(record: Record, reader: ClipReader, short_side: int | None):
  """``(bytes, num_frames)`` or ``(None, error message)``."""
  try:
    frames = np.asarray(reader.read(record, _all_frames))
  except DecodeError as e:
    return None, str(e) or type(e).__name__
  if frames.ndim != 4 or frames.shape[0] == 0:
    return None, f"the reader returned no frames (shape {frames.shape})"
  return encode_video(frames, record, short_side=short_side), int(frames.shape[0])


def _ordered_map(fn, items: Sequence, threads: int) -> Iterator:
  """``fn(item)`` for every item, in order, at most ``2 * threads`` ahead."""
  if threads <= 1:
    yield from map(fn, items)
    return
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= 2 * threads:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def write_packed(records: Sequence[Record], reader: ClipReader, out_dir: str, *,
                 short_side: int | None = None, num_threads: int | None = None,
                 shard_bytes: int = SHARD_BYTES) -> dict:
  """Decodes every frame of every record and writes the packed split to ``out_dir``.

  Args:
    records: the split's records, in order (`packed_records` gives them back in it).
    reader: the source's `ClipReader`; asked for all frames ``np.arange(T)``.
    out_dir: the split folder (created; a previous index is replaced).
    short_side: store frames downscaled to this short side (pixels); None keeps them.
    num_threads: videos decoded and encoded at once (PyAV, simplejpeg and OpenCV
      release the GIL);
      default ``min(16, cpu count)``.
    shard_bytes: start a new shard after this many bytes.

  Returns:
    The index (see the module docstring). Records whose source raises `DecodeError`
    are logged, counted in ``num_failed`` and listed in ``failed``.
  """
  if short_side is not None and short_side < 1:
    raise ValueError(f"write_packed: short_side={short_side} must be a positive size.")
  os.makedirs(out_dir, exist_ok=True)
  index_path = os.path.join(out_dir, INDEX_FILE)
  if os.path.exists(index_path):
    os.remove(index_path)  # the old cache is incomplete from here on
  threads = num_threads or min(16, os.cpu_count() or 1)
  shards: list[str] = []
  entries: list[list] = []
  failed: list[dict] = []
  writer, written, position = None, 0, 0
  try:
    work = lambda r: _pack_one(r, reader, short_side)  # pylint: disable=unnecessary-lambda-assignment
    for i, (record, (data, info)) in enumerate(
        zip(records, _ordered_map(work, records, threads))):
      if data is None:
        logging.warning("pack: skipping %s (%d failed so far): %s", record.path,
                        len(failed) + 1, info)
        failed.append({"record": i, "path": record.path, "video_id": record.name,
                       "error": info})
        entries.append([None, None, int(record.label), None, record.name])
        continue
      if writer is None or written >= shard_bytes:
        if writer is not None:
          writer.close()
        shards.append(f"data-{len(shards):05d}.array_record")
        writer = array_record_module.ArrayRecordWriter(
            os.path.join(out_dir, shards[-1]), _WRITER_OPTIONS)
        written, position = 0, 0
      writer.write(data)
      entries.append([len(shards) - 1, position, int(record.label), info, record.name])
      written += len(data)
      position += 1
      if (i + 1) % 500 == 0:
        logging.info("pack: %d / %d videos of %s.", i + 1, len(records), out_dir)
  finally:
    if writer is not None:
      writer.close()
  index = {"version": _VERSION, "short_side": short_side, "shards": shards,
           "records": entries, "failed": failed, "num_failed": len(failed)}
  tmp = index_path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(index, f)
  os.replace(tmp, index_path)
  if failed:
    logging.warning("pack: %d of %d videos of %s failed to decode and are listed in "
                    "%s; the pipeline reports them as bad files. First: %s",
                    len(failed), len(records), out_dir, index_path,
                    ", ".join(f["path"] for f in failed[:5]))
  logging.info("pack: wrote %d videos in %d shard(s) to %s.",
               len(records) - len(failed), len(shards), out_dir)
  return index


def write_cache(splits: Splits, reader: ClipReader, out: str, *,
                short_side: int | None = None, dataset: str = "",
                split: str = "") -> dict:
  """Writes the cache of both splits to ``out`` (layout in the module docstring).

  Args:
    splits: the train and eval records and the class names.
    reader: the source's `ClipReader` (see `write_packed`).
    out: the cache folder (created).
    short_side: frames are stored with this short side (pixels); None keeps them.
    dataset: the protocol name, recorded in ``splits.json``.
    split: the protocol's split, recorded in ``splits.json``.

  Returns:
    The ``splits.json`` contents (``failed``: the videos of each split that did not
    decode, written as failed records).
  """
  os.makedirs(out, exist_ok=True)
  failed = {}
  for name, records in (("train", splits.train), ("eval", splits.eval)):
    logging.info("Packing %d %s videos into %s.", len(records), name, out)
    index = write_packed(records, reader, os.path.join(out, name), short_side=short_side)
    failed[name] = [f["video_id"] or f["path"] for f in index["failed"]]
  meta = {"class_names": list(splits.class_names), "train": len(splits.train),
          "eval": len(splits.eval), "dataset": dataset, "split": split,
          "short_side": short_side, "failed": failed}
  # Written last: its presence marks a complete cache.
  with open(os.path.join(out, SPLITS_FILE), "w", encoding="utf-8") as f:
    json.dump(meta, f, indent=1)
  return meta


# ----------------------------------------------------------------------------------
# Reading.
# ----------------------------------------------------------------------------------

def read_index(split_dir: str) -> dict:
  """The ``index.json`` of a split folder; ValueError when it is missing or too old."""
  path = os.path.join(split_dir, INDEX_FILE)
  if not os.path.isfile(path):
    raise ValueError(f"{split_dir!r} has no {INDEX_FILE}: not a packed split, or its "
                     "packing did not finish; run `python -m time_jax.data.pack` again.")
  with open(path, encoding="utf-8") as f:
    index = json.load(f)
  if index.get("version") != _VERSION:
    raise ValueError(f"{path}: version {index.get('version')}, this code reads "
                     f"{_VERSION}; pack the data again.")
  return index


def packed_records(split_dir: str) -> Iterable[Record]:
  """The records of a packed split, in the order they were packed.

  ``path`` is ``"<absolute split_dir>#<i>"``, which `PackedReader` resolves; records
  that failed when packed are included (their ``num_frames`` is None) and read as
  `DecodeError`.
  """
  split_dir = os.path.abspath(split_dir)
  index = read_index(split_dir)
  return [Record(f"{split_dir}#{i}", label, num_frames, video_id)
          for i, (_, _, label, num_frames, video_id) in enumerate(index["records"])]


def load_splits(packed_dir: str) -> Splits:
  """The train / eval records and class names of a cache that `write_cache` wrote.

  Raises:
    ProtocolError: ``splits.json`` is missing, or a split holds another number of
      records than it says (an unfinished cache).
  """
  meta_path = os.path.join(packed_dir, SPLITS_FILE)
  if not os.path.isfile(meta_path):
    raise ProtocolError(
        f"dataset.packed_dir {packed_dir!r} has no {SPLITS_FILE}; write it with "
        "`python -m time_jax.data.pack --config CONFIG --out DIR`.")
  with open(meta_path, encoding="utf-8") as f:
    meta = json.load(f)
  train = list(packed_records(os.path.join(packed_dir, "train")))
  evl = list(packed_records(os.path.join(packed_dir, "eval")))
  for name, recs in (("train", train), ("eval", evl)):
    if len(recs) != meta[name]:
      raise ProtocolError(
          f"{packed_dir}/{name}: {len(recs)} records but {SPLITS_FILE} says "
          f"{meta[name]}; the cache is incomplete, pack it again.")
  return Splits(train, evl, list(meta["class_names"]))


def short_side_for(config) -> int:
  """The short side (pixels) a config's views need from the frames: what `pack`
  stores by default and what packed JPEGs may decode at (DCT scaling).

  The training crop covers at least ``min(crop_scale)`` of the frame's area, so its
  short side is at least ``sqrt(min(crop_scale))`` of the frame's short side (exactly
  for 4:3 frames at the extreme aspect ratios 3/4 and 4/3 of the default
  ``crop_ratio``); frames with the short side ``>= cell / sqrt(min(crop_scale))``
  thus never make the crop smaller than the cell it is resized to. Multi-scale crops
  (``crop_mode='multiscale'``) have sides of at least ``min(multiscale_scales)`` of the
  short side. Evaluation resizes the short side to ``cell / eval_crop_fraction``, which
  must also fit.
  """
  cell = config.image_size // config.time.n
  if config.input.get("crop_mode", "random_resized") == "multiscale":
    train = cell / min(config.input.multiscale_scales)
  else:
    train = cell / math.sqrt(min(config.input.crop_scale))
  evaluation = cell / config.input.eval_crop_fraction
  return int(math.ceil(max(train, evaluation)))


_warned_small: set[str] = set()  # caches this process has warned about


def check_size(packed_dir: str, config) -> None:
  """Warns once per cache when it stores frames smaller than ``config`` needs
  (`short_side_for`): its views would be upsampled from fewer pixels."""
  meta_path = os.path.join(packed_dir, SPLITS_FILE)
  if packed_dir in _warned_small or not os.path.isfile(meta_path):
    return
  with open(meta_path, encoding="utf-8") as f:
    stored = json.load(f).get("short_side")
  need = short_side_for(config)
  if stored is not None and stored < need:
    _warned_small.add(packed_dir)
    logging.warning(
        "The packed cache %s stores frames with short side %d, but this config's "
        "views need %d (cell %d, crop_scale from %g, eval_crop_fraction %g): crops are "
        "upsampled. Pack it again for this config (python -m time_jax.data.pack "
        "chooses the size from the config).", packed_dir, stored, need,
        config.image_size // config.time.n, min(config.input.crop_scale),
        config.input.eval_crop_fraction)


class PackedReader:
  """The `ClipReader` of the packed cache (``dataset.source='packed'``).

  Resolves ``"<split_dir>#<i>"`` paths from `packed_records`. Shards open lazily, once
  per process; the reader pickles without open handles (Grain workers reopen them).
  """

  def __init__(self, packed_dir: str = "", draft_size: int | None = None):
    """``packed_dir``: the cache root (informational; paths are absolute).

    ``draft_size``: decode JPEG frames at the largest DCT reduction (1/2, 1/4, 1/8)
    that keeps their short side ``>= draft_size``; None decodes full size.
    """
    self.packed_dir = packed_dir
    self.draft_size = draft_size
    self._reset()

  def _reset(self):
    self._lock = threading.Lock()
    self._pid = os.getpid()
    self._indexes: dict[str, dict] = {}
    self._readers: dict[str, array_record_module.ArrayRecordReader] = {}

  def __getstate__(self):
    return {"packed_dir": self.packed_dir, "draft_size": self.draft_size}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._reset()

  def _index(self, split_dir: str) -> dict:
    if self._pid != os.getpid():  # forked: handles belong to the parent
      self._reset()
    index = self._indexes.get(split_dir)
    if index is None:
      with self._lock:
        index = self._indexes.get(split_dir)
        if index is None:
          index = self._indexes[split_dir] = read_index(split_dir)
    return index

  def _reader(self, path: str) -> array_record_module.ArrayRecordReader:
    reader = self._readers.get(path)
    if reader is None:
      with self._lock:
        reader = self._readers.get(path)
        if reader is None:
          if not os.path.isfile(path):
            raise DecodeError(f"{path}: packed shard is missing")
          reader = array_record_module.ArrayRecordReader(
              path, "readahead_buffer_size:0")
          self._readers[path] = reader
    return reader

  def read_bytes(self, record: Record) -> bytes:
    """The packed record bytes of ``record`` (see `decode_video`)."""
    split_dir, sep, num = record.path.rpartition("#")
    if not sep or not num.isdigit():
      raise ValueError(f"PackedReader: {record.path!r} is not a packed record path "
                       "('<split_dir>#<i>'); use the records of packed_records().")
    index = self._index(split_dir)
    i = int(num)
    if i >= len(index["records"]):
      raise ValueError(f"PackedReader: {record.path!r}: the split has "
                       f"{len(index['records'])} records.")
    shard, position = index["records"][i][:2]
    if shard is None:
      error = next((f["error"] for f in index["failed"] if f["record"] == i), "")
      raise DecodeError(f"{record.name}: failed to decode when packed: {error}")
    path = os.path.join(split_dir, index["shards"][shard])
    try:
      return self._reader(path).read([position])[0]
    except RuntimeError as e:  # ArrayRecord checks each chunk's hash: damaged on disk
      raise DecodeError(f"{record.name}: its packed record in {path} does not decode "
                        f"({e})") from e

  def known_bad(self, records: Sequence[Record]) -> dict[int, str]:
    """``{position in records: error}`` of the records that failed to decode when they
    were packed (from the split indexes; nothing is read)."""
    failures: dict[str, dict[int, str]] = {}
    out = {}
    for position, record in enumerate(records):
      split_dir, sep, num = record.path.rpartition("#")
      if not sep or not num.isdigit():
        continue
      if split_dir not in failures:
        failures[split_dir] = {  # the error without the path it starts with
            f["record"]: f["error"].removeprefix(f"{f['path']}: ")
            for f in self._index(split_dir)["failed"]}
      if int(num) in failures[split_dir]:
        out[position] = failures[split_dir][int(num)]
    return out

  def read(self, record: Record, choose: Chooser) -> np.ndarray:
    """``[k, h, w, c]``: the frames ``choose(T)`` of a packed record.

    uint8 for RGB (h, w reduced by `draft_size` when set); depth as stored.
    """
    data = self.read_bytes(record)
    header, _ = _parse(data)
    return decode_video(data, np.asarray(choose(header["num_frames"])),
                        draft_size=self.draft_size)
