"""Image augmentation and Sobel input planes for NMM-EM, on the device.

Tissera et al. (2022), "Neural Mixture Models with Expectation-Maximization for
End-to-end Deep Clustering", Neurocomputing; sections 7 and 8.2. The
transformation T "consists of basic data augmentation such as random crop,
shift, rotation, scale, and random adjustment of image brightness, contrast,
saturation, and hue", drawn once per image and batch; the network sees
``sobel(grayscale(x))`` and ``sobel(grayscale(T(x)))``. The paper gives no
magnitudes: the defaults of :class:`AugmentStrength` are ours.

Images are float in [0, 1], (B, H, W, C) for the batched functions and
(H, W, C) for :func:`augment_image`. Everything is jit- and vmap-compatible;
an :class:`AugmentStrength` is hashable, hence static under ``jax.jit``.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import chex
import dm_pix
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentStrength:
  """Magnitudes of the random transformations; a zero (or 1 for ``crop``) turns one off.

  Attributes:
    crop: side of the random crop as a fraction of the image's side; the crop
      is resized back to the full size.
    shift: largest translation, as a fraction of the image's side.
    rotation: largest rotation, in degrees, either way.
    scale: zoom factor drawn from ``[1 - scale, 1 + scale]``.
    brightness: largest additive brightness change.
    contrast: contrast factor drawn from ``[1 - contrast, 1 + contrast]``.
    saturation: saturation factor drawn from ``[1 - saturation, 1 + saturation]``
      (3-channel images only).
    hue: largest hue shift, as a fraction of the colour circle (3-channel
      images only).
  """

  crop: float = 0.85
  shift: float = 0.1
  rotation: float = 15.0
  scale: float = 0.1
  brightness: float = 0.2
  contrast: float = 0.4
  saturation: float = 0.4
  hue: float = 0.1

  def __post_init__(self):
    if not 0.0 < self.crop <= 1.0:
      raise ValueError(f"crop={self.crop} must lie in (0, 1]")
    for name in ("scale", "contrast", "saturation"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1)")
    for name in ("shift", "rotation", "brightness", "hue"):
      if getattr(self, name) < 0.0:
        raise ValueError(f"{name}={getattr(self, name)} must be non-negative")


def grayscale(images: chex.Array) -> chex.Array:
  """Luma (ITU-R BT.601) of RGB images, (B, H, W, 1); 1-channel images pass through.

  Section 8.2: "if RGB, we convert them to single-channel grayscale".

  Example:
    >>> rgb = jnp.ones((2, 4, 4, 3)) * jnp.array([1.0, 0.0, 0.0])
    >>> gray = grayscale(rgb)
    >>> gray.shape, round(float(gray[0, 0, 0, 0]), 3)
    ((2, 4, 4, 1), 0.299)
  """
  if images.shape[-1] == 1:
    return images
  if images.shape[-1] != 3:
    raise ValueError(f"expected 1 or 3 channels, got shape {images.shape}")
  return dm_pix.rgb_to_grayscale(images)  # keeps a channel axis of 1


def sobel(images: chex.Array) -> chex.Array:
  """Vertical- and horizontal-edge Sobel planes of 1-channel images, (B, H, W, 2).

  Section 8.2: the network input is "a stack of two planes ... carrying
  vertical edges and horizontal edges". Plane 0 responds to vertical edges
  (intensity rising to the right is positive), plane 1 to horizontal edges
  (rising downwards is positive); unnormalised 3x3 Sobel kernels, applied
  separably as a central difference across the edge and a (1, 2, 1)
  smoothing along it. The border is padded by replicating the edge pixels,
  not with zeros, so the frame of the image is not an edge; differencing
  first makes a constant image give exactly zero.

  Example:
    >>> step = jnp.zeros((1, 4, 4, 1)).at[:, :, 2:].set(1.0)  # a vertical edge
    >>> edges = sobel(step)
    >>> edges[0, 1, :, 0].tolist(), float(jnp.abs(edges[..., 1]).max())
    ([0.0, 4.0, 4.0, 0.0], 0.0)
  """
  if images.shape[-1] != 1:
    raise ValueError(f"sobel expects 1-channel images, got shape {images.shape}; "
                     "apply grayscale first")
  p = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  d_width = p[:, :, 2:] - p[:, :, :-2]  # (B, H + 2, W, 1)
  d_height = p[:, 2:] - p[:, :-2]  # (B, H, W + 2, 1)
  vertical = d_width[:, :-2] + 2.0 * d_width[:, 1:-1] + d_width[:, 2:]
  horizontal = d_height[:, :, :-2] + 2.0 * d_height[:, :, 1:-1] + d_height[:, :, 2:]
  return jnp.concatenate([vertical, horizontal], axis=-1)


def _random_crop_resized(key: chex.PRNGKey, image: chex.Array, crop: float) -> chex.Array:
  """A random crop of side ``crop`` times the image's, resized back (bilinear)."""
  h, w, c = image.shape
  size = (max(1, round(crop * h)), max(1, round(crop * w)), c)
  return jax.image.resize(dm_pix.random_crop(key, image, size), image.shape, "linear")


def _random_affine(key: chex.PRNGKey, image: chex.Array,
                   strength: AugmentStrength) -> chex.Array:
  """Shift, rotation and scale about the centre as ONE resampling (bilinear).

  ``dm_pix.affine_transform`` pulls: output pixel ``o`` reads the input at
  ``M o + offset``. For the forward map ``o = s R(angle) (i - c) + c + t``,
  ``M = R(-angle) / s`` on the two spatial axes and ``offset = c - M (c + t)``;
  the channel axis maps to itself. Pixels pulled from outside repeat the edge.
  """
  h, w, _ = image.shape
  k_angle, k_scale, k_shift = jax.random.split(key, 3)
  limit = math.radians(strength.rotation)
  angle = jax.random.uniform(k_angle, (), minval=-limit, maxval=limit)
  s = jax.random.uniform(k_scale, (), minval=1.0 - strength.scale, maxval=1.0 + strength.scale)
  shift = jax.random.uniform(k_shift, (2,), minval=-strength.shift, maxval=strength.shift)
  cos, sin = jnp.cos(angle) / s, jnp.sin(angle) / s
  matrix = jnp.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
  centre = jnp.array([(h - 1) / 2, (w - 1) / 2, 0.0])
  target = centre + jnp.concatenate([shift * jnp.array([h, w]), jnp.zeros(1)])
  return dm_pix.affine_transform(image, matrix, offset=centre - matrix @ target)


def augment_image(key: chex.PRNGKey, image: chex.Array,
                  strength: AugmentStrength = AugmentStrength()) -> chex.Array:
  """T(x) for one (H, W, C) image in [0, 1]; the same key gives the same image.

  In order: random crop resized back, one affine resampling (shift, rotation,
  scale), then brightness, contrast, saturation and hue, each clipped back
  to [0, 1] as torchvision's ColorJitter does. Saturation and hue are
  skipped for 1-channel images, which have neither. A zero strength skips
  its step (at trace time).

  Example:
    >>> image = jnp.linspace(0.0, 1.0, 8 * 8 * 3).reshape(8, 8, 3)
    >>> out = jax.jit(augment_image)(jax.random.key(0), image)
    >>> out.shape, bool(jnp.all((out >= 0) & (out <= 1)))
    ((8, 8, 3), True)
  """
  keys = jax.random.split(key, 6)
  if strength.crop < 1.0:
    image = _random_crop_resized(keys[0], image, strength.crop)
  if strength.shift or strength.rotation or strength.scale:
    image = _random_affine(keys[1], image, strength)
  if strength.brightness:
    image = jnp.clip(dm_pix.random_brightness(keys[2], image, strength.brightness), 0.0, 1.0)
  if strength.contrast:
    image = jnp.clip(dm_pix.random_contrast(keys[3], image, 1.0 - strength.contrast,
                                            1.0 + strength.contrast), 0.0, 1.0)
  if image.shape[-1] == 3:
    if strength.saturation:
      image = jnp.clip(dm_pix.random_saturation(keys[4], image, 1.0 - strength.saturation,
                                                1.0 + strength.saturation), 0.0, 1.0)
    if strength.hue:
      image = jnp.clip(dm_pix.random_hue(keys[5], image, strength.hue), 0.0, 1.0)
  return image


def augment(key: chex.PRNGKey, images: chex.Array,
            strength: AugmentStrength = AugmentStrength()) -> chex.Array:
  """T applied to a (B, H, W, C) batch, an independent draw per image.

  Image ``b`` uses ``jax.random.split(key, B)[b]``, so the result equals
  ``jax.vmap(augment_image)`` over those keys.

  Example:
    >>> images = jnp.full((4, 8, 8, 1), 0.5)
    >>> out = jax.jit(augment, static_argnames="strength")(jax.random.key(0), images)
    >>> out.shape, out.dtype
    ((4, 8, 8, 1), dtype('float32'))
  """
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(functools.partial(augment_image, strength=strength))(keys, images)
