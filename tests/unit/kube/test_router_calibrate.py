"""``llmfleet router calibrate``: a routed tier fitted on per-query data becomes the router
ConfigMap's ``router.json``, ``<tier>.npz`` and ``shares.json``, which the router service
(:func:`~llmfleet.gateway.config.load_config`) and the planner
(:func:`~llmfleet.kube.router_config.shares_from_config_map`) read back."""

from __future__ import annotations

import base64
import copy
import csv
import functools
import io
import json
from pathlib import Path

import numpy as np
import pytest

from llmfleet.api.loading import parse_object
from llmfleet.api.model import LLMModel
from llmfleet.api.tenant import TenantQuota
from llmfleet.api.tier import SLATier
from llmfleet.cli import main
from llmfleet.gateway.config import load_config
from llmfleet.kube.router_config import (
    CONFIG_MAP_LIMIT,
    ROUTER_CONFIG_KEY,
    SHARES_KEY,
    ConfigMapTooLarge,
    calibrated_router_data,
    shares_from_config_map,
    stored_calibrations,
)
from llmfleet.routing.models.data import RoutingSet
from llmfleet.routing.models.serving import (
    FastHashing,
    calibrated_shares,
    fit_tier,
    members_from_arrays,
    parse_config,
)
from support.builders import all_samples
from unit.routing.test_model_router import synthetic

NS = "fleet"
TIER = "interactive-normal"
OTHER = "batch-routed"
SMALL, LARGE = "llama-3-1-8b", "llama-3-3-70b"
BITS = 10


def _fleet(extra_tier: bool = False):
    docs = [copy.deepcopy(d) for d in all_samples()]
    if extra_tier:
        twin = copy.deepcopy(
            next(d for d in docs if d["kind"] == "SLATier" and d["metadata"]["name"] == TIER)
        )
        twin["metadata"]["name"] = OTHER
        docs.append(twin)
    objs = [parse_object(d, NS) for d in docs]
    tiers = [o for o in objs if isinstance(o, SLATier)]
    models = [o for o in objs if isinstance(o, LLMModel)]
    tenants = [o for o in objs if isinstance(o, TenantQuota)]
    return tiers, models, tenants


def _data(n: int = 600, seed: int = 4) -> RoutingSet:
    s = synthetic(n, seed)  # columns small (cost 1), large (cost 20)
    return RoutingSet.build(s.prompts, [SMALL, LARGE], s.quality, s.cost)


def _noisy(n: int = 600, words: int = 60, seed: int = 5) -> RoutingSet:
    """:func:`_data` with random words appended: every hashing column is used, so the fitted
    weights are dense and the artefact's size follows ``2**bits``."""
    rng = np.random.default_rng(seed)
    base = _data(n)
    prompts = [
        p + " " + " ".join(f"w{k}" for k in rng.integers(0, 10**6, words)) for p in base.prompts
    ]
    return RoutingSet.build(prompts, base.models, base.quality, base.cost)


@functools.cache
def _fitted():
    data = _data()
    fitted = fit_tier(data, "quality", 2.0, 0.9, BITS, folds=3, seed=0, reference=1)
    return data, fitted


def _calibrate(tier_name=TIER, stored=None, extra_tier=False, **kw):
    tiers, models, tenants = _fleet(extra_tier)
    tier = next(t for t in tiers if t.name == tier_name)
    data, fitted = _fitted()
    shares = calibrated_shares(fitted, data, tier_name)
    return calibrated_router_data(tier, fitted, shares, tiers, models, tenants, stored, **kw)


def test_documents_hold_the_tiers_calibration_artefact_and_shares():
    _, fitted = _fitted()
    out = _calibrate(tier_header="x-sla-tier")
    assert fitted.lam is not None
    assert set(out.data) == {ROUTER_CONFIG_KEY, SHARES_KEY} and set(out.binary) == {f"{TIER}.npz"}
    doc = json.loads(out.data[ROUTER_CONFIG_KEY])
    assert doc == out.document and doc["headers"]["tier"] == "x-sla-tier"
    tier = doc["tiers"][TIER]
    assert tier["lambda"] == pytest.approx(fitted.lam)
    assert (tier["artefact"], tier["bits"], tier["kind"]) == (f"{TIER}.npz", BITS, "quality")
    assert [c["model"] for c in tier["candidates"]] == [SMALL, LARGE]
    assert tier["calibration"]["threshold"] == "calibrated"
    assert tier["calibration"]["ucbDropPoints"] == pytest.approx(fitted.ucb_drop_points)
    shares = json.loads(out.data[SHARES_KEY])
    assert shares["apiVersion"] == "llmfleet.dev/router-shares/v1"
    assert shares["tiers"][TIER]["reference"] == LARGE
    small = out.shares.get(TIER).share(SMALL)  # type: ignore[union-attr]
    assert small == pytest.approx(float(np.mean(fitted.oof_choice == 0)))
    assert 0.2 < small < 1.0  # the easy half (and more) goes to the small model
    assert out.size == sum(len(k) + len(v.encode()) for k, v in out.data.items()) + sum(
        len(k) + len(v) for k, v in out.binary.items()
    )
    # the operator's actuation keeps this calibration (stored_calibrations of the ConfigMap)
    cm = out.config_map(NS)
    assert cm["metadata"]["name"] == "llmfleet-router" and cm["metadata"]["namespace"] == NS
    kept = stored_calibrations(cm)[TIER]
    assert (kept.kind, kept.models, kept.artefact) == ("quality", (SMALL, LARGE), f"{TIER}.npz")


def test_round_trip_through_the_router_service_and_the_planner(tmp_path: Path):
    data, fitted = _fitted()
    out = _calibrate()
    cm = out.config_map(NS)
    # the files as the ConfigMap volume mounts them: data keys as text, binaryData as bytes
    for key, text in cm["data"].items():
        (tmp_path / key).write_text(text)
    for key, b64 in cm["binaryData"].items():
        (tmp_path / key).write_bytes(base64.b64decode(b64))
    config = load_config(tmp_path / ROUTER_CONFIG_KEY)
    router = config.tiers[TIER]
    assert router.lam == pytest.approx(fitted.lam) and router.bits == BITS
    # the same decisions as the fitted tier's members parsed from the document directly
    with np.load(io.BytesIO(out.binary[f"{TIER}.npz"])) as arrays:
        members = members_from_arrays({k: arrays[k] for k in arrays.files})
    direct = parse_config(out.document, {f"{TIER}.npz": members}).tiers[TIER]
    feat = FastHashing(BITS)
    picks = [router.decide(p, feat).candidate.model for p in data.prompts[:200]]
    assert picks == [direct.decide(p, feat).candidate.model for p in data.prompts[:200]]
    assert {SMALL, LARGE} == set(picks)
    shares = shares_from_config_map(cm)
    assert shares is not None and [t.tier for t in shares.tiers] == [TIER]
    assert shares.get(TIER) == out.shares.get(TIER)


def test_over_the_size_limit_is_an_error_naming_the_size_and_fewer_bits():
    tiers, models, tenants = _fleet()
    tier = next(t for t in tiers if t.name == TIER)
    data = _noisy()

    def calibrate(bits: int, limit: int = CONFIG_MAP_LIMIT):
        fitted = fit_tier(data, "quality", 2.0, 0.9, bits, folds=3, seed=0, reference=1)
        shares = calibrated_shares(fitted, data, TIER)
        return calibrated_router_data(tier, fitted, shares, tiers, models, tenants, limit=limit)

    full = calibrate(BITS)
    limit = full.size // 3
    with pytest.raises(ConfigMapTooLarge) as err:
        calibrate(BITS, limit)
    e = err.value
    assert (e.size, e.artefact_bytes, e.bits) == (full.size, full.artefact_bytes, BITS)
    assert f"{e.size:,} bytes" in str(e) and f"{limit:,}" in str(e)
    assert "fewer hashing bits" in str(e) and e.suggested_bits == BITS - 2
    assert CONFIG_MAP_LIMIT == 1_000_000
    # the suggestion fits: the weights have 2**bits columns
    assert calibrate(e.suggested_bits, limit).size <= limit


def test_other_tiers_stored_calibrations_artefacts_and_shares_are_kept():
    first = _calibrate(OTHER, extra_tier=True)
    stored = first.config_map(NS)
    out = _calibrate(TIER, stored=stored, extra_tier=True)
    assert set(out.binary) == {f"{TIER}.npz", f"{OTHER}.npz"}
    assert out.binary[f"{OTHER}.npz"] == first.binary[f"{OTHER}.npz"]
    assert out.document["tiers"][OTHER] == first.document["tiers"][OTHER]
    assert [t.tier for t in out.shares.tiers] == [OTHER, TIER] and not out.notes
    # a stored calibration whose artefact is gone: that tier is published uncalibrated
    del stored["binaryData"][f"{OTHER}.npz"]
    out = _calibrate(TIER, stored=stored, extra_tier=True)
    assert (
        out.document["tiers"][OTHER]["lambda"] is None
        and "artefact" not in out.document["tiers"][OTHER]
    )
    assert set(out.binary) == {f"{TIER}.npz"}
    assert any(OTHER in n and "artefact" in n for n in out.notes)


def test_a_tier_that_does_not_route_or_disagrees_with_the_fit_is_refused():
    tiers, models, tenants = _fleet()
    plain = next(t for t in tiers if t.spec.routing is None)
    data, fitted = _fitted()
    with pytest.raises(ValueError, match=r"spec\.routing is not set"):
        calibrated_router_data(plain, fitted, calibrated_shares(fitted, data, plain.name),
                               tiers, models, tenants)  # fmt: skip
    other = RoutingSet.build(data.prompts, [SMALL, "qwen"], data.quality, data.cost)
    wrong = fit_tier(other, "quality", 2.0, 0.9, BITS, folds=3, seed=0, reference=1)
    tier = next(t for t in tiers if t.name == TIER)
    with pytest.raises(ValueError, match="refit"):
        calibrated_router_data(tier, wrong, calibrated_shares(wrong, other, TIER),
                               tiers, models, tenants)  # fmt: skip


# --------------------------------------------------------------------------- the command


def _csv(path: Path, data: RoutingSet, names: dict[str, str]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["prompt", *[f"{h}:{names[m]}" for m in data.models for h in ("quality", "cost")]]
        )
        for i, p in enumerate(data.prompts):
            w.writerow(
                [p, *[f"{v:g}" for j in range(2) for v in (data.quality[i, j], data.cost[i, j])]]
            )
    return path


def _samples_dir(tmp_path: Path) -> Path:
    import yaml

    folder = tmp_path / "fleet"
    folder.mkdir()
    (folder / "fleet.yaml").write_text(yaml.safe_dump_all(all_samples()))
    return folder


def test_command_writes_what_the_router_reads(tmp_path: Path, capsys):
    data = _csv(tmp_path / "d.csv", _data(), {SMALL: "small-model", LARGE: "big-model"})
    out = tmp_path / "out"
    argv = ["router", "calibrate", "--data", str(data), "--tier", TIER, "--manifests",
            str(_samples_dir(tmp_path)), "-n", NS, "--bits", str(BITS), "--folds", "3",
            "--column", f"{SMALL}=small-model", "--column", f"{LARGE}=big-model", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"SLATier {TIER}: quality router" in printed and "artefact" in printed
    assert f"{SMALL} " in printed and "saving" in printed
    assert sorted(p.name for p in out.iterdir()) == [f"{TIER}.npz", ROUTER_CONFIG_KEY, SHARES_KEY]
    config = load_config(out / ROUTER_CONFIG_KEY)
    assert config.tiers[TIER].lam is not None
    shares = shares_from_config_map({"data": {SHARES_KEY: (out / SHARES_KEY).read_text()}})
    assert shares is not None and shares.get(TIER) is not None


@pytest.mark.parametrize(
    ("columns", "fragment"),
    [
        ([f"{SMALL}=small-model"], f"candidate {LARGE} has no column"),
        ([f"{SMALL}=small-model", f"{LARGE}=gpt-5"], "no model column 'gpt-5'"),
        ([f"{SMALL}=small-model", f"{LARGE}=big-model", "qwen=x"], "qwen is not a candidate"),
        (["nonsense"], "expected MODEL=COLUMN"),
    ],
)
def test_command_column_mistakes_name_the_column(tmp_path: Path, capsys, columns, fragment):
    data = _csv(tmp_path / "d.csv", _data(60), {SMALL: "small-model", LARGE: "big-model"})
    argv = ["router", "calibrate", "--data", str(data), "--tier", TIER, "--manifests",
            str(_samples_dir(tmp_path)), "-n", NS, "--out", str(tmp_path / "out")]  # fmt: skip
    for c in columns:
        argv += ["--column", c]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert fragment in err and "--column" in err
    assert not (tmp_path / "out").exists()


def test_command_too_large_suggests_bits_and_writes_nothing(tmp_path: Path, capsys):
    data = _csv(tmp_path / "d.csv", _noisy(), {SMALL: SMALL, LARGE: LARGE})  # own names
    argv = ["router", "calibrate", "--data", str(data), "--tier", TIER, "--manifests",
            str(_samples_dir(tmp_path)), "-n", NS, "--folds", "5", "--bits", "16",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "over the 1,000,000" in err and "--bits" in err and "nothing written" in err
    assert not (tmp_path / "out").exists()
