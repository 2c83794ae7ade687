"""Quality-aware model routing: calibrated drop on held-out data, APGR/AIQ by hand, UniRoute's
new model from a small set, the CSV schema reader's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmfleet.routing.models import (
    ClusterRouter,
    HashingFeaturiser,
    QualityRouter,
    RandomRouter,
    RoutingSet,
    TfidfFeaturiser,
    aiq,
    apgr,
    auc,
    calibrate,
    cross_fit,
    outcome,
    route,
    seeded_split,
)
from llmfleet.routing.models.best_route import SampleSet, best_of_n_options
from llmfleet.routing.models.policy import LengthCost, cost_scale, upper_bounds
from llmfleet_bench.routing import (
    RoutingDataError,
    main,
    read_routellm,
    read_routing_csv,
    write_routing_csv,
)

EASY = ["what is the capital of", "name the colour of", "which animal says", "spell the word"]
HARD = ["prove the theorem on", "derive the integral of", "solve the recurrence for", "bound the"]
NOUNS = ["france", "grass", "cows", "lemma", "series", "graphs", "primes", "rivers", "sky", "ring"]


def synthetic(n: int, seed: int) -> RoutingSet:
    """Easy prompts: both models right 97% of the time; hard ones: small 30%, large 90%.
    The small model costs 1, the large 20 (per query)."""
    rng = np.random.default_rng(seed)
    prompts, quality = [], []
    for _ in range(n):
        hard = rng.random() < 0.5
        stem = HARD if hard else EASY
        prompts.append(f"{stem[rng.integers(len(stem))]} {NOUNS[rng.integers(len(NOUNS))]}")
        p_small, p_large = (0.3, 0.9) if hard else (0.97, 0.97)
        quality.append([float(rng.random() < p_small), float(rng.random() < p_large)])
    cost = np.tile([1.0, 20.0], (n, 1))
    return RoutingSet.build(prompts, ["small", "large"], quality, cost)


def _calibrated_run(router_name: str) -> tuple[float, float]:
    data = synthetic(2400, seed=1)
    split = seeded_split(data.n, seed=3, test=0.4, calibrate=0.3)
    dev_idx = np.sort(np.concatenate([split.train, split.calibrate]))
    dev, test = data.subset(dev_idx), data.subset(split.test)
    feats = TfidfFeaturiser().fit(dev.prompts)
    x_dev, x_test = feats.transform(dev.prompts), feats.transform(test.prompts)

    def make() -> QualityRouter | RandomRouter:
        return QualityRouter() if router_name == "quality" else RandomRouter(seed=5)

    cf = cross_fit(make, x_dev, dev.quality, dev.cost, folds=4, seed=0)
    cal = calibrate(cf.oof, dev.quality, dev.cost, target_drop=0.01, confidence=0.9)
    assert cal.lam is not None and cal.ucb_drop <= 0.01
    u = cf.utility(x_test)
    out = outcome(test.quality, test.cost, cal.choose(u, test.cost), test.reference)
    return out.drop, out.saving


def test_calibrated_router_keeps_the_drop_within_target_on_held_out_data_and_saves() -> None:
    drop, saving = _calibrated_run("quality")
    # the easy half can go to the small model for free: ~47.5% saving at ~0 drop
    assert drop <= 0.01
    assert saving >= 0.35
    random_drop, random_saving = _calibrated_run("random")
    assert random_drop <= 0.015
    assert random_saving < saving / 2


def test_featurisers_need_no_fit_data_beyond_texts_and_mark_the_length_bin() -> None:
    texts = ["short one", "a somewhat longer prompt here", "x" * 300, "tiny"]
    hashed = HashingFeaturiser(bits=10).fit([]).transform(texts)
    assert hashed.shape == (4, 1024)
    np.testing.assert_allclose(np.sqrt(hashed.multiply(hashed).sum(axis=1)).A1, 1.0)
    plain = TfidfFeaturiser(min_df=1).fit(texts).transform(texts)
    binned = TfidfFeaturiser(min_df=1, length_bins=2).fit(texts).transform(texts)
    assert binned.shape == (4, plain.shape[1] + 2)
    length_block = binned[:, plain.shape[1] :].toarray()
    np.testing.assert_array_equal(length_block.sum(axis=1), 1.0)  # one bin per prompt
    assert length_block[2, 1] == 1.0 and length_block[3, 0] == 1.0  # long / short


def test_quality_router_regresses_graded_quality() -> None:
    # graded scores in [0, 1]: ridge per model; the easy prompts score higher for both
    data = synthetic(400, seed=3)
    easy = np.array([p.split()[0] in {e.split()[0] for e in EASY} for p in data.prompts])
    graded = np.column_stack([np.where(easy, 0.9, 0.2), np.where(easy, 0.95, 0.7)])
    feats = TfidfFeaturiser().fit(data.prompts)
    x = feats.transform(data.prompts)
    u = QualityRouter().fit(x, graded, data.cost).utility(x)
    assert u[easy, 0].mean() > 0.7 and u[~easy, 0].mean() < 0.4
    assert (u[~easy, 1] - u[~easy, 0]).mean() > 0.3


def test_route_breaks_ties_toward_the_cheaper_model_and_lambda_trades_quality_for_cost() -> None:
    utility = np.array([[0.9, 0.9], [0.5, 0.9], [0.1, 0.9]])
    cost = np.array([[1.0, 10.0]] * 3)
    assert list(route(utility, cost, 0.0)) == [0, 1, 1]
    # relative costs 0.1 and 1: query 1 switches once lambda * 0.9 > 0.4
    assert list(route(utility, cost, 0.5)) == [0, 0, 1]
    assert list(route(utility, cost, 100.0)) == [0, 0, 0]


def test_on_an_absolute_cost_scale_the_expensive_query_goes_to_the_small_model_first() -> None:
    # same predicted gap 0.2; query 1 costs ten times more everywhere
    utility = np.array([[0.7, 0.9], [0.7, 0.9]])
    cost = np.array([[1.0, 10.0], [10.0, 100.0]])
    scale = cost_scale(cost)
    assert scale == pytest.approx(55.0)
    # query 1 switches once lambda * 90 / 55 > 0.2, query 0 once lambda * 9 / 55 > 0.2
    assert list(route(utility, cost, 0.2, scale)) == [1, 0]
    assert list(route(utility, cost, 1.3, scale)) == [0, 0]
    # relative to each query's own cost both switch together
    assert list(route(utility, cost, 0.2)) == [1, 1]
    assert list(route(utility, cost, 0.3)) == [0, 0]


def test_length_cost_estimates_a_query_cost_from_its_prompt_length() -> None:
    lengths = np.array([10.0, 20.0, 40.0, 80.0])
    cost = np.column_stack([1 + 0.1 * lengths, 5 + 2.0 * lengths])
    est = LengthCost.fit(lengths, cost)
    np.testing.assert_allclose(est.intercept, [1, 5], atol=1e-9)
    np.testing.assert_allclose(est.slope, [0.1, 2.0], atol=1e-9)
    np.testing.assert_allclose(est.predict(np.array([100.0])), [[11.0, 205.0]])


def test_upper_bounds_by_hand_and_the_prediction_bound_is_wider() -> None:
    # one knob, losses 0/1 with mean 0.25 over 400 queries: sd = sqrt(0.25 * 0.75 * 400 / 399)
    loss = np.repeat([1.0, 0.0, 0.0, 0.0], 100)[:, None]
    sd = float(np.std(loss, ddof=1))
    z90 = 1.2815515655446004
    expected = upper_bounds(loss, 0.9, method="normal")
    assert expected[0] == pytest.approx(0.25 + z90 * sd / 20)
    predicted = upper_bounds(loss, 0.9, method="normal", horizon=100)
    assert predicted[0] == pytest.approx(0.25 + z90 * sd * np.sqrt(1 / 400 + 1 / 100))
    boot = upper_bounds(loss, 0.9, n_boot=2000, seed=1)
    boot_pred = upper_bounds(loss, 0.9, n_boot=2000, seed=1, horizon=100)
    assert boot[0] == pytest.approx(expected[0], abs=0.006)
    assert boot_pred[0] == pytest.approx(predicted[0], abs=0.01)
    assert boot_pred[0] > boot[0]


def test_auto_cost_order_keeps_the_better_order_each_tested_at_half_the_error_rate() -> None:
    data = synthetic(600, seed=6)
    # costs grow with the prompt's length, so the two orders route different queries first
    lengths = np.array([len(p) for p in data.prompts], dtype=np.float64)
    cost = data.cost * lengths[:, None]
    x = TfidfFeaturiser().fit(data.prompts).transform(data.prompts)
    utility = QualityRouter().fit(x, data.quality, cost).utility(x)
    auto = calibrate(utility, data.quality, cost, 0.01, confidence=0.9, absolute=None)
    each = [
        calibrate(utility, data.quality, cost, 0.01, confidence=0.95, absolute=a)
        for a in (True, False)
    ]
    assert auto.confidence == pytest.approx(0.95)
    assert auto.saving == pytest.approx(max(c.saving for c in each))
    assert (auto.scale is None) == (each[1].saving > each[0].saving)


def test_calibration_falls_back_to_the_reference_when_no_knob_meets_the_bound() -> None:
    # the small model is always wrong, the large always right: any routing loses quality
    quality = np.tile([0.0, 1.0], (50, 1))
    cost = np.tile([1.0, 10.0], (50, 1))
    utility = np.tile([0.0, 1.0], (50, 1)) + np.linspace(0, 0.01, 50)[:, None] * [1, 0]
    cal = calibrate(utility, quality, cost, target_drop=0.005)
    assert cal.lam is not None  # lambda 0 routes nothing away
    chosen = cal.choose(utility, cost)
    assert (chosen == 1).all() and cal.saving == 0.0
    # a utility that prefers the wrong model already at lambda 0: nothing passes, all reference
    bad = np.tile([1.0, 0.0], (50, 1))
    cal = calibrate(bad, quality, cost, target_drop=0.005, reference=1)
    assert cal.lam is None
    assert (cal.choose(bad, cost) == 1).all()


def test_apgr_by_hand() -> None:
    # weak 0.6, strong 0.8; at 50% strong calls the router reaches 0.76: PGR 0.8
    # APGR = area of (0, 0) - (0.5, 0.8) - (1, 1) = 0.5 * 0.4 + 0.5 * 0.9 = 0.65
    assert apgr(np.array([0.5]), np.array([0.76]), 0.6, 0.8) == pytest.approx(0.65)
    # random routing recovers the gap linearly: APGR 0.5
    shares = np.linspace(0, 1, 11)
    assert apgr(shares, 0.6 + 0.2 * shares, 0.6, 0.8) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="strong model must be better"):
        apgr(shares, shares, 0.8, 0.8)


def test_aiq_by_hand() -> None:
    # points (cost, quality): (0, .6) (0.5, .9) (1, .8) (0.5, .7). Upper hull (0,.6)-(0.5,.9)-(1,.8),
    # made non-decreasing: flat at .9 after 0.5. Area: 0.5 * (.6 + .9) / 2 + 0.5 * .9 = 0.825
    cost = np.array([0.0, 0.5, 1.0, 0.5])
    quality = np.array([0.6, 0.9, 0.8, 0.7])
    assert aiq(cost, quality, 0.0, 1.0) == pytest.approx(0.825)
    # a point below the chord of its neighbours is not on the hull: (0.5, 0.65) under (0,.6)-(1,.8)
    assert aiq(np.array([0.0, 0.5, 1.0]), np.array([0.6, 0.65, 0.8]), 0.0, 1.0) == pytest.approx(
        0.7
    )
    # cost scale does not matter
    assert aiq(cost * 7, quality, 0.0, 7.0) == pytest.approx(0.825)


def test_auc_by_hand() -> None:
    score = np.array([0.1, 0.4, 0.35, 0.8])
    positive = np.array([False, False, True, True])
    assert auc(score, positive) == pytest.approx(0.75)
    assert auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert np.isnan(auc(score, np.zeros(4, dtype=bool)))


def test_outcome_drop_saving_and_share() -> None:
    quality = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    cost = np.array([[1.0, 9.0]] * 4)
    out = outcome(quality, cost, np.array([0, 1, 0, 0]), reference=1)
    assert out.quality == pytest.approx(0.75) and out.drop == pytest.approx(-0.25)
    assert out.saving == pytest.approx(1 - (1 + 9 + 1 + 1) / 36)
    assert out.reference_share == pytest.approx(0.25)


TOPICS = ["rain", "primes", "the sea", "triangles", "autumn", "matrices", "cats", "zero"]
MATH = [f"solve this algebra equation about {t}" for t in TOPICS[:4]]
POEM = [f"write a short rhyming poem about {t}" for t in TOPICS[4:]]


def test_uniroute_adds_a_model_from_a_small_set_without_refitting() -> None:
    rng = np.random.default_rng(0)
    prompts = [(MATH if i % 2 else POEM)[rng.integers(4)] for i in range(200)]
    is_math = np.array([i % 2 == 1 for i in range(200)])
    # small: poems 90%, maths 20%; large: 80% on both
    quality = np.column_stack(
        [
            np.where(is_math, rng.random(200) < 0.2, rng.random(200) < 0.9),
            rng.random(200) < 0.8,
        ]
    ).astype(np.float64)
    cost = np.tile([1.0, 30.0], (200, 1))
    feats = TfidfFeaturiser(min_df=1).fit(prompts)
    router = ClusterRouter(clusters=2, dims=8, prior=1.0).fit(
        feats.transform(prompts), quality, cost
    )
    before = router.table.copy()
    # a cheap maths specialist, scored on 8 representative prompts only
    rep = [*MATH, *POEM]
    column = router.add_model("maths-expert", feats.transform(rep), [1, 1, 1, 1, 0, 0, 0, 0])
    assert column == 2 and router.models[-1] == "maths-expert"
    np.testing.assert_array_equal(router.table[:2], before)  # the other models: untouched
    new = ["solve this algebra equation about cats", "write a short rhyming poem about primes"]
    u = router.utility(feats.transform(new))
    assert u.shape == (2, 3)
    assert u[0, 2] > u[0, 1] > u[0, 0]  # maths: the expert, then the large model
    assert u[1, 2] < u[1, 0]  # poems: the expert is the worst
    # routed with costs small 1, large 30, expert 2: maths to the expert, poems to the small one
    new_cost = np.array([[1.0, 30.0, 2.0]] * 2)
    assert list(route(u, new_cost, 0.1)) == [2, 0]
    with pytest.raises(ValueError, match="already routed"):
        router.add_model("maths-expert", feats.transform(rep), [1] * 8)
    with pytest.raises(ValueError, match="one value per prompt"):
        router.add_model("other", feats.transform(rep), [1, 0])


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_reader_reads_the_general_schema_and_round_trips(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "ok.csv",
        'prompt,quality:small,cost:small,quality:large,cost:large,notes\n"a, b",true,1,1,20,x\nc,0,1.5,0.5,20,y\n',
    )
    data = read_routing_csv(f)
    assert data.models == ("small", "large") and data.prompts == ("a, b", "c")
    np.testing.assert_allclose(data.quality, [[1, 1], [0, 0.5]])
    np.testing.assert_allclose(data.cost, [[1, 20], [1.5, 20]])
    write_routing_csv(data, tmp_path / "again.csv")
    again = read_routing_csv(tmp_path / "again.csv")
    np.testing.assert_allclose(again.quality, data.quality)
    assert again.prompts == data.prompts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prompt,quality:a,cost:a,quality:b\nx,1,1,0\n", "missing column 'cost:b'"),
        ("prompt,quality:a,cost:a,cost:b\nx,1,1,0\n", "missing column 'quality:b'"),
        ("text,quality:a,cost:a,quality:b,cost:b\nx,1,1,0,1\n", "missing column 'prompt'"),
        ("prompt,quality:a,cost:a,quality:b,cost:b\nx,1,1,maybe,1\n", "column 'quality:b', row 2"),
        ("prompt,quality:a,cost:a,quality:b,cost:b\nx,1,-1,0,1\n", "column 'cost:a', row 2"),
        ("prompt,quality:a,cost:a\nx,1,1\n", ">= 2 models"),
        ("prompt,quality:a,cost:a,quality:b,cost:b\nx,1,1,0\n", "row 2 has 4 fields"),
    ],
)
def test_csv_reader_rejects_a_malformed_file_naming_the_column(
    tmp_path: Path, text: str, message: str
) -> None:
    f = _write(tmp_path / "bad.csv", text)
    with pytest.raises(RoutingDataError, match=message) as err:
        read_routing_csv(f)
    assert str(f) in str(err.value)


def test_routellm_adapter_costs_the_tokens_and_drops_contaminated_prompts(tmp_path: Path) -> None:
    big, small = "gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1"
    _write(
        tmp_path / "set.csv",
        f"prompt,{small},{big},{small}_response,{big}_response\n"
        "abcdefgh,True,True,abcd,abcdefghijkl\nleaked,False,True,x,y\n",
    )
    _write(tmp_path / "contaminated_prompts.jsonl", json.dumps({"eval_prompt": "leaked"}) + "\n")
    data = read_routellm(tmp_path)
    assert data.prompts == ("abcdefgh",) and data.models == (small, big)
    # 8 chars = 2 tokens in; answers of 4 and 12 chars = 1 and 3 tokens out
    np.testing.assert_allclose(data.cost[0], [(0.6 * 2 + 0.6 * 1) / 1e6, (10 * 2 + 30 * 3) / 1e6])
    _write(tmp_path / "set.csv", "prompt,unknown-model,other\nx,True,False\n")
    with pytest.raises(RoutingDataError, match="column 'unknown-model': no price"):
        read_routellm(tmp_path)


def test_bench_prints_every_router_and_the_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_routing_csv(synthetic(600, seed=2), tmp_path / "synthetic.csv")
    assert (
        main(
            ["--data", str(tmp_path / "synthetic.csv"), "--splits", "2", "--folds", "2", "--quiet"]
        )
        == 0
    )
    out = capsys.readouterr().out
    for name in ("random", "hybrid-llm", "quality", "boosted", "blend", "uniroute", "oracle"):
        assert f"| {name} |" in out
    assert "target synthetic blend saving at the calibrated knob" in out
    assert "BEST-Route" in out and "one answer per model" in out


def test_best_of_n_options_take_the_highest_reward_sample_and_pay_every_output() -> None:
    # one query, models a (3 samples) and b; a's rewards pick sample 2 of the first 3
    quality = np.array([[[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]])
    reward = np.array([[[0.1, 0.3, 0.9], [0.5, 0.5, 0.5]]])
    samples = SampleSet(
        prompts=("q",),
        models=("a", "b"),
        quality=quality,
        reward=reward,
        prompt_cost=np.array([[1.0, 10.0]]),
        output_cost=np.array([[[2.0, 2.0, 2.0], [20.0, 20.0, 20.0]]]),
    )
    options = best_of_n_options(samples, ns=(1, 2, 3))
    assert options.models == ("a@1", "a@2", "a@3", "b@1", "b@2", "b@3")
    np.testing.assert_allclose(options.quality[0], [0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(options.cost[0], [3, 5, 7, 30, 50, 70])
    with pytest.raises(ValueError, match="each n must be in"):
        best_of_n_options(samples, ns=(4,))


def test_best_route_picks_small_best_of_n_where_it_matches_the_large_model() -> None:
    # easy prompts: one small sample is right 70%, the best of 4 (an oracle reward) 99.2%;
    # hard ones: the small model never is. A large sample is right 99% on both.
    rng = np.random.default_rng(4)
    n, k = 1600, 4
    prompts, quality = [], np.zeros((n, 2, k))
    for i in range(n):
        hard = i % 2 == 1
        stem = HARD if hard else EASY
        prompts.append(f"{stem[rng.integers(len(stem))]} {NOUNS[rng.integers(len(NOUNS))]}")
        quality[i, 0] = 0.0 if hard else rng.random(k) < 0.7
        quality[i, 1] = rng.random(k) < 0.99
    samples = SampleSet(
        prompts=tuple(prompts),
        models=("small", "large"),
        quality=quality,
        reward=quality + 0.01 * rng.random((n, 2, k)),
        prompt_cost=np.tile([1.0, 20.0], (n, 1)),
        output_cost=np.tile([[1.0] * k, [40.0] * k], (n, 1, 1)),
    )
    options = best_of_n_options(samples, ns=(1, 4))
    split = seeded_split(n, seed=0, test=0.4, calibrate=0.3)
    dev_idx = np.sort(np.concatenate([split.train, split.calibrate]))
    dev, test = options.subset(dev_idx), options.subset(split.test)
    feats = TfidfFeaturiser().fit(dev.prompts)
    cf = cross_fit(QualityRouter, feats.transform(dev.prompts), dev.quality, dev.cost, 4, 0)
    # against the best option (large@4): large@1 loses ~1.3 points, small@4 ~0.8 on its queries
    cal = calibrate(cf.oof, dev.quality, dev.cost, target_drop=0.03)
    choice = cal.choose(cf.utility(feats.transform(test.prompts)), test.cost)
    out = outcome(test.quality, test.cost, choice, test.reference)
    assert options.models[test.reference] == "large@4"
    assert out.drop <= 0.03 and out.saving >= 0.75
    easy = np.array([p.split()[0] in {e.split()[0] for e in EASY} for p in test.prompts])
    # easy prompts mostly go to small@4, hard ones to the large model (n = 1)
    assert np.mean(choice[easy] == options.models.index("small@4")) > 0.8
    assert np.mean(choice[~easy] == options.models.index("large@1")) > 0.8
