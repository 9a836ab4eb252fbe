"""Tests of deepclust_jax.data: real offline copies where present, small made-up files otherwise."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import sys
import time
import types
from pathlib import Path

import chex
import numpy as np
import pytest

from deepclust_jax import data
from deepclust_jax.data import files
from deepclust_jax.errors import DatasetError

# The offline benchmark copies live beside the repository, never inside it.
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"

MNIST_COUNTS = [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958]
USPS_COUNTS = [1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821]
PENDIGITS_COUNTS = [1143, 1143, 1144, 1055, 1144, 1055, 1056, 1142, 1055, 1055]
PENDIGITS_TES_SHA256 = "8bd03229c5c5291fefe43e45465dd948d2645bf23328b9d993e0b777666b2015"
MNIST_TEST_LABELS_SHA256 = "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
  # A developer's own $DEEPCLUST_DATA must not change what the tests see.
  monkeypatch.delenv(data.ENV_VAR, raising=False)


@pytest.fixture
def shared() -> Path:
  if not SHARED.is_dir():
    pytest.skip(f"offline benchmark copies not found at {SHARED}")
  return SHARED


def _check(ds: data.Dataset, n: int, d: int, k: int) -> None:
  chex.assert_shape(ds.x, (n, d))
  chex.assert_shape(ds.y, (n,))
  chex.assert_type(ds.x, np.float32)
  chex.assert_type(ds.y, np.int32)
  assert ds.num_classes == k
  assert ds.y.min() >= 0 and ds.y.max() < k
  assert np.isfinite(ds.x).all()


def _copy(src: Path, dst_dir: Path) -> Path:
  dst_dir.mkdir(parents=True, exist_ok=True)
  # copyfile, not copy: the originals are read-only and the copy must not be.
  return Path(shutil.copyfile(src, dst_dir / src.name))


def _flip_byte(path: Path, offset: int = 100) -> None:
  raw = bytearray(path.read_bytes())
  raw[offset] ^= 0xFF
  path.write_bytes(bytes(raw))


# ---------------------------------------------------------------- real files


def test_mnist_all(shared):
  ds = data.load("mnist", data_dir=shared)
  _check(ds, 70_000, 784, 10)
  assert ds.image_shape == (28, 28, 1)
  assert ds.x.min() == 0.0 and ds.x.max() == 1.0


  assert np.bincount(ds.y).tolist() == MNIST_COUNTS


def test_fashion_mnist_all(shared):
  ds = data.load("fashion_mnist", data_dir=shared)
  _check(ds, 70_000, 784, 10)
  assert ds.x.min() == 0.0 and ds.x.max() == 1.0
  assert np.bincount(ds.y).tolist() == [7000] * 10


def test_usps(shared):
  ds = data.load("usps", data_dir=shared)
  _check(ds, 9298, 256, 10)
  assert ds.image_shape == (16, 16, 1)
  assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
  assert np.bincount(ds.y).tolist() == USPS_COUNTS


def test_pendigits(shared):
  ds = data.load("pendigits", data_dir=shared)
  _check(ds, 10_992, 16, 10)
  assert ds.image_shape is None
  assert ds.x.min() == 0.0 and ds.x.max() == 1.0
  np.testing.assert_allclose(ds.x * 100, np.round(ds.x * 100), atol=1e-4)
  assert np.bincount(ds.y).tolist() == PENDIGITS_COUNTS


@pytest.mark.parametrize("name,n_train,n_test", [("usps", 7291, 2007), ("pendigits", 7494, 3498)])
def test_all_is_train_then_test(shared, name, n_train, n_test):
  train = data.load(name, data_dir=shared, split="train")
  test = data.load(name, data_dir=shared, split="test")
  everything = data.load(name, data_dir=shared)
  assert (len(train.y), len(test.y)) == (n_train, n_test)
  np.testing.assert_array_equal(everything.x, np.concatenate([train.x, test.x]))
  np.testing.assert_array_equal(everything.y, np.concatenate([train.y, test.y]))


def test_env_var_lookup(shared, monkeypatch):
  monkeypatch.setenv(data.ENV_VAR, str(shared))
  _check(data.load("pendigits", split="test"), 3498, 16, 10)
  status = {s.name: s for s in data.describe()}["pendigits"]
  assert status.available and status.location == str(shared / "pendigits")


def test_data_dir_comes_before_env_var(shared, tmp_path, monkeypatch):
  monkeypatch.setenv(data.ENV_VAR, str(shared))
  _flip_byte(_copy(shared / "pendigits" / "pendigits.tes", tmp_path / "pendigits"))
  with pytest.raises(DatasetError, match="is corrupt"):
    data.load("pendigits", data_dir=tmp_path, split="test")
  # A data_dir without the files falls through to $DEEPCLUST_DATA.
  assert len(data.load("pendigits", data_dir=tmp_path / "empty", split="test").y) == 3498


def test_corrupt_file_names_path_and_checksum(shared, tmp_path):
  copy = _copy(shared / "pendigits" / "pendigits.tes", tmp_path / "pendigits")
  _flip_byte(copy)
  with pytest.raises(DatasetError) as err:
    data.load("pendigits", data_dir=tmp_path, split="test")
  message = str(err.value)
  assert "pendigits" in message and str(copy) in message and PENDIGITS_TES_SHA256 in message


def test_corrupt_gzip_is_caught_by_checksum(shared, tmp_path):
  for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    _copy(shared / "mnist" / name, tmp_path / "mnist")
  _flip_byte(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", offset=50)
  with pytest.raises(DatasetError, match=MNIST_TEST_LABELS_SHA256):
    data.load("mnist", data_dir=tmp_path, split="test")


def test_hashes_are_cached_until_the_file_changes(shared, tmp_path):
  copy = _copy(shared / "pendigits" / "pendigits.tes", tmp_path / "pendigits")
  data.load("pendigits", data_dir=tmp_path, split="test")
  hits = files._sha256.cache_info().hits
  data.load("pendigits", data_dir=tmp_path, split="test")
  assert files._sha256.cache_info().hits == hits + 1
  _flip_byte(copy)
  stat = copy.stat()
  os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # Same size, new mtime.
  with pytest.raises(DatasetError, match="is corrupt"):
    data.load("pendigits", data_dir=tmp_path, split="test")


# ------------------------------------------------------------ errors, lookup


def test_missing_files_error_is_immediate_and_explains(tmp_path):
  (tmp_path / "mnist").mkdir()
  start = time.perf_counter()
  with pytest.raises(DatasetError) as err:
    data.load("mnist", data_dir=tmp_path)
  assert time.perf_counter() - start < 2.0
  message = str(err.value)
  assert "'mnist'" in message and str(tmp_path / "mnist") in message
  assert "train-images-idx3-ubyte.gz" in message and MNIST_TEST_LABELS_SHA256 in message
  assert data.ENV_VAR in message and "--download (Python: download=True)" in message
  assert "--data-dir" in message
  assert "tensorflow_datasets" not in sys.modules
  assert "tensorflow" not in sys.modules


def test_partly_present_files_are_listed_as_missing(shared, tmp_path):
  _copy(shared / "pendigits" / "pendigits.tra", tmp_path / "pendigits")
  with pytest.raises(DatasetError, match=r"missing pendigits\.tes"):
    data.load("pendigits", data_dir=tmp_path)
  assert len(data.load("pendigits", data_dir=tmp_path, split="train").y) == 7494


def test_no_data_dir_at_all():
  with pytest.raises(DatasetError, match=f"pass data_dir or set {data.ENV_VAR}"):
    data.load("usps")


def test_unknown_name_suggests_close_matches():
  with pytest.raises(DatasetError) as err:
    data.load("mnsit")
  assert "did you mean 'mnist'" in str(err.value)
  assert all(name in str(err.value) for name in data.names())


def test_bad_split():
  with pytest.raises(DatasetError, match="split must be one of"):
    data.load("iris", split="validation")
  with pytest.raises(DatasetError, match="'reuters10k' has no train/test split"):
    data.load("reuters10k", split="train")


def test_registry_covers_the_issue():
  expected = {"mnist", "fashion_mnist", "usps", "pendigits", "reuters10k", "cifar10", "cifar100",
              "stl10", "10x73k", "20news", "ytf", "hhar", "iris", "wine", "breast_cancer",
              "digits", "five_gaussians", "moons", "circles", "blobs", "anisotropic", "varied",
              "no_structure"}
  assert set(data.names()) == set(data.DATASETS) == expected
  assert data.get("cifar100").num_classes == 20
  assert data.get("no_structure").num_classes == 3


def test_describe_is_cheap_and_lists_everything(tmp_path):
  start = time.perf_counter()
  rows = {s.name: s for s in data.describe(tmp_path)}
  assert time.perf_counter() - start < 1.0
  assert list(rows) == data.names()
  assert rows["iris"] == data.DatasetStatus("iris", 3, "bundled", True)
  assert rows["moons"].location == "synthetic" and rows["moons"].available
  assert rows["usps"] == data.DatasetStatus("usps", 10, str(tmp_path / "usps"), False)
  assert rows["20news"].location == str(tmp_path / "20news" / "20news-bydate_py3.pkz")
  assert "tensorflow_datasets" not in sys.modules


def test_dataset_is_frozen():
  ds = data.load("iris")
  with pytest.raises(dataclasses.FrozenInstanceError):
    ds.name = "other"


# ---------------------------------------------------------------------- TFDS


def _fake_tfds(monkeypatch) -> list[dict]:
  calls = []

  def load(name, *, split, data_dir, batch_size, download):
    calls.append(dict(name=name, split=split, data_dir=data_dir, batch_size=batch_size,
                      download=download))
    n = 3 if split == "train" else 2
    return {"image": np.full((n, 28, 28, 1), 255, np.uint8), "label": np.arange(n)}

  module = types.ModuleType("tensorflow_datasets")
  module.load = load
  module.as_numpy = lambda tree: tree
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
  return calls


def test_tfds_is_reached_only_with_download(monkeypatch, tmp_path):
  calls = _fake_tfds(monkeypatch)
  with pytest.raises(DatasetError, match="not available"):
    data.load("mnist", data_dir=tmp_path)
  assert not calls
  ds = data.load("mnist", data_dir=tmp_path, download=True)
  _check(ds, 5, 784, 10)
  assert ds.x.min() == 1.0
  assert [c["split"] for c in calls] == ["train", "test"]
  assert all(c["name"] == "mnist" and c["download"] and c["batch_size"] == -1 for c in calls)
  assert calls[0]["data_dir"] == str(tmp_path / "tfds")


def test_local_files_win_over_tfds(shared, monkeypatch):
  calls = _fake_tfds(monkeypatch)
  data.load("fashion_mnist", data_dir=shared, split="test", download=True)
  assert not calls


def test_download_without_tfds_installed_explains(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # Makes the import fail.
  with pytest.raises(DatasetError, match=r"pip install 'deepclust-jax\[tfds\]'"):
    data.load("cifar10", data_dir=tmp_path, download=True)
  with pytest.raises(DatasetError, match="no downloader"):
    data.load("usps", data_dir=tmp_path, download=True)


# ----------------------------------------------- formats without local copies


def _labels(n: int, k: int) -> np.ndarray:
  return np.arange(n) % k


def test_reuters10k(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.random((12, 2000))
  (tmp_path / "reuters10k").mkdir()
  np.save(tmp_path / "reuters10k" / "reutersidf10k.npy", {"data": x, "label": _labels(12, 4)})
  ds = data.load("reuters10k", data_dir=tmp_path)
  _check(ds, 12, 2000, 4)
  np.testing.assert_allclose(ds.x, x, rtol=1e-6)


def test_reuters10k_wrong_width(tmp_path):
  (tmp_path / "reuters10k").mkdir()
  np.save(tmp_path / "reuters10k" / "reutersidf10k.npy",
          {"data": np.ones((4, 100)), "label": _labels(4, 4)})
  with pytest.raises(DatasetError, match="100 features, expected 2000"):
    data.load("reuters10k", data_dir=tmp_path)


def test_pickles_may_not_run_code(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  marker = tmp_path / "pwned"

  class Exploit:

    def __reduce__(self):
      return (os.mkdir, (str(marker),))

  for part in ("train", "test"):
    with open(folder / part, "wb") as f:
      pickle.dump({b"data": Exploit(), b"coarse_labels": [0]}, f, protocol=2)
  with pytest.raises(DatasetError, match="refusing to unpickle"):
    data.load("cifar100", data_dir=tmp_path)
  assert not marker.exists()


def _cifar_images(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _write_cifar_batch(path: Path, images: np.ndarray, label_key: bytes, labels) -> None:
  # The real batches store each image channel-major: 1024 R, then G, then B.
  rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
  with open(path, "wb") as f:
    pickle.dump({b"data": rows, label_key: list(labels), b"batch_label": b"fake"}, f, protocol=2)


def test_cifar10(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  images = _cifar_images(12, 0)
  for i in range(5):
    _write_cifar_batch(folder / f"data_batch_{i + 1}", images[2 * i:2 * i + 2], b"labels",
                       [i, i + 5])
  _write_cifar_batch(folder / "test_batch", images[10:], b"labels", [3, 4])
  ds = data.load("cifar10", data_dir=tmp_path)
  _check(ds, 12, 3072, 10)
  assert ds.image_shape == (32, 32, 3)
  np.testing.assert_allclose(ds.x, images.reshape(12, -1) / 255.0, rtol=1e-6)
  assert ds.y.tolist() == [0, 5, 1, 6, 2, 7, 3, 8, 4, 9, 3, 4]
  assert len(data.load("cifar10", data_dir=tmp_path, split="test").y) == 2


def test_cifar100_coarse_labels(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  _write_cifar_batch(folder / "train", _cifar_images(4, 1), b"coarse_labels", [0, 7, 19, 3])
  _write_cifar_batch(folder / "test", _cifar_images(2, 2), b"coarse_labels", [5, 6])
  ds = data.load("cifar100", data_dir=tmp_path)
  _check(ds, 6, 3072, 20)
  assert ds.y.tolist() == [0, 7, 19, 3, 5, 6]


def test_cifar_bad_shape(tmp_path):
  folder = tmp_path / "cifar-100-python"
  folder.mkdir()
  for part in ("train", "test"):
    with open(folder / part, "wb") as f:
      pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"coarse_labels": [0, 1]}, f)
  with pytest.raises(DatasetError, match=r"'cifar100'.*must be uint8 \(n, 3072\)"):
    data.load("cifar100", data_dir=tmp_path)


def test_stl10(tmp_path):
  folder = tmp_path / "stl10_binary"
  folder.mkdir()
  rng = np.random.default_rng(3)
  images = {"train": rng.integers(0, 256, (3, 96, 96, 3), dtype=np.uint8),
            "test": rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)}
  labels = {"train": [1, 10, 5], "test": [2, 3]}
  for part in ("train", "test"):
    # STL-10 stores each channel column-major: axes (N, C, W, H).
    images[part].transpose(0, 3, 2, 1).tofile(folder / f"{part}_X.bin")
    np.array(labels[part], np.uint8).tofile(folder / f"{part}_y.bin")
  ds = data.load("stl10", data_dir=tmp_path)
  _check(ds, 5, 96 * 96 * 3, 10)
  expected = np.concatenate([images["train"], images["test"]]).reshape(5, -1) / 255.0
  np.testing.assert_allclose(ds.x, expected, rtol=1e-6)
  assert ds.y.tolist() == [0, 9, 4, 1, 2]


def test_stl10_labels_must_be_one_to_ten(tmp_path):
  folder = tmp_path / "stl10_binary"
  folder.mkdir()
  np.zeros(96 * 96 * 3, np.uint8).tofile(folder / "test_X.bin")
  np.array([0], np.uint8).tofile(folder / "test_y.bin")
  with pytest.raises(DatasetError, match=r"labels must be 1\.\.10"):
    data.load("stl10", data_dir=tmp_path, split="test")


@pytest.mark.parametrize("genes_by_cells", [False, True])
def test_10x73k(tmp_path, genes_by_cells):
  import scipy.io
  import scipy.sparse

  rng = np.random.default_rng(4)
  counts = scipy.sparse.random(16, 720, density=0.05, random_state=5, format="csr",
                               data_rvs=lambda n: rng.integers(1, 50, n)).astype(np.float64)
  folder = tmp_path / "10x73k"
  folder.mkdir()
  scipy.io.mmwrite(folder / "sub_set-720.mtx", counts.T if genes_by_cells else counts)
  np.savetxt(folder / "labels.txt", _labels(16, 8), fmt="%d")
  ds = data.load("10x73k", data_dir=tmp_path)
  _check(ds, 16, 720, 8)
  logged = np.log2(1 + counts.toarray())
  np.testing.assert_allclose(ds.x, logged / logged.max(), rtol=1e-5)


def test_ytf_images_and_flat(tmp_path):
  (tmp_path / "ytf").mkdir()
  images = np.random.default_rng(6).integers(0, 256, (4, 55, 55, 3), dtype=np.uint8)
  np.savez(tmp_path / "ytf" / "ytf.npz", x=images, y=np.array([0, 40, 7, 7]))
  ds = data.load("ytf", data_dir=tmp_path)
  _check(ds, 4, 55 * 55 * 3, 41)
  assert ds.image_shape == (55, 55, 3)
  np.testing.assert_allclose(ds.x, images.reshape(4, -1) / 255.0, rtol=1e-6)


def test_ytf_wrong_layout(tmp_path):
  (tmp_path / "ytf").mkdir()
  np.savez(tmp_path / "ytf" / "ytf.npz", x=np.zeros((2, 3, 55, 55), np.uint8), y=np.zeros(2, int))
  with pytest.raises(DatasetError, match=r"must have shape \(N, 55, 55, 3\)"):
    data.load("ytf", data_dir=tmp_path)


def test_hhar(tmp_path):
  (tmp_path / "hhar").mkdir()
  x = np.random.default_rng(7).standard_normal((6, 561))
  np.savez(tmp_path / "hhar" / "hhar.npz", x=x, y=np.arange(6))
  ds = data.load("hhar", data_dir=tmp_path)
  _check(ds, 6, 561, 6)
  np.testing.assert_allclose(ds.x, x, rtol=1e-6)


def test_hhar_label_out_of_range_and_missing_key(tmp_path):
  (tmp_path / "hhar").mkdir()
  path = tmp_path / "hhar" / "hhar.npz"
  np.savez(path, x=np.zeros((2, 561)), y=np.array([1, 6]))
  with pytest.raises(DatasetError, match=r"labels span 1\.\.6, expected 0\.\.5"):
    data.load("hhar", data_dir=tmp_path)
  np.savez(path, features=np.zeros((2, 561)), y=np.array([1, 5]))
  with pytest.raises(DatasetError, match=r"missing arrays \['x'\]"):
    data.load("hhar", data_dir=tmp_path)


def test_20news_from_scikit_learn_cache(tmp_path):
  # Writes a tiny cache in the format of scikit-learn's fetch_20newsgroups
  # (a zlib-compressed pickle of two load_files Bunches); a private format,
  # so this test may need updating with scikit-learn.
  import codecs

  from sklearn.utils import Bunch

  words = [f"word{i}" for i in range(60)]
  rng = np.random.default_rng(8)

  def subset(n: int) -> Bunch:
    target = _labels(n, 20)
    docs = [" ".join(rng.choice(words, 12)) + f" topic{t}" for t in target]
    return Bunch(data=docs, target=target, filenames=np.array([f"f{i}" for i in range(n)]),
                 target_names=[f"group{i}" for i in range(20)], DESCR="")

  (tmp_path / "20news").mkdir()
  cache = dict(train=subset(30), test=subset(20))
  (tmp_path / "20news" / "20news-bydate_py3.pkz").write_bytes(
      codecs.encode(pickle.dumps(cache), "zlib_codec"))
  ds = data.load("20news", data_dir=tmp_path)
  assert ds.x.shape[0] == 50 and ds.x.shape[1] <= 2000
  _check(ds, 50, ds.x.shape[1], 20)
  np.testing.assert_allclose(np.linalg.norm(ds.x, axis=1), 1.0, rtol=1e-5)
  test = data.load("20news", data_dir=tmp_path, split="test")
  np.testing.assert_array_equal(test.x, ds.x[30:])
  assert {s.name: s for s in data.describe(tmp_path)}["20news"].available


# -------------------------------------------------- bundled and synthetic sets


@pytest.mark.parametrize("name,n,d,k", [("iris", 150, 4, 3), ("wine", 178, 13, 3),
                                        ("breast_cancer", 569, 30, 2)])
def test_bundled_tables_are_standardized(name, n, d, k):
  ds = data.load(name)
  _check(ds, n, d, k)
  np.testing.assert_allclose(ds.x.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.x.std(axis=0), 1.0, rtol=1e-4)


def test_digits():
  ds = data.load("digits")
  _check(ds, 1797, 64, 10)
  assert ds.image_shape == (8, 8, 1)
  assert ds.x.min() == 0.0 and ds.x.max() == 1.0


def test_digits_read_from_the_wheel_equal_scikit_learns():
  from sklearn.datasets import load_digits

  x, y = load_digits(return_X_y=True)
  ds = data.load("digits")
  np.testing.assert_array_equal(ds.x, (x / 16.0).astype(np.float32))
  np.testing.assert_array_equal(ds.y, y)


@pytest.mark.parametrize("name,n,k", [("five_gaussians", 2000, 5), ("moons", 500, 2),
                                      ("circles", 500, 2), ("blobs", 500, 3),
                                      ("anisotropic", 500, 3), ("varied", 500, 3),
                                      ("no_structure", 500, 3)])
def test_synthetic_sets_are_fixed_and_standardized(name, n, k):
  ds = data.load(name)
  _check(ds, n, 2, k)
  np.testing.assert_allclose(ds.x.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.x.std(axis=0), 1.0, rtol=1e-4)
  again = data.load(name)
  np.testing.assert_array_equal(ds.x, again.x)
  np.testing.assert_array_equal(ds.y, again.y)
  expected_classes = 1 if name == "no_structure" else k
  assert len(np.unique(ds.y)) == expected_classes
