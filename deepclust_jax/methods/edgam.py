"""EDGaM: the streamlined EM of a Gaussian mixture inside an auto-encoder.

"Streamlining EM into Auto-Encoder Networks" (EDGaM). Only the paper's
appendix is available (seeds 000 and 002); the equations are the
RECONSTRUCTION written down in ``docs/methods.md#edgam``, section "EDGaM",
implemented by :mod:`deepclust_jax.losses.edgam`, whose docstrings say which
part of each the appendix fixes. The auto-encoders are Table 1's
(:mod:`deepclust_jax.models.edgam`).

Fixed by the appendix: the networks (Table 1: the MLP with input Dropout(0.25)
for MNIST and USPS, the convolutional one with BatchNorm for YTF and
Fashion-MNIST), the forward order of the streamlined EM, learnable beta1 and
beta2 initialised to 0.9, the reweighting with Delta = 3, the skip-connection
reconstruction, the eta of Table 2 (the presets below), Glorot-uniform weights
and centroids (E.1), Adam (D), batches of 128 (F, its timing protocol).

Reconstructed or ours, not the appendix's: every formula (``docs/methods.md#edgam``),
the named switches that select the alternatives, and the schedule, of which
the appendix says nothing beyond "centroids and network weights are learned
jointly by SGD" and "we initialize the centroids as usual":

1. ``pretrain*``: the plain auto-encoder (decoder on ``z``) on the
   reconstruction loss, by the shared :mod:`~deepclust_jax.methods.pretraining`
   (recipe ``adam`` by default);
2. ``mixture`` (``init="kmeans"``): k-means on the codes sets the means; every
   cluster gets the pooled within-cluster variance (isotropic) and the mixing
   weights stay uniform, so the first E-step's argmax IS the k-means partition;
   with ``mixture="gmm"`` each cluster keeps the GMM's variances;
   ``init="glorot"`` keeps the Glorot-uniform means and unit variances of E.1;
   ours, ``mixture_space="inputs"``: k-means on the inputs, each cluster's
   mean code and code variance as its Gaussian (the digits preset);
3. ``joint``: Adam on the total loss, eq. (10), every parameter (the
   auto-encoder, the mixture, the betas) at once.

The defaults are EDGaM v2 (``docs/methods.md#edgam``, "EDGaM v2"), decided
after v1's joint phase destroyed its start: eq. (8) as a scale-free ratio of
within to total code scatter (``cluster_loss="ratio"``) with the
responsibilities held constant (``assign="constant"``) and the reweighting
per sample, the betas learned only through the correction
(``learn_beta="correction"``) and uniform mixing weights. :data:`V1` holds
the switches back to v1. Sharpening is the measured lever: the entropy term
(``sharpen="entropy"``, optionally ramped up by ``eta3_ramp``) or DEC's
target distribution (``sharpen="target"``).

Prediction is the argmax of an E-step, eq. (3), with the layer's parameters on
the evaluation-mode code (no dropout, BatchNorm's running statistics): row-wise,
independent of the batch. The conv model's BatchNorm statistics are the run's
state, updated by the losses (``mutable=["batch_stats"]``); dropout draws from
the update's key.

The appendix tunes eta3 with three signals, all logged: ``max_gamma``, the
mean of ``max_k gamma_nk`` over each batch (a loss term, every epoch); the
ACC of ``argmax gamma`` and the ACC of k-means on the codes (``kmeans_acc``,
a ``Method.label_signals``), both at every scoring epoch (``eval_every``; 1 for
every epoch). A run with ``epochs=0`` and ``init="kmeans"`` is exactly
"AE + k-means" (the first E-step is the k-means partition).

Measured (``experiments/results/edgam.md``): on digits and USPS the joint
phase LOWERS the ACC of its k-means start (USPS: 0.72 to 0.37 in 15 epochs),
and with ``init="glorot"`` and no pretraining (the appendix's recipe as far
as it goes) the codes shrink into one cluster; the learned mixing weights,
which no M-step anchors in the reconstruction, drift toward the largest
cluster.

Runs are ranked by ``objective``: per sample, the total loss of a single
E-step with the layer's parameters (reconstruction + eta2 x Mahalanobis
within-group term + eta3 x entropy; the correction and the reweighting need a
batch and are left out).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from deepclust_jax.configs.pretraining import ADAM, BEST, with_best
from deepclust_jax.engine import Method, SGDPhase, Update
from deepclust_jax.losses import edgam
from deepclust_jax.methods import pretraining, registry
from deepclust_jax.methods.common import optimizer, require
from deepclust_jax.models.edgam import EDGaMAutoencoder, EDGaMConvAutoencoder


@dataclasses.dataclass(frozen=True)
class EDGaMConfig(pretraining.PretrainConfig):
  """Hyper-parameters of EDGaM (defaults: Table 2's MNIST row, T = 3, and ours).

  The pretraining and mixture-start keys (``recipe``, ``pretrain_*``,
  ``mixture``, ``mixture_space``, ``kmeans_restarts``) are
  :class:`~deepclust_jax.methods.pretraining.PretrainConfig`'s;
  ``mixture_space="inputs"`` is ours: k-means on the inputs, each cluster's
  mean code and code variance (per dimension, or over the dimensions for
  ``covariance="isotropic"``) as its Gaussian, so the first E-step is a
  Gaussian classifier of the codes trained on the input-space partition.

  Attributes:
    num_clusters: K; 0 takes the dataset's number of classes.
    architecture: "mlp" (Table 1, MNIST/USPS) or "conv" (Table 1, YTF/Fashion,
      image samples only, ``reconstruction="mse"``: no output activation).
    latent: p, the code width (10 in Table 1).
    hidden: the MLP encoder's hidden widths (the decoder reverses them).
    dropout: the MLP's input dropout rate.
    covariance: "diag" or "isotropic" mixture covariances.
    mixing: "uniform" weights (v2) or "learned" mixing logits (v1): no M-step
      anchors the learned ones, and SGD drifts them toward the largest
      cluster, which then swallows the others.
    correction: "stopgrad" (targets held constant in eq. (7)) or "full".
    reweight: the cluster reweighting of eq. (8) (False: w_k = 1).
    cluster_loss: eq. (8) as "ratio" (v2: scale-free, within over total
      scatter) or "v1" (:func:`~deepclust_jax.losses.edgam.cluster_loss`).
    assign: the responsibilities in eq. (8): "constant" (v2, held constant),
      "hard" (argmax) or "soft" (v1, with their gradient).
    learn_beta: the betas learn through the "correction" only (v2), through
      the "forward" pass (v1), or are "fixed" at 0.9.
    sharpen: the eta3 term: DEC's "target" (the default, at eta3 = 1: the
      v2 ablation's pick) or "entropy" (the appendix's, Table 2's eta3 = 1e-4).
    eta3_ramp: eta3 grows linearly over the joint phase to ``eta3 *
      eta3_ramp`` (1: constant).
    reconstruction: "mse" or "bce" (the MLP's sigmoid output, data in [0, 1]).
    skip: feed the decoder ``z + sum_k gamma_nk mu_k`` (eq. (9)); False feeds ``z``.
    T: E-steps of the streamlined forward (static).
    eta1, eta2, eta3: weights of the correction, cluster and entropy losses.
    delta: Delta of the reweighting.
    init: "kmeans", the mixture start fitted on the pretrained codes, or
      "glorot" (appendix E.1).
    batch_size, epochs: the joint phase's mini-batches and epochs.
    learning_rate, mixture_learning_rate: the joint phase's Adam for the
      auto-encoder and for the mixture layer (means, variances, logits,
      betas). Ours: with 1e-3 for both (PyTorch's default, the appendix names
      none) the codes outrun the means and the k-means partition is lost
      within one epoch on digits.
  """

  num_clusters: int = 0
  architecture: Literal["mlp", "conv"] = "mlp"
  latent: int = 10
  hidden: tuple[int, ...] = (500, 500, 2000)
  dropout: float = 0.25
  covariance: Literal["diag", "isotropic"] = "diag"
  mixing: Literal["learned", "uniform"] = "uniform"
  correction: Literal["stopgrad", "full"] = "stopgrad"
  reweight: bool = True
  cluster_loss: Literal["ratio", "v1"] = "ratio"
  assign: Literal["constant", "hard", "soft"] = "constant"
  learn_beta: Literal["correction", "fixed", "forward"] = "correction"
  sharpen: Literal["entropy", "target"] = "target"
  eta3_ramp: float = 1.0
  reconstruction: Literal["mse", "bce"] = "mse"
  skip: bool = True
  T: int = 3
  eta1: float = 1e-2
  eta2: float = 1e-2
  eta3: float = 1.0
  delta: float = 3.0
  init: Literal["kmeans", "glorot"] = "kmeans"
  pretrain_batch_size: int = 128
  batch_size: int = 128
  epochs: int = 100
  learning_rate: float = 1e-4
  mixture_learning_rate: float = 1e-2

  def validate(self) -> None:
    self.validate_pretraining()
    require(self.latent > 0, f"latent={self.latent} must be positive")
    require(0 <= self.dropout < 1, f"dropout={self.dropout} must be in [0, 1)")
    require(self.T >= 1, f"T={self.T} must be >= 1")
    require(min(self.eta1, self.eta2, self.eta3, self.delta) >= 0,
            "eta1, eta2, eta3 and delta must be >= 0")
    require(self.eta3_ramp > 0, f"eta3_ramp={self.eta3_ramp} must be positive")
    require(self.epochs >= 0, "epoch counts must be >= 0")
    require(self.batch_size > 0, f"batch_size={self.batch_size} must be positive")
    require(min(self.learning_rate, self.mixture_learning_rate) > 0,
            "learning rates must be positive")
    require(self.architecture == "mlp" or self.reconstruction == "mse",
            "the conv auto-encoder has no output activation: use reconstruction=mse")

  def network(self) -> dict:
    """What a pretrained auto-encoder must share to be reused (``--pretrained``)."""
    return {"model": f"edgam-{self.architecture}", "hidden": list(self.hidden),
            "latent": self.latent}


def build(config: EDGaMConfig, shape: tuple[int, ...]) -> Method:
  """EDGaM as pure pieces for the engine; samples of ``shape`` arrive flattened.

  Example:
    >>> config = registry.resolve("edgam", overrides={"num_clusters": 3, "hidden": (8,)})
    >>> [phase.name for phase in build(config, (64,)).phases]
    ['pretrain', 'mixture', 'joint']
    >>> config = registry.resolve("edgam", overrides={"num_clusters": 3, "init": "glorot",
    ...                                              "pretrain_epochs": 0})
    >>> [phase.name for phase in build(config, (64,)).phases]
    ['joint']
  """
  if config.architecture == "conv":
    require(len(shape) == 3, f"architecture=conv needs image samples, got shape {shape}")
    require(config.matmul_dtype == "float32",
            f"matmul_dtype={config.matmul_dtype} is for the dense networks, not "
            "architecture=conv")
    model = EDGaMConvAutoencoder(tuple(shape), config.latent)
    to_input = lambda x: x.reshape(x.shape[0], *shape)  # noqa: E731
  else:
    model = EDGaMAutoencoder(math.prod(shape), config.latent, config.hidden, config.dropout,
                             config.matmul_dtype)
    to_input = lambda x: x  # noqa: E731
  num_clusters = config.num_clusters

  def apply(params, state, inputs, fn, key=None):
    """``fn(module, inputs)`` on the auto-encoder (images as ``to_input`` shapes
    them, or codes for the decoder): training mode with a key, else evaluation.

    Returns the output and the new state (BatchNorm's running statistics move
    only in training).
    """
    variables = {"params": params["autoencoder"],
                 **{k: v for k, v in state.items() if k != "ramp"}}
    if key is None:
      return model.apply(variables, inputs, False, method=fn), state
    out, updated = model.apply(variables, inputs, True, method=fn,
                               mutable=["batch_stats"], rngs={"dropout": key})
    return out, {**state, **updated}

  def mixture(params):
    layer = edgam.MixtureParams(**params["mixture"])
    # Uniform weights: the logits are held at 0 (they then get no gradient).
    return layer if config.mixing == "learned" else layer._replace(
        logits=jax.lax.stop_gradient(jnp.zeros_like(layer.logits)))

  def decoder_input(z, gamma, mu):
    return edgam.skip_input(z, gamma, mu) if config.skip else z

  def reconstruction(x, x_rec):
    return edgam.reconstruction_loss(x, x_rec.reshape(x.shape),
                                     reconstruction=config.reconstruction)

  def init(key, data):
    ae_key, mixture_key = jax.random.split(key)
    x = data["x"]
    variables = dict(model.init(ae_key, to_input(x[:1])))
    params = {"autoencoder": variables.pop("params"),
              "mixture": edgam.init_mixture(mixture_key, num_clusters, config.latent,
                                            config.covariance, x.dtype)._asdict()}
    if config.eta3_ramp != 1:  # the ramp counts the joint phase's steps
      n = x.shape[0]
      steps = config.epochs * (n // min(config.batch_size, n))
      variables["ramp"] = {"step": jnp.zeros((), jnp.int32),
                           "steps": jnp.asarray(max(steps, 1), jnp.int32)}
    return params, variables  # the state: {} or the conv model's {"batch_stats": ...}

  def encode(params, state, x):
    return apply(params, state, to_input(x), lambda m, x, train: m.encode(x, train))[0]

  def predict(params, state, x):
    layer = mixture(params)
    return edgam.e_step(encode(params, state, x), layer.mu, layer.var, layer.logits)

  def autoencode(params, state, x, key):
    x_rec, state = apply(params, state, to_input(x), lambda m, x, train: m(x, train)[1], key)
    return x_rec.reshape(x.shape), state

  layers = {} if config.architecture == "conv" else {
      "encoder_layers": pretraining.dense_paths("encoder", len(config.hidden) + 1),
      "decoder_layers": pretraining.dense_paths("decoder", len(config.hidden) + 1),
      "output": jax.nn.sigmoid}
  spec = pretraining.AutoencoderSpec("autoencoder", autoencode, reconstruction, **layers)

  def streamlined(module, x, train, layer):
    z = module.encode(x, train)
    em = edgam.streamlined_em(z, layer, config.T, correction=config.correction,
                              reweight=config.reweight, delta=config.delta,
                              cluster_loss=config.cluster_loss, assign=config.assign,
                              learn_beta=config.learn_beta, sharpen=config.sharpen)
    return em, module.decode(em.z_hat if config.skip else z, train)

  def joint_loss(params, state, batch, key):
    x = batch["x"]
    layer = mixture(params)
    (em, x_rec), state = apply(
        params, state, to_input(x), lambda m, x, train: streamlined(m, x, train, layer), key)
    eta3 = config.eta3
    if "ramp" in state:
      ramp = state["ramp"]
      progress = jnp.minimum(ramp["step"] / ramp["steps"], 1.0)
      eta3 = eta3 * (1.0 + (config.eta3_ramp - 1.0) * progress)
      state = {**state, "ramp": {**ramp, "step": ramp["step"] + 1}}
    loss, terms = edgam.edgam_loss(x, x_rec.reshape(x.shape), em, eta1=config.eta1,
                                   eta2=config.eta2, eta3=eta3,
                                   reconstruction=config.reconstruction)
    # The appendix's tuning signals: mean max responsibility (about 0.5 early,
    # toward 1 later) and the learnable betas.
    diagnostics = {"max_gamma": jnp.mean(jnp.max(em.gamma[-1], axis=-1)),
                   "beta1": jax.nn.sigmoid(layer.b1), "beta2": jax.nn.sigmoid(layer.b2)}
    return loss, ({**terms, **diagnostics}, state)

  def wire_mixture(params, state, start):
    old = params["mixture"]
    if config.mixture == "kmeans" and config.mixture_space == "codes":
      # One pooled isotropic variance and uniform weights: the first E-step's
      # argmax is then the nearest centroid, i.e. the k-means partition.
      pooled = jnp.sum(start.weights * jnp.mean(start.var, axis=-1))
      log_var = jnp.full_like(old["log_var"], jnp.log(pooled))
    else:
      var = start.var if config.covariance == "diag" else jnp.mean(start.var, axis=-1)
      # An empty cluster (or a collapsed dimension) keeps a finite variance.
      floor = jnp.maximum(jnp.mean(start.var) * 1e-3, jnp.finfo(var.dtype).tiny)
      log_var = jnp.log(jnp.maximum(var, floor))
    logits = (jnp.log(jnp.maximum(start.weights, jnp.finfo(start.weights.dtype).tiny))
              if config.mixture == "gmm" and config.mixing == "learned"
              else jnp.zeros_like(old["logits"]))
    return {**params, "mixture": {**old, "mu": start.mu, "log_var": log_var,
                                  "logits": logits}}, state

  def criteria(params, state, x, gamma):
    layer = mixture(params)
    z = encode(params, state, x)
    x_rec = apply(params, state, decoder_input(z, gamma, layer.mu),
                  lambda m, z_hat, train: m.decode(z_hat, train))[0]
    x_rec = x_rec.reshape(x.shape)
    per_entry = jax.vmap(lambda a, b: reconstruction(a[None], b[None]))(x, x_rec)
    if config.cluster_loss == "ratio":
      # Row-wise, the data's total code variance is the mixture's own.
      pi = jax.nn.softmax(layer.logits)
      var = jnp.broadcast_to(layer.var.T, layer.mu.shape[::-1]).T
      centre = pi @ layer.mu
      total = jnp.mean(pi @ (var + jnp.square(layer.mu - centre)))
      within = jnp.sum(gamma * edgam.mahalanobis(z, layer.mu, var / jnp.mean(var)),
                       axis=-1) / total
    else:
      within = jnp.sum(gamma * edgam.mahalanobis(z, layer.mu, layer.var), axis=-1)
    log_gamma = jnp.log(jnp.maximum(gamma, jnp.finfo(gamma.dtype).tiny))
    entropy = -jnp.sum(gamma * log_gamma, axis=-1)
    return {"objective": per_entry + config.eta2 * within + config.eta3 * entropy}

  def decoded_centroids(params, state):
    mu = mixture(params).mu
    # A sample at centroid k with gamma_k = 1 enters the decoder as mu_k + mu_k.
    z_hat = decoder_input(mu, jnp.eye(num_clusters, dtype=mu.dtype), mu)
    x_rec = apply(params, state, z_hat, lambda m, z_hat, train: m.decode(z_hat, train))[0]
    return x_rec.reshape(num_clusters, -1)

  # Adam per group: the codes move at the auto-encoder's rate, the means
  # must keep up with them at the mixture's (a step of 1e-3 is slow next to
  # codes of scale 1 to 10).
  joint_adam = optax.multi_transform(
      {"autoencoder": optimizer("adam", config.learning_rate),
       "mixture": optimizer("adam", config.mixture_learning_rate)},
      lambda params: {group: group for group in params})
  phases = pretraining.phases(spec, config)
  if config.init == "kmeans":
    phases += (pretraining.start_phase(encode, config, num_clusters, wire_mixture),)
  phases += (SGDPhase("joint", (Update(joint_loss, joint_adam),), config.epochs,
                      config.batch_size),)
  return Method("edgam", num_clusters, pretraining.init(spec, config, init), phases, predict,
                criteria, select_by="objective", encode=encode,
                decoded_centroids=decoded_centroids,
                label_signals=pretraining.kmeans_on_codes(encode, num_clusters),
                autoencoder=spec.group)


V1 = {"cluster_loss": "v1", "assign": "soft", "learn_beta": "forward", "mixing": "learned"}
"""The switches that give EDGaM v1, the reconstruction as first specified."""

# Table 2 (eta1, eta2, eta3; beta1 = beta2 = 0.9 is the layer's initialisation)
# and Table 1 (the MLP for MNIST and USPS, the conv network for Fashion-MNIST).
PRESETS = {
    # Table 2's eta3 = 1e-4 weighs the entropy (sharpen=entropy, eta3=1e-4 is the
    # table as written); the v2 ablation picked DEC's target at eta3 = 1, the
    # default (experiments/results/edgam.md: digits +1.0, USPS +2.2 over the start).
    # Adam's recipe, not MNIST's best (DEC's): with this network's sigmoid
    # output and input dropout DEC's SGD at rate 1 stalls on MNIST (loss 0.1399,
    # 0.1275, 0.1276, 0.1277, 0.1279 over its first 5 epochs), as VaDE's does.
    "mnist": {"eta1": 1e-2, "eta2": 1e-2, **ADAM},
    "usps": {"eta1": 1e-1, "eta2": 5e-2},
    # Adam too: DEC's SGD at rate 1 takes this conv network to NaN in its first
    # epoch (a 10,000-image subset, 2 runs), where Adam trains it.
    "fashion_mnist": {"eta1": 5e-2, "eta2": 1e-3, "architecture": "conv", **ADAM},
    # Ours, a quick start on 2 CPU cores (experiments/results/edgam.md,
    # "Digits preset"): narrower layers, no input dropout, uniform weights, no
    # reweighting, eta2 = 0.1, 50 pretraining epochs, and AE-CM's remedy for
    # codes on which k-means is worse than on the inputs: k-means on the
    # INPUTS, each cluster's mean code and code variance as its Gaussian
    # (mixture ACC 0.799 mean over seeds 0-4, against 0.776 with k-means on
    # the same codes). The joint phase's rates are cut (auto-encoder 3e-6,
    # mixture 1e-3) until it HOLDS that start (0.7987 -> 0.7985); at 1e-5
    # and 1e-2 it lowers seeds 3 and 4 from 0.797 to 0.780 and 0.784. So EDGaM
    # beats k-means on the inputs (0.792) here through its start, not through
    # its joint training.
    "digits": {"hidden": (256, 256, 512), "pretrain_epochs": 50, "epochs": 10, "eta2": 1e-1,
               "dropout": 0.0, "mixing": "uniform", "reweight": False,
               "mixture_space": "inputs", "learning_rate": 3e-6, "mixture_learning_rate": 1e-3},
}

registry.register(registry.MethodSpec(
    "edgam", EDGaMConfig, build, with_best(PRESETS, tuple(BEST)),
    "EDGaM (streamlined EM in an auto-encoder; appendix only, reconstructed in docs/methods.md)"))
