"""The plan's routing as the box's load generator follows it without a gateway."""

from __future__ import annotations

from typing import Any

from llmfleet.box.routes import RouteFollower, pick, weights_for

DOC = {
    "models": {
        "tiny": {
            "routes": [
                {"origin": "east", "tier": "fast", "weights": {"east": 750, "west": 250}},
                {"origin": "east", "tier": "slow", "weights": {"west": 1000}},
                {"origin": "west", "tier": "fast", "weights": {"west": 1000}},
            ]
        }
    }
}


def test_the_tier_route_of_the_origin_first_then_the_origins_then_the_models():
    assert weights_for(DOC, "tiny", "east", "fast") == {"east": 750, "west": 250}
    assert weights_for(DOC, "tiny", "east", "other") == {"east": 750, "west": 1250}
    assert weights_for(DOC, "tiny", "north", "fast") == {"east": 750, "west": 2250}
    assert weights_for(DOC, "other", "east", "fast") == {}


def test_pick_splits_the_unit_interval_by_weight():
    w = {"west": 250, "east": 750}
    assert [pick(w, u) for u in (0.0, 0.74, 0.75, 0.999)] == ["east", "east", "west", "west"]
    assert pick({}, 0.5) is None
    assert pick({"a": 0}, 0.5) is None


class _FakeCluster:
    def __init__(self, doc: dict[str, Any] | None) -> None:
        self.doc = doc

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        import json

        return None if self.doc is None else {"data": {"routing.json": json.dumps(self.doc)}}

    def list(self, api_version: str, kind: str, namespace: str | None = None, **kw: Any) -> Any:
        def svc(region: str, ip: str) -> dict[str, Any]:
            labels = {"llmfleet.dev/model": "tiny", "llmfleet.dev/region": region}
            return {"metadata": {"labels": labels},
                    "spec": {"clusterIP": ip, "ports": [{"port": 8000}]}}  # fmt: skip

        return [svc("east", "127.0.100.1"), svc("west", "127.0.100.2")]


def test_the_follower_maps_a_request_to_its_regions_service():
    f = RouteFollower(_FakeCluster(DOC), "ns")  # type: ignore[arg-type]
    f.read_once()
    assert f.url("tiny", "east", "fast", 0.1) == ("east", "http://127.0.100.1:8000")
    assert f.url("tiny", "east", "slow", 0.1) == ("west", "http://127.0.100.2:8000")
    f = RouteFollower(_FakeCluster(None), "ns")  # type: ignore[arg-type]
    f.read_once()
    assert f.url("tiny", "east", "fast", 0.1) is None  # no routing published yet


def test_a_new_connection_goes_to_the_backend_with_the_fewest_open_ones():
    from llmfleet.box.harness import connection_order

    assert connection_order([], 3, {}) == []
    # ties: round-robin from the turn
    assert connection_order([1, 2, 3], 0, {}) == [1, 2, 3]
    assert connection_order([1, 2, 3], 4, {}) == [2, 3, 1]
    # fewest open connections first
    assert connection_order([1, 2, 3], 0, {1: 2, 2: 0, 3: 1}) == [2, 3, 1]


def test_the_down_regions_file_names_one_region_a_line(tmp_path):
    from llmfleet.box.harness import _read_down

    assert _read_down(tmp_path / "none") == frozenset()
    (tmp_path / "down").write_text("box-east\n\n  box-west \n")
    assert _read_down(tmp_path / "down") == {"box-east", "box-west"}
