"""VaDE and DGG as engine methods: phases, state, batches, the VaDE special case, resume."""

from __future__ import annotations

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax import baselines, data, graph, methods, metrics, pipeline
from deepclust_jax.engine import FitPhase, Method, SGDPhase, check_phases, select_run
from deepclust_jax.losses import vade as vade_losses
from deepclust_jax.methods import vade
from deepclust_jax.models.vade import VAE, GammaHead, Siamese, reparameterize

N, K, P = 120, 3, 2
# Tiny widths and one epoch per phase: every phase compiles and runs in seconds.
TINY = {"hidden": (8,), "latent": P, "pretrain_epochs": 1, "pretrain_batch_size": 40,
        "gamma_epochs": 1, "epochs": 2, "batch_size": 40, "siamese_epochs": 1,
        "siamese_batch_size": 40, "kmeans_restarts": 1, "num_clusters": K}
VADE_PHASES = ["pretrain", "mixture", "joint"]
NO_GRAPH_PHASES = ["pretrain", "mixture", "gamma", "joint"]  # DGG without graph
DGG_PHASES = ["pretrain", "mixture", "gamma", "input_graph", "siamese", "graph", "joint"]


@pytest.fixture(scope="module")
def tiny():
  """The first N digits of classes 0-2, in [0, 1] as the Bernoulli decoder needs."""
  ds = data.load("digits")
  keep = np.flatnonzero(ds.y < K)[:N]
  return data.Dataset(ds.x[keep], ds.y[keep], "tiny_digits", K)


def build(name: str, **overrides) -> Method:
  config = methods.resolve(name, overrides={**TINY, **overrides})
  return methods.get(name).build(config, (64,))


def test_phases_and_their_order():
  v, d = build("vade"), build("dgg", num_neighbours=2)
  assert (v.name, d.name) == ("vade", "dgg")
  assert [p.name for p in v.phases] == VADE_PHASES
  assert [p.name for p in d.phases] == DGG_PHASES
  fits = {"mixture", "input_graph", "graph"}
  for phase in d.phases:
    assert isinstance(phase, FitPhase if phase.name in fits else SGDPhase), phase.name
  # dgg with no neighbours keeps its gamma head: DGG without graph, not VaDE.
  no_graph = build("dgg", num_neighbours=0)
  assert no_graph.name == "dgg" and [p.name for p in no_graph.phases] == NO_GRAPH_PHASES
  dgg, vade_config = methods.resolve("dgg"), methods.resolve("vade")
  assert (dgg.num_neighbours, dgg.posterior, dgg.weights) == (3, "head", "uniform")
  assert (vade_config.num_neighbours, vade_config.posterior, vade_config.weights,
          vade_config.mixture) == (0, "mixture", "softmax", "gmm")


def test_joint_schedule_is_staircase_decay_per_epochs():
  """Adam 2e-3 x 0.9 every 10 epochs, counted in steps (section 4)."""
  method = methods.get("vade").build(methods.resolve("vade", num_classes=10), (784,))
  joint = method.phases[-1]
  assert (joint.epochs, joint.batch_size) == (300, 100)
  tx = joint.updates[0].tx(2)  # 2 steps per epoch: the rate drops every 20 steps
  params = {"vae": jnp.zeros(()), "mixture": jnp.zeros(())}

  def step(opt_state, _):
    # A constant unit gradient: Adam's step is then the learning rate itself.
    updates, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
    return opt_state, -updates["vae"]

  _, rates = jax.lax.scan(step, tx.init(params), None, length=50)
  np.testing.assert_allclose(np.asarray(rates)[[0, 19, 20, 39, 40, 49]],
                             [2e-3, 2e-3, 1.8e-3, 1.8e-3, 1.62e-3, 1.62e-3], rtol=1e-4)


def test_state_shapes_and_dtypes():
  x = jax.ShapeDtypeStruct((N, 64), jnp.float32)
  _, state = jax.eval_shape(build("dgg", num_neighbours=4, siamese_neighbours=3).init,
                            jax.random.key(0), {"x": x})
  assert {k: (v.shape, v.dtype) for k, v in state.items()} == {
      "labels": ((N,), jnp.int32), "input_nbrs": ((N, 3), jnp.int32),
      "nbrs": ((N, 4), jnp.int32)}
  params, state = jax.eval_shape(build("vade").init, jax.random.key(0), {"x": x})
  assert set(state) == {"labels"}
  assert set(params) == {"vae", "mixture"}  # q(c|x) = p(c|z): no gamma head
  chex.assert_shape([params["mixture"]["mu"], params["mixture"]["logvar"]], (K, P))
  chex.assert_shape(params["mixture"]["logits"], (K,))  # the learned mixing weights
  params, _ = jax.eval_shape(build("dgg", num_neighbours=0).init, jax.random.key(0), {"x": x})
  assert set(params) == {"vae", "gamma", "mixture"} and set(params["mixture"]) == {"mu", "logvar"}


def test_joint_batch_gathers_the_stored_neighbours():
  method = build("dgg", num_neighbours=3)
  x = jnp.arange(N * 64, dtype=jnp.float32).reshape(N, 64)
  nbrs = jax.random.randint(jax.random.key(1), (N, 3), 0, N, jnp.int32)
  state = {"labels": jnp.zeros(N, jnp.int32), "input_nbrs": nbrs[:, :2], "nbrs": nbrs}
  idx = jnp.array([5, 0, 77, 119])
  batch = jax.jit(method.phases[-1].batch)(idx, {"x": x}, state, jax.random.key(2))
  chex.assert_shape(batch["x"], (4, 4, 64))
  np.testing.assert_array_equal(batch["x"][:, 0], x[idx])
  np.testing.assert_array_equal(batch["x"][:, 1:], x[nbrs[idx]])
  # VaDE's neighbourhood is the anchor alone.
  batch = build("vade").phases[-1].batch(idx, {"x": x}, {"labels": state["labels"]}, None)
  np.testing.assert_array_equal(batch["x"], x[idx][:, None])


def test_siamese_batch_pairs_input_edges_and_random_negatives():
  method = build("dgg", siamese_neighbours=2)
  siamese = method.phases[DGG_PHASES.index("siamese")]
  x = jnp.arange(N, dtype=jnp.float32)[:, None] * jnp.ones((1, 64))  # row i holds i
  input_nbrs = (jnp.arange(N)[:, None] + jnp.array([1, 2])) % N
  state = {"labels": jnp.zeros(N, jnp.int32), "input_nbrs": input_nbrs.astype(jnp.int32),
           "nbrs": jnp.zeros((N, 3), jnp.int32)}
  idx = jnp.array([3, 50, 100])
  batch = siamese.batch(idx, {"x": x}, state, jax.random.key(0))
  a, b = np.asarray(batch["a"][:, 0], int), np.asarray(batch["b"][:, 0], int)
  positive = np.asarray(batch["positive"])
  assert positive.sum() == (~positive).sum() == 6  # every edge of the batch, as many negatives
  assert sorted(zip(a[positive], b[positive])) == sorted(
      (i, (i + j) % N) for i in [3, 50, 100] for j in (1, 2))
  assert set(a[~positive]) | set(b[~positive]) <= {3, 50, 100}
  assert np.all(a[~positive] != b[~positive])


def test_no_neighbours_gives_vades_elbo():
  """dgg with num_neighbours=0 trains on VaDE's loss: m_i = pi, no neighbours."""
  method = build("dgg", num_neighbours=0)
  x = jnp.asarray(data.load("digits").x[:16])
  key = jax.random.key(3)
  params, state = jax.jit(method.init)(key, {"x": x})
  params["mixture"] = {"mu": jax.random.normal(jax.random.key(4), (K, P)),
                       "logvar": 0.3 * jax.random.normal(jax.random.key(5), (K, P))}
  joint = method.phases[-1]
  batch = joint.batch(jnp.arange(16), {"x": x}, state, key)
  loss, (terms, _) = jax.jit(joint.updates[0].loss)(params, state, batch, key)

  @jax.jit
  def independent(params):
    vae, head = VAE(64, P, (8,)), GammaHead(K)
    z_mean, z_logvar, _, logits = vae.apply({"params": params["vae"]}, x[:, None], key)
    z_mean, z_logvar, logits = z_mean[:, 0], z_logvar[:, 0], logits[:, 0]
    return vade_losses.vade_loss(
        vade_losses.bernoulli_log_likelihood(x, logits), z_mean, z_logvar,
        head.apply({"params": params["gamma"]}, z_mean),
        params["mixture"]["mu"], params["mixture"]["logvar"])

  expected, expected_terms = independent(params)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  for name, value in expected_terms.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-5, atol=1e-6)
  assert float(terms["log_pc_qc"]) < 0  # -KL(gamma || pi), not DGG's 0 for a lone anchor


def test_vade_trains_the_papers_elbo_with_q_c_equal_to_p_c_given_z(x64):
  """vade's joint loss: q(c|x) = p(c|z) at the sampled z, learned pi, the gradient through both."""
  method = build("vade")
  x = jnp.asarray(data.load("digits").x[:16], jnp.float64)
  key = jax.random.key(3)
  params, state = method.init(key, {"x": x})
  keys = jax.random.split(jax.random.key(4), 3)
  mixture = {"mu": jax.random.normal(keys[0], (K, P), jnp.float64),
             "logvar": 0.3 * jax.random.normal(keys[1], (K, P), jnp.float64),
             "logits": jax.random.normal(keys[2], (K,), jnp.float64)}
  joint = method.phases[-1]
  batch = joint.batch(jnp.arange(16), {"x": x}, state, key)

  def loss(mixture):
    return joint.updates[0].loss({**params, "mixture": mixture}, state, batch, key)[0]

  def independent(mixture):
    z_mean, z_logvar, z, logits = VAE(64, P, (8,)).apply({"params": params["vae"]}, x, key)
    log_pi = jax.nn.log_softmax(mixture["logits"])
    log_gamma = vade_losses.vade_log_posterior(z, mixture["mu"], mixture["logvar"],
                                               log_pi=log_pi)
    return vade_losses.vade_loss(vade_losses.bernoulli_log_likelihood(x, logits), z_mean,
                                 z_logvar, log_gamma, mixture["mu"], mixture["logvar"],
                                 log_pi=log_pi)[0]

  np.testing.assert_allclose(loss(mixture), independent(mixture), rtol=1e-6)
  jax.test_util.check_grads(loss, (mixture,), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)
  # The mixing weights move: their gradient is not zero.
  assert float(jnp.abs(jax.grad(loss)(mixture)["logits"]).max()) > 1e-6
  # Prediction is p(c|z) at the latent mean.
  z_mean = method.encode({**params, "mixture": mixture}, state, x)
  np.testing.assert_allclose(
      method.predict({**params, "mixture": mixture}, state, x),
      jnp.exp(vade_losses.vade_log_posterior(z_mean, mixture["mu"], mixture["logvar"],
                                             log_pi=jax.nn.log_softmax(mixture["logits"]))),
      rtol=1e-6)


def vade_pytorch_elbo(x, z_mean, z_logvar, z, probs, pi, mu, logvar):
  """VaDE-pytorch's ``ELBO_Loss`` written out in NumPy (its one z for both of its samples)."""
  with np.errstate(divide="ignore"):
    bce = -np.mean(x * np.maximum(np.log(probs), -100)
                   + (1 - x) * np.maximum(np.log(1 - probs), -100)) * x.shape[1]
  var = np.exp(logvar)
  log_pdf = -0.5 * np.sum(np.log(2 * np.pi) + logvar + (z[:, None] - mu) ** 2 / var, -1)
  gamma = np.exp(np.log(pi) + log_pdf) + 1e-10
  gamma /= gamma.sum(1, keepdims=True)
  kl = 0.5 * np.mean(np.sum(gamma * np.sum(
      logvar + np.exp(z_logvar[:, None] - logvar) + (z_mean[:, None] - mu) ** 2 / var, -1), 1))
  return (bce + kl - np.mean(np.sum(gamma * np.log(pi / gamma), 1))
          - 0.5 * np.mean(np.sum(1 + z_logvar, 1)))


@pytest.mark.parametrize("posterior_sample", ["shared", "independent"])
def test_vade_pytorch_options_train_its_elbo(x64, posterior_sample):
  """weights=raw, posterior_floor=1e-10 and the clamped likelihood give VaDE-pytorch's loss.

  Its loss drops the constants ``p/2 log 2 pi`` of the mixture term and of the
  entropy, which cancel. With ``posterior_sample="independent"`` (theirs) p(c|z)
  is taken at a second draw of z, not at the reconstruction's.
  """
  method = build("vade", weights="raw", posterior_floor=1e-10, likelihood="bernoulli_clamped",
                 posterior_sample=posterior_sample)
  x = jnp.asarray(data.load("digits").x[:16], jnp.float64)
  key = jax.random.key(3)
  params, state = method.init(key, {"x": x})
  keys = jax.random.split(jax.random.key(4), 3)
  mixture = {"mu": 3 * jax.random.normal(keys[0], (K, P), jnp.float64),
             "logvar": 0.3 * jax.random.normal(keys[1], (K, P), jnp.float64),
             # Unnormalised, as its Adam leaves them after a few epochs.
             "pi": jax.random.uniform(keys[2], (K,), jnp.float64, 2.0, 7.0)}
  assert set(params["mixture"]) == {"mu", "logvar", "pi"}
  joint = method.phases[-1]
  batch = joint.batch(jnp.arange(16), {"x": x}, state, key)
  loss = joint.updates[0].loss({**params, "mixture": mixture}, state, batch, key)[0]
  z_mean, z_logvar, z, logits = VAE(64, P, (8,)).apply({"params": params["vae"]}, x, key)
  if posterior_sample == "independent":
    second = reparameterize(jax.random.fold_in(key, 1), z_mean, z_logvar)
    assert not np.allclose(second, z)
    z = second
  theirs = vade_pytorch_elbo(*map(np.asarray, (x, z_mean, z_logvar, z, jax.nn.sigmoid(logits),
                                               mixture["pi"], mixture["mu"],
                                               mixture["logvar"])))
  # Our variance floor (1e-6) is not theirs: a small relative difference only.
  np.testing.assert_allclose(loss, theirs, rtol=1e-5)
  # p(c|z) does not see a common scale of pi, the unnormalised log pi does: scaling
  # every weight by s lowers the loss by log s, so its Adam keeps raising them all.
  grad = jax.grad(lambda m: joint.updates[0].loss({**params, "mixture": m}, state, batch,
                                                  key)[0])(mixture)
  # (Up to the floor's 1e-10, which does see the scale where densities are small.)
  np.testing.assert_allclose(jnp.dot(grad["pi"], mixture["pi"]), -1.0, atol=1e-4)


@pytest.mark.parametrize("schedule", ["keras", "pytorch", "dgg"])
def test_schedules_are_the_public_codes(schedule):
  """Each reference's joint schedule as a preset: floor, epsilon, batch, weight decay, head."""
  from deepclust_jax.configs.vade import SCHEDULES
  config = methods.resolve("vade", dataset="mnist", num_classes=10,
                           overrides=SCHEDULES[schedule])
  method = methods.get("vade").build(config, (784,))
  joint = method.phases[-1]
  tx = joint.updates[0].tx(1)  # one step per epoch: the rate drops every decay_epochs steps
  params = {"vae": jnp.zeros(()), "mixture": jnp.zeros(())}

  def step(opt_state, _):
    updates, opt_state = tx.update(jax.tree.map(jnp.ones_like, params), opt_state, params)
    return opt_state, -updates["vae"]

  rates = np.asarray(jax.lax.scan(step, tx.init(params), None, length=300)[1])
  expected = {"keras": (0.9, 2e-4, 100), "pytorch": (0.95, 0.0, 800), "dgg": (0.9, 0.0, 100)}
  decay, floor, batch = expected[schedule]
  epochs = np.arange(300)
  want = np.maximum(2e-3 * decay ** (epochs // 10), floor)
  if schedule == "dgg":  # L2 weight decay 1e-4 on the zero parameters adds nothing here
    assert config.weight_decay == 1e-4
  # Adam's step for a constant unit gradient is the rate times 1 / (1 + eps).
  np.testing.assert_allclose(rates, want / (1 + config.adam_eps), rtol=1e-4)
  assert joint.batch_size == batch


def test_fit_resume_and_state(tiny, tmp_path):
  """Through pipeline.fit: the graph and labels land in the checkpointed state."""
  overrides = {**TINY, "num_neighbours": 2, "mixture": "gmm"}
  options = {"progress": False}
  report = pipeline.fit("dgg", tiny, runs=2, overrides=overrides, out=tmp_path / "run",
                        options=options)
  result = report.result
  assert [r["phase"] for r in result.history] == [
      "pretrain", "mixture", "gamma", "input_graph", "siamese", "graph", "joint", "joint"]
  assert np.isfinite(result.terms["neg_elbo"]).all()
  assert result.selected == select_run(result.terms["neg_elbo"], result.collapsed)
  state = result.state
  chex.assert_shape(state["nbrs"], (2, N, 2))
  expected_input = graph.knn(jnp.asarray(tiny.x), report.config.siamese_neighbours)
  for r in range(2):
    np.testing.assert_array_equal(state["input_nbrs"][r], expected_input)
    # The stored graph is the kNN graph of the final Siamese embedding.
    embedding = Siamese(P, (8,)).apply(
        {"params": jax.tree.map(lambda a: a[r], result.params["siamese"])}, tiny.x)
    np.testing.assert_array_equal(state["nbrs"][r], graph.knn(embedding, 2))
  assert 0 <= state["labels"].min() and state["labels"].max() < K

  resumed = pipeline.fit("dgg", tiny, runs=2, overrides=overrides, out=tmp_path / "run",
                         resume=True, options=options).result
  np.testing.assert_array_equal(resumed.labels, result.labels)
  jax.tree.map(np.testing.assert_array_equal, resumed.state, state)


@pytest.mark.parametrize("name", ["vade", "dgg"])
def test_presets_build_and_trace_for_every_registered_dataset(name):
  key = jax.random.key(0)
  for dataset in data.names():
    spec = data.get(dataset)
    width = spec.num_features or 2000  # 20news: at most 2,000 words
    config = methods.resolve(name, dataset=dataset, num_classes=spec.num_classes)
    assert config.num_clusters == spec.num_classes, dataset
    method = methods.get(name).build(config, spec.image_shape or (width,))
    check_phases(method, {"x": jax.ShapeDtypeStruct((64, width), jnp.float32)}, key)


def test_paper_schedule_on_mnist():
  config = methods.resolve("dgg", dataset="mnist", num_classes=10)
  assert (config.learning_rate, config.decay_rate, config.decay_epochs) == (2e-3, 0.9, 10)
  assert (config.batch_size, config.epochs, config.siamese_neighbours) == (100, 300, 2)
  assert config.hidden == (500, 500, 2000) and config.latent == 10
  assert config.likelihood == "bernoulli"


def test_docstring_examples():
  assert doctest.testmod(vade, raise_on_error=True).attempted > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vade", "dgg"])
def test_beats_kmeans_on_digits(name):
  """The digits preset, 5 seeds: mean ACC above k-means' on the raw pixels."""
  ds = data.load("digits")
  report = pipeline.fit(name, ds, runs=5, options={"progress": False, "eval_every": 1000})
  kmeans_acc = np.mean([
      metrics.evaluate(ds.y, np.asarray(baselines.kmeans(jax.random.key(s), ds.x, 10).labels))
      ["acc"] for s in range(5)])
  assert report.summary["mean"]["acc"] > kmeans_acc + 0.01, (report.summary, kmeans_acc)


def test_the_selection_criterion_is_the_training_objectives_estimate(tiny):
  """``neg_elbo`` is the joint loss per point, with its sample z ~ q(z|x).

  Decoding the posterior mean instead did not charge the reconstruction for
  q's variance, and ranked untrained (wide) log-variance heads best.
  """
  method = build("vade", epochs=0)
  from deepclust_jax.engine import TrainOptions, train
  result = train(method, tiny.x, options=TrainOptions(progress=False))
  params = jax.tree.map(lambda a: a[0], result.params)
  x = jnp.asarray(tiny.x)
  criterion = method.criteria(params, None, x, jnp.full((N, K), 1.0 / K))["neg_elbo"]
  assert criterion.shape == (N,)
  joint = method.phases[-1].updates[0].loss
  loss, _ = joint(params, None, {"x": x[:, None]}, jax.random.key(vade.CRITERION_SEED))
  np.testing.assert_allclose(float(jnp.mean(criterion)), float(loss), rtol=1e-5)
