"""VaDE and DGG: Gaussian-mixture variational autoencoders, without and with a graph.

Jiang, Zheng, Tan, Tang & Zhou (2017), "Variational Deep Embedding: an
unsupervised and generative approach to clustering", IJCAI (VaDE).
Yang, Cheung, Li & Fang (2019), "Deep Clustering by Gaussian Mixture
Variational Autoencoders with Graph Embedding", ICCV, supplement sections 4-5
(DGG); the objective is the one of ``docs/methods.md#vade-and-dgg``.

One builder serves both; the config says which ``q(c|x)`` (``posterior``):

* ``vade`` is the paper's VaDE: ``q(c|x) = p(c|z)`` in closed form
  (:func:`~deepclust_jax.losses.vade.vade_log_posterior`) at the sampled
  ``z`` in training, with the gradient through it, and at the latent mean for
  prediction; a diagonal GMM on the latent means starts the mixture; the
  mixing weights are learned (softmax logits; ``weights`` has the options).
* ``dgg`` has DGG's gamma head, one linear layer on ``z_mean``, trained on the
  start's labels before the joint phase; the mixing weights stay uniform, as
  in the DGG code. ``dgg`` with ``num_neighbours = 0`` is "DGG without graph".

The phases:

1. ``pretrain*``: the VAE as a deterministic autoencoder ``x -> z_mean -> x``,
   by the shared :mod:`~deepclust_jax.methods.pretraining`;
2. ``mixture``: a diagonal GMM (or k-means) on the latent means sets the
   mixture's means, per-cluster, per-dimension variances and weights; the
   labels go into the run's state; ``logvar_init="mean_head"`` copies the
   mean head into the untrained log-variance head here (VaDE-pytorch);
3. ``gamma`` (gamma head only): the head learns those labels by cross-entropy;
4. DGG only: ``input_graph`` (the N_t nearest neighbours in input space, into
   the state), ``siamese`` (the contrastive loss on those neighbours and random
   negatives) and ``graph`` (the N_s nearest neighbours in the Siamese
   embedding, into the state, so checkpointed and reused on resume);
5. ``joint``: the DGG objective over each anchor and its stored neighbours
   (VaDE's ELBO with the prior ``pi`` when there are none), Adam decayed by a
   factor every few epochs down to ``lr_floor``.

Runs are ranked by minus the VaDE ELBO (``neg_elbo``, one sample of
``q(z|x)`` per point from a fixed key): a bound on ``-log p(x)`` of the one
generative model that both methods fit, so a label-free
choice; DGG's own objective needs each sample's neighbours, which the
engine's row-wise criteria do not see.

The joint schedules of the three public codes are presets
(:data:`~deepclust_jax.configs.vade.SCHEDULES`). Where the papers are silent
the defaults are ours: 10 epochs of the gamma head, 100 Siamese epochs on
batches of 256 anchors. Siamese optimiser: Adam(5e-4), weight decay 1e-4,
rate divided by 10 every 70 epochs, margin 3 (supplement, section 5).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from deepclust_jax import graph
from deepclust_jax.configs import vade as presets
from deepclust_jax.engine import (FitPhase, Method, SGDPhase, Update, predict_in_chunks,
                                  stateless)
from deepclust_jax.losses import vade as vade_losses
from deepclust_jax.methods import pretraining, registry
from deepclust_jax.methods.common import optimizer, require
from deepclust_jax.models.vade import VAE, GammaHead, Siamese, mixture_params, reparameterize


# The fixed key of the selection criterion's sample z ~ q(z|x).
CRITERION_SEED = 0x5EED


@dataclasses.dataclass(frozen=True)
class VaDEConfig(pretraining.PretrainConfig):
  """Hyper-parameters of VaDE and DGG (defaults: MNIST, DGG supplement and ours).

  The pretraining and mixture-start keys (``recipe``, ``pretrain_*``,
  ``mixture``, ``mixture_space``, ``kmeans_restarts``) are
  :class:`~deepclust_jax.methods.pretraining.PretrainConfig`'s.

  Attributes:
    num_clusters: K; 0 takes the dataset's number of classes.
    num_neighbours: N_s, neighbours per anchor in the joint objective.
    posterior: ``q(c|x)``: "mixture", VaDE's ``p(c|z)``; "head", DGG's gamma head.
    weights: the mixing weights ``pi``: "softmax", learned as softmax logits
      started at the start's weights; "uniform", fixed; "raw", VaDE-pytorch's
      raw parameter, started at the start's weights and trained as is, so
      that ``log pi`` enters the ELBO unnormalised (the posterior normalises
      it).
    posterior_floor: ``epsilon`` added to each ``pi_k N(z; mu_k, sigma_k^2)``
      of ``p(c|z)`` before normalising (VaDE-pytorch: 1e-10; 0: Bayes' rule).
    posterior_sample: the sample of ``q(z|x)`` at which ``p(c|z)`` is taken in
      training: "shared", the reconstruction's; "independent", a second draw
      (VaDE-pytorch). Both estimate the same objective; their gradients differ.
    mixture: the start on the latent means, a diagonal "gmm" or "kmeans".
    logvar_init: the log-variance head at the start: "random" (as drawn) or
      "mean_head", a copy of the pretrained mean head (VaDE-pytorch).
    latent: p, the code width.
    hidden: encoder hidden widths (decoder reversed; the Siamese net's too).
    likelihood: "bernoulli" for data in [0, 1], "gaussian" otherwise;
      "bernoulli_clamped" is PyTorch's cross-entropy of the sigmoid, each log
      floored at -100 and saturated pixels passing no gradient (VaDE-pytorch).
    scale: the Gaussian reconstruction's fixed standard deviation.
    gamma_epochs, gamma_lr, gamma_optimizer, gamma_momentum: training of the
      gamma head on the start's labels (posterior "head").
    epochs, batch_size, learning_rate: joint training, batches of anchors.
    decay_rate, decay_epochs, lr_floor: the joint rate is multiplied by
      ``decay_rate`` every ``decay_epochs`` epochs, down to ``lr_floor``.
    adam_eps: the joint Adam's epsilon.
    weight_decay: the joint phase's L2 weight decay on every trained parameter
      (PyTorch Adam's ``weight_decay``: added to the gradient).
    siamese_neighbours: N_t, input-space neighbours giving the positive pairs.
    siamese_epochs, siamese_batch_size, siamese_lr: the Siamese network (DGG).
    siamese_decay_epochs, siamese_weight_decay, margin: its schedule (rate
      divided by 10), Adam's L2 weight decay and the contrastive margin c.
  """

  num_clusters: int = 0
  num_neighbours: int = 0
  posterior: Literal["mixture", "head"] = "mixture"
  weights: Literal["softmax", "uniform", "raw"] = "softmax"
  posterior_floor: float = 0.0
  posterior_sample: Literal["shared", "independent"] = "shared"
  mixture: Literal["kmeans", "gmm"] = "gmm"
  logvar_init: Literal["random", "mean_head"] = "random"
  latent: int = 10
  hidden: tuple[int, ...] = (500, 500, 2000)
  likelihood: Literal["bernoulli", "bernoulli_clamped", "gaussian"] = "bernoulli"
  scale: float = 1.0
  gamma_epochs: int = 10
  gamma_lr: float = 2e-3
  gamma_optimizer: Literal["adam", "sgd"] = "adam"
  gamma_momentum: float = 0.9
  epochs: int = 300
  batch_size: int = 100
  learning_rate: float = 2e-3
  decay_rate: float = 0.9
  decay_epochs: int = 10
  lr_floor: float = 0.0
  adam_eps: float = 1e-8
  weight_decay: float = 0.0
  siamese_neighbours: int = 2
  siamese_epochs: int = 100
  siamese_batch_size: int = 256
  siamese_lr: float = 5e-4
  siamese_decay_epochs: int = 70
  siamese_weight_decay: float = 1e-4
  margin: float = 3.0

  def validate(self) -> None:
    self.validate_pretraining()
    require(self.latent > 0, f"latent={self.latent} must be positive")
    require(self.num_neighbours >= 0, f"num_neighbours={self.num_neighbours} must be >= 0")
    require(self.siamese_neighbours >= 1,
            f"siamese_neighbours={self.siamese_neighbours} must be >= 1")
    require(self.scale > 0, f"scale={self.scale} must be positive")
    require(self.posterior_floor >= 0,
            f"posterior_floor={self.posterior_floor} must be >= 0")
    require(self.adam_eps > 0, f"adam_eps={self.adam_eps} must be positive")
    require(self.posterior == "mixture" or self.posterior_sample == "shared",
            f"posterior_sample={self.posterior_sample!r} needs posterior='mixture': "
            "the gamma head reads no sample of z")
    require(min(self.lr_floor, self.weight_decay) >= 0,
            "lr_floor and weight_decay must be >= 0")
    require(0 <= self.gamma_momentum < 1,
            f"gamma_momentum={self.gamma_momentum} must be in [0, 1)")
    require(0 < self.decay_rate <= 1, f"decay_rate={self.decay_rate} must be in (0, 1]")
    require(min(self.gamma_epochs, self.epochs, self.siamese_epochs) >= 0,
            "epoch counts must be >= 0")
    require(min(self.batch_size, self.siamese_batch_size) > 0, "batch sizes must be positive")
    require(min(self.decay_epochs, self.siamese_decay_epochs) > 0,
            "decay periods must be positive")
    require(min(self.gamma_lr, self.learning_rate, self.siamese_lr) > 0,
            "learning rates must be positive")

  def network(self) -> dict:
    """What a pretrained VAE must share to be reused (``--pretrained``)."""
    return {"model": "vae", "hidden": list(self.hidden), "latent": self.latent}


@dataclasses.dataclass(frozen=True)
class DGGConfig(VaDEConfig):
  """:class:`VaDEConfig` of DGG: a gamma head, uniform ``pi``, k-means start, N_s = 3."""

  num_neighbours: int = 3
  posterior: Literal["mixture", "head"] = "head"
  weights: Literal["softmax", "uniform", "raw"] = "uniform"
  mixture: Literal["kmeans", "gmm"] = "kmeans"


def build(config: VaDEConfig, shape: tuple[int, ...]) -> Method:
  """VaDE or DGG as pure pieces; samples of ``shape`` are flattened.

  Example:
    >>> config = registry.resolve("vade", overrides={"num_clusters": 3, "hidden": (8,)})
    >>> [phase.name for phase in build(config, (64,)).phases]
    ['pretrain', 'mixture', 'joint']
    >>> config = registry.resolve("dgg", overrides={"num_clusters": 3, "hidden": (8,)})
    >>> [phase.name for phase in build(config, (64,)).phases]
    ['pretrain', 'mixture', 'gamma', 'input_graph', 'siamese', 'graph', 'joint']
  """
  num_clusters, num_neighbours = config.num_clusters, config.num_neighbours
  has_head = config.posterior == "head"
  vae = VAE(math.prod(shape), config.latent, config.hidden, config.matmul_dtype)
  head = GammaHead(num_clusters)
  siamese = Siamese(config.latent, config.hidden)

  def reconstruction(x, out):
    if config.likelihood == "bernoulli":
      return vade_losses.bernoulli_log_likelihood(x, out)
    if config.likelihood == "bernoulli_clamped":
      return vade_losses.clamped_bernoulli_log_likelihood(x, out)
    return vade_losses.gaussian_log_likelihood(x, out, config.scale)

  def mixture_start(mu, var, weights):
    return mixture_params(mu, var, None if config.weights == "uniform" else weights,
                          raw=config.weights == "raw")

  def init(key, data):
    x = data["x"]
    n = x.shape[0]
    vae_key, head_key, siamese_key, sample_key = jax.random.split(key, 4)
    weights = jnp.full((num_clusters,), 1.0 / num_clusters, x.dtype)
    params = {
        "vae": vae.init(vae_key, x[:1], sample_key)["params"],
        # Set by the "mixture" phase.
        "mixture": mixture_start(jnp.zeros((num_clusters, config.latent), x.dtype), None, weights),
    }
    if has_head:
      params["gamma"] = head.init(head_key, jnp.zeros((1, config.latent), x.dtype))["params"]
    state = {"labels": jnp.zeros((n,), jnp.int32)}
    if num_neighbours:
      params["siamese"] = siamese.init(siamese_key, x[:1])["params"]
      state["input_nbrs"] = jnp.zeros((n, config.siamese_neighbours), jnp.int32)
      state["nbrs"] = jnp.zeros((n, num_neighbours), jnp.int32)
    return params, state

  def encode(params, state, x):
    del state
    return vae.apply({"params": params["vae"]}, x, method=VAE.encode)[0]

  def log_pi(params):
    mixture = params["mixture"]
    if config.weights == "softmax":
      return jax.nn.log_softmax(mixture["logits"])
    if config.weights == "raw":
      return jnp.log(mixture["pi"])
    return jnp.full((num_clusters,), -math.log(num_clusters), mixture["mu"].dtype)

  def log_gamma(params, z_mean, z):
    """``log q(c|x)``: VaDE's ``p(c|z)`` at ``z``, or DGG's head at ``z_mean``."""
    if has_head:
      return head.apply({"params": params["gamma"]}, z_mean)
    mixture = params["mixture"]
    return vade_losses.vade_log_posterior(z, mixture["mu"], mixture["logvar"],
                                          log_pi=log_pi(params), floor=config.posterior_floor)

  def predict(params, state, x):
    z_mean = encode(params, state, x)
    return jnp.exp(log_gamma(params, z_mean, z_mean))

  def autoencode(params, state, x, key):
    del key  # deterministic: the decoder reads the latent mean
    return vae.apply({"params": params["vae"]}, encode(params, state, x), method=VAE.decode), state

  depth = len(config.hidden)
  spec = pretraining.AutoencoderSpec(
      "vae", autoencode, lambda x, out: -jnp.mean(reconstruction(x, out)),
      logits=config.likelihood != "gaussian",
      encoder_layers=(*pretraining.dense_paths("encoder", depth), ("mean_head",)),
      decoder_layers=pretraining.dense_paths("decoder", depth + 1))

  def wire_mixture(params, state, start):
    params = {**params, "mixture": mixture_start(start.mu, start.var, start.weights)}
    if config.logvar_init == "mean_head":  # pretraining never trains the log-variance head
      params["vae"] = {**params["vae"], "logvar_head": params["vae"]["mean_head"]}
    return params, {**state, "labels": start.labels}

  def with_labels(idx, data, state, key):
    del key
    return {"x": data["x"][idx], "labels": state["labels"][idx]}

  def gamma_loss(params, batch, key):
    del key
    # The encoder is frozen here: no gradient through it saves its backward pass.
    z_mean = jax.lax.stop_gradient(encode(params, None, batch["x"]))
    log_q = log_gamma(params, z_mean, z_mean)
    cross_entropy = -jnp.mean(jnp.take_along_axis(log_q, batch["labels"][:, None], -1))
    return cross_entropy, {"cross_entropy": cross_entropy}

  def neighbours_below_n(key: str, value: int, n: int) -> None:
    # Checked while tracing: the number of samples is the data's static shape.
    require(value < n, f"{key}={value} needs more samples than neighbours; the data has {n}")

  def input_graph(params, state, data, key):
    del key
    neighbours_below_n("siamese_neighbours", config.siamese_neighbours, data["x"].shape[0])
    return params, {**state, "input_nbrs": graph.knn(data["x"], config.siamese_neighbours)}, {}

  def contrastive_batch(idx, data, state, key):
    # Every input-space edge of the batch's anchors is a positive pair, with as
    # many random negatives; contrastive_pairs numbers rows within the batch.
    nbrs = state["input_nbrs"][idx]
    pairs, positive = graph.contrastive_pairs(key, nbrs, nbrs.size)
    first = idx[pairs[:, 0]]
    second = jnp.where(positive, pairs[:, 1], idx[pairs[:, 1]])
    x = data["x"]
    return {"a": x[first], "b": x[second], "positive": positive}

  def embed(params, state, x):
    del state
    return siamese.apply({"params": params["siamese"]}, x)

  def siamese_loss(params, batch, key):
    del key
    return vade_losses.contrastive_loss(embed(params, None, batch["a"]),
                                        embed(params, None, batch["b"]), batch["positive"],
                                        margin=config.margin)

  def embedding_graph(params, state, data, key):
    del key
    neighbours_below_n("num_neighbours", num_neighbours, data["x"].shape[0])
    embedding = predict_in_chunks(embed, params, state, data["x"])
    return params, {**state, "nbrs": graph.knn(embedding, num_neighbours)}, {}

  def neighbourhoods(idx, data, state, key):
    del key
    hood = idx[:, None]
    if num_neighbours:
      hood = jnp.concatenate([hood, state["nbrs"][idx]], axis=1)
    return {"x": data["x"][hood]}  # (B, 1 + N_s, d), the anchor first

  def joint_loss(params, batch, key):
    x = batch["x"]
    z_mean, z_logvar, z, out = vae.apply({"params": params["vae"]}, x, key)
    if config.posterior_sample == "independent":
      z = reparameterize(jax.random.fold_in(key, 1), z_mean, z_logvar)
    mixture = params["mixture"]
    # Without neighbours, m_i = pi turns DGG's objective into VaDE's ELBO.
    return vade_losses.dgg_loss(reconstruction(x[:, :1], out), z_mean, z_logvar,
                                log_gamma(params, z_mean, z), mixture["mu"], mixture["logvar"],
                                log_prior=None if num_neighbours else log_pi(params))

  def criteria(params, state, x, gamma):
    del gamma  # its log may be -inf; the head's log-softmax is finite
    # One sample z ~ q(z|x) as in training, from a fixed key: the criterion is
    # deterministic and still a bound. Decoding the posterior mean instead
    # would not charge the reconstruction for q's variance, and would rank an
    # untrained log-variance head's wide q best.
    z_mean, z_logvar, z, out = vae.apply({"params": params["vae"]}, x,
                                         jax.random.key(CRITERION_SEED))
    mixture = params["mixture"]

    def neg_elbo(*sample):
      return vade_losses.vade_loss(*(a[None] for a in sample), mixture["mu"],
                                   mixture["logvar"], log_pi=log_pi(params))[0]

    return {"neg_elbo": jax.vmap(neg_elbo)(reconstruction(x, out), z_mean, z_logvar,
                                           log_gamma(params, z_mean, z))}

  def joint_tx(steps_per_epoch):
    schedule = optax.exponential_decay(config.learning_rate,
                                       config.decay_epochs * steps_per_epoch,
                                       config.decay_rate, staircase=True,
                                       end_value=config.lr_floor or None)
    tx = optimizer("adam", schedule, eps=config.adam_eps,
                   trainable={"vae", "mixture", *(("gamma",) if has_head else ())})
    if config.weight_decay:  # the DGG code's Adam(weight_decay=1e-4): L2 on every parameter
      tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
    return tx

  def siamese_tx(steps_per_epoch):
    schedule = optax.exponential_decay(config.siamese_lr,
                                       config.siamese_decay_epochs * steps_per_epoch,
                                       0.1, staircase=True)
    # Adam's L2 weight decay (PyTorch's weight_decay) before the frozen parts are zeroed.
    return optax.chain(optax.add_decayed_weights(config.siamese_weight_decay),
                       optimizer("adam", schedule, trainable={"siamese"}))

  phases = (
      *pretraining.phases(spec, config),
      pretraining.start_phase(encode, config, num_clusters, wire_mixture),
  )
  if has_head:
    gamma_tx = optimizer(config.gamma_optimizer, config.gamma_lr, trainable={"gamma"},
                         momentum=config.gamma_momentum)
    phases += (SGDPhase("gamma", (Update(stateless(gamma_loss), gamma_tx),),
                        config.gamma_epochs, config.batch_size, batch=with_labels),)
  if num_neighbours:
    phases += (
        FitPhase("input_graph", input_graph),
        SGDPhase("siamese", (Update(stateless(siamese_loss), siamese_tx),),
                 config.siamese_epochs, config.siamese_batch_size, batch=contrastive_batch),
        FitPhase("graph", embedding_graph),
    )
  phases += (SGDPhase("joint", (Update(stateless(joint_loss), joint_tx),), config.epochs,
                      config.batch_size, batch=neighbourhoods),)
  return Method("dgg" if isinstance(config, DGGConfig) else "vade", num_clusters,
                pretraining.init(spec, config, init), phases, predict, criteria,
                select_by="neg_elbo", encode=encode, autoencoder=spec.group)


registry.register(registry.MethodSpec(
    "vade", VaDEConfig, build, presets.VADE,
    "VaDE (Jiang et al. 2017): VAE with a Gaussian-mixture prior, q(c|x) = p(c|z), "
    "a GMM start and learned weights"))
registry.register(registry.MethodSpec(
    "dgg", DGGConfig, build, presets.DGG,
    "DGG (Yang et al. 2019): a gamma head and a Siamese-embedding graph of N_s "
    "neighbours (num_neighbours=0: DGG without graph)"))
