"""NMM-EM as an engine method: Algorithm 1's two updates, running statistics, batches."""

from __future__ import annotations

import dataclasses
import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax import data, methods, pipeline
from deepclust_jax.errors import ConfigError
from deepclust_jax.methods import nmm_em
from deepclust_jax.summary import format_summary

# A tiny network on digits' 8x8 Sobel planes: the whole image pipeline in seconds.
TINY = {"architecture": "F16", "sobel": True, "batch_size": 128,
        "em_learning_rate": 1e-3, "kl_learning_rate": 2e-3}


@pytest.fixture(scope="module")
def digits():
  """The first 512 of scikit-learn's digits: four batches of 128."""
  ds = data.load("digits")
  return dataclasses.replace(ds, x=ds.x[:512], y=ds.y[:512])


@pytest.fixture(scope="module")
def method(digits):
  return methods.build("nmm_em", shape=digits.sample_shape, num_clusters=10, **TINY)


@pytest.fixture(scope="module")
def fitted(digits):
  """Two runs, two epochs of the two-fold step through the pipeline."""
  return pipeline.fit("nmm_em", digits, runs=2, epochs=2, overrides=TINY,
                      options={"progress": False})


def first_batch(method, digits, key=jax.random.key(1)):
  # Compiled: eager dm-pix resampling dispatches op by op and is slower.
  x = {"x": jnp.asarray(digits.x)}
  params, state = jax.jit(method.init)(jax.random.key(0), x)
  batch = jax.jit(method.phases[0].batch)(jnp.arange(128), x, state, key)
  return params, state, batch


def adam_step_size(update, params):
  """|first Adam step| on a gradient of ones: the update's learning rate."""
  tx = update.tx(1)
  step, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  return float(jnp.abs(jax.tree.leaves(step)[0]).max())


def test_two_fold_phase_is_em_step_then_kl_step(method, digits):
  (phase,) = method.phases
  assert len(phase.updates) == 2 and phase.batch_size == 128
  params, state, batch = first_batch(method, digits)
  key = jax.random.key(2)
  (_, (em_terms, _)), (_, (kl_terms, _)) = [jax.jit(u.loss)(params, state, batch, key)
                                            for u in phase.updates]
  assert sorted(em_terms) == ["em", "em_tr"] and sorted(kl_terms) == ["kl"]
  config = methods.resolve("nmm_em", overrides={**TINY, "em_learning_rate": 5e-5,
                                                "kl_learning_rate": 1e-4})
  paper = methods.get("nmm_em").build(config, digits.sample_shape)
  steps = [adam_step_size(u, params) for u in paper.phases[0].updates]
  np.testing.assert_allclose(steps, [5e-5, 1e-4], rtol=1e-3)


def test_em_only_has_one_update_and_eq6_without_augmentation(digits):
  em_only = methods.build("nmm_em", shape=digits.sample_shape, num_clusters=10,
                          consistency=False, **TINY)
  assert len(em_only.phases[0].updates) == 1
  plain = methods.build("nmm_em", shape=digits.sample_shape, num_clusters=10,
                        consistency=False, augment=False, **TINY)
  params, state, batch = first_batch(plain, digits)
  assert sorted(batch) == ["x"]
  _, (terms, _) = plain.phases[0].updates[0].loss(params, state, batch, jax.random.key(0))
  assert sorted(terms) == ["em"]


def test_consistency_needs_the_transformed_view():
  with pytest.raises(ConfigError, match="transformed view"):
    methods.resolve("nmm_em", overrides={"augment": "false"})
  with pytest.raises(ConfigError, match="unknown layer"):
    methods.resolve("nmm_em", overrides={"architecture": "C8 X"})
  with pytest.raises(ConfigError, match="activation='tanh'"):
    methods.resolve("nmm_em", overrides={"activation": "tanh"})


def test_batch_is_built_on_device_deterministic_per_key(method, digits):
  _, _, a = first_batch(method, digits, jax.random.key(5))
  _, _, b = first_batch(method, digits, jax.random.key(5))
  _, _, c = first_batch(method, digits, jax.random.key(6))
  assert a["x"].shape == a["x_tr"].shape == (128, 8, 8, 2)  # two Sobel planes
  np.testing.assert_array_equal(a["x_tr"], b["x_tr"])
  np.testing.assert_array_equal(a["x"], c["x"])  # the original view ignores the key
  assert not np.allclose(a["x_tr"], c["x_tr"])


def test_vectors_get_jittered_copy_and_the_mlp():
  assert nmm_em.default_architecture((4,)) == "mlp"
  assert [nmm_em.default_architecture((s, s, 1)) for s in (8, 16, 28, 32, 96)] == [
      "mnist", "mnist", "mnist", "cifar", "stl10"]
  m = methods.build("nmm_em", shape=(3,), num_clusters=2, jitter=0.5)
  x = {"x": jnp.asarray(np.random.default_rng(0).normal(size=(64, 3)), jnp.float32)}
  _, state = m.init(jax.random.key(0), x)
  batch = m.phases[0].batch(jnp.arange(32), x, state, jax.random.key(1))
  np.testing.assert_array_equal(batch["x"], x["x"][:32])
  noise = np.asarray(batch["x_tr"] - batch["x"]) / np.asarray(batch["x"]).std(0)
  assert 0.3 < noise.std() < 0.7


def test_state_holds_running_statistics_that_training_moves(fitted, method, digits):
  state = fitted.result.state
  _, initial = jax.jit(method.init)(jax.random.key(0), {"x": jnp.asarray(digits.x)})
  assert sorted(state) == ["mean", "var"] and state["mean"].shape == (2, 10)
  assert not np.allclose(state["mean"], initial["mean"])
  assert not np.allclose(state["var"], initial["var"])


def test_prediction_of_one_sample_is_its_row_of_a_batch(fitted, method, digits):
  params, state = jax.tree.map(lambda a: jnp.asarray(a[0]), (fitted.result.params,
                                                            fitted.result.state))
  x = jnp.asarray(digits.x[:50])
  batch = method.predict(params, state, x)
  one = method.predict(params, state, x[7:8])
  np.testing.assert_allclose(one[0], batch[7], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fitted.result.gamma[0, :50], batch, rtol=1e-4, atol=1e-5)


def test_batch_norm_statistics_are_state_moved_by_the_em_step_only(digits):
  method = methods.build("nmm_em", shape=digits.sample_shape, num_clusters=10,
                         batch_norm=True, **TINY)
  params, state, batch = first_batch(method, digits)
  assert sorted(state) == ["batch_stats", "mean", "var"]
  em, kl = (jax.jit(update.loss) for update in method.phases[0].updates)
  _, (_, after_em) = em(params, state, batch, jax.random.key(2))
  _, (_, after_kl) = kl(params, state, batch, jax.random.key(2))
  moved = lambda a, b: any(not np.allclose(u, v) for u, v in zip(  # noqa: E731
      jax.tree.leaves(a["batch_stats"]), jax.tree.leaves(b["batch_stats"])))
  assert moved(after_em, state) and not moved(after_kl, state)
  # With the running statistics a sample's prediction ignores its batch.
  x = jnp.asarray(digits.x[:50])
  predict = jax.jit(method.predict)
  np.testing.assert_allclose(predict(params, after_em, x[7:8])[0],
                             predict(params, after_em, x)[7], rtol=1e-5, atol=1e-6)


def test_fit_through_pipeline_scores_and_selects(fitted):
  assert fitted.summary["runs"] == 2 and fitted.result.selected in (0, 1)
  terms = fitted.result.terms
  assert {"em", "em_tr", "kl", "loss", "em_data"} <= set(terms)
  assert all(np.isfinite(v).all() for v in terms.values())


def test_without_normalization_the_state_stays_put(digits):
  raw = methods.build("nmm_em", shape=digits.sample_shape, num_clusters=10, normalize=False,
                      augment=False, consistency=False, **TINY)
  params, state, batch = first_batch(raw, digits)
  _, (_, new_state) = jax.jit(raw.phases[0].updates[0].loss)(params, state, batch,
                                                              jax.random.key(0))
  np.testing.assert_array_equal(new_state["mean"], state["mean"])
  np.testing.assert_array_equal(new_state["var"], state["var"])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_dying_units_warn_on_the_literal_network_only(batch_norm, capsys):
  """The KL step kills the literal network's last hidden units (one cluster left);
  batch normalisation keeps them alive. Live fractions are logged at scoring epochs."""
  ds = data.load("digits")
  ds = data.Dataset(ds.x[:400], ds.y[:400], "digits_400", 10, image_shape=(8, 8, 1))
  # 5e-2 kills every unit whichever rounding the convolution has (at 3e-2, lax's conv
  # left 2 of 8 alive, the stacked-windows matmul 1).
  overrides = {"architecture": "C8 M F8", "batch_norm": batch_norm, "em_learning_rate": 1e-3,
               "kl_learning_rate": 5e-2, "epochs": 12, "batch_size": 50}
  report = pipeline.fit("nmm_em", ds, overrides=overrides,
                        options={"progress": True, "eval_every": 2})
  live = [r["diagnostics"]["live_units"][0] for r in report.result.history
          if "diagnostics" in r]
  assert len(live) == 6 and all(0 <= v <= 1 for v in live)
  printed = capsys.readouterr()
  summary = format_summary(report.summary)
  if batch_norm:
    assert min(live) >= nmm_em.LIVE_UNITS_WARNING
    assert "warnings" not in report.summary and "live_units" not in printed.out + printed.err
  else:
    assert live[-1] < nmm_em.LIVE_UNITS_WARNING
    assert report.summary["mean"]["acc"] < 0.2  # the collapse the warning is about
    assert "warning: live_units fell below 0.25" in printed.out + printed.err
    assert "live_units fell below 0.25 in run(s) [0]" in summary
    assert "batch_norm=true keeps them alive" in summary


def test_presets_use_batch_norm_in_every_hidden_layer():
  for name in ("mnist", "usps", "fashion_mnist"):
    assert methods.resolve("nmm_em", dataset=name, num_classes=10).batch_norm, name
  net = nmm_em.RelevanceNet("C4 M F8", 3, batch_norm=True)
  params = net.init(jax.random.key(0), jnp.ones((2, 8, 8, 2)))["params"]
  # Conv(bias=False)-BatchNorm-ReLU: the normalisation's shift replaces each bias.
  assert set(params["Conv_0"]) == {"kernel"} and set(params["Dense_0"]) == {"kernel"}
  assert set(nmm_em.RelevanceNet("C4 M F8", 3).init(
      jax.random.key(0), jnp.ones((2, 8, 8, 2)))["params"]["Conv_0"]) == {"kernel", "bias"}


def test_doctests():
  result = doctest.testmod(nmm_em)
  assert result.attempted and not result.failed


@pytest.mark.slow
def test_digits_preset_beats_kmeans_over_five_seeds():
  """`deepclust fit nmm_em --dataset digits --runs 5`; k-means scores ACC 0.79 there."""
  nmm = pipeline.fit("nmm_em", "digits", runs=5, options={"progress": False})
  kmeans = pipeline.fit("kmeans", "digits", runs=5, options={"progress": False})
  assert nmm.summary["mean"]["acc"] > kmeans.summary["mean"]["acc"] + 0.03
