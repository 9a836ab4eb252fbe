"""Readers for benchmark files on disk, and the checksums that guard them.

Every reader has the signature ``read(paths, part) -> (x, y)``: ``paths`` are
the files of one split (``part`` is ``"train"``, ``"test"`` or ``"all"``) in
the order the registry lists them; ``x`` is float32 (N, D), preprocessed as
the papers do, and ``y`` holds integer labels. A malformed file raises
:class:`DatasetError` naming the file; the caller adds the dataset's name and
checks the feature count and label range against the registry.

Files whose sha256 is not published (CIFAR, STL-10, Reuters-10K, 10x73k, YTF,
HHAR) get a strict structural check here instead.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import hashlib
import math
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from deepclust_jax.data.preprocess import pixels_to_rows
from deepclust_jax.errors import DatasetError

XY = tuple[np.ndarray, np.ndarray]


def sha256(path: Path) -> str:
  """The sha256 hex digest of a file, hashed once per (path, size, mtime).

  Repeated loads of an unchanged file cost one ``stat``; a file that is
  rewritten gets a new size or mtime and so is hashed again.
  """
  stat = path.stat()
  return _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
  del size, mtime_ns  # Part of the cache key only.
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify(path: Path, expected: str) -> None:
  """Raises :class:`DatasetError` unless ``path`` has sha256 ``expected``."""
  actual = sha256(path)
  if actual != expected:
    raise DatasetError(
        f"{path} is corrupt or not the expected version: its sha256 is {actual}, "
        f"expected {expected}; delete it and fetch it again")


def read_idx(path: Path) -> np.ndarray:
  """A gzip-compressed IDX file of unsigned bytes (LeCun's MNIST format)."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  # Magic number: two zero bytes, type code 0x08 (ubyte), number of dimensions.
  if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
    raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
  ndim = raw[3]
  offset = 4 + 4 * ndim
  dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
  if len(raw) != offset + math.prod(dims):
    raise DatasetError(f"{path}: IDX header says {dims} but holds {len(raw) - offset} bytes")
  return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


def read_idx_images(paths: Sequence[Path], part: str) -> XY:
  """MNIST-style images and labels: ``paths`` = (images.gz, labels.gz)."""
  del part  # The file names already select the split.
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim != 3 or labels.shape != (len(images),):
    raise DatasetError(f"{paths[0]} holds {images.shape} images but {paths[1]} holds "
                       f"{labels.shape} labels")
  return pixels_to_rows(images[..., None]), labels


def read_usps(paths: Sequence[Path], part: str) -> XY:
  """USPS from one HDF5 file: group ``part`` with ``data`` (N, 256) and ``target``."""
  import h5py  # Lazy: only USPS needs it.

  with h5py.File(paths[0], "r") as f:
    return f[part]["data"][:].astype(np.float32), f[part]["target"][:]


def read_pendigits(paths: Sequence[Path], part: str) -> XY:
  """UCI Pendigits CSV: 16 coordinates in 0..100, then the label; scaled by 1/100."""
  del part
  table = np.loadtxt(paths[0], delimiter=",", dtype=np.int64, ndmin=2)
  if table.shape[1] != 17:
    raise DatasetError(f"{paths[0]}: expected 17 comma-separated columns, got {table.shape[1]}")
  return table[:, :16].astype(np.float32) / 100.0, table[:, 16]


# Pickled numpy arrays need only these globals. Refusing all others means a
# tampered download cannot run code when it is unpickled.
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1 and 2 names
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    **{(module, "_reconstruct"): np.empty(0).__reduce__()[0] for module in _NUMPY_CORE},
    **{(module, "scalar"): np.float64(0).__reduce__()[0] for module in _NUMPY_CORE},
}


class _ArrayUnpickler(pickle.Unpickler):

  def find_class(self, module: str, name: str) -> Any:
    try:
      return _PICKLE_GLOBALS[module, name]
    except KeyError:
      raise pickle.UnpicklingError(
          f"refusing to unpickle {module}.{name}: only numpy arrays, lists, dicts "
          "and numbers are expected") from None


def _unpickle_dict(f: BinaryIO, path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
  # latin1 decodes Python 2 byte strings losslessly, as numpy needs for the
  # array buffers in Python 2 pickles (the CIFAR batches, DEC's Reuters file).
  obj = _ArrayUnpickler(f, encoding="latin1").load()
  if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0:
    obj = obj.item()  # np.save of a dict stores it in a 0-d object array.
  if not isinstance(obj, dict):
    raise DatasetError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
  obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
  missing = [k for k in keys if k not in obj]
  if missing:
    raise DatasetError(f"{path}: missing keys {missing}; it has {sorted(map(str, obj))}")
  return {k: np.asarray(obj[k]) for k in keys}


def read_cifar(paths: Sequence[Path], part: str, *, label_key: str) -> XY:
  """CIFAR "python version" batches: ``data`` uint8 (n, 3072) channel-major.

  Args:
    paths: the batch files of the split.
    part: unused; the file names select the split.
    label_key: ``"labels"`` (CIFAR-10) or ``"coarse_labels"`` (CIFAR-100's
      20 super-classes).
  """
  del part
  images, labels = [], []
  for path in paths:
    with open(path, "rb") as f:
      batch = _unpickle_dict(f, path, ("data", label_key))
    data, batch_labels = batch["data"], batch[label_key]
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
      raise DatasetError(f"{path}: 'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}")
    if batch_labels.shape != (len(data),) or not np.issubdtype(batch_labels.dtype, np.integer):
      raise DatasetError(f"{path}: {label_key!r} must hold {len(data)} integers, got "
                         f"{batch_labels.dtype} {batch_labels.shape}")
    images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # C,H,W -> H,W,C
    labels.append(batch_labels)
  return pixels_to_rows(np.concatenate(images)), np.concatenate(labels)


def read_stl10(paths: Sequence[Path], part: str) -> XY:
  """STL-10 binaries: ``paths`` = (X.bin, y.bin); labels 1..10 become 0..9."""
  del part
  raw = np.fromfile(paths[0], np.uint8)
  size = 3 * 96 * 96
  if raw.size == 0 or raw.size % size:
    raise DatasetError(f"{paths[0]}: {raw.size} bytes is not a whole number of 3x96x96 images")
  # Each image is stored channel by channel, each channel column-major, so
  # the axes read as (C, W, H).
  images = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
  labels = np.fromfile(paths[1], np.uint8)
  if labels.size != len(images):
    raise DatasetError(f"{paths[1]} holds {labels.size} labels for {len(images)} images")
  if labels.min() < 1 or labels.max() > 10:
    raise DatasetError(f"{paths[1]}: labels must be 1..10, got {labels.min()}..{labels.max()}")
  return pixels_to_rows(images), labels.astype(np.int32) - 1


def read_reuters(paths: Sequence[Path], part: str) -> XY:
  """DEC's ``reutersidf10k.npy``: ``np.save`` of {'data': tf-idf, 'label': ints}."""
  del part
  path = paths[0]
  with open(path, "rb") as f:
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    if not read_header(f)[2].hasobject:
      raise DatasetError(f"{path}: expected a dict saved with np.save, found a plain array")
    arrays = _unpickle_dict(f, path, ("data", "label"))
  data, label = arrays["data"], arrays["label"]
  if data.ndim != 2 or not np.issubdtype(data.dtype, np.floating):
    raise DatasetError(f"{path}: 'data' must be a float (N, D) array, got {data.dtype} "
                       f"{data.shape}")
  if label.shape != (len(data),):
    raise DatasetError(f"{path}: 'label' must have shape ({len(data)},), got {label.shape}")
  return data.astype(np.float32), label


def read_10x73k(paths: Sequence[Path], part: str) -> XY:
  """10x73k counts (Matrix Market) and labels; x = log2(1 + counts) / max.

  The matrix may be cells x genes or genes x cells: the axis whose length
  matches the number of labels is taken as cells (cells x genes if both do).
  """
  del part
  import scipy.io  # Lazy: only 10x73k needs them.
  import scipy.sparse

  counts = scipy.sparse.csr_matrix(scipy.io.mmread(paths[0]), dtype=np.float32)
  labels = np.loadtxt(paths[1], dtype=np.int64, ndmin=1)
  if counts.shape[0] != labels.size:
    if counts.shape[1] != labels.size:
      raise DatasetError(f"{paths[0]} is {counts.shape[0]} x {counts.shape[1]} but {paths[1]} "
                         f"has {labels.size} labels; neither axis matches")
    counts = counts.T.tocsr()
  if not (np.isfinite(counts.data).all() and (counts.data >= 0).all()):
    raise DatasetError(f"{paths[0]}: counts must be finite and non-negative")
  x = counts.toarray()
  np.log2(1.0 + x, out=x)
  peak = x.max()
  if peak == 0:
    raise DatasetError(f"{paths[0]}: the matrix holds no non-zero counts")
  x /= peak
  return x, labels


def read_npz(paths: Sequence[Path], part: str, *, feature_shape: tuple[int, ...]) -> XY:
  """A user-prepared ``.npz`` with arrays ``x`` and ``y``.

  Args:
    paths: the one ``.npz`` file.
    part: unused; these datasets have no split.
    feature_shape: the shape of one sample, e.g. (55, 55, 3) or (561,); ``x``
      may also be given already flattened. uint8 ``x`` is taken as pixels and
      scaled to [0, 1]; float ``x`` is used as stored.
  """
  del part
  path = paths[0]
  if not zipfile.is_zipfile(path):
    raise DatasetError(f"{path}: not an .npz archive (write it with np.savez)")
  with np.load(path, allow_pickle=False) as f:
    missing = [k for k in ("x", "y") if k not in f.files]
    if missing:
      raise DatasetError(f"{path}: missing arrays {missing}; it has {f.files}")
    x, y = f["x"], f["y"]
  if x.shape[1:] not in (feature_shape, (math.prod(feature_shape),)):
    raise DatasetError(f"{path}: 'x' must have shape (N, {', '.join(map(str, feature_shape))}) "
                       f"or (N, {math.prod(feature_shape)}), got {x.shape}")
  if x.dtype == np.uint8:
    return pixels_to_rows(x), y
  if not np.issubdtype(x.dtype, np.floating):
    raise DatasetError(f"{path}: 'x' must be uint8 pixels or floats, got {x.dtype}")
  return x.reshape(len(x), -1).astype(np.float32), y
