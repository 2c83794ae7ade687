"""``llmfleet`` command line.

llmfleet crds [--out crds] [--check]     generate CRDs from the types (or check drift)
llmfleet validate PATH...                 check manifests offline (schema, rules, references)
llmfleet install [--samples]              apply CRDs (and samples) to a cluster
llmfleet get [KIND...]                    what ``kubectl get llmfleet`` shows
llmfleet operator                         run the controller
llmfleet explain [PATH...] [--model M] [--router-shares F]   plan a fleet for its quota demand;
                                          why each replica exists (and how many because of routing)
llmfleet dashboards [--check]             generate the chart's dashboards, rules, CRD copy
llmfleet actuate PLAN [--dry-run]         apply a recorded FleetPlan (an older one reverts)
llmfleet simulate [SCENARIO]              replay the traces on the digital twin, every policy
llmfleet router serve --config F --upstream URL [--port N]   the model router service (proxy)
llmfleet router calibrate --data D --tier T (--out DIR | --apply)   fit a routed tier's router on
                                          per-query quality data; write router.json, the
                                          artefact and shares.json (or apply the ConfigMap)
llmfleet bench TARGET [...]               a benchmark from llmfleet_bench: planner, controller,
                                          forecast, sim, fairness, calibrate, routing, router; prints its targets

A mistake in the input (a file, a flag, a name) is one line on stderr naming it and what is
wrong, exit 1 (2 for a malformed command line); ``llmfleet --debug CMD ...`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from llmfleet.api.crdgen import drift, generate

if TYPE_CHECKING:
    from llmfleet.routing.models.serving import RouterShares

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRDS = REPO_ROOT / "crds"
DEFAULT_SAMPLES = DEFAULT_CRDS / "samples"
DEFAULT_CHART = REPO_ROOT / "charts" / "llmfleet"


class UserError(Exception):
    """A mistake in what the command was given (a file, a flag, a name): :func:`main` prints
    the message as one line and exits 1 (``--debug``: the traceback)."""


# The lower layers' own "your input is wrong" errors, printed like a UserError. Looked up in
# sys.modules, so checking an error imports nothing: an error of a class whose module was
# never imported cannot have been raised.
_INPUT_ERRORS = (
    ("llmfleet.api.loading", "ManifestError"),
    ("llmfleet.sim.scenario", "ScenarioError"),
    ("llmfleet.sim.traces", "TracesNotFoundError"),
    ("llmfleet.plan.instance", "InstanceError"),
    ("llmfleet.kube.client", "KubeError"),
    ("kubernetes.config.config_exception", "ConfigException"),
)


def _is_user_error(err: Exception) -> bool:
    if isinstance(err, UserError) or (isinstance(err, OSError) and err.filename is not None):
        return True
    return any(
        (mod := sys.modules.get(module)) is not None and isinstance(err, getattr(mod, name))
        for module, name in _INPUT_ERRORS
    )


def _describe(err: Exception) -> str:
    """The error as one line: the file or flag first, then what is wrong."""
    import yaml

    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or err}"
    text = str(err)
    context = err.__cause__ or err.__context__
    if "\n" in text and isinstance(context, yaml.MarkedYAMLError) and context.problem_mark:
        mark = context.problem_mark  # "<file>: not valid YAML: <problem>" at line, column
        text = f"{text.splitlines()[0]} at line {mark.line + 1}, column {mark.column + 1}: {context.problem}"
    if type(err).__name__ == "ConfigException":
        text = f"kubeconfig: {text} (pass --kubeconfig FILE or set $KUBECONFIG)"
    return " ".join(text.split())


class _Parser(argparse.ArgumentParser):
    """An argument error is one line too: ``llmfleet get: error: argument ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _kubeconfig(args: argparse.Namespace) -> Path | None:
    """``--kubeconfig``, checked to exist (None: the client's defaults)."""
    if not getattr(args, "kubeconfig", None):
        return None
    path = Path(args.kubeconfig)
    if not path.is_file():
        raise UserError(f"--kubeconfig {path}: no such file (give a kubeconfig file)")
    return path


def _cmd_crds(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.check:
        stale = drift(out)
        if stale:
            print(
                f"CRDs in {out} are out of date with the types: {', '.join(stale)}", file=sys.stderr
            )
            print("run: llmfleet crds", file=sys.stderr)
            return 1
        print(f"CRDs in {out} match the types")
        return 0
    for path in generate(out):
        print(f"wrote {path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from llmfleet.api.loading import load_manifests, snapshot_of
    from llmfleet.api.references import check_references

    objs = load_manifests([Path(p) for p in args.paths], namespace=args.namespace)
    problems = check_references(snapshot_of(objs))
    bad = 0
    for key, probs in sorted(problems.items()):
        for p in probs:
            bad += 1
            print(f"{key}: {p.reason}: {p.message}", file=sys.stderr)
    print(f"{len(objs)} objects, {bad} problems")
    return 1 if bad else 0


def _connect(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from llmfleet.kube.client import Cluster

    return Cluster.connect(_kubeconfig(args), args.context)


def _cmd_install(args: argparse.Namespace) -> int:
    from llmfleet.api.crdgen import crd_for
    from llmfleet.api.kinds import KINDS
    from llmfleet.api.loading import load_manifests
    from llmfleet.kube.client import KubeError

    cluster = _connect(args)
    try:
        crds = [crd_for(k) for k in KINDS]
        cluster.apply_all(crds)
        cluster.wait_crds_established([c["metadata"]["name"] for c in crds])
        print(f"installed {len(crds)} CRDs")
        if args.samples:
            cluster.ensure_namespace(args.namespace)
            objs = load_manifests([Path(args.samples)], namespace=args.namespace)
            cluster.apply_all(o.to_wire() for o in objs)
            print(f"applied {len(objs)} sample objects into namespace {args.namespace}")
    except KubeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        cluster.close()
    return 0


def _cmd_get(args: argparse.Namespace) -> int:
    from llmfleet.api.base import API_VERSION
    from llmfleet.api.kinds import BY_KIND, KINDS
    from llmfleet.kube.client import KubeError, format_table

    kinds = list(KINDS)
    if args.kinds:
        lookup = {**{k.lower(): v for k, v in BY_KIND.items()}}
        lookup.update({v.info.plural: v for v in KINDS})
        lookup.update({s: v for v in KINDS for s in v.info.short_names})
        try:
            kinds = [lookup[k.lower()] for k in args.kinds]
        except KeyError as err:
            print(f"unknown kind {err}; known: {', '.join(sorted(lookup))}", file=sys.stderr)
            return 2
    cluster = _connect(args)
    try:
        blocks = []
        for kind in kinds:
            ns = None if kind.info.scope == "Cluster" else args.namespace
            table = cluster.table(API_VERSION, kind.info.plural, ns)
            if table.get("rows"):
                blocks.append(
                    format_table(
                        table, with_kind=f"{kind.info.singular}.{API_VERSION.split('/')[0]}"
                    )
                )
        print("\n\n".join(blocks) if blocks else "No resources found.")
    except KubeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        cluster.close()
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    import os

    from llmfleet.controller.operator import OperatorConfig, run
    from llmfleet.controller.planning import PlanningSettings
    from llmfleet.controller.validation import ValidationSettings

    if getattr(args, "context", None):
        # kopf logs in with the kubeconfig's current context and has no override for it
        print(
            "llmfleet operator: --context is not supported; point --kubeconfig at a file whose "
            "current-context is the cluster to run against (kubectl config use-context NAME)",
            file=sys.stderr,
        )
        return 2
    from llmfleet.kube.prometheus import PrometheusAllow

    kubeconfig = _kubeconfig(args)
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = str(kubeconfig)
    secret_namespaces = _kubeconfig_secret_namespaces(args, os.environ.get("POD_NAMESPACE"))
    try:
        prometheus_allow = PrometheusAllow.parse(args.prometheus_allow)
    except ValueError as err:
        raise UserError(str(err)) from None
    cfg = OperatorConfig(
        namespaces=tuple(args.namespace or ()),
        validation=ValidationSettings(recheck_seconds=args.recheck_seconds),
        liveness_endpoint=args.liveness,
        peering=args.peering,
        peering_priority=args.peering_priority,
        planning=PlanningSettings(
            enabled=not args.no_planning,
            tick_seconds=args.plan_tick_seconds,
            kubeconfig_secret_namespaces=secret_namespaces,
            create_namespaces=args.create_namespaces,
            prometheus_allow=prometheus_allow,
        ),
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        log_level=args.log_level,
        log_format=args.log_format,
    )
    run(cfg)
    return 0


def _kubeconfig_secret_namespaces(
    args: argparse.Namespace, pod_namespace: str | None
) -> tuple[str, ...]:
    """``--kubeconfig-secret-namespaces`` (comma-separated, repeatable); without it the
    operator's own namespace: ``$POD_NAMESPACE`` (the chart sets it from the downward API),
    else the namespaces it watches (``-n``), else none."""
    import re

    given = [n.strip() for item in args.kubeconfig_secret_namespaces or () for n in item.split(",")]
    if args.kubeconfig_secret_namespaces is None:
        given = [pod_namespace] if pod_namespace else list(args.namespace or ())
    out = tuple(dict.fromkeys(n for n in given if n))
    for n in out:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", n):
            raise UserError(f"--kubeconfig-secret-namespaces {n!r}: not a namespace name")
    return out


def _cmd_explain(args: argparse.Namespace) -> int:
    from llmfleet.api.loading import load_manifests, snapshot_of
    from llmfleet.forecast.synthetic import quota_demand
    from llmfleet.plan.explain import explain
    from llmfleet.plan.instance import CurrentState, InstanceError, from_snapshot
    from llmfleet.plan.solve import plan_fleet
    from llmfleet.plan.types import Plan
    from llmfleet.plan.validate import validate

    snap = snapshot_of(load_manifests([Path(p) for p in args.paths], namespace=args.namespace))
    where = " ".join(args.paths)
    for flag, value, kind, names in (
        ("--policy", args.policy, "FleetPolicy", [p.name for p in snap.policies]),
        ("--model", args.model, "LLMModel", [m.name for m in snap.models]),
        ("--region", args.region, "Region", [r.name for r in snap.regions]),
    ):
        if value is not None and value not in names:
            known = ", ".join(sorted(names)) or "none"
            raise UserError(f"{flag} {value!r}: no {kind} of that name in {where}; known: {known}")
    if not snap.policies:
        raise UserError(f"{where}: no FleetPolicy to plan with (add one)")
    policy = next(p for p in snap.policies if args.policy in (None, p.name))
    horizon = policy.spec.horizon
    demand = quota_demand(
        snap,
        start=args.start_hour * 3600,
        steps=horizon.steps,
        step_seconds=horizon.step_seconds,
        load=args.load,
    )
    routing = None
    applied = ""
    if args.router_shares:
        from llmfleet.cycle.routing import route_forecasts

        shares = _router_shares_file(Path(args.router_shares))
        forecasts, done = route_forecasts(demand, snap, shares)
        demand, routing, applied = list(forecasts), done.shares, done.message
    try:
        inst = from_snapshot(snap, demand, CurrentState(), policy)
    except InstanceError as err:
        print(f"cannot plan: {err}", file=sys.stderr)
        return 1
    outcome = plan_fleet(inst)
    if not isinstance(outcome, Plan):
        print(f"no plan: {outcome.message}", file=sys.stderr)
        return 1
    print(
        f"demand: {len(demand)} flows from {len(snap.tenants)} TenantQuotas at {args.load:.0%} of their "
        f"token budgets at the local peak; planning from an empty fleet at {args.start_hour:02d}:00 UTC"
    )
    if args.router_shares:
        print(f"--router-shares {args.router_shares}: {applied}")
    print(explain(outcome, inst, model=args.model, region=args.region, routing=routing))
    violations = validate(outcome, inst)
    for v in violations:
        print(f"VIOLATION: {v}", file=sys.stderr)
    return 1 if violations else 0


def _router_shares_file(path: Path) -> RouterShares:
    """The router shares in ``path``: the ``shares_document`` JSON (or YAML), or the
    router's ConfigMap manifest holding it under ``data["shares.json"]``."""
    import yaml

    from llmfleet.kube.router_config import SHARES_KEY, shares_from_config_map
    from llmfleet.routing.models.serving import ConfigError, parse_shares

    where = f"--router-shares {path}"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"{where}: not valid JSON or YAML: {' '.join(str(err).split())}") from None
    try:
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
            shares = shares_from_config_map(doc)
            if shares is None:
                raise ConfigError(f"ConfigMap has no data[{SHARES_KEY!r}]")
            return shares
        if not isinstance(doc, dict):
            raise ConfigError(f"expected an object, got {type(doc).__name__}")
        return parse_shares(doc)
    except ConfigError as err:
        raise UserError(f"{where}: {err}") from None


def _cmd_dashboards(args: argparse.Namespace) -> int:
    from llmfleet.api.loading import load_manifests
    from llmfleet.observe.generate import main as generate_main

    tiers = [Path(p) for p in args.tiers]
    load_manifests(tiers, namespace=None)  # a missing or bad tiers file: main's one line
    return generate_main(Path(args.chart), tiers, args.check)


def _cmd_actuate(args: argparse.Namespace) -> int:
    from llmfleet.kube.actuate_cmd import main as actuate_main

    _kubeconfig(args)  # a missing file is the user's to fix, not the client's traceback
    return actuate_main(args)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from llmfleet.sim.cli import run as simulate_run

    return simulate_run(args)


BENCH_TARGETS = ("forecast", "planner", "fairness", "sim", "controller", "calibrate", "soak", "routing", "router")


def _cmd_bench(args: argparse.Namespace) -> int:
    # The imports of llmfleet_bench in the product: lazy, one benchmark at a time, and the
    # routing data reader of `llmfleet router calibrate` (.importlinter allows llmfleet.cli's).
    bench: Callable[[list[str]], int]
    if args.target == "forecast":
        from llmfleet_bench.forecast import main as bench
    elif args.target == "fairness":
        from llmfleet_bench.fairness import main as bench
    elif args.target == "sim":
        from llmfleet_bench.sim import main as bench
    elif args.target == "controller":
        from llmfleet_bench.controller import main as bench
    elif args.target == "calibrate":
        from llmfleet_bench.calibrate import main as bench
    elif args.target == "routing":
        from llmfleet_bench.routing import main as bench
    elif args.target == "soak":
        from llmfleet_bench.soak import main as bench
    elif args.target == "router":
        from llmfleet_bench.router import main as bench
    else:
        from llmfleet_bench.planner import main as bench
    return int(bench(list(args.rest)) or 0)


def _cmd_router(args: argparse.Namespace) -> int:
    import logging

    from llmfleet.gateway.genai import GenAIMetrics, HeaderMappingError, parse_header_attributes
    from llmfleet.gateway.proxy import ProxySettings, serve

    if not args.upstream.startswith(("http://", "https://")):
        raise UserError(f"--upstream {args.upstream}: give a base URL (http://HOST:PORT)")
    if not Path(args.config).is_file():
        raise UserError(f"--config {args.config}: no such file (the router's ConfigMap or router.json)")
    try:
        attributes = parse_header_attributes(args.metrics_header_attributes)
    except HeaderMappingError as err:
        raise UserError(f"--metrics-header-attributes: {err}") from None
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ProxySettings(args.upstream, connect_seconds=args.connect_timeout,
                             read_seconds=args.read_timeout, reload_seconds=args.reload_seconds)  # fmt: skip
    serve(Path(args.config), settings, args.host, args.port, logging.getLogger("llmfleet.router"),
          metrics_port=args.metrics_port, metrics=GenAIMetrics(attributes))  # fmt: skip
    return 0


CALIBRATE_FIELD_MANAGER = "llmfleet-router-calibrate"
"""The field manager ``router calibrate --apply`` applies the router's ConfigMap with: not
the operator's (``llmfleet``), whose applies of ``data["router.json"]`` alone would otherwise
remove ``shares.json`` and the artefacts from the ConfigMap."""


def _column_map(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        model, sep, column = item.partition("=")
        if not sep or not model or not column:
            raise UserError(f"--column {item!r}: expected MODEL=COLUMN (an LLMModel, a data column)")
        if model in out:
            raise UserError(f"--column {model}: given twice")
        out[model] = column
    return out


def _calibration_data(args: argparse.Namespace, candidates: list[str], tier: str):  # type: ignore[no-untyped-def]
    """The routing set of ``--data`` with the tier's candidates as its models (in order)."""
    from llmfleet.routing.models.data import RoutingSet
    from llmfleet_bench.routing import RoutingDataError, load_datasets

    where = f"--data {args.data}"
    try:
        sets = load_datasets(Path(args.data))
    except RoutingDataError as err:
        raise UserError(str(err)) from None
    if len(sets) != 1:
        names = ", ".join(name for name, _ in sets)
        raise UserError(f"{where}: holds {len(sets)} datasets ({names}); give one of their folders")
    data = sets[0][1]
    columns = _column_map(args.column or [])
    for model in columns:
        if model not in candidates:
            raise UserError(
                f"--column {model}={columns[model]}: {model} is not a candidate of SLATier "
                f"{tier} ({', '.join(candidates)})"
            )
    index = []
    for model in candidates:
        column = columns.get(model, model if model in data.models else None)
        if column is None:
            raise UserError(
                f"--column: SLATier {tier}'s candidate {model} has no column (give --column "
                f"{model}=COLUMN; the data's models: {', '.join(data.models)})"
            )
        if column not in data.models:
            raise UserError(
                f"--column {model}={column}: {where} has no model column {column!r} "
                f"(its models: {', '.join(data.models)})"
            )
        index.append(data.models.index(column))
    if len(set(index)) != len(index):
        raise UserError("--column: two candidates map to the same data column")
    return RoutingSet.build(
        data.prompts, candidates, data.quality[:, index], data.cost[:, index]
    ), sets[0][0]


def _cmd_router_calibrate(args: argparse.Namespace) -> int:
    import tempfile

    from llmfleet.api.loading import load_manifests, snapshot_of
    from llmfleet.gateway.config import load_config
    from llmfleet.kube.errors import refuse_foreign
    from llmfleet.kube.router_config import (
        ROUTER_CONFIG_MAP,
        ConfigMapTooLarge,
        calibrated_router_data,
        shares_from_config_map,
    )
    from llmfleet.routing.models.serving import ConfigError, calibrated_shares, fit_tier

    if args.bits is not None and not 1 <= args.bits <= 24:
        raise UserError(f"--bits {args.bits}: must be in [1, 24]")
    if args.folds < 2:
        raise UserError(f"--folds {args.folds}: must be >= 2")
    namespace = args.namespace
    cluster = None
    try:
        if args.manifests:
            snap = snapshot_of(load_manifests([Path(p) for p in args.manifests], namespace=namespace))
            source = " ".join(args.manifests)
        if not args.manifests or args.apply:
            cluster = _connect(args)
        if not args.manifests:
            from llmfleet.kube.actuate_cmd import read_snapshot

            assert cluster is not None
            snap, problems = read_snapshot(cluster, namespace)
            for p in problems:
                print(f"skipped: {p}", file=sys.stderr)
            source = f"namespace {namespace}"
        tier = next((t for t in snap.tiers if t.name == args.tier), None)
        if tier is None:
            known = ", ".join(sorted(t.name for t in snap.tiers)) or "none"
            raise UserError(f"--tier {args.tier}: no SLATier of that name in {source}; known: {known}")
        routing = tier.spec.routing
        if routing is None:
            routed = ", ".join(sorted(t.name for t in snap.tiers if t.spec.routing)) or "none"
            raise UserError(
                f"--tier {args.tier}: SLATier {tier.name} has no spec.routing (routed tiers: {routed})"
            )
        candidates = list(routing.candidates)
        data, dataset = _calibration_data(args, candidates, tier.name)
        stored = (
            cluster.get("v1", "ConfigMap", ROUTER_CONFIG_MAP, namespace) if cluster is not None else None
        )
        policy = min(snap.policies, key=lambda p: p.name) if snap.policies else None
        ingress = policy.spec.ingress if policy is not None else None
        tier_header = ingress.tier_header if ingress is not None else "x-tier"
        tenant_header = ingress.tenant_header if ingress is not None else "x-tenant-id"
        bits = 16 if args.bits is None else args.bits
        kind = routing.router.kind
        try:
            fitted = fit_tier(
                data, kind, routing.max_quality_drop, routing.router.confidence, bits,
                args.folds, args.seed, reference=candidates.index(routing.reference_model),
            )  # fmt: skip
        except ValueError as err:
            raise UserError(f"--data {args.data}: cannot fit SLATier {tier.name}'s {kind} router: {err}") from None
        shares = calibrated_shares(fitted, data, tier.name)
        try:
            out = calibrated_router_data(
                tier, fitted, shares, snap.tiers, snap.models, snap.tenants, stored,
                tier_header=tier_header, tenant_header=tenant_header,
            )  # fmt: skip
        except ConfigMapTooLarge as err:
            flag = f": run again with --bits {err.suggested_bits}" if err.suggested_bits is not None else ""
            raise UserError(f"SLATier {tier.name}: {err}{flag}; nothing written") from None
        except ValueError as err:
            raise UserError(f"SLATier {tier.name}: {err}") from None
        cm = out.config_map(namespace)
        # what the router service and the planner read back, checked before writing anything
        with tempfile.TemporaryDirectory() as tmp:
            for key, text in out.data.items():
                (Path(tmp) / key).write_text(text, encoding="utf-8")
            for key, raw in out.binary.items():
                (Path(tmp) / key).write_bytes(raw)
            try:
                load_config(Path(tmp) / "router.json")
                shares_from_config_map(cm)
            except ConfigError as err:
                raise RuntimeError(f"the calibrated ConfigMap does not parse: {err}") from err
        if args.apply:
            assert cluster is not None
            refuse_foreign(stored, cm)
            cluster.apply(cm, field_manager=CALIBRATE_FIELD_MANAGER)
            wrote = (
                f"applied ConfigMap {namespace}/{ROUTER_CONFIG_MAP}: data {', '.join(sorted(out.data))}; "
                f"binaryData {', '.join(sorted(out.binary))}"
            )
        else:
            folder = Path(args.out)
            folder.mkdir(parents=True, exist_ok=True)
            for key, text in out.data.items():
                (folder / key).write_text(text, encoding="utf-8")
            for key, raw in out.binary.items():
                (folder / key).write_bytes(raw)
            wrote = f"wrote {', '.join(str(folder / k) for k in sorted([*out.data, *out.binary]))}"
    finally:
        if cluster is not None:
            cluster.close()
    entry = out.document["tiers"][tier.name]
    lam = entry["lambda"]
    source_of_lam = entry["calibration"]["threshold"]
    mine = out.shares.get(tier.name)
    assert mine is not None
    print(
        f"SLATier {tier.name}: {kind} router over {', '.join(candidates)} (reference "
        f"{routing.reference_model}), fitted on {data.n} prompts of {dataset} "
        f"(seed {args.seed}, {bits} hashing bits, {args.folds} folds)"
    )
    print(
        f"  lambda {'none (every request to the reference)' if lam is None else f'{lam:.6g}'} "
        f"({source_of_lam}); drop {fitted.drop_points:.2f} points, bound "
        f"{fitted.ucb_drop_points:.2f} at {fitted.confidence:.0%} (maxQualityDrop "
        f"{routing.max_quality_drop:g}); saving {fitted.saving:.1%}"
    )
    if routing.router.threshold is not None:
        print(f"  note: spec.routing.router.threshold {routing.router.threshold:g} is fixed: the "
              "router uses it; the drop, saving and shares are at the calibrated lambda "
              f"{fitted.lam}")  # fmt: skip
    print("  shares of requests: " + ", ".join(f"{m} {mine.share(m):.1%}" for m in candidates))
    print(
        f"  artefact {out.artefact}: {out.artefact_bytes:,} bytes; ConfigMap content "
        f"{out.size:,} bytes (limit 1,000,000)"
    )
    for note in out.notes:
        print(f"  note: {note}")
    print(f"  {wrote}")
    return 0


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    p.add_argument("--context", help="kubeconfig context")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="llmfleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the traceback (any command)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("crds", help="generate CRDs from the API types")
    p.add_argument("--out", default=str(DEFAULT_CRDS), help="directory (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="fail if the files differ from the types")
    p.set_defaults(func=_cmd_crds)

    p = sub.add_parser("validate", help="check manifests offline: schema, rules, references")
    p.add_argument("paths", nargs="+", help="YAML files or directories")
    p.add_argument("-n", "--namespace", default="default")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("install", help="apply the CRDs (and optionally samples) to a cluster")
    _add_cluster_args(p)
    p.add_argument(
        "--samples",
        nargs="?",
        const=str(DEFAULT_SAMPLES),
        help="also apply samples (default dir: crds/samples)",
    )
    p.add_argument("-n", "--namespace", default="llmfleet")
    p.set_defaults(func=_cmd_install)

    p = sub.add_parser("get", help="list llmfleet objects like `kubectl get llmfleet`")
    _add_cluster_args(p)
    p.add_argument("kinds", nargs="*", help="kinds, plurals or short names (default: all)")
    p.add_argument("-n", "--namespace", default="llmfleet")
    p.set_defaults(func=_cmd_get)

    p = sub.add_parser("operator", help="run the controller")
    _add_cluster_args(p)
    p.add_argument(
        "-n", "--namespace", action="append", help="namespace to watch (repeatable; default: all)"
    )
    p.add_argument(
        "--recheck-seconds",
        type=float,
        default=30.0,
        help="re-validation period (default: %(default)s)",
    )
    p.add_argument("--liveness", help="health endpoint URL, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--peering", help="kopf peering name for HA (default: standalone)")
    p.add_argument(
        "--peering-priority", type=int, default=None,
        help="peering priority; the highest live replica is active (default: random)",
    )
    p.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve Prometheus metrics (llmfleet_*) on this port (default: none)",
    )
    p.add_argument(
        "--metrics-address", default="127.0.0.1",
        help="address the metrics endpoint binds to (default: %(default)s, loopback only; "
        "0.0.0.0 to be scraped from outside the pod)",
    )
    p.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default: %(default)s)",
    )
    p.add_argument(
        "--log-format", default="json", choices=("json", "plain"),
        help="log lines as JSON objects (default) or plain text",
    )
    p.add_argument(
        "--plan-tick-seconds", type=float, default=15.0,
        help="how often each FleetPolicy is checked for a due plan (default: %(default)s)",
    )
    p.add_argument(
        "--no-planning", action="store_true",
        help="validate objects only: no planning loop (e.g. a second, validating operator)",
    )
    p.add_argument(
        "--kubeconfig-secret-namespaces", action="append", metavar="NS[,NS...]",
        help="namespaces a Region's spec.cluster.kubeconfigSecretRef may name (repeatable); "
        "a Secret elsewhere is never read and its Region is unreachable (default: the "
        "operator's own namespace, $POD_NAMESPACE, else the namespaces given with -n, else "
        "none)",
    )
    p.add_argument(
        "--create-namespaces", action="store_true",
        help="create the fleet namespace in a region's cluster where it is missing (default: "
        "off, a missing namespace is an error naming it)",
    )
    p.add_argument(
        "--prometheus-allow", action="append", metavar="PATTERN[,PATTERN...]",
        help="hosts spec.prometheus.url may name: *, host name patterns "
        "(*.monitoring.svc.cluster.local) or IP networks (10.0.0.0/8), repeatable; host "
        "names are resolved first and link-local and cloud metadata addresses are always "
        "refused (default: *, any other host)",
    )
    p.set_defaults(func=_cmd_operator)

    p = sub.add_parser(
        "explain", help="plan the fleet for its quota demand and say why each replica exists"
    )
    p.add_argument(
        "paths", nargs="*", default=[str(DEFAULT_SAMPLES)], help="manifests (default: crds/samples)"
    )
    p.add_argument("-n", "--namespace", default="llmfleet")
    p.add_argument("--policy", help="FleetPolicy name (default: the first)")
    p.add_argument("--model", help="only this LLMModel")
    p.add_argument("--region", help="only this Region")
    p.add_argument(
        "--load",
        type=_share,
        default=0.5,
        help="share of token budgets used at peak (default: %(default)s)",
    )
    p.add_argument(
        "--start-hour",
        type=int,
        default=0,
        choices=range(24),
        metavar="H",
        help="UTC hour of step 0",
    )
    p.add_argument(
        "--router-shares", metavar="FILE",
        help="the router's calibrated shares (shares_document JSON, or the router's ConfigMap "
        "with data[shares.json]): each routed tier's demand is split among its candidates and "
        "the output says how many replicas exist because of routing",
    )
    p.set_defaults(func=_cmd_explain)

    p = sub.add_parser(
        "dashboards",
        help="generate the chart's dashboards, alert rules and CRD copy (or check drift)",
    )
    p.add_argument("--chart", default=str(DEFAULT_CHART), help="chart dir (default: %(default)s)")
    p.add_argument(
        "--tiers", nargs="+", default=[str(DEFAULT_SAMPLES / "tiers.yaml")],
        help="SLATier manifests the SLO rules are generated from (default: %(default)s)",
    )
    p.add_argument("--check", action="store_true", help="fail if the files differ")
    p.set_defaults(func=_cmd_dashboards)

    p = sub.add_parser(
        "actuate", help="apply a recorded FleetPlan to the fleet (re-apply an older one to revert)"
    )
    p.add_argument("plan", help="FleetPlan name")
    p.add_argument("-n", "--namespace", default="llmfleet", help="namespace (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    p.add_argument(
        "--max-changes", type=int, default=None,
        help="most objects to change (default: the FleetPolicy's maxChangesPerCycle)",
    )
    _add_cluster_args(p)
    p.set_defaults(func=_cmd_actuate)

    p = sub.add_parser(
        "simulate", help="replay the traces on the digital twin: every policy, same arrivals"
    )
    from llmfleet.sim.cli import add_arguments as add_simulate_arguments

    add_simulate_arguments(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("router", help="the quality-aware model router service")
    router = p.add_subparsers(dest="router_command", required=True)
    p = router.add_parser("serve", help="an OpenAI-compatible proxy that picks each request's model")
    p.add_argument("--config", required=True, help="the router's ConfigMap (or its router.json), watched")
    p.add_argument("--upstream", required=True, help="base URL requests are forwarded to")
    p.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s; 0.0.0.0 in a pod)")
    p.add_argument("--reload-seconds", type=float, default=2.0, help="config poll period (default: %(default)s)")
    p.add_argument("--connect-timeout", type=float, default=5.0, help="upstream connect timeout, s")
    p.add_argument("--read-timeout", type=float, default=600.0, help="upstream read timeout between bytes, s")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--metrics-port", type=int, help="serve the gen_ai demand metrics (Envoy AI "
                   "Gateway's names) on GET /metrics of this port (default: not served)")
    p.add_argument("--metrics-header-attributes", default="", metavar="H:A,...",
                   help="request headers recorded as metric labels, as Envoy AI Gateway's "
                   "metricsRequestHeaderAttributes: x-tenant-id:tenant.id,x-tier:tier")
    p.set_defaults(func=_cmd_router)
    p = router.add_parser(
        "calibrate", help="fit a routed SLATier's router on per-query quality data and write "
        "the router's ConfigMap content (router.json, <tier>.npz, shares.json)",
    )
    p.add_argument("--data", required=True, help="per-query quality data: a CSV of prompt,"
                   "quality:<model>,cost:<model>,... (or a folder of them), or RouteLLM's folder")
    p.add_argument("--tier", required=True, help="the SLATier to calibrate (it has spec.routing)")
    p.add_argument("--column", action="append", metavar="MODEL=COLUMN",
                   help="the data's model column of a candidate LLMModel (repeatable; default: "
                   "the column of the LLMModel's own name)")
    p.add_argument("--manifests", nargs="+", metavar="PATH",
                   help="the fleet's manifests (files or folders); default: read them from the cluster")
    p.add_argument("-n", "--namespace", default="llmfleet", help="the fleet's namespace (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds and routers (default: %(default)s)")
    p.add_argument("--bits", type=int, default=None,
                   help="hashing bits of the prompt features (default: 16); fewer: a smaller artefact")
    p.add_argument("--folds", type=int, default=5, help="cross-fit folds (default: %(default)s)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", help="write router.json, <tier>.npz and shares.json into DIR")
    where.add_argument("--apply", action="store_true",
                       help="server-side apply them into the ConfigMap llmfleet-router of the namespace")
    _add_cluster_args(p)
    p.set_defaults(func=_cmd_router_calibrate)

    p = sub.add_parser(
        "bench", help="benchmarks that print figures (see `llmfleet bench X --help`)"
    )
    p.add_argument("target", choices=BENCH_TARGETS)
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    p.set_defaults(func=_cmd_bench)
    for command in sub.choices.values():  # `llmfleet CMD ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="on an error, show the traceback")  # fmt: skip
    return parser


def _share(text: str) -> float:
    """A share of the token budgets: a number >= 0 (1 = the whole budget)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a share >= 0 (0.5 = half the budgets), got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `llmfleet ... | head`: stop quietly, like other Unix tools
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        if args.debug or not _is_user_error(err):
            raise
        print(f"llmfleet {args.command}: error: {_describe(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
