"""VaDE/DGG networks: output shapes with tiny widths, the mixture pytree, the sampler."""

from __future__ import annotations

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np

from deepclust_jax.losses import vade as vade_losses
from deepclust_jax.models import vade

D, P, K, HIDDEN = 6, 2, 3, (5, 4)


def test_vae_shapes_and_layers():
  vae = vade.VAE(features=D, latent=P, hidden=HIDDEN)
  # Jitted: op-by-op initialisation and application compile many small programs.
  params = jax.jit(vae.init)(jax.random.key(0), jnp.zeros((1, D)), jax.random.key(1))["params"]
  apply = jax.jit(vae.apply, static_argnames="method")
  # Encoder D-5-4, heads 4 -> P, decoder mirrored P-4-5-D.
  kernels = {path: leaf.shape for path, leaf in
             jax.tree_util.tree_flatten_with_path(params)[0] if path[-1].key == "kernel"}
  assert sorted(kernels.values()) == sorted([(D, 5), (5, 4), (4, P), (4, P),
                                             (P, 4), (4, 5), (5, D)])
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, D)), jnp.float32)
  z_mean, z_logvar, z, logits = apply({"params": params}, x, jax.random.key(2))
  chex.assert_shape([z_mean, z_logvar, z], (3, P))
  chex.assert_shape(logits, (3, D))
  chex.assert_trees_all_close(apply({"params": params}, x, method="encode"), (z_mean, z_logvar))
  chex.assert_trees_all_close(apply({"params": params}, z, method="decode"), logits)
  # DGG's neighbourhoods: a neighbour axis passes through as a batch axis.
  outputs = apply({"params": params}, jnp.stack([x, x[::-1]], 1), jax.random.key(3))
  chex.assert_shape(outputs, [(3, 2, P)] * 3 + [(3, 2, D)])

  # The outputs feed the VaDE loss: a finite scalar with a finite gradient.
  mixture = vade.mixture_params(jnp.zeros((K, P)))

  def loss(params):
    z_mean, z_logvar, z, logits = vae.apply({"params": params["vae"]}, x, jax.random.key(2))
    log_gamma = vade_losses.vade_log_posterior(z, params["mu"], params["logvar"])
    return vade_losses.vade_loss(vade_losses.bernoulli_log_likelihood(x, logits), z_mean,
                                 z_logvar, log_gamma, params["mu"], params["logvar"])[0]

  grads = jax.jit(jax.grad(loss))({"vae": params, **mixture})
  assert all(jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads))


def test_gamma_head_and_siamese_shapes():
  head = vade.GammaHead(num_clusters=K)
  params = head.init(jax.random.key(0), jnp.zeros((1, P)))["params"]
  assert params["dense"]["kernel"].shape == (P, K)
  log_gamma = head.apply({"params": params}, jnp.ones((4, 2, P)))
  chex.assert_shape(log_gamma, (4, 2, K))
  np.testing.assert_allclose(jnp.exp(log_gamma).sum(-1), 1.0, rtol=1e-6)

  net = vade.Siamese(latent=P, hidden=HIDDEN)
  params = net.init(jax.random.key(0), jnp.zeros((1, D)))["params"]
  assert [layer["kernel"].shape for layer in params["mlp"].values()] == [(D, 5), (5, 4), (4, P)]
  chex.assert_shape(net.apply({"params": params}, jnp.ones((7, D))), (7, P))


def test_mixture_params():
  mu = jnp.arange(K * P, dtype=jnp.float32).reshape(K, P)
  mixture = vade.mixture_params(mu)
  assert set(mixture) == {"mu", "logvar"}
  chex.assert_trees_all_equal(mixture, {"mu": mu, "logvar": jnp.zeros((K, P))})
  var = jnp.array([[4.0, 0.0], [1.0, 1.0], [0.5, 2.0]])
  np.testing.assert_allclose(jnp.exp(vade.mixture_params(mu, var)["logvar"]),
                             jnp.maximum(var, vade_losses.VARIANCE_FLOOR), rtol=1e-6)


def test_reparameterize():
  z_mean, z_logvar = jnp.array([1.0, -2.0]), jnp.log(jnp.array([0.25, 4.0]))
  samples = vade.reparameterize(jax.random.key(0), jnp.broadcast_to(z_mean, (20000, 2)),
                                jnp.broadcast_to(z_logvar, (20000, 2)))
  np.testing.assert_allclose(samples.mean(0), z_mean, atol=0.05)
  np.testing.assert_allclose(samples.std(0), [0.5, 2.0], rtol=0.03)
  # Differentiable in the mean and the log-variance (the reparameterisation trick).
  def sample(lv):
    return vade.reparameterize(jax.random.key(0), z_mean, lv)

  noise = (sample(z_logvar) - z_mean) / jnp.exp(0.5 * z_logvar)
  grad = jax.grad(lambda lv: sample(lv).sum())(z_logvar)
  np.testing.assert_allclose(grad, 0.5 * jnp.exp(0.5 * z_logvar) * noise, rtol=1e-5)


def test_docstring_examples():
  result = doctest.testmod(vade, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0
