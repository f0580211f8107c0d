"""ALS training and request-time fold-in on data with a known structure."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from recsys.cf.als import AlsParams, aggregate_recent, confidence_matrix, fold_in, train_als
from recsys.cf.interactions import Interaction, build_matrix

PARAMS = AlsParams(factors=8, iterations=20, regularization=0.1, alpha=5.0, seed=7, threads=1)


def two_taste_groups(seed: int = 3):
    """Users 0-39 like items a0-a29, users 40-79 like items b0-b29 (plus a little noise)."""
    rng = random.Random(seed)
    events = []
    for u in range(80):
        group = "a" if u < 40 else "b"
        other = "b" if group == "a" else "a"
        for i in rng.sample(range(30), 10):
            events.append(Interaction(f"u{u}", f"{group}{i}", "CLICK", None, float(u)))
        events.append(Interaction(f"u{u}", f"{other}{rng.randrange(30)}", "VIEW", None, 0.0))
    return build_matrix(events)


@pytest.fixture(scope="module")
def trained():
    matrix = two_taste_groups()
    return matrix, train_als(matrix, PARAMS)


def test_fold_in_equals_implicits_recalculate_user(trained) -> None:
    from implicit.cpu.als import AlternatingLeastSquares

    matrix, model = trained
    reference = AlternatingLeastSquares(
        factors=PARAMS.factors, regularization=PARAMS.regularization, alpha=1.0
    )
    reference.item_factors = model.item_factors
    reference.user_factors = model.user_factors
    for row in (0, 41, 79):
        conf = matrix.weights[row].astype(np.float32)
        conf.data = 1.0 + PARAMS.alpha * conf.data
        expected = reference.recalculate_user(row, conf)
        got = model.fold_in(matrix.user_row(matrix.users[row]))
        assert got is not None
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_fold_in_of_a_training_users_items_ranks_like_the_trained_user_vector(trained) -> None:
    matrix, model = trained
    overlaps = []
    for user in matrix.users:
        row = matrix.user_row(user)
        seen = [i for i, _ in row]
        folded = [i for i, _ in model.recommend(row, 10)]
        trained_top = [i for i, _ in model.recommend_user(user, 10, exclude=seen)]
        overlaps.append(len(set(folded) & set(trained_top)))
        folded_vec = model.fold_in(row)
        assert folded_vec is not None
        user_vec = model.user_factors[model.user_index[user]]
        cosine = folded_vec @ user_vec / np.linalg.norm(folded_vec) / np.linalg.norm(user_vec)
        assert cosine > 0.95, (user, cosine)
    assert np.mean(overlaps) >= 8.0


def test_folded_in_users_get_items_of_their_taste_and_never_seen_or_excluded_ones(trained) -> None:
    _, model = trained
    recent = [("a1", 2.0), ("a2", 2.0), ("a3", 1.0)]
    recs = model.recommend(recent, 10, exclude=["a4"])
    ids = [i for i, _ in recs]
    assert len(ids) == 10
    assert all(i.startswith("a") for i in ids), ids
    assert not {"a1", "a2", "a3", "a4"} & set(ids)
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    b_recs = [i for i, _ in model.recommend([("b7", 2.0), ("b8", 2.0), ("b9", 2.0)], 5)]
    # a few a-items were viewed mostly by b-users (noise), so one of them may rank in
    assert sum(i.startswith("b") for i in b_recs) >= 4, b_recs


def test_unknown_items_fold_in_to_nothing(trained) -> None:
    _, model = trained
    assert model.fold_in([("nope", 1.0)]) is None
    assert model.recommend([("nope", 1.0)], 5) == []
    # unknown items next to known ones are ignored
    assert model.recommend([("nope", 1.0), ("a1", 2.0)], 3)


def test_training_is_deterministic_for_a_seed() -> None:
    matrix = two_taste_groups()
    one = train_als(matrix, PARAMS)
    two = train_als(matrix, PARAMS)
    np.testing.assert_array_equal(one.item_factors, two.item_factors)
    other = train_als(matrix, AlsParams(**{**PARAMS.as_dict(), "seed": 8}))
    assert not np.array_equal(one.item_factors, other.item_factors)


def test_progress_callback_runs_once_per_iteration() -> None:
    calls = []
    train_als(two_taste_groups(), PARAMS, on_iteration=lambda i, s, loss: calls.append(i))
    assert calls == list(range(PARAMS.iterations))


def test_training_logs_nothing_and_reports_the_final_loss(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """implicit logs one INFO line per iteration when it tracks the loss itself: the
    loss of the trained model is computed once instead, and nothing is printed."""
    from implicit.cpu.als import calculate_loss

    matrix = two_taste_groups()
    with caplog.at_level(logging.DEBUG):
        model = train_als(matrix, AlsParams(**{**PARAMS.as_dict(), "compute_loss": True}))
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("implicit") and r.levelno >= logging.INFO
    ]
    assert said == []
    assert capsys.readouterr() == ("", "")
    assert model.user_factors is not None and model.loss is not None
    expected = calculate_loss(
        confidence_matrix(matrix, PARAMS.alpha),
        model.user_factors,
        model.item_factors,
        PARAMS.regularization,
    )
    assert model.loss == pytest.approx(expected, rel=1e-5)
    assert train_als(matrix, PARAMS).loss is None  # not asked for, not computed


def test_recent_weights_aggregate_and_cap() -> None:
    assert aggregate_recent([("a", 1.0), ("a", 2.0), ("b", 0.0), ("c", -1.0), ("d", 50)], 20) == {
        "a": 3.0,
        "d": 20,
    }


def test_fold_in_solves_the_normal_equations() -> None:
    rng = np.random.default_rng(0)
    y_all = rng.normal(size=(30, 4))
    gram = y_all.T @ y_all
    y = y_all[:3]
    w = np.array([1.0, 2.0, 3.0])
    x = fold_in(y, w, gram, 0.5, 2.0)
    c = 1 + 2.0 * w
    a = gram + 0.5 * np.eye(4) + y.T @ np.diag(c - 1) @ y
    np.testing.assert_allclose(a @ x, y.T @ c, rtol=1e-4)


def test_empty_matrix_is_refused() -> None:
    with pytest.raises(ValueError, match="no interactions"):
        train_als(build_matrix([]), PARAMS)


def test_negative_cells_train_as_preference_zero_and_fold_in_like_implicit() -> None:
    """A shown-but-ignored item (a negative weight) is implicit's negative entry:
    preference 0 with confidence 1 + alpha·|w|; the fold-in solves the same system."""
    from implicit.cpu.als import AlternatingLeastSquares

    from recsys.cf.als import confidence_matrix
    from recsys.cf.interactions import MatrixBuilder

    builder = MatrixBuilder()
    for e in [
        Interaction(f"u{u}", f"{'a' if u < 40 else 'b'}{i}", "CLICK", None, 0.0)
        for u in range(80)
        for i in random.Random(u).sample(range(30), 10)
    ]:
        builder.add(e)
    # every a-user was shown a0..a4 and ignored those they had not clicked
    negatives = {(f"u{u}", f"a{i}"): 3.0 for u in range(40) for i in range(5)}
    matrix = builder.build(negatives=negatives)
    row = matrix.users.index("u0")
    cells = dict(matrix.user_row("u0"))
    assert all(cells[f"a{i}"] in (-3.0, 2.0) for i in range(5))  # clicked cells stay positive
    assert matrix.n_negative == sum(1 for w in matrix.weights.data if w < 0) > 0
    conf = confidence_matrix(matrix, PARAMS.alpha)
    assert sorted(set(conf[row].data.round(3))) == [-16.0, 11.0]  # -(1 + 5·3), 1 + 5·2
    model = train_als(matrix, PARAMS)
    reference = AlternatingLeastSquares(
        factors=PARAMS.factors, regularization=PARAMS.regularization, alpha=1.0
    )
    reference.item_factors = model.item_factors
    reference.user_factors = model.user_factors
    expected = reference.recalculate_user(row, conf[row])
    items = [matrix.items.index(i) for i, _ in matrix.user_row("u0")]
    got = fold_in(
        model.item_factors[items],
        np.array([w for _, w in matrix.user_row("u0")]),
        model.gramian,
        PARAMS.regularization,
        PARAMS.alpha,
    )
    np.testing.assert_allclose(got, np.asarray(expected).ravel(), rtol=2e-3, atol=2e-4)


def test_item_sum_is_the_fold_ins_limit_as_regularisation_grows(trained) -> None:
    from recsys.cf.als import fold_user, item_sum

    y = np.array([[1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    # c = 1 + alpha·w on positive weights; a negative (preference-0) cell adds nothing
    np.testing.assert_allclose(item_sum(y, np.array([1.0, 0.5, -3.0]), 2.0), [3.0, 4.0])
    matrix, model = trained
    row = matrix.user_row("u3")
    items = model.item_factors[[model.item_index[i] for i, _ in row]]
    weights = np.array([w for _, w in row])
    summed = fold_user(items, weights, model.gramian, 0.1, PARAMS.alpha, "item_sum")
    limit = fold_in(items, weights, model.gramian, 1e9, PARAMS.alpha)
    cosine = summed @ limit / np.linalg.norm(summed) / np.linalg.norm(limit)
    assert cosine == pytest.approx(1.0, abs=1e-6)
    exact = fold_user(items, weights, model.gramian, PARAMS.regularization, PARAMS.alpha)
    np.testing.assert_allclose(exact, model.fold_in(row), rtol=1e-6)
