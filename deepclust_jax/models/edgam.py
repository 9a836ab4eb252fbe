"""The auto-encoders of EDGaM, "Streamlining EM into Auto-Encoder Networks", appendix Table 1.

Both expose ``encode(x, train)`` -> ``z`` and ``decode(z_hat, train)`` ->
``x_rec``: the streamlined EM (:func:`deepclust_jax.losses.edgam.streamlined_em`)
sits between them and feeds the decoder the skip input ``z_hat`` of eq. (9).
``__call__(x, train)`` is the plain auto-encoder ``(z, decode(z))``, which
initialises every layer.

Fixed by Table 1: the layers, widths, kernel sizes, strides, paddings,
activations, the input Dropout(0.25) of the MLP, BatchNorm in the
convolutional networks, the MLP's sigmoid output. Fixed by appendix E.1:
Glorot-uniform kernels. Reconstructed: the biases' initialisation (the
package's Glorot-normal, as the other auto-encoders), BatchNorm's momentum and
epsilon (PyTorch's defaults, momentum 0.1 there, 0.9 in Flax), and the
transposed convolutions' output padding, see :class:`EDGaMConvAutoencoder`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from deepclust_jax.models.autoencoder import MLP, MatmulDtype
from deepclust_jax.models.cm import glorot, glorot_normal_bias
from deepclust_jax.models.conv import conv_general_dilated

# (features, stride) of the encoder's 3x3 convolutions, padding 1 (Table 1).
_ENCODER_CONVS = ((16, 1), (32, 2), (32, 1), (16, 2))
# (features, stride) of the decoder's 3x3 transposed convolutions, padding 1,
# before the last one (to the image's channels, stride 1, no padding).
_DECODER_DECONVS = ((32, 2), (32, 1), (16, 2))


class EDGaMAutoencoder(nn.Module):
  """MLP auto-encoder of Table 1 (MNIST, USPS): d-500-500-2000-10 and mirrored.

  Encoder: Dropout(0.25) on the input, Dense layers with ReLU between them and
  none after the last; decoder: mirrored, ReLU between, sigmoid on the output,
  so ``x_rec`` are probabilities (pair with ``reconstruction="mse"`` or
  ``"bce"``). Inputs are flat, (B, d). Dropout is active only with
  ``train=True``, which needs a ``"dropout"`` rng.

  Attributes:
    features: d, input width.
    latent: p, code width (10 in Table 1).
    hidden: encoder hidden widths; the decoder uses them reversed.
    dropout: rate of the input dropout.
    matmul_dtype: the dtype of the products' operands
      (:func:`~deepclust_jax.models.autoencoder.dot_general`).

  Example:
    >>> ae = EDGaMAutoencoder(features=16, hidden=(32, 32, 64))
    >>> params = ae.init(jax.random.key(0), jax.numpy.zeros((1, 16)))["params"]
    >>> z, x_rec = ae.apply({"params": params}, jax.numpy.ones((3, 16)))
    >>> z.shape, x_rec.shape, bool(((0 < x_rec) & (x_rec < 1)).all())
    ((3, 10), (3, 16), True)
    >>> ae.apply({"params": params}, z + 1.0, method=ae.decode).shape  # decode a skip input
    (3, 16)
  """

  features: int
  latent: int = 10
  hidden: Sequence[int] = (500, 500, 2000)
  dropout: float = 0.25
  matmul_dtype: MatmulDtype = "float32"

  def setup(self):
    self.input_dropout = nn.Dropout(self.dropout)
    # negative_slope=0: LeakyReLU(0) is Table 1's ReLU.
    self.encoder = MLP((*self.hidden, self.latent), 0.0, self.matmul_dtype)
    self.decoder = MLP((*reversed(self.hidden), self.features), 0.0, self.matmul_dtype)

  def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
    return self.encoder(self.input_dropout(x, deterministic=not train))

  def decode(self, z_hat: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout or BatchNorm here; the signature is the conv auto-encoder's
    return nn.sigmoid(self.decoder(z_hat))

  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    z = self.encode(x, train)
    return z, self.decode(z, train)


def _decoder_plan(size: int) -> tuple[int, tuple[int, int]]:
  """Side of the decoder's first feature map and the stride-2 layers' output paddings.

  Works back from an image side ``size``: the last transposed convolution
  (kernel 3, stride 1, no padding) adds 2; a stride-2 one (kernel 3, padding
  1) maps ``i`` to ``2 i - 1 + output_padding``. The output padding is chosen,
  as PyTorch's ``output_size=`` argument would, so that the decoder returns
  the input's size.
  """
  before_last = size - 2
  middle = (before_last + 1) // 2
  first = (middle + 1) // 2
  return first, ((middle + 1) % 2, (before_last + 1) % 2)


def _conv_out(size: int, stride: int) -> int:
  """Side after a 3x3 convolution with padding 1."""
  return (size - 1) // stride + 1


class EDGaMConvAutoencoder(nn.Module):
  """Convolutional auto-encoder of Table 1 (YTF, Fashion-MNIST); images (B, H, W, C).

  Encoder: Conv(16, s1)-BN-ReLU, Conv(32, s2)-BN-ReLU, Conv(32, s1)-BN-ReLU,
  Conv(16, s2)-BN-ReLU (3x3, padding 1), flatten to the "Inner-dim" =
  16 x ceil(ceil(H/2)/2) x ceil(ceil(W/2)/2) (784 for 28x28, 3136 for 55x55),
  Dense(256)-ReLU, Dense(latent). Decoder: Dense(256)-ReLU, Dense(Inner-dim)
  (no activation in Table 1), reshape to 16 channels, ConvT(32, s2)-BN-ReLU,
  ConvT(32, s1)-BN-ReLU, ConvT(16, s2)-BN-ReLU (3x3, padding 1),
  ConvT(C, 3x3, s1, no padding), with no output activation (Table 1 lists
  none): pair with ``reconstruction="mse"``.

  Table 1 gives no output padding; without one a 28x28 image comes back 27x27
  (55x55 comes back whole). RECONSTRUCTION: each stride-2 transposed
  convolution gets the output padding that returns the input's size (none for
  55, 0 then 1 for 28); a side for which none exists raises ``ValueError``.
  BatchNorm uses the batch's statistics and updates the running ones in the
  ``batch_stats`` collection when ``train=True`` (apply with
  ``mutable=["batch_stats"]``), and the running ones otherwise.

  Attributes:
    image_shape: (H, W, C) of the input images.
    latent: p, code width (10 in Table 1).

  Example:
    >>> ae = EDGaMConvAutoencoder(image_shape=(28, 28, 1))  # Fashion-MNIST
    >>> x = jax.numpy.zeros((2, 28, 28, 1))
    >>> variables = jax.eval_shape(ae.init, jax.random.key(0), x)  # shapes only
    >>> variables["params"]["decoder_inner"]["kernel"].shape  # Inner-dim = 16 x 7 x 7
    (256, 784)
    >>> z, x_rec = jax.eval_shape(ae.apply, variables, x)
    >>> z.shape, x_rec.shape
    ((2, 10), (2, 28, 28, 1))
  """

  image_shape: tuple[int, int, int]
  latent: int = 10

  def setup(self):
    height, width, channels = self.image_shape
    plans = [_decoder_plan(side) for side in (height, width)]
    sides = [height, width]
    for _, stride in _ENCODER_CONVS:
      sides = [_conv_out(side, stride) for side in sides]
    if [first for first, _ in plans] != sides:
      raise ValueError(f"image_shape={self.image_shape}: Table 1's decoder cannot return "
                       f"this size (the encoder ends at {sides[0]}x{sides[1]})")
    self.inner_shape = (*sides, _ENCODER_CONVS[-1][0])

    def norm():
      # PyTorch's BatchNorm2d defaults: momentum 0.1 on the new batch, eps 1e-5.
      return nn.BatchNorm(momentum=0.9, epsilon=1e-5)

    def dense(width):
      return nn.Dense(width, kernel_init=glorot, bias_init=glorot_normal_bias)

    def conv(features, stride=1, padding=((1, 1), (1, 1)), input_stride=1):
      # Transposed layers too (input_stride > 1, see below): one CPU-fast routine.
      return nn.Conv(features, (3, 3), strides=stride, padding=padding,
                     input_dilation=input_stride, kernel_init=glorot,
                     bias_init=glorot_normal_bias, conv_general_dilated=conv_general_dilated)

    self.convs = [conv(features, stride) for features, stride in _ENCODER_CONVS]
    self.encoder_norms = [norm() for _ in _ENCODER_CONVS]
    self.encoder_hidden, self.encoder_out = dense(256), dense(self.latent)
    self.decoder_hidden = dense(256)
    self.decoder_inner = dense(self.inner_shape[0] * self.inner_shape[1] * self.inner_shape[2])

    # A PyTorch ConvTranspose2d(kernel k, stride s, padding p, output_padding q)
    # is a convolution of the input dilated by s with padding (k - 1 - p, k - 1 - p + q).
    paddings = iter(zip(*(padding for _, padding in plans)))  # per stride-2 layer: (q_H, q_W)
    deconvs = []
    for features, stride in _DECODER_DECONVS:
      extra = next(paddings) if stride == 2 else (0, 0)
      deconvs.append(conv(features, padding=[(1, 1 + q) for q in extra], input_stride=stride))
    self.deconvs = deconvs
    self.decoder_norms = [norm() for _ in _DECODER_DECONVS]
    self.decoder_out = conv(channels, padding=((2, 2), (2, 2)))

  def encode(self, x: jax.Array, train: bool = False) -> jax.Array:
    for conv, batch_norm in zip(self.convs, self.encoder_norms):
      x = nn.relu(batch_norm(conv(x), use_running_average=not train))
    x = x.reshape(x.shape[0], -1)
    return self.encoder_out(nn.relu(self.encoder_hidden(x)))

  def decode(self, z_hat: jax.Array, train: bool = False) -> jax.Array:
    x = self.decoder_inner(nn.relu(self.decoder_hidden(z_hat)))
    x = x.reshape(z_hat.shape[0], *self.inner_shape)
    for deconv, batch_norm in zip(self.deconvs, self.decoder_norms):
      x = nn.relu(batch_norm(deconv(x), use_running_average=not train))
    return self.decoder_out(x)

  def __call__(self, x: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
    z = self.encode(x, train)
    return z, self.decode(z, train)
