"""The summary over runs: mean ± std, the selected run, the criterion's rank correlation."""

import pytest

from deepclust_jax.summary import format_summary, summarize


def test_summarize_and_format_summary():
  scores = [{"acc": 0.5, "nmi": 0.25, "ari": 0.0}, {"acc": 0.75, "nmi": 0.75, "ari": 0.5}]
  summary = summarize(scores, selected=1, select_by="l_sp", collapsed=[0])
  assert summary["runs"] == 2
  assert summary["mean"] == pytest.approx({"acc": 0.625, "nmi": 0.5, "ari": 0.25})
  assert summary["std"] == pytest.approx({"acc": 0.125, "nmi": 0.25, "ari": 0.25})
  assert summary["selected"] == {"run": 1, "by": "l_sp", "acc": 0.75, "nmi": 0.75, "ari": 0.5}
  assert summary["collapsed"] == [0]
  text = format_summary(summary, "# title")
  lines = text.splitlines()
  assert lines[0] == "# title"
  assert "| mean ± std over 2 run(s) | 62.5 ± 12.5 | 50.0 ± 25.0 | 25.0 ± 25.0 |" in lines
  assert "| selected run 1 (lowest l_sp) | 75.0 | 75.0 | 50.0 |" in lines
  assert "1 run(s) collapsed (a cluster left empty), never selected unless all did: [0]" in text
  assert "selected" not in format_summary(summarize(scores, None))
  assert summarize([], None) == {}
  assert "nothing to score" in format_summary({}, "t")


def test_rank_correlation_of_the_criterion_with_acc():
  """Minus the criterion against ACC over the runs that did not collapse (Spearman)."""
  scores = [{"acc": a, "nmi": 0.0, "ari": 0.0} for a in (0.9, 0.5, 0.7, 0.99, 0.6)]
  # Lower criterion, higher ACC, except run 3, which collapsed and is left out.
  criterion = [1.0, 5.0, 3.0, 100.0, 4.0]
  summary = summarize(scores, 0, "neg_elbo", collapsed=[3], criterion=criterion)
  assert summary["selected"]["spearman_acc"] == pytest.approx(1.0)
  assert "(Spearman): +1.00" in format_summary(summary)
  reversed_ = summarize(scores, 0, "neg_elbo", collapsed=[3],
                                criterion=[-c for c in criterion])
  assert reversed_["selected"]["spearman_acc"] == pytest.approx(-1.0)
  # Two runs say nothing about a ranking.
  two = summarize(scores[:2], 0, "neg_elbo", criterion=criterion[:2])
  assert "spearman_acc" not in two["selected"]
