"""NMM-EM image pipeline: augmentations, grayscale and Sobel planes."""

from __future__ import annotations

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax.data import augment as augment_module
from deepclust_jax.data.augment import AugmentStrength, augment, augment_image, grayscale, sobel

B, H, W = 3, 16, 16
# Jitted once per (strength, shape); the tests below share these compilations.
augment_jit = jax.jit(augment, static_argnames="strength")


def random_images(seed: int, channels: int = 3) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), (B, H, W, channels))


def test_deterministic_per_key():
  images = random_images(0)
  first = augment_jit(jax.random.key(1), images)
  np.testing.assert_array_equal(first, augment_jit(jax.random.key(1), images))
  assert np.max(np.abs(first - augment_jit(jax.random.key(2), images))) > 0.05
  # Each image of the batch gets its own draw.
  same = jnp.broadcast_to(images[:1], images.shape)
  out = augment_jit(jax.random.key(1), same)
  assert np.max(np.abs(out[0] - out[1])) > 0.05


@pytest.mark.parametrize("channels", [3, 1])
def test_shape_dtype_range(channels):
  images = random_images(3, channels)
  out = augment_jit(jax.random.key(4), images)
  assert out.shape == images.shape and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert np.max(np.abs(out - images)) > 0.05  # it does transform
  planes = sobel(grayscale(out))
  assert planes.shape == (B, H, W, 2) and planes.dtype == jnp.float32


def test_vanishing_strengths_give_the_identity():
  """Every step on, with ranges near zero: centred geometry, lossless colour round trip."""
  tiny = AugmentStrength(crop=0.99, shift=1e-6, rotation=1e-6, scale=1e-6, brightness=1e-6,
                         contrast=1e-6, saturation=1e-6, hue=1e-6)
  images = random_images(5)
  np.testing.assert_allclose(augment_jit(jax.random.key(6), images, tiny), images, atol=1e-4)


def test_rotation_is_about_the_centre():
  """A centred radial blob is (nearly) invariant under rotation only."""
  rows, cols = np.mgrid[:H, :W]
  radius2 = (rows - (H - 1) / 2) ** 2 + (cols - (W - 1) / 2) ** 2
  blob = np.broadcast_to(np.exp(-radius2 / 18.0)[None, :, :, None], (B, H, W, 3))
  rotate_only = AugmentStrength(crop=1.0, shift=0.0, rotation=90.0, scale=0.0, brightness=0.0,
                                contrast=0.0, saturation=0.0, hue=0.0)
  out = augment_jit(jax.random.key(7), jnp.asarray(blob, jnp.float32), rotate_only)
  np.testing.assert_allclose(out, blob, atol=0.03)


def test_jit_matches_vmap_over_per_image_keys():
  images, key = random_images(8), jax.random.key(9)
  per_image = jax.jit(jax.vmap(functools.partial(augment_image, strength=AugmentStrength())))
  np.testing.assert_allclose(augment_jit(key, images),
                             per_image(jax.random.split(key, B), images), atol=1e-6)


def test_sobel_planes():
  constant = jnp.full((2, 8, 8, 1), 0.7)
  np.testing.assert_array_equal(sobel(constant), 0.0)  # the frame is no edge
  vertical = jnp.zeros((2, 8, 8, 1)).at[:, :, 4:].set(1.0)
  edges = jax.jit(sobel)(vertical)
  assert edges.shape == (2, 8, 8, 2)
  np.testing.assert_array_equal(edges[..., 1], 0.0)
  np.testing.assert_array_equal(edges[0, :, :, 0], np.tile([0, 0, 0, 4, 4, 0, 0, 0], (8, 1)))
  horizontal = jnp.swapaxes(vertical, 1, 2)
  edges = sobel(horizontal)
  np.testing.assert_array_equal(edges[..., 0], 0.0)
  np.testing.assert_array_equal(edges[0, :, :, 1], np.tile([0, 0, 0, 4, 4, 0, 0, 0], (8, 1)).T)
  with pytest.raises(ValueError, match="1-channel"):
    sobel(jnp.zeros((1, 4, 4, 3)))


def test_grayscale():
  rgb = random_images(10)
  np.testing.assert_allclose(grayscale(rgb)[..., 0], rgb @ jnp.array([0.2989, 0.587, 0.114]),
                             rtol=1e-5)
  gray = random_images(11, 1)
  np.testing.assert_array_equal(grayscale(gray), gray)
  with pytest.raises(ValueError, match="channels"):
    grayscale(jnp.zeros((1, 4, 4, 2)))


@pytest.mark.parametrize("field,value", [("crop", 0.0), ("crop", 1.5), ("scale", 1.0),
                                         ("contrast", -0.1), ("hue", -0.1)])
def test_strength_validation(field, value):
  with pytest.raises(ValueError, match=field):
    AugmentStrength(**{field: value})


def test_docstring_examples():
  result = doctest.testmod(augment_module, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
