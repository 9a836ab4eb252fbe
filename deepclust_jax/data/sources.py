"""Where a dataset's arrays come from: files in a data directory, or memory.

A source answers two questions: where would the dataset load from and is it
there now (:meth:`locate`, which must stay cheap: it only stats files), and
what are its arrays (:meth:`load`). Data directories are searched in order:
the ``data_dir`` argument, then ``$DEEPCLUST_DATA``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pickle
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, NamedTuple, Protocol

import numpy as np

from deepclust_jax.data import files, tfds
from deepclust_jax.data.preprocess import pixels_to_rows
from deepclust_jax.errors import DatasetError

ENV_VAR = "DEEPCLUST_DATA"
XY = tuple[np.ndarray, np.ndarray]

# Parsers signal a malformed file with these; each becomes a DatasetError.
_PARSE_ERRORS = (OSError, ValueError, EOFError, KeyError, IndexError, TypeError,
                 pickle.UnpicklingError, zlib.error)


class Root(NamedTuple):
  """A data directory and how it was given (``data_dir`` or ``$DEEPCLUST_DATA``)."""

  path: Path
  origin: str


def data_roots(data_dir: str | os.PathLike[str] | None) -> list[Root]:
  """The data directories to search, in order."""
  roots = []
  if data_dir is not None:
    roots.append(Root(Path(data_dir).expanduser(), "data_dir"))
  if os.environ.get(ENV_VAR):
    roots.append(Root(Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"))
  return roots


_NO_ROOT = f"no data directory (pass data_dir or set {ENV_VAR})"


class Source(Protocol):
  """How one dataset is found and read.

  Attributes:
    splits: the parts that ``split="all"`` concatenates: ``("train", "test")``,
      or ``("all",)`` for a dataset without a split.
  """

  splits: tuple[str, ...]

  def locate(self, roots: Sequence[Root]) -> tuple[str, bool]:
    """(where it would load from, whether it is there now), without reading it."""

  def load(self, name: str, parts: Sequence[str], roots: Sequence[Root],
           download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, where it was loaded from) for ``parts`` concatenated in order."""


@dataclasses.dataclass(frozen=True)
class InMemory:
  """A dataset made in memory: scikit-learn's bundled tables or a synthetic set.

  Attributes:
    kind: ``"bundled"`` or ``"synthetic"``, reported as its location.
    make: returns (x, y), the same on every call.
  """

  kind: str
  make: Callable[[], XY]
  splits: ClassVar[tuple[str, ...]] = ("all",)

  def locate(self, roots: Sequence[Root]) -> tuple[str, bool]:
    del roots
    return self.kind, True

  def load(self, name: str, parts: Sequence[str], roots: Sequence[Root],
           download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    del name, parts, roots, download  # One split, nothing to fetch.
    return *self.make(), self.kind


@dataclasses.dataclass(frozen=True)
class Tfds:
  """The TFDS builder serving a dataset when ``download=True``.

  Attributes:
    name: TFDS builder name.
    label_key: the feature holding the label.
  """

  name: str
  label_key: str = "label"


@dataclasses.dataclass(frozen=True)
class LocalFiles:
  """Files in ``<data dir>/<folder>/``, optionally with TFDS as a fallback.

  Attributes:
    folder: sub-directory of a data directory.
    parts: split -> its files, in the order ``read`` takes them. Datasets
      with no split have the single part ``"all"``.
    read: ``read(paths, part) -> (x, y)``, see :mod:`deepclust_jax.data.files`.
    obtain: how a user gets the files, for error messages.
    sha256: known checksums by file name, verified before reading.
    tfds: the TFDS builder used when no data directory has the files and
      ``download=True``.
  """

  folder: str
  parts: Mapping[str, tuple[str, ...]]
  read: Callable[[Sequence[Path], str], XY]
  obtain: str
  sha256: Mapping[str, str] = dataclasses.field(default_factory=dict)
  tfds: Tfds | None = None

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.parts)

  def _needed(self, parts: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(f for part in parts for f in self.parts[part]))

  def _find(self, roots: Sequence[Root], needed: Sequence[str]) -> Path | None:
    for root in roots:
      if all((root.path / self.folder / f).is_file() for f in needed):
        return root.path / self.folder
    return None

  def locate(self, roots: Sequence[Root]) -> tuple[str, bool]:
    folder = self._find(roots, self._needed(list(self.parts)))
    if folder is not None:
      return str(folder), True
    if self.tfds is not None and _tfds_installed():
      return "tfds", False
    return (str(roots[0].path / self.folder) if roots else _NO_ROOT), False

  def load(self, name: str, parts: Sequence[str], roots: Sequence[Root],
           download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    needed = self._needed(parts)
    folder = self._find(roots, needed)
    if folder is not None:
      return *self._read(name, folder, parts, needed), str(folder)
    if download and self.tfds is not None:
      module = tfds.import_tfds()
      if module is not None:
        data_dir = str(roots[0].path / "tfds") if roots else None
        images, labels = tfds.load_images(module, self.tfds.name, self.tfds.label_key, parts,
                                          data_dir)
        return pixels_to_rows(images), labels, f"tfds:{self.tfds.name}"
    raise DatasetError(self._missing(name, roots, needed, download))

  def _read(self, name: str, folder: Path, parts: Sequence[str], needed: Sequence[str]) -> XY:
    try:
      for f in needed:
        if f in self.sha256:
          files.verify(folder / f, self.sha256[f])
    except DatasetError as e:
      raise DatasetError(f"dataset {name!r}: {e}; get it from {self.obtain}") from None
    try:
      arrays = [self.read([folder / f for f in self.parts[part]], part) for part in parts]
    except DatasetError as e:
      raise DatasetError(f"dataset {name!r}: {e}") from None
    except _PARSE_ERRORS as e:
      raise DatasetError(f"dataset {name!r}: cannot read the files in {folder}: "
                         f"{type(e).__name__}: {e}") from e
    if len(arrays) == 1:
      return arrays[0]
    return np.concatenate([x for x, _ in arrays]), np.concatenate([y for _, y in arrays])

  def _missing(self, name: str, roots: Sequence[Root], needed: Sequence[str],
               download: bool) -> str:
    tried = []
    for root in roots:
      absent = [f for f in needed if not (root.path / self.folder / f).is_file()]
      tried.append(f"{root.path / self.folder} ({root.origin}; missing {', '.join(absent)})")
    expected = "\n".join(f"    {f}  sha256 {self.sha256.get(f, '(not published; format checked)')}"
                         for f in needed)
    target = roots[0].path / self.folder if roots else f"<data dir>/{self.folder}"
    lines = [
        f"dataset {name!r} is not available on this machine",
        f"  tried: {'; '.join(tried) if tried else _NO_ROOT}",
        f"  expected files in <data dir>/{self.folder}/:",
        expected,
        f"  to get them: {self.obtain}",
        f"  then place them in {target}/ and pass --data-dir <data dir> (Python: "
        f"data_dir=...) or set {ENV_VAR}=<data dir>",
    ]
    if self.tfds is not None:
      if download:
        lines.append("  downloading needs tensorflow-datasets, which is not installed: "
                     "pip install 'deepclust-jax[tfds]'")
      else:
        lines.append("  or let TensorFlow Datasets fetch them: pip install "
                     "'deepclust-jax[tfds]', then add --download (Python: download=True)")
    elif download:
      lines.append(f"  there is no downloader for {name!r}: its files must be placed by hand")
    return "\n".join(lines)


def _tfds_installed() -> bool:
  # find_spec locates the package without importing it (and TensorFlow).
  return "tensorflow_datasets" in sys.modules or (
      importlib.util.find_spec("tensorflow_datasets") is not None)


@dataclasses.dataclass(frozen=True)
class Newsgroups:
  """20 Newsgroups from scikit-learn's cache in ``<data dir>/20news/``.

  ``fetch_20newsgroups(data_home=<data dir>/20news)`` keeps the 18,846
  documents there as ``20news-bydate_py3.pkz``; with ``download=True`` it
  fetches them into the first data directory. The tf-idf vocabulary and idf
  weights are fit on all documents, so train and test rows share features.

  Attributes:
    max_features: vocabulary size (the most frequent words).
  """

  max_features: int = 2000
  splits: ClassVar[tuple[str, ...]] = ("train", "test")
  folder: ClassVar[str] = "20news"
  cache: ClassVar[str] = "20news-bydate_py3.pkz"  # scikit-learn's file name (>= 0.22).

  def _find(self, roots: Sequence[Root]) -> Path | None:
    for root in roots:
      if (root.path / self.folder / self.cache).is_file():
        return root.path / self.folder
    return None

  def locate(self, roots: Sequence[Root]) -> tuple[str, bool]:
    home = self._find(roots)
    if home is not None:
      return str(home / self.cache), True
    return (str(roots[0].path / self.folder / self.cache) if roots else _NO_ROOT), False

  def load(self, name: str, parts: Sequence[str], roots: Sequence[Root],
           download: bool) -> tuple[np.ndarray, np.ndarray, str]:
    home = self._find(roots)
    if home is None:
      if not (download and roots):
        tried = "; ".join(str(r.path / self.folder / self.cache) for r in roots) or _NO_ROOT
        raise DatasetError(
            f"dataset {name!r} is not available on this machine\n"
            f"  tried: {tried}\n"
            f"  to get it: add --download (Python: download=True) with --data-dir <data dir> "
            f"or {ENV_VAR} set, and scikit-learn fetches it (14 MB) into "
            f"<data dir>/{self.folder}/")
      home = roots[0].path / self.folder
    from sklearn.datasets import fetch_20newsgroups  # Lazy: slow imports.
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
      subsets = {part: fetch_20newsgroups(data_home=str(home), subset=part, shuffle=False,
                                          download_if_missing=download)
                 for part in ("train", "test")}
    except _PARSE_ERRORS as e:
      raise DatasetError(f"dataset {name!r}: scikit-learn cannot read or fetch the cache in "
                         f"{home}: {e}") from e
    docs = [doc for part in ("train", "test") for doc in subsets[part].data]
    tfidf = TfidfVectorizer(max_features=self.max_features, dtype=np.float32).fit_transform(docs)
    n_train = len(subsets["train"].data)
    rows = {"train": np.arange(n_train), "test": np.arange(n_train, len(docs))}
    index = np.concatenate([rows[part] for part in parts])
    y = np.concatenate([subsets[part].target for part in ("train", "test")])
    return tfidf[index].toarray(), y[index], str(home / self.cache)
