"""The shared pretraining and mixture start: recipes, starts, reuse through --pretrained."""

from __future__ import annotations

import doctest
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepclust_jax import cli, data, estimators, methods, pipeline
from deepclust_jax.engine import TrainOptions, train
from deepclust_jax.errors import ConfigError, InputError
from deepclust_jax.methods import aecm, pretraining
from deepclust_jax.summary import format_summary

K = 3
QUIET = {"progress": False}
# Small enough to compile and train in seconds; the mixture start on its own.
SMALL = {"hidden": (16,), "latent": 4, "num_clusters": K, "kmeans_restarts": 2,
         "pretrain_epochs": 2, "pretrain_batch_size": 50}
STARTS = {  # every method's settings that stop right after its mixture start
    "ae_kmeans": {},
    "aecm": {"init": "p", "cm_epochs": 0, "epochs": 0, "centroid_encoder": "nearest"},
    "vade": {"epochs": 0},
    "dgg": {"gamma_epochs": 0, "epochs": 0, "num_neighbours": 0},
    "edgam": {"epochs": 0},
}


@pytest.fixture(scope="module")
def small():
  """300 digits of classes 0-2 in [0, 1]."""
  ds = data.load("digits")
  keep = np.flatnonzero(ds.y < K)[:300]
  return data.Dataset(ds.x[keep], ds.y[keep], "small_digits", K)


def test_doctests():
  assert doctest.testmod(pretraining).failed == 0


def test_partition_moments_match_numpy():
  rng = np.random.default_rng(0)
  z, labels = rng.normal(size=(50, 3)), rng.integers(0, 4, 50)
  labels[labels == 3] = 0  # cluster 3 is empty
  weights, mu, var = pretraining.partition_moments(jnp.asarray(z), jnp.asarray(labels), 4)
  for k in range(3):
    np.testing.assert_allclose(mu[k], z[labels == k].mean(0), atol=1e-6)
    np.testing.assert_allclose(var[k], z[labels == k].var(0), atol=1e-6)
    np.testing.assert_allclose(weights[k], np.mean(labels == k), atol=1e-7)
  assert float(weights[3]) == 0 and not np.asarray(var[3]).any()


def test_variance_scaling_is_kerases_uniform_fan_in():
  tree = {"a": {"kernel": jnp.zeros((400, 300)), "bias": jnp.ones(300)},
          "bn": {"scale": jnp.ones(3)}}
  new = pretraining.variance_scaling(jax.random.key(0), tree)
  kernel = np.asarray(new["a"]["kernel"])
  limit = 1 / np.sqrt(400)
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit
  np.testing.assert_allclose(kernel.var(), limit**2 / 3, rtol=0.05)  # U(-l, l)
  assert not np.asarray(new["a"]["bias"]).any()
  np.testing.assert_array_equal(new["bn"]["scale"], 1.0)


@pytest.mark.parametrize("recipe", ["adam", "sgd", "dec", "sdae"])
@pytest.mark.parametrize("name", ["ae_kmeans", "vade"])
def test_each_recipe_lowers_its_reconstruction_loss(small, name, recipe):
  rates = {"adam": 1e-3, "sgd": 1e-2 if name == "ae_kmeans" else 1e-3, "dec": 0.5, "sdae": 0.5 if name == "ae_kmeans" else 0.2}
  overrides = {**SMALL, **STARTS[name], "recipe": recipe, "pretrain_lr": rates[recipe],
               "pretrain_epochs": 8, "layer_epochs": 4, "refit_epochs": 4}
  method = methods.build(name, shape=(64,), **overrides)
  result = train(method, small.x, options=TrainOptions(**QUIET))
  phases = [p.name for p in method.phases if p.name.startswith("pretrain")]
  refit = ["pretrain_refit"] if name == "vade" and recipe in ("dec", "sdae") else []
  assert phases == (["pretrain_layer_1", "pretrain_layer_2", "pretrain"] if recipe == "sdae"
                    else ["pretrain"]) + refit
  for phase in phases:
    losses = [r["terms"]["reconstruction"][0] for r in result.history if r["phase"] == phase]
    # The refit's 24 Adam steps at 1e-3 move little on 300 samples.
    assert losses[-1] < (0.99 if phase == "pretrain_refit" else 0.9) * losses[0], (phase, losses)


def test_the_mse_pretraining_loss_is_the_sigmoids_squared_error(small):
  def losses(pretrain_loss):
    overrides = {**SMALL, **STARTS["vade"], "pretrain_epochs": 6, "pretrain_loss": pretrain_loss}
    result = train(methods.build("vade", shape=(64,), **overrides), small.x,
                   options=TrainOptions(**QUIET))
    return [r["terms"]["reconstruction"][0] for r in result.history if r["phase"] == "pretrain"]

  own, squared = losses("own"), losses("mse")
  # The Bernoulli loss is nats per sample (64 features); the MSE of a sigmoid
  # against data in [0, 1] is a mean below 1.
  assert min(own) > 5 and max(squared) < 1, (own, squared)
  assert squared[-1] < 0.9 * squared[0], squared
  with pytest.raises(ConfigError, match="pretrain_loss=mse is for recipes adam and sgd"):
    methods.build("vade", shape=(64,), recipe="dec", pretrain_loss="mse")


@pytest.mark.parametrize("scheme, recipe, limit, biases", [
    ("recipe", "adam", None, None), ("recipe", "dec", "fan_in", False),
    ("fan_in", "adam", "fan_in", False), ("torch", "adam", "fan_in", True),
    ("method", "dec", None, None)])
def test_pretrain_init_draws_the_autoencoder(small, scheme, recipe, limit, biases):
  overrides = {**SMALL, **STARTS["vade"], "recipe": recipe, "pretrain_init": scheme}
  params, _ = methods.build("vade", shape=(64,), **overrides).init(
      jax.random.key(0), {"x": jnp.asarray(small.x)})
  dense = params["vae"]["encoder"]["dense_0"]  # 64 -> 16
  bound = 1 / np.sqrt(64)
  if limit is None:  # the method's own draws, beyond the uniform bound
    assert np.abs(dense["kernel"]).max() > bound
    return
  assert np.abs(dense["kernel"]).max() <= bound
  assert np.asarray(dense["bias"]).all() == biases
  assert np.abs(dense["bias"]).max() <= bound


def test_a_logits_decoders_refit_moves_the_decoder_alone():
  rng = np.random.default_rng(0)
  dense = lambda m, n: {"kernel": jnp.asarray(rng.normal(size=(m, n)), jnp.float32),  # noqa: E731
                        "bias": jnp.zeros(n)}
  params = {"ae": {"encoder": {"dense_0": dense(6, 2)}, "decoder": {"dense_0": dense(2, 6)}}}

  def apply(params, state, x, key):
    ae = params["ae"]
    z = x @ ae["encoder"]["dense_0"]["kernel"] + ae["encoder"]["dense_0"]["bias"]
    return z @ ae["decoder"]["dense_0"]["kernel"] + ae["decoder"]["dense_0"]["bias"], state

  def bernoulli_nll(x, logits):
    return jnp.mean(jax.nn.softplus(logits) - x * logits)

  spec = pretraining.AutoencoderSpec("ae", apply, bernoulli_nll, logits=True,
                                     decoder_layers=(("decoder", "dense_0"),))
  (refit,) = pretraining.phases(spec, pretraining.PretrainConfig(recipe="dec",
                                                                 pretrain_epochs=0))
  assert refit.name == "pretrain_refit"
  x = jnp.asarray(rng.uniform(size=(8, 6)), jnp.float32)
  grads = jax.grad(lambda p: refit.updates[0].loss(p, {}, {"x": x}, None)[0])(params)
  assert not any(np.asarray(g).any() for g in jax.tree.leaves(grads["ae"]["encoder"]))
  assert all(np.asarray(g).any() for g in jax.tree.leaves(grads["ae"]["decoder"]))
  # Without logits (a linear output) recipe dec has no refit.
  plain = pretraining.AutoencoderSpec("ae", apply, bernoulli_nll)
  assert pretraining.phases(plain, pretraining.PretrainConfig(recipe="dec",
                                                              pretrain_epochs=0)) == ()


def test_sdae_is_refused_where_there_is_no_dense_stack():
  with pytest.raises(ConfigError, match="recipe=sdae needs a dense"):
    methods.build("aecm", shape=(2,), num_clusters=2, init="p", quadratic=True, recipe="sdae")


@pytest.mark.parametrize("mixture", ["kmeans", "gmm"])
@pytest.mark.parametrize("name", sorted(STARTS))
def test_each_methods_start_reproduces_the_mixture_labels(small, name, mixture):
  """Before any joint step, each method's clusters are the start's k-means (GMM) labels."""
  if name == "aecm" and mixture == "gmm":
    pytest.skip("AE-CM's CM takes only the means: its start is their nearest-mean partition")
  overrides = {**SMALL, **STARTS[name], "mixture": mixture}
  if name == "edgam":
    overrides |= {"mixing": "learned" if mixture == "gmm" else "uniform"}
  config = methods.resolve(name, overrides=overrides)
  method = methods.get(name).build(config, (64,))
  x = jnp.asarray(small.x)
  key = jax.random.key(0)
  params, state = method.init(key, {"x": x})
  start = next(p for p in method.phases if p.name == "mixture")
  params, state, _ = start.update(params, state, {"x": x}, key)
  z = method.encode(params, state, x) if method.encode else None
  expected = pretraining.fit_start(key, z, x, config, K)
  if name == "dgg" or (name, mixture) == ("vade", "kmeans"):
    # DGG's gamma head learns them next; VaDE's p(c|z) from k-means weighs each
    # cluster's own variances, no nearest-centroid rule: they are the state's labels.
    np.testing.assert_array_equal(state["labels"], expected.labels)
    np.testing.assert_allclose(params["mixture"]["mu"], expected.mu, rtol=1e-6)
    return
  labels = np.asarray(jnp.argmax(method.predict(params, state, x), -1))
  np.testing.assert_array_equal(labels, expected.labels)


def fit_small(tmp_path, name, small, out, **kwargs):
  overrides = {**SMALL, **STARTS[name], **kwargs.pop("overrides", {})}
  return pipeline.fit(name, small, runs=2, overrides=overrides, out=tmp_path / out,
                      options=QUIET, **kwargs)


@pytest.mark.parametrize("name", ["ae_kmeans", "vade"])
def test_pretrained_start_gives_the_same_labels(tmp_path, small, name):
  own = fit_small(tmp_path, name, small, "own", overrides={"recipe": "dec", "pretrain_lr": 0.5})
  saved = sorted(p.name for p in (tmp_path / "own" / "pretrained").iterdir())
  assert saved == ["run_0.npz", "run_1.npz"]
  # The same recipe (so the same phases, whose index keys the later ones) on
  # another budget and rate: none of it runs, the saved autoencoders stand in.
  reused = fit_small(tmp_path, name, small, "reused", pretrained=tmp_path / "own",
                     overrides={"recipe": "dec", "pretrain_epochs": 7})
  np.testing.assert_array_equal(reused.result.labels, own.result.labels)
  assert reused.summary["pretrained"]["run_dir"] == str(tmp_path / "own")
  assert "Started from the pretrained autoencoders of" in format_summary(
      reused.summary)
  assert not [r for r in reused.result.history if r["phase"] == "pretrain"]
  # The new run directory keeps what it started from, so it can serve in turn.
  assert (tmp_path / "reused" / "pretrained" / "run_1.npz").exists()


def test_estimator_starts_from_a_pretrained_run_directory(tmp_path, small):
  own = fit_small(tmp_path, "ae_kmeans", small, "own")
  options = {**SMALL, **STARTS["ae_kmeans"], "pretrain_epochs": 7}
  n_clusters = options.pop("num_clusters")
  estimator = estimators.AEKMeans(n_clusters, n_runs=2, random_state=0,
                                  pretrained=str(tmp_path / "own"), **options)
  np.testing.assert_array_equal(estimator.fit(small.x).labels_,
                                own.result.labels[estimator.selected_run_])
  other = estimators.AEKMeans(n_clusters, n_runs=2, pretrained=str(tmp_path / "own"),
                              **{**options, "hidden": (8,)})
  with pytest.raises(InputError, match="its network differs"):
    other.fit(small.x)
  with pytest.raises(InputError, match=r"its data \(preprocessing\) differs"):
    estimators.AEKMeans(n_clusters, n_runs=2, pretrained=str(tmp_path / "own"),
                        **options).fit(small.x[:-1])


def test_aecm_starts_from_ae_kmeans(tmp_path, small):
  """Paired rows: AE-CM^p from AE + k-means' autoencoders (same dense network)."""
  fit_small(tmp_path, "ae_kmeans", small, "ae", overrides={"activation": "leaky_relu"})
  report = fit_small(tmp_path, "aecm", small, "aecm", pretrained=tmp_path / "ae")
  assert report.summary["pretrained"]["method"] == "ae_kmeans"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A finished ae_kmeans run on digits through the command line."""
  out = tmp_path_factory.mktemp("cli") / "source"
  assert cli.main(["fit", "ae_kmeans", "--dataset", "digits", "--out", str(out), "--quiet",
                   "--set", "hidden=16", "--set", "pretrain_epochs=1"]) == 0
  return out


def mismatch_cases(source, tmp_path):
  base = ["fit", "ae_kmeans", "--dataset", "digits", "--quiet", "--set", "pretrain_epochs=1"]
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "config.json").write_text("{")
  return [
      (base + ["--set", "hidden=32"], "its network differs"),
      (["fit", "vade", "--dataset", "digits", "--quiet", "--set", "hidden=16"],
       "its network differs"),
      (["fit", "ae_kmeans", "--dataset", "iris", "--quiet", "--set", "hidden=16"],
       "its dataset differs"),
      (["fit", "cm", "--dataset", "digits", "--quiet"], "has no autoencoder"),
      (base + ["--set", "hidden=16"], "not a readable run directory", broken),
  ]


def test_mismatched_sources_are_refused_with_one_line(source, tmp_path, capsys):
  for case in mismatch_cases(source, tmp_path):
    argv, message = case[:2]
    origin = case[2] if len(case) > 2 else source
    code = cli.main(argv + ["--pretrained", str(origin), "--out", str(tmp_path / "x")])
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert message in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_one_run_source_starts_every_run(source, tmp_path):
  out = tmp_path / "two"
  report = pipeline.fit("ae_kmeans", "digits", runs=2, overrides={"hidden": (16,)},
                        pretrained=source, out=out, options=QUIET)
  assert report.summary["pretrained"]["shared"]
  assert "shared by every run" in format_summary(report.summary)
  with np.load(out / "pretrained" / "run_0.npz") as a, np.load(out / "pretrained" /
                                                              "run_1.npz") as b:
    assert all(np.array_equal(a[name], b[name]) for name in a.files)


def test_a_source_of_too_few_or_unfinished_runs_is_refused(source, tmp_path):
  import shutil
  other = tmp_path / "other"
  shutil.copytree(source, other)
  config = json.loads((other / "config.json").read_text())
  (other / "config.json").write_text(json.dumps({**config, "runs": 2}))
  with pytest.raises(InputError, match=r"no autoencoder of run\(s\) 1 \(its pretraining did not finish"):
    pipeline.fit("ae_kmeans", "digits", overrides={"hidden": (16,)}, pretrained=other,
                 options=QUIET)
  shutil.copy(other / "pretrained" / "run_0.npz", other / "pretrained" / "run_1.npz")
  with pytest.raises(InputError, match="it has 2 runs, this run needs 3"):
    pipeline.fit("ae_kmeans", "digits", runs=3, overrides={"hidden": (16,)}, pretrained=other,
                 options=QUIET)


def test_other_data_under_the_same_name_is_refused(source, tmp_path):
  config = json.loads((source / "config.json").read_text())
  config["data_sha256"] = "0" * 64  # as if the files had been preprocessed otherwise
  other = tmp_path / "other"
  (other / "pretrained").mkdir(parents=True)
  (other / "config.json").write_text(json.dumps(config))
  with pytest.raises(InputError, match=r"its data \(preprocessing\) differs"):
    pipeline.fit("ae_kmeans", "digits", overrides={"hidden": (16,)}, pretrained=other,
                 options=QUIET)


def test_missing_autoencoder_file_is_named(source, tmp_path):
  import shutil
  copy = tmp_path / "copy"
  shutil.copytree(source, copy)
  (copy / "pretrained" / "run_0.npz").unlink()
  with pytest.raises(InputError, match=r"holds no autoencoder of run\(s\) 0"):
    pipeline.fit("ae_kmeans", "digits", overrides={"hidden": (16,), "pretrain_epochs": 1},
                 pretrained=copy, options=QUIET)


def test_bfloat16_matmuls_keep_float32_parameters_and_track_float32(small):
  """Mixed precision: same parameters, float32 outputs and gradients within bfloat16's rounding."""
  x = jnp.asarray(small.x[:64])
  f32, spec = aecm.autoencoder(methods.resolve("ae_kmeans", overrides={"hidden": (32,)}), (64,))
  bf16, _ = aecm.autoencoder(
      methods.resolve("ae_kmeans", overrides={"hidden": (32,), "matmul_dtype": "bfloat16"}),
      (64,))
  params = f32.init(jax.random.key(0), x)["params"]
  assert jax.tree.map(jnp.shape, bf16.init(jax.random.key(0), x)["params"]) == jax.tree.map(
      jnp.shape, params)

  def loss(model, params):
    return spec.loss(x, model.apply({"params": params}, x)[1])

  (l32, g32), (l16, g16) = (jax.value_and_grad(loss, argnums=1)(m, params) for m in (f32, bf16))
  assert l16.dtype == jnp.float32 and {g.dtype for g in jax.tree.leaves(g16)} == {np.dtype("float32")}
  np.testing.assert_allclose(l16, l32, rtol=2e-2)
  for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
    assert np.linalg.norm(a - b) <= 0.05 * np.linalg.norm(b) + 1e-6
  assert float(l16) != float(l32)  # the operands were rounded


def test_tf32_products_round_the_operands_to_10_mantissa_bits():
  """matmul_dtype=tf32: each product's operands rounded to nearest (even) TF32, float32 sums."""
  from deepclust_jax.models.autoencoder import MLP

  def tf32(a):  # round to nearest even on the 13 low mantissa bits, independently of XLA
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~np.uint64(0x1FFF)
    return bits.astype(np.uint32).view(np.float32)

  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 7)).astype(np.float32)
  net = MLP((3,), matmul_dtype="tf32")
  params = net.init(jax.random.key(0), x)["params"]
  out = net.apply({"params": params}, x)
  layer = params["dense_0"]
  expected = tf32(x).astype(np.float64) @ tf32(layer["kernel"]) + layer["bias"]
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
  exact = x.astype(np.float64) @ np.asarray(layer["kernel"]) + layer["bias"]
  assert np.abs(np.asarray(out) - exact).max() > 1e-5  # the rounding is visible
  assert out.dtype == jnp.float32
  # Backward: the products of the gradient round their operands, the cotangent included.
  g = rng.normal(size=(5, 3)).astype(np.float32)
  grad_kernel = jax.grad(lambda k: jnp.sum(net.apply(
      {"params": {"dense_0": {**layer, "kernel": k}}}, x) * g))(layer["kernel"])
  np.testing.assert_allclose(grad_kernel, tf32(x).T.astype(np.float64) @ tf32(g),
                             rtol=1e-6, atol=1e-6)


def test_bfloat16_products_round_forward_and_input_gradient_operands_only():
  """matmul_dtype=bfloat16: x @ w and g @ w.T of bfloat16 operands, x.T @ g in float32."""
  from deepclust_jax.models.autoencoder import MLP, dot_general

  def bf16(a):
    return np.asarray(jnp.asarray(a).astype(jnp.bfloat16).astype(jnp.float32), np.float64)

  rng = np.random.default_rng(0)
  x, g = rng.normal(size=(2, 5, 7)).astype(np.float32), rng.normal(size=(2, 5, 3))
  net = MLP((3,), matmul_dtype="bfloat16")
  params = net.init(jax.random.key(0), x)["params"]
  w, b = params["dense_0"]["kernel"], params["dense_0"]["bias"]
  out, vjp = jax.vjp(lambda x, w: net.apply({"params": {"dense_0": {"kernel": w, "bias": b}}},
                                            x), x, w)
  np.testing.assert_allclose(out, bf16(x) @ bf16(w) + b, rtol=1e-6, atol=1e-6)
  assert np.abs(np.asarray(out) - (x.astype(np.float64) @ np.asarray(w) + b)).max() > 1e-4
  dx, dw = vjp(jnp.asarray(g, jnp.float32))
  np.testing.assert_allclose(dx, bf16(g) @ bf16(w).T, rtol=1e-6, atol=1e-6)
  exact_dw = np.einsum("bnk,bno->ko", x.astype(np.float64), g)
  np.testing.assert_allclose(dw, exact_dw, rtol=1e-5, atol=1e-5)  # float32, not rounded
  assert out.dtype == dx.dtype == dw.dtype == jnp.float32
  with pytest.raises(ValueError, match="nn.Dense's"):
    dot_general("bfloat16")(x[0], x[0], (((0,), (0,)), ((), ())))


def test_bfloat16_matmuls_train(small):
  overrides = {**SMALL, "recipe": "dec", "pretrain_lr": 0.5, "pretrain_epochs": 8,
               "matmul_dtype": "bfloat16"}
  result = train(methods.build("ae_kmeans", shape=(64,), **overrides), small.x,
                 options=TrainOptions(**QUIET))
  losses = [r["terms"]["reconstruction"][0] for r in result.history if r["phase"] == "pretrain"]
  assert losses[-1] < 0.9 * losses[0], losses


def test_every_ae_methods_preset_starts_from_the_datasets_best_recipe():
  from deepclust_jax.configs import pretraining as presets
  assert presets.BEST, "no dataset has a measured best recipe"
  for dataset, recipe in presets.BEST.items():
    for name in ("ae_kmeans", "edgam"):
      config = methods.resolve(name, dataset=dataset, num_classes=10)
      # EDGaM's networks end in a sigmoid: DEC's SGD stalls its MLP on MNIST and
      # takes its Fashion-MNIST conv network to NaN, so Adam there.
      adam = name == "edgam" and dataset in ("mnist", "fashion_mnist")
      expected = presets.ADAM if adam else recipe
      assert (config.recipe, config.pretrain_lr) == (expected["recipe"], expected["pretrain_lr"])
    # VaDE and DGG's Bernoulli decoders die under DEC's SGD at rate 1: Adam.
    for name in ("vade", "dgg"):
      config = methods.resolve(name, dataset=dataset, num_classes=10)
      assert (config.recipe, config.pretrain_lr, config.likelihood) == ("adam", 1e-3,
                                                                        "bernoulli")
    # AE-CM keeps its authors' protocol, with which its presets reproduce Table 5.
    assert methods.resolve("aecm", dataset=dataset, num_classes=10).recipe == "sgd"
  assert doctest.testmod(presets).attempted > 0


def test_naming_a_recipe_brings_its_optimiser():
  """--set recipe=adam on a DEC preset is Adam at 1e-3, not Adam at DEC's rate of 1."""
  def resolve(**overrides):
    config = methods.resolve("ae_kmeans", dataset="mnist", num_classes=10,
                             overrides=overrides)
    return config.recipe, config.pretrain_lr, config.pretrain_epochs
  assert resolve() == ("dec", 1.0, 300)
  assert resolve(recipe="adam") == ("adam", 1e-3, 300)  # the preset's epochs stay
  assert resolve(recipe="adam", pretrain_lr=0.01) == ("adam", 0.01, 300)
  # Naming the preset's own recipe keeps the preset's settings (AE-CM's own SGD rate).
  aecm = methods.resolve("aecm", dataset="mnist", num_classes=10)
  assert methods.resolve("aecm", dataset="mnist", num_classes=10,
                         overrides={"recipe": aecm.recipe}).pretrain_lr == aecm.pretrain_lr
  dec = methods.resolve("vade", dataset="digits", num_classes=10, overrides={"recipe": "dec"})
  assert (dec.pretrain_lr, dec.pretrain_momentum) == (1.0, 0.9)


def test_a_run_cut_inside_pretraining_is_not_scored(small):
  # Its clusters are the mixture's untrained start: scores would pass for a
  # (poor) result of the method. Cut after the mixture start, it is scored.
  method = methods.build("ae_kmeans", shape=(64,), **SMALL)
  cut = train(method, small.x, small.y,
              options=TrainOptions(runs=2, time_limit=0.0, **QUIET))
  assert cut.cut_short and cut.unfitted == [0, 1] and cut.metrics is None
  summary = format_summary({"cut_short": True, "unfitted": cut.unfitted})
  assert "(not scored)" in summary and "inside pretraining" in summary
  whole = train(method, small.x, small.y, options=TrainOptions(runs=2, **QUIET))
  assert whole.unfitted == [] and len(whole.metrics) == 2
