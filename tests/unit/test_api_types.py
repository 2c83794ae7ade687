"""The API types enforce bounds, enums and cross-field rules, and round-trip losslessly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmfleet.api import BY_KIND, Region
from llmfleet.api.loading import ManifestError, parse_object
from support.builders import BAD_CASES, BadCase, all_samples, sample


def contains(big, small) -> bool:
    """Every key of ``small`` is in ``big`` with the same value (defaults may add keys)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and contains(big[k], v) for k, v in small.items()
        )
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(contains, big, small))
    return bool(big == small)


@pytest.mark.parametrize("doc", all_samples(), ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_every_sample_parses_and_round_trips(doc):
    obj = parse_object(doc)
    assert obj.to_wire()["spec"] == BY_KIND[doc["kind"]].from_wire(obj.to_wire()).to_wire()["spec"]
    # what we read is what the sample says, plus defaults
    assert contains(obj.to_wire()["spec"], doc["spec"])


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c.id)
def test_bad_manifest_is_rejected_naming_the_field(case: BadCase):
    with pytest.raises(ManifestError) as err:
        parse_object(case.manifest())
    text = str(err.value)
    assert case.field in text
    assert case.message.lower() in text.lower()


def test_unknown_kind_and_api_version_are_named():
    doc = sample("Region")
    doc["kind"] = "Regoin"
    with pytest.raises(ManifestError, match="unknown kind 'Regoin'"):
        parse_object(doc)
    doc = sample("Region")
    doc["apiVersion"] = "llmfleet.dev/v1"
    with pytest.raises(ManifestError, match=r"apiVersion must be llmfleet\.dev/v1alpha1"):
        parse_object(doc)


def test_defaults_are_filled():
    doc = sample("Region")
    pool = doc["spec"]["pools"][0]
    for k in ("provisioningSeconds", "provider", "minNodes"):
        pool.pop(k, None)
    region = parse_object(doc)
    assert isinstance(region, Region)
    p = region.spec.pools[0]
    assert (p.provisioning_seconds, p.provider.type, p.min_nodes) == (300, "static", 0)


prices = st.floats(min_value=0, max_value=1000, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(
    gpus=st.integers(1, 16),
    lo=st.integers(0, 50),
    extra=st.integers(0, 50),
    price=prices,
    spot=st.booleans(),
    rate=st.floats(0, 1),
)
def test_region_round_trip_property(gpus, lo, extra, price, spot, rate):
    doc = sample("Region")
    pool = doc["spec"]["pools"][0]
    pool.update(
        gpusPerNode=gpus,
        minNodes=lo,
        maxNodes=lo + extra,
        pricePerNodeHour=price,
        capacityType="spot" if spot else "on-demand",
    )
    pool["spotInterruptionRatePerHour"] = rate
    region = Region.from_wire(doc)
    again = Region.from_wire(region.to_wire())
    assert again == region
