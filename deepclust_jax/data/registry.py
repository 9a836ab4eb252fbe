"""The dataset registry: every benchmark the papers use, loaded the same way.

``load(name)`` returns a :class:`Dataset`: float32 features (N, D), integer
labels (N,), K and, for images, (H, W, C). File-based datasets are looked up
in ``<data dir>/<folder>/`` for the ``data_dir`` argument, then for
``$DEEPCLUST_DATA``; the images that TensorFlow Datasets knows (MNIST,
Fashion-MNIST, CIFAR-10/100, STL-10) come from TFDS only when the files are
not found, ``download=True`` is passed and ``tensorflow_datasets`` is
installed. The file layout, checksums and preprocessing of every dataset are
listed in ``docs/datasets.md``.

Example:
  >>> ds = load("iris")
  >>> ds.x.shape, ds.num_classes
  ((150, 4), 3)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from deepclust_jax.data import bundled, files, synthetic
from deepclust_jax.data.sources import InMemory, LocalFiles, Newsgroups, Source, Tfds, data_roots
from deepclust_jax.errors import DatasetError, unknown

SPLITS = ("all", "train", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A loaded dataset.

  Attributes:
    x: float32 (N, D) features; images are flattened row-major in (H, W, C).
    y: int32 (N,) class labels in ``0 .. num_classes - 1``.
    name: registry name.
    num_classes: K, the number of ground-truth classes.
    image_shape: (H, W, C) of each image, or None for non-image data.
  """

  x: np.ndarray
  y: np.ndarray
  name: str
  num_classes: int
  image_shape: tuple[int, int, int] | None = None

  @property
  def sample_shape(self) -> tuple[int, ...]:
    """The shape of one sample: (H, W, C) for images, else (D,)."""
    return self.image_shape or (self.x.shape[1],)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A registered dataset.

  Attributes:
    name: registry name, as typed on the command line.
    num_classes: K.
    num_features: D after preprocessing, or None where it depends on the data
      (20news keeps at most 2,000 words).
    image_shape: (H, W, C), or None.
    source: where the arrays come from; ``source.splits`` is ``("train",
      "test")`` or, for datasets without a split, ``("all",)``.
    preprocessing: what is done to the raw values, as in the papers.
    reference: where the data is described.
  """

  name: str
  num_classes: int
  num_features: int | None
  image_shape: tuple[int, int, int] | None
  source: Source
  preprocessing: str
  reference: str


@dataclasses.dataclass(frozen=True)
class DatasetStatus:
  """One row of :func:`describe`.

  Attributes:
    name: registry name.
    num_classes: K.
    location: the folder or file it loads from (or would: the first path
      tried), ``"tfds"``, ``"bundled"`` or ``"synthetic"``.
    available: whether it loads now with ``download=False``.
  """

  name: str
  num_classes: int
  location: str
  available: bool


# The published checksums; downloads and the offline copies are identical.
_SHA256 = {
    "mnist/t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "mnist/train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "fashion-mnist/t10k-images-idx3-ubyte.gz":
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz":
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "fashion-mnist/train-images-idx3-ubyte.gz":
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "fashion-mnist/train-labels-idx1-ubyte.gz":
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "usps/usps.h5": "734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36",
    "pendigits/pendigits.tra": "e2b9eb9f0d0467e2b64a4816a3420edf2b8043447576f4b84337aba44a9f97d3",
    "pendigits/pendigits.tes": "8bd03229c5c5291fefe43e45465dd948d2645bf23328b9d993e0b777666b2015",
}


def _files(folder: str, parts: Mapping[str, tuple[str, ...]],
           read: Callable[[Sequence[Path], str], tuple[np.ndarray, np.ndarray]], obtain: str,
           tfds: Tfds | None = None) -> LocalFiles:
  sha256 = {path.split("/", 1)[1]: digest for path, digest in _SHA256.items()
            if path.startswith(folder + "/")}
  return LocalFiles(folder=folder, parts=types.MappingProxyType(dict(parts)), read=read,
                    obtain=obtain, sha256=types.MappingProxyType(sha256), tfds=tfds)


def _idx(folder: str, obtain: str, tfds_name: str) -> LocalFiles:
  return _files(folder, {
      "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
      "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
  }, files.read_idx_images, obtain, Tfds(tfds_name))


def _npz(folder: str, feature_shape: tuple[int, ...], obtain: str) -> LocalFiles:
  return _files(folder, {"all": (f"{folder}.npz",)},
                functools.partial(files.read_npz, feature_shape=feature_shape),
                f"{obtain}; no download exists, prepare the file yourself and save it with "
                f"np.savez('{folder}.npz', x=..., y=...)")


_PIXELS = "pixels scaled to [0, 1]"
_ZSCORE = "each feature standardized (z-score)"
_TOY = ("scikit-learn's 'Comparing different clustering algorithms on toy datasets' example, "
        "500 points, fixed seed")

_SPECS = (
    DatasetSpec(
        "mnist", 10, 784, (28, 28, 1),
        _idx("mnist", "https://yann.lecun.com/exdb/mnist/ (or any mirror with the same "
             "checksums)", "mnist"),
        _PIXELS, "LeCun et al. (1998); 60,000 train + 10,000 test"),
    DatasetSpec(
        "fashion_mnist", 10, 784, (28, 28, 1),
        _idx("fashion-mnist", "https://github.com/zalandoresearch/fashion-mnist (data/fashion/)",
             "fashion_mnist"),
        _PIXELS, "Xiao, Rasul, Vollgraf (2017); 60,000 train + 10,000 test"),
    DatasetSpec(
        "usps", 10, 256, (16, 16, 1),
        _files("usps", {"train": ("usps.h5",), "test": ("usps.h5",)}, files.read_usps,
               "usps.h5 of the Kaggle data set bistaumanga/usps-dataset"),
        "as stored: grey levels already in [0, 1]",
        "Hull (1994); 7,291 train + 2,007 test"),
    DatasetSpec(
        "pendigits", 10, 16, None,
        _files("pendigits", {"train": ("pendigits.tra",), "test": ("pendigits.tes",)},
               files.read_pendigits,
               "UCI 'Pen-Based Recognition of Handwritten Digits' "
               "(https://archive.ics.uci.edu/dataset/81)"),
        "coordinates (0..100) divided by 100",
        "Alimoglu, Alpaydin (1996); 7,494 train + 3,498 test"),
    DatasetSpec(
        "reuters10k", 4, 2000, None,
        _files("reuters10k", {"all": ("reutersidf10k.npy",)}, files.read_reuters,
               "run the Reuters preparation of DEC (Xie, Girshick, Farhadi 2016; "
               "github.com/piiswrong/dec, data/reuters/), which writes reutersidf10k.npy"),
        "as prepared by DEC: tf-idf of the 2,000 most frequent words, times sqrt(2000)",
        "Lewis et al. (2004) RCV1, 10,000 documents of 4 root categories, as in DEC"),
    DatasetSpec(
        "cifar10", 10, 3072, (32, 32, 3),
        _files("cifar-10-batches-py",
               {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
               functools.partial(files.read_cifar, label_key="labels"),
               "extract https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
               Tfds("cifar10")),
        _PIXELS, "Krizhevsky (2009); 50,000 train + 10,000 test"),
    DatasetSpec(
        "cifar100", 20, 3072, (32, 32, 3),
        _files("cifar-100-python", {"train": ("train",), "test": ("test",)},
               functools.partial(files.read_cifar, label_key="coarse_labels"),
               "extract https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
               Tfds("cifar100", label_key="coarse_label")),
        f"{_PIXELS}; labels are the 20 super-classes (coarse labels)",
        "Krizhevsky (2009); 50,000 train + 10,000 test"),
    DatasetSpec(
        "stl10", 10, 27648, (96, 96, 3),
        _files("stl10_binary",
               {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")},
               files.read_stl10,
               "extract https://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
               Tfds("stl10")),
        f"{_PIXELS}; labels 1..10 shifted to 0..9; the unlabeled images are not used",
        "Coates, Ng, Lee (2011); 5,000 train + 8,000 test"),
    DatasetSpec(
        "10x73k", 8, 720, None,
        _files("10x73k", {"all": ("sub_set-720.mtx", "labels.txt")}, files.read_10x73k,
               "sub_set-720.mtx and labels.txt as distributed with ClusterGAN "
               "(Mukherjee et al. 2019, data/10x_73k/)"),
        "log2(1 + counts), divided by the largest value so x is in [0, 1]",
        "Zheng et al. (2017): 73,233 cells of 8 types, 720 genes"),
    DatasetSpec(
        "20news", 20, None, None, Newsgroups(),
        "tf-idf over the 2,000 most frequent words (TfidfVectorizer(max_features=2000)), "
        "fit on all 18,846 documents",
        "Lang (1995), 'bydate' version: 11,314 train + 7,532 test"),
    DatasetSpec(
        "ytf", 41, 55 * 55 * 3, (55, 55, 3),
        _npz("ytf", (55, 55, 3),
             "from the YouTube Faces DB, the frames of the first 41 subjects as in DEPICT, "
             "resized to 55x55 RGB: x uint8 (N, 55, 55, 3), y int labels 0..40"),
        "uint8 pixels scaled to [0, 1]; float x used as stored",
        "Wolf, Hassner, Maoz (2011); 10,000 frames of 41 people as in Dizaji et al. (2017)"),
    DatasetSpec(
        "hhar", 6, 561, None,
        _npz("hhar", (561,),
             "from the UCI 'Human Activity Recognition Using Smartphones' set as VaDE uses it: "
             "x float (N, 561) with train and test stacked, y int labels 0..5 (UCI's 1..6 "
             "minus 1)"),
        "as stored in the .npz",
        "Anguita et al. (2013) / VaDE (Jiang et al. 2017): 10,299 windows, 6 activities"),
    DatasetSpec(
        "iris", 3, 4, None, InMemory("bundled", functools.partial(bundled.table, "iris")),
        _ZSCORE, "Fisher (1936), bundled with scikit-learn: 150 flowers"),
    DatasetSpec(
        "wine", 3, 13, None, InMemory("bundled", functools.partial(bundled.table, "wine")),
        _ZSCORE, "UCI Wine, bundled with scikit-learn: 178 wines"),
    DatasetSpec(
        "breast_cancer", 2, 30, None,
        InMemory("bundled", functools.partial(bundled.table, "breast_cancer")),
        _ZSCORE, "UCI Breast Cancer Wisconsin (Diagnostic), bundled with scikit-learn: 569 cases"),
    DatasetSpec(
        "digits", 10, 64, (8, 8, 1), InMemory("bundled", bundled.digits),
        "pixels (0..16) divided by 16",
        "UCI optdigits test set, bundled with scikit-learn: 1,797 8x8 images"),
    DatasetSpec(
        "five_gaussians", 5, 2, None, InMemory("synthetic", synthetic.five_gaussians),
        "standardized (z-score)",
        "Boubekki et al. (2021), Fig. 1: 2,000 points from 5 bivariate Gaussians"),
    DatasetSpec("moons", 2, 2, None, InMemory("synthetic", synthetic.moons),
                "standardized (z-score)", _TOY),
    DatasetSpec("circles", 2, 2, None, InMemory("synthetic", synthetic.circles),
                "standardized (z-score)", _TOY),
    DatasetSpec("blobs", 3, 2, None, InMemory("synthetic", synthetic.blobs),
                "standardized (z-score)", _TOY),
    DatasetSpec("anisotropic", 3, 2, None, InMemory("synthetic", synthetic.anisotropic),
                "standardized (z-score)", _TOY),
    DatasetSpec("varied", 3, 2, None, InMemory("synthetic", synthetic.varied),
                "standardized (z-score)", _TOY),
    DatasetSpec("no_structure", 3, 2, None, InMemory("synthetic", synthetic.no_structure),
                "standardized (z-score); all labels 0 (no ground truth)", _TOY),
)

DATASETS: Mapping[str, DatasetSpec] = types.MappingProxyType({s.name: s for s in _SPECS})


def names() -> list[str]:
  """The registered dataset names, in registry order."""
  return list(DATASETS)


def get(name: str) -> DatasetSpec:
  """The spec registered as ``name``; :class:`DatasetError` lists the others."""
  if name not in DATASETS:
    raise unknown("dataset", name, DATASETS, DatasetError)
  return DATASETS[name]


def load(name: str, *, data_dir: str | os.PathLike[str] | None = None, split: str = "all",
         download: bool = False) -> Dataset:
  """Loads a registered dataset, preprocessed as the papers do.

  Args:
    name: a name from :func:`names`.
    data_dir: a directory holding ``<folder>/`` with the dataset's files
      (see ``docs/datasets.md``); searched before ``$DEEPCLUST_DATA``.
    split: ``"all"`` (train then test, as the clustering papers use),
      ``"train"`` or ``"test"``; datasets without a split accept only ``"all"``.
    download: allow fetching what is not found locally: through TFDS for
      mnist, fashion_mnist, cifar10, cifar100 and stl10 (needs the ``tfds``
      extra), through scikit-learn for 20news. Never implied.

  Returns:
    The :class:`Dataset`.

  Raises:
    DatasetError: unknown name or split; files missing, corrupt or
      malformed; or no source for the dataset on this machine.

  Example:
    >>> ds = load("digits")
    >>> ds.x.shape, ds.image_shape, float(ds.x.max())
    ((1797, 64), (8, 8, 1), 1.0)
  """
  spec = get(name)
  if split not in SPLITS:
    raise DatasetError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
  if split == "all":
    parts = spec.source.splits
  elif split in spec.source.splits:
    parts = (split,)
  else:
    raise DatasetError(f"dataset {name!r} has no train/test split; use split='all'")
  x, y, where = spec.source.load(name, parts, data_roots(data_dir), download)
  problem = _problem(spec, x, y)
  if problem:
    raise DatasetError(f"dataset {name!r} from {where}: {problem}")
  return Dataset(x=x.astype(np.float32, copy=False), y=y.astype(np.int32), name=name,
                 num_classes=spec.num_classes, image_shape=spec.image_shape)


def _problem(spec: DatasetSpec, x: np.ndarray, y: np.ndarray) -> str | None:
  if x.ndim != 2 or len(x) == 0:
    return f"features must be a non-empty (N, D) array, got shape {x.shape}"
  if spec.num_features is not None and x.shape[1] != spec.num_features:
    return f"samples have {x.shape[1]} features, expected {spec.num_features}"
  if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
    return f"labels must be {len(x)} integers, got {y.dtype} {y.shape}"
  if y.min() < 0 or y.max() >= spec.num_classes:
    return f"labels span {y.min()}..{y.max()}, expected 0..{spec.num_classes - 1}"
  # A float64 sum is NaN or Inf exactly when some entry is, without the
  # (N, D) boolean temporary that isfinite would allocate.
  if not np.isfinite(x.sum(dtype=np.float64)):
    return "features contain NaN or Inf"
  return None


def describe(data_dir: str | os.PathLike[str] | None = None) -> list[DatasetStatus]:
  """Where each dataset would load from and whether it is there now.

  Only stats files: checksums are not verified and TFDS is not imported, so
  this is fast enough for ``deepclust datasets``.

  Example:
    >>> [s.location for s in describe() if s.name == "iris"]
    ['bundled']
  """
  roots = data_roots(data_dir)
  return [DatasetStatus(spec.name, spec.num_classes, *spec.source.locate(roots))
          for spec in _SPECS]
