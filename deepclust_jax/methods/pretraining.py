"""One autoencoder pretraining and one mixture start for every autoencoder method.

AE-CM (init "p"), VaDE, DGG, EDGaM and the ``ae_kmeans`` baseline all begin
the same way: pretrain an autoencoder on its reconstruction, then fit a
mixture on its codes. This module is that beginning, once. A method describes
its autoencoder with an :class:`AutoencoderSpec` and its config inherits
:class:`PretrainConfig`; :func:`phases` gives the pretraining phases,
:func:`init` the recipe's initialisation and :func:`start_phase` the mixture
start, which the method wires into its own parameters. ``docs/methods.md``
("Pretraining and mixture starts") says why each recipe is what it is.

Recipes (config key ``recipe``):

* ``adam``: Adam at ``pretrain_lr`` on the method's own reconstruction loss,
  end to end, from the method's own initialisation; ``pretrain_loss="mse"``
  takes the MSE of the output instead (a logits decoder's sigmoid), as
  VaDE-pytorch pretrains its Bernoulli decoder.
* ``sgd``: the same with SGD and momentum ``pretrain_momentum`` (AE-CM's
  authors' protocol: their per-sample MSE summed over the batch).
* ``dec``: DEC's public recipe (Xie et al. 2016; the DEC-keras code): the
  dense kernels redrawn from VarianceScaling(1/3, fan_in, uniform), biases 0,
  then SGD (lr 1, momentum 0.9 in its preset) on the MSE averaged over
  features and batch (Keras' reduction: with lr 1 the reduction sets the step).
* ``sdae``: the original DEC/VaDE pretraining: the same initialisation, then
  greedy layer-wise denoising autoencoders (encoder layer i and its mirrored
  decoder layer on the frozen output of the layers below, dropout
  ``corruption`` on each layer's input, ``layer_epochs`` each), then
  ``pretrain_epochs`` of end-to-end fine-tuning on the MSE.

Recipes dec and sdae train DEC's network, whose output is linear. A decoder
that emits Bernoulli logits (``AutoencoderSpec.logits``) has them trained as
that linear reconstruction (the MSE of their sigmoid under SGD at rate 1
leaves the autoencoder untrained), then ``pretrain_refit``: the decoder
alone, ``refit_epochs`` of Adam at 1e-3 on the method's own loss, so the
logits become the likelihood's while the codes, and so the mixture start, stay.

Every pretraining phase is named ``pretrain*`` and trains only the
``AutoencoderSpec.group`` parameters; the engine saves that group when those
phases end, so a later run can start from it (``--pretrained RUN_DIR``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from deepclust_jax.baselines import gmm, kmeans
from deepclust_jax.engine import FitPhase, Phase, SGDPhase, Update, predict_in_chunks
from deepclust_jax.engine.method import Data, Params, State
from deepclust_jax.methods.common import optimizer, require
from deepclust_jax.models.autoencoder import MatmulDtype

Recipe = Literal["adam", "sgd", "dec", "sdae"]
PretrainLoss = Literal["own", "mse"]
PretrainInit = Literal["recipe", "method", "fan_in", "torch"]
Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
  """The config keys every autoencoder method shares (methods override defaults).

  Attributes:
    recipe: "adam", "sgd", "dec" or "sdae" (see the module docstring).
    pretrain_epochs: end-to-end epochs (sdae: the fine-tuning).
    pretrain_batch_size: samples per pretraining step.
    pretrain_lr: the pretraining rate (every phase of the recipe).
    pretrain_momentum: SGD's momentum (recipes sgd, dec, sdae).
    pretrain_decay_epochs: divide the rate by 10 every this many epochs of a
      phase; 0 keeps it constant.
    pretrain_loss: recipes adam and sgd only: "own", the method's
      reconstruction loss, or "mse", the MSE of the output (of its sigmoid
      for a Bernoulli logits decoder).
    pretrain_init: the autoencoder's initialisation: "method" (the method's
      own Flax draws), "fan_in" (kernels from U(+-1/sqrt(fan_in)), i.e.
      Keras' VarianceScaling(1/3, fan_in, uniform), biases 0: DEC's code),
      "torch" (kernels and biases from U(+-1/sqrt(fan_in)), PyTorch's
      ``nn.Linear`` default), or "recipe": "fan_in" for dec and sdae,
      "method" for adam and sgd.
    layer_epochs: sdae only, epochs of each layer-wise denoising autoencoder.
    corruption: sdae only, the dropout rate on each layer's input.
    refit_epochs: dec and sdae with a logits decoder only, epochs of the
      ``pretrain_refit`` phase (see the module docstring).
    mixture: the start on the codes: "kmeans" or a diagonal "gmm".
    mixture_space: fit the start on the pretrained "codes", or on the
      "inputs", each cluster's mean code and code variance then being its
      Gaussian.
    kmeans_restarts: k-means++ restarts (also the GMM's k-means start).
    matmul_dtype: the dtype of the dense layers' products' operands, in every
      phase: "float32", "bfloat16" for mixed precision (float32
      parameters, gradients and accumulation; bfloat16 operands in the
      forward and input-gradient products, about twice their speed on CPUs
      with AVX512-BF16 and on accelerators), or "tf32", operands rounded to
      TensorFloat-32 (a GPU's default float32 products, emulated on a CPU);
      see :func:`~deepclust_jax.models.autoencoder.dot_general`.
  """

  recipe: Recipe = "adam"
  pretrain_epochs: int = 50
  pretrain_batch_size: int = 256
  pretrain_lr: float = 1e-3
  pretrain_momentum: float = 0.9
  pretrain_decay_epochs: int = 0
  pretrain_loss: PretrainLoss = "own"
  pretrain_init: PretrainInit = "recipe"
  layer_epochs: int = 50
  corruption: float = 0.2
  refit_epochs: int = 10
  mixture: Literal["kmeans", "gmm"] = "kmeans"
  mixture_space: Literal["codes", "inputs"] = "codes"
  kmeans_restarts: int = 10
  matmul_dtype: MatmulDtype = "float32"

  def validate_pretraining(self) -> None:
    """Range checks of the shared keys (each method's ``validate`` calls it)."""
    require(min(self.pretrain_epochs, self.layer_epochs, self.pretrain_decay_epochs,
                self.refit_epochs) >= 0,
            "pretrain_epochs, layer_epochs, pretrain_decay_epochs and refit_epochs must be >= 0")
    require(self.pretrain_batch_size > 0,
            f"pretrain_batch_size={self.pretrain_batch_size} must be positive")
    require(self.pretrain_lr > 0, f"pretrain_lr={self.pretrain_lr} must be positive")
    require(0 <= self.pretrain_momentum < 1,
            f"pretrain_momentum={self.pretrain_momentum} must be in [0, 1)")
    require(0 <= self.corruption < 1, f"corruption={self.corruption} must be in [0, 1)")
    require(self.kmeans_restarts >= 1, "kmeans_restarts must be >= 1")
    require(self.pretrain_loss == "own" or self.recipe in ("adam", "sgd"),
            f"pretrain_loss={self.pretrain_loss} is for recipes adam and sgd; recipe "
            f"{self.recipe} trains on the MSE of the raw output already")


@dataclasses.dataclass(frozen=True)
class AutoencoderSpec:
  """How the pretraining sees a method's autoencoder.

  Attributes:
    group: the top-level params key holding the autoencoder.
    apply: ``apply(params, state, x, key) -> (out, state)``, the decoder's
      raw output for inputs ``x`` (training mode with a key, evaluation mode
      with ``None``), and the state the forward pass leaves (BatchNorm).
    loss: ``loss(x, out) -> scalar``, the method's own reconstruction loss
      (recipes adam and sgd, and the refit).
    logits: ``out`` is Bernoulli logits; recipes dec and sdae then train it
      as a linear output and end with the decoder's refit (module docstring).
    output: the activation after the decoder's last dense layer, as sdae's
      first denoising autoencoder applies it (the identity, or the sigmoid
      of a network whose output is one).
    encoder_layers, decoder_layers: the dense layers' paths within the group,
      input to code and code to output, for sdae; empty where the
      autoencoder is no plain dense stack (sdae is then refused).
    negative_slope: the hidden layers' LeakyReLU slope (0 is ReLU).
  """

  group: str
  apply: Callable[[Params, State, jax.Array, jax.Array | None], tuple[jax.Array, State]]
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  logits: bool = False
  output: Callable[[jax.Array], jax.Array] = lambda out: out
  encoder_layers: tuple[Path, ...] = ()
  decoder_layers: tuple[Path, ...] = ()
  negative_slope: float = 0.0


def dense_paths(prefix: str, count: int) -> tuple[Path, ...]:
  """``((prefix, "dense_0"), ...)``: the layers of a :class:`~deepclust_jax.models.MLP`."""
  return tuple((prefix, f"dense_{i}") for i in range(count))


def mse(x: jax.Array, x_hat: jax.Array) -> jax.Array:
  """Mean over features, then over the batch, of ``(x - x_hat)^2`` (Keras' MSE)."""
  return jnp.mean(jnp.square(x - x_hat))


def variance_scaling(key: jax.Array, tree: Params, *, biases: bool = False) -> Params:
  """``tree`` with every kernel redrawn from VarianceScaling(1/3, fan_in, uniform), biases 0.

  Keras' initialisation in DEC's code: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  ``biases=True`` draws the biases from the same interval (of their layer's
  kernel's fan-in), as PyTorch's ``nn.Linear`` does. Other leaves
  (BatchNorm's scales) are kept.

  Example:
    >>> tree = {"dense_0": {"kernel": jnp.ones((100, 3)), "bias": jnp.ones(3)}}
    >>> new = variance_scaling(jax.random.key(0), tree)
    >>> float(jnp.abs(new["dense_0"]["kernel"]).max()) <= 0.1, new["dense_0"]["bias"].tolist()
    (True, [0.0, 0.0, 0.0])
    >>> bias = variance_scaling(jax.random.key(0), tree, biases=True)["dense_0"]["bias"]
    >>> bool(jnp.all(jnp.abs(bias) <= 0.1) and jnp.all(bias != 0))
    True
  """
  draw = jax.nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  keys = iter(jax.random.split(key, len(leaves)))
  # A bias's interval is its layer's kernel's: 1/sqrt(fan_in), fan_in the
  # product of the kernel's input dimensions.
  fan_in = {path[:-1]: math.prod(leaf.shape[:-1]) for path, leaf in leaves
            if getattr(path[-1], "key", None) == "kernel"}

  def redraw(path, leaf):
    name = getattr(path[-1], "key", None)
    if name == "kernel":
      return draw(next(keys), leaf.shape, leaf.dtype)
    if name != "bias":
      return leaf
    if biases and path[:-1] in fan_in:
      limit = 1 / math.sqrt(fan_in[path[:-1]])
      return jax.random.uniform(next(keys), leaf.shape, leaf.dtype, -limit, limit)
    return jnp.zeros_like(leaf)

  return jax.tree_util.tree_map_with_path(redraw, tree)


def init(spec: AutoencoderSpec, config: PretrainConfig,
         method_init: Callable[[jax.Array, Data], tuple[Params, State]]
         ) -> Callable[[jax.Array, Data], tuple[Params, State]]:
  """The method's ``init``, with the autoencoder redrawn as ``pretrain_init`` says."""
  scheme = config.pretrain_init
  if scheme == "recipe":
    scheme = "fan_in" if config.recipe in ("dec", "sdae") else "method"
  if scheme == "method":
    return method_init

  def wrapped(key, data):
    params, state = method_init(key, data)
    # A key of its own: the method's other parameters keep their draws.
    redrawn = variance_scaling(jax.random.fold_in(key, 0x5DAE), params[spec.group],
                               biases=scheme == "torch")
    return {**params, spec.group: redrawn}, state

  return wrapped


def _get(tree: Params, path: Path) -> Params:
  for name in path:
    tree = tree[name]
  return tree


def _dense(layer: Params, h: jax.Array) -> jax.Array:
  return h @ layer["kernel"] + layer["bias"]


def _tx(spec: AutoencoderSpec, config: PretrainConfig
        ) -> Callable[[int], optax.GradientTransformation]:
  def tx(steps_per_epoch):
    rate = (optax.exponential_decay(config.pretrain_lr,
                                    config.pretrain_decay_epochs * steps_per_epoch, 0.1,
                                    staircase=True)
            if config.pretrain_decay_epochs else config.pretrain_lr)
    if config.recipe == "adam":
      return optimizer("adam", rate, trainable={spec.group})
    return optimizer("sgd", rate, trainable={spec.group}, momentum=config.pretrain_momentum)

  return tx


def phases(spec: AutoencoderSpec, config: PretrainConfig) -> tuple[Phase, ...]:
  """The recipe's pretraining phases, each named ``pretrain*``.

  Example:
    >>> spec = AutoencoderSpec("ae", apply=None, loss=None,
    ...                        encoder_layers=dense_paths("encoder", 2),
    ...                        decoder_layers=dense_paths("decoder", 2))
    >>> [p.name for p in phases(spec, PretrainConfig(recipe="sdae"))]
    ['pretrain_layer_1', 'pretrain_layer_2', 'pretrain']
    >>> [p.name for p in phases(spec, PretrainConfig(pretrain_epochs=0))]
    []
    >>> logits = dataclasses.replace(spec, logits=True)
    >>> [p.name for p in phases(logits, PretrainConfig(recipe="dec"))]
    ['pretrain', 'pretrain_refit']
  """
  own_loss = config.recipe in ("adam", "sgd")
  tx = _tx(spec, config)

  def loss(x, out):
    if not own_loss:  # dec, sdae: a logits decoder trained as a linear output
      return mse(x, out)
    if config.pretrain_loss == "mse":
      return mse(x, jax.nn.sigmoid(out) if spec.logits else out)
    return spec.loss(x, out)

  def end_to_end(params, state, batch, key):
    x = batch["x"]
    out, state = spec.apply(params, state, x, key)
    value = loss(x, out)
    return value, ({"reconstruction": value}, state)

  out: tuple[Phase, ...] = ()
  if config.recipe == "sdae":
    require(bool(spec.encoder_layers), "recipe=sdae needs a dense autoencoder (this one is "
            "convolutional or starts with quadratic features); use recipe=dec or adam")
    depth = len(spec.encoder_layers)
    out = tuple(SGDPhase(f"pretrain_layer_{i + 1}", (Update(_layer_loss(spec, config, i), tx),),
                         config.layer_epochs, config.pretrain_batch_size)
                for i in range(depth) if config.layer_epochs)
  if config.pretrain_epochs:
    out += (SGDPhase("pretrain", (Update(end_to_end, tx),), config.pretrain_epochs,
                     config.pretrain_batch_size),)
  if spec.logits and not own_loss and config.refit_epochs:
    require(bool(spec.decoder_layers), "a logits decoder's refit needs its layers' paths")
    out += (SGDPhase("pretrain_refit", (Update(_refit_loss(spec), _refit_tx(spec)),),
                     config.refit_epochs, config.pretrain_batch_size),)
  return out


def _refit_loss(spec: AutoencoderSpec):
  """The method's own loss with every parameter outside the decoder frozen."""

  def in_decoder(path) -> bool:
    names = tuple(getattr(k, "key", None) for k in path)
    return any(names[:len(layer)] == layer for layer in spec.decoder_layers)

  def loss(params, state, batch, key):
    ae = jax.tree_util.tree_map_with_path(
        lambda path, a: a if in_decoder(path) else jax.lax.stop_gradient(a), params[spec.group])
    x = batch["x"]
    out, state = spec.apply({**params, spec.group: ae}, state, x, key)
    value = spec.loss(x, out)
    return value, ({"reconstruction": value}, state)

  return loss


def _refit_tx(spec: AutoencoderSpec) -> Callable[[int], optax.GradientTransformation]:
  return lambda steps_per_epoch: optimizer("adam", 1e-3, trainable={spec.group})


def _layer_loss(spec: AutoencoderSpec, config: PretrainConfig, i: int):
  """The denoising autoencoder of encoder layer ``i`` and its mirrored decoder layer."""
  depth = len(spec.encoder_layers)

  def act(h):
    return jax.nn.leaky_relu(h, spec.negative_slope)

  def loss(params, state, batch, key):
    ae = params[spec.group]
    h = batch["x"]
    for path in spec.encoder_layers[:i]:  # the layers below, frozen and clean
      h = act(_dense(_get(ae, path), h))
    h = jax.lax.stop_gradient(h)
    keep = 1.0 - config.corruption
    in_key, code_key = jax.random.split(key)

    def corrupt(k, a):
      return jnp.where(jax.random.bernoulli(k, keep, a.shape), a / keep, 0.0)

    code = _dense(_get(ae, spec.encoder_layers[i]), corrupt(in_key, h))
    if i + 1 < depth:  # the last encoder layer is the linear code
      code = act(code)
    rec = _dense(_get(ae, spec.decoder_layers[depth - 1 - i]), corrupt(code_key, code))
    rec = spec.output(rec) if i == 0 else act(rec)  # the first pair rebuilds the input
    value = mse(h, rec)
    return value, ({"reconstruction": value}, state)

  return loss


class Start(NamedTuple):
  """A mixture fitted on the codes: what each method wires into its parameters.

  Attributes:
    labels: (N,) the fit's partition.
    mu: (K, p) means of the codes.
    var: (K, p) per-dimension variances of the codes (0 for an empty cluster).
    weights: (K,) mixing weights (the partition's frequencies for k-means).
    terms: logged by the phase (k-means' inertia or the GMM's log-likelihood).
  """

  labels: jax.Array
  mu: jax.Array
  var: jax.Array
  weights: jax.Array
  terms: dict[str, jax.Array]


def partition_moments(z: jax.Array, labels: jax.Array, num_clusters: int
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Per-cluster frequency, mean and per-dimension variance of ``z`` under ``labels``.

  ``\sum_{n: l_n = k} (z_{nd} - \mu_{kd})^2 / N_k``; an empty cluster gets
  weight, mean and variance 0.

  Example:
    >>> z = jnp.array([[0.0], [2.0], [5.0]])
    >>> w, mu, var = partition_moments(z, jnp.array([0, 0, 1]), 2)
    >>> mu.tolist(), var.tolist()
    ([[1.0], [5.0]], [[1.0], [0.0]])
  """
  onehot = jax.nn.one_hot(labels, num_clusters, dtype=z.dtype)
  counts = onehot.sum(0)
  mu = (onehot.T @ z) / jnp.maximum(counts, 1.0)[:, None]
  var = (onehot.T @ jnp.square(z - mu[labels])) / jnp.maximum(counts, 1.0)[:, None]
  return counts / z.shape[0], mu, var


def fit_start(key: jax.Array, z: jax.Array, x: jax.Array, config: PretrainConfig,
              num_clusters: int) -> Start:
  """k-means or a diagonal GMM on the codes ``z`` (or on the inputs ``x``).

  On the codes, k-means' centroids and a GMM's means, variances and weights
  are the start; on the inputs, the partition's moments of the codes.
  """
  space = z if config.mixture_space == "codes" else x
  if config.mixture == "gmm":
    fit = gmm(key, space, num_clusters, covariance="diag")
    terms = {"log_likelihood": fit.log_likelihood}
  else:
    fit = kmeans(key, space, num_clusters, n_init=config.kmeans_restarts)
    terms = {"inertia": fit.inertia}
  weights, mu, var = partition_moments(z, fit.labels, num_clusters)
  if config.mixture_space == "codes":
    if config.mixture == "gmm":
      weights, mu, var = fit.weights, fit.mu, fit.covariances
    else:
      mu = fit.mu
  return Start(fit.labels.astype(jnp.int32), mu, var, weights, terms)


def kmeans_on_codes(encode: Callable[[Params, State, jax.Array], jax.Array],
                    num_clusters: int) -> Callable[[Params, State, jax.Array],
                                                   dict[str, jax.Array]]:
  """The ``Method.label_signals`` of k-means on the codes, named ``kmeans``.

  k-means with 3 restarts and a fixed key on ``encode``'s codes of all the
  data: does training keep the codes clusterable? Scored at every scoring
  epoch as ``kmeans_acc``, ``kmeans_nmi`` and ``kmeans_ari``.
  """

  def signals(params, state, x):
    z = predict_in_chunks(encode, params, state, x)
    return {"kmeans": kmeans(jax.random.key(0), z, num_clusters, n_init=3).labels
            .astype(jnp.int32)}

  return signals


def start_phase(encode: Callable[[Params, State, jax.Array], jax.Array],
                config: PretrainConfig, num_clusters: int,
                wire: Callable[[Params, State, Start], tuple[Params, State]],
                name: str = "mixture") -> FitPhase:
  """The mixture start as a phase: codes, :func:`fit_start`, the method's ``wire``.

  ``wire(params, state, start) -> (params, state)`` puts the start where the
  method keeps it; the result is cast back to the dtypes ``init`` gave (float64
  codes under x64 must not promote float32 parameters).
  """

  def update(params, state, data, key):
    x = data["x"]
    z = predict_in_chunks(encode, params, state, x)
    start = fit_start(key, z, x, config, num_clusters)
    new_params, new_state = wire(params, state, start)
    cast = lambda new, old: jax.tree.map(lambda a, b: a.astype(b.dtype), new, old)  # noqa: E731
    return cast(new_params, params), cast(new_state, state), start.terms

  return FitPhase(name, update)

