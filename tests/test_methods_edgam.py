"""EDGaM as an engine method: phases, BatchNorm state, row-wise prediction, switches, a fit."""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax import baselines, data, metrics, methods, pipeline, rundir
from deepclust_jax.engine import FitPhase, SGDPhase, check_phases
from deepclust_jax.errors import ConfigError
from deepclust_jax.methods import edgam

N, K = 90, 3
SHAPE = (8, 8, 1)
# Tiny widths and one epoch per phase: every phase compiles and runs in seconds.
TINY = {"num_clusters": K, "hidden": (16,), "latent": 4, "pretrain_epochs": 1, "epochs": 1,
        "batch_size": 30, "kmeans_restarts": 2}


@pytest.fixture(scope="module")
def tiny():
  """The first N digits of classes 0-2 (8x8 images in [0, 1])."""
  ds = data.load("digits")
  keep = np.flatnonzero(ds.y < K)[:N]
  return data.Dataset(ds.x[keep], ds.y[keep], "tiny_digits", K, image_shape=SHAPE)


def build(**overrides):
  return methods.get("edgam").build(methods.resolve("edgam", overrides={**TINY, **overrides}),
                                    SHAPE)


def test_phases_follow_the_init():
  method = build()
  assert [p.name for p in method.phases] == ["pretrain", "mixture", "joint"]
  assert [type(p) for p in method.phases] == [SGDPhase, FitPhase, SGDPhase]
  # Appendix E.1 alone: Glorot centroids, no pretraining, joint training only.
  assert [p.name for p in build(init="glorot", pretrain_epochs=0).phases] == ["joint"]
  assert method.select_by == "objective"


def test_table_2_presets():
  usps = methods.resolve("edgam", dataset="usps", num_classes=10)
  assert (usps.eta1, usps.eta2) == (1e-1, 5e-2)
  assert (usps.sharpen, usps.eta3) == ("target", 1.0)  # the v2 ablation's pick
  assert (usps.architecture, usps.T, usps.delta) == ("mlp", 3, 3.0)
  fashion = methods.resolve("edgam", dataset="fashion_mnist", num_classes=10)
  assert (fashion.eta1, fashion.eta2, fashion.architecture) == (5e-2, 1e-3, "conv")
  mnist = methods.resolve("edgam", dataset="mnist", num_classes=10)
  assert (mnist.eta1, mnist.eta2) == (1e-2, 1e-2)


@pytest.mark.parametrize("switch", [
    {}, {"covariance": "isotropic"}, {"correction": "full"}, {"reweight": False},
    {"reconstruction": "bce"}, {"skip": False}, {"T": 1}, {"T": 5}, {"init": "glorot"},
    {"mixing": "learned"}, {"dropout": 0.0}, {"mixture_space": "inputs"}, edgam.V1,
    {"assign": "hard"}, {"learn_beta": "fixed"}, {"sharpen": "target"}, {"eta3_ramp": 10.0},
    {"cluster_loss": "v1", "covariance": "isotropic"},
    {"mixture_space": "inputs", "covariance": "isotropic"},
    {"architecture": "conv"}, {"architecture": "conv", "covariance": "isotropic"}])
def test_every_switch_builds_and_traces(switch):
  method = build(**switch)
  x = jax.ShapeDtypeStruct((N, 64), jnp.float32)
  check_phases(method, {"x": x}, jax.random.key(0))
  params, state = jax.eval_shape(method.init, jax.random.key(0), {"x": x})
  rows = jax.ShapeDtypeStruct((5, 64), jnp.float32)
  gamma = jax.eval_shape(method.predict, params, state, rows)
  assert gamma.shape == (5, K)
  # The selection criterion decodes codes, never reshaped as images (conv).
  assert jax.eval_shape(method.criteria, params, state, rows, gamma)["objective"].shape == (5,)
  var_shape = (K, 4) if switch.get("covariance", "diag") == "diag" else (K,)
  assert params["mixture"]["log_var"].shape == var_shape


def test_defaults_are_v2_and_v1_is_reachable(tiny):
  v2 = methods.resolve("edgam")
  assert (v2.cluster_loss, v2.assign, v2.learn_beta, v2.mixing, v2.sharpen) == (
      "ratio", "constant", "correction", "uniform", "target")
  x = jnp.asarray(tiny.x[:30])
  losses = {}
  for name, switches in (("v2", {}), ("v1", edgam.V1)):
    method = build(**switches)
    params, state = method.init(jax.random.key(0), {"x": x})
    _, (terms, _) = method.phases[-1].updates[0].loss(params, state, {"x": x},
                                                      jax.random.key(1))
    losses[name] = float(terms["cluster"])
  assert losses["v1"] != pytest.approx(losses["v2"])


def test_eta3_ramps_linearly_over_the_joint_steps(tiny):
  """The ramp's step lives in the state: eta3 at the first step, eta3 x ramp at the last."""
  method = build(eta3_ramp=11.0, epochs=2, sharpen="entropy")
  x = jnp.asarray(tiny.x)
  params, state = method.init(jax.random.key(0), {"x": x})
  assert int(state["ramp"]["steps"]) == 2 * (N // 30)
  loss = jax.jit(method.phases[-1].updates[0].loss)
  batch, key = {"x": x[:30]}, jax.random.key(1)
  _, (first, after) = loss(params, state, batch, key)
  assert int(after["ramp"]["step"]) == 1
  last = {**state, "ramp": {**state["ramp"], "step": state["ramp"]["steps"]}}
  _, (final, _) = loss(params, last, batch, key)
  # Same batch, same parameters: only the entropy's weight changed, 11-fold.
  np.testing.assert_allclose(final["entropy"], 11.0 * first["entropy"], rtol=1e-5)
  np.testing.assert_allclose(final["cluster"], first["cluster"], rtol=1e-6)


def test_invalid_combinations_are_refused():
  with pytest.raises(ConfigError, match="reconstruction=mse"):
    methods.resolve("edgam", overrides={"architecture": "conv", "reconstruction": "bce"})
  with pytest.raises(ConfigError, match="T=0"):
    methods.resolve("edgam", overrides={"T": 0})
  with pytest.raises(ConfigError, match="image samples"):
    methods.get("edgam").build(methods.resolve("edgam", overrides={"architecture": "conv"}),
                               (64,))


def test_batch_norm_statistics_move_in_training_and_serve_prediction(tiny):
  method = build(architecture="conv")
  x = jnp.asarray(tiny.x)
  params, state = method.init(jax.random.key(0), {"x": x})
  assert set(state) == {"batch_stats"}
  joint = jax.jit(method.phases[-1].updates[0].loss)
  _, (terms, new_state) = joint(params, state, {"x": x[:30]}, jax.random.key(1))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state, new_state)
  assert all(jax.tree.leaves(moved)), "every BatchNorm layer updates its running statistics"
  assert 0 < float(terms["max_gamma"]) <= 1
  # Prediction reads the running statistics (evaluation mode), not the batch's.
  predict = jax.jit(method.predict)
  before = predict(params, state, x[:10])
  after = predict(params, new_state, x[:10])
  assert not np.allclose(before, after)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_prediction_of_one_sample_is_its_row_of_the_batch(tiny, architecture):
  method = build(architecture=architecture)
  x = jnp.asarray(tiny.x[:12])
  params, state = method.init(jax.random.key(0), {"x": x})
  predict = jax.jit(method.predict)
  batch = predict(params, state, x)
  np.testing.assert_allclose(batch.sum(-1), 1.0, rtol=1e-5)
  for i in (0, 7):
    np.testing.assert_allclose(predict(params, state, x[i:i + 1])[0], batch[i],
                               rtol=1e-5, atol=1e-6)


def test_dropout_draws_from_the_update_key(tiny):
  method = build()
  x = jnp.asarray(tiny.x[:30])
  params, state = method.init(jax.random.key(0), {"x": x})
  loss = jax.jit(method.phases[-1].updates[0].loss)
  same = [float(loss(params, state, {"x": x}, jax.random.key(k))[0]) for k in (1, 1, 2)]
  assert same[0] == same[1] != same[2]


def test_mixture_phase_starts_at_the_kmeans_partition(tiny):
  """With pooled variances and uniform weights the first E-step is k-means on the codes,
  so ``epochs=0`` is "AE + k-means"."""
  method = build(epochs=0, pretrain_epochs=0)
  x = jnp.asarray(tiny.x)
  params, state = method.init(jax.random.key(0), {"x": x})
  params, state, terms = jax.jit(method.phases[0].update)(params, state, {"x": x},
                                                          jax.random.key(3))
  z = jax.jit(method.encode)(params, state, x)
  fit = baselines.kmeans(jax.random.key(3), z, K, n_init=TINY["kmeans_restarts"])
  np.testing.assert_allclose(terms["inertia"], fit.inertia, rtol=1e-5)
  labels = np.asarray(jax.jit(method.predict)(params, state, x).argmax(-1))
  assert metrics.evaluate(np.asarray(fit.labels), labels)["ari"] == pytest.approx(1.0)
  assert jax.tree.map(jnp.shape, params["mixture"]) == jax.tree.map(
      jnp.shape, method.init(jax.random.key(0), {"x": x})[0]["mixture"])


@pytest.mark.parametrize("covariance", ["diag", "isotropic"])
def test_mixture_phase_on_the_inputs_takes_each_clusters_code_moments(tiny, covariance):
  """``mixture_space="inputs"``: k-means on x; mean and variance of each cluster's codes."""
  method = build(epochs=0, pretrain_epochs=0, mixture_space="inputs", covariance=covariance)
  x = jnp.asarray(tiny.x)
  params, state = method.init(jax.random.key(0), {"x": x})
  params, state, terms = jax.jit(method.phases[0].update)(params, state, {"x": x},
                                                          jax.random.key(3))
  fit = baselines.kmeans(jax.random.key(3), x, K, n_init=TINY["kmeans_restarts"])
  np.testing.assert_allclose(terms["inertia"], fit.inertia, rtol=1e-5)
  z = np.asarray(jax.jit(method.encode)(params, state, x))
  labels = np.asarray(fit.labels)
  mixture = params["mixture"]
  for k in range(K):
    codes = z[labels == k]
    np.testing.assert_allclose(mixture["mu"][k], codes.mean(0), rtol=1e-4, atol=1e-5)
    var = codes.var(0) if covariance == "diag" else codes.var(0).mean()
    np.testing.assert_allclose(np.exp(mixture["log_var"][k]), var, rtol=1e-3, atol=1e-6)
  np.testing.assert_array_equal(mixture["logits"], np.zeros(K))


def test_tiny_fit_through_the_pipeline(tiny, tmp_path):
  # No pretraining: one compilation fewer; the phase is traced by the switch tests.
  report = pipeline.fit("edgam", tiny, runs=2, overrides={**TINY, "pretrain_epochs": 0},
                        out=tmp_path / "run",
                        options={"progress": False, "eval_every": 1})
  assert report.result.gamma.shape == (2, N, K)
  assert set(report.result.terms) >= {"reconstruction", "correction", "cluster", "target",
                                      "max_gamma", "beta1", "beta2", "objective"}
  joint = [r for r in report.result.history if r["phase"] == "joint"]
  assert joint and "acc" in joint[-1]["metrics"]  # ACC of argmax gamma, every epoch
  # The appendix's third signal: k-means on the codes, scored on the same epochs.
  run = int(report.result.selected)
  codes = report.model.transform(tiny.x)
  fit = baselines.kmeans(jax.random.key(0), codes, K, n_init=3)
  expected = metrics.evaluate(tiny.y, np.asarray(fit.labels))
  for name in ("acc", "nmi", "ari"):
    assert joint[-1]["metrics"][f"kmeans_{name}"][run] == pytest.approx(expected[name],
                                                                       abs=1e-6)
  assert report.model.transform(tiny.x[:5]).shape == (5, TINY["latent"])
  assert report.model.decoded_centroids().shape == (K, 64)
  loaded = rundir.load_model(tmp_path / "run")
  np.testing.assert_array_equal(loaded.predict(tiny.x), report.model.predict(tiny.x))


def test_docstring_examples():
  assert doctest.testmod(edgam, raise_on_error=True).failed == 0

