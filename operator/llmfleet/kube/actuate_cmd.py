"""``llmfleet actuate PLAN``: apply one recorded FleetPlan to the fleet (or revert to an older
one), reading every llmfleet object from the cluster in ``$KUBECONFIG``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from llmfleet.api import API_VERSION, KINDS
from llmfleet.api.loading import describe_validation_error, snapshot_of
from llmfleet.api.references import FleetSnapshot
from llmfleet.api.resource import Resource
from llmfleet.kube.actuate import RegionClusters, actuate
from llmfleet.kube.client import Cluster, KubeError


def read_snapshot(cluster: Cluster, namespace: str) -> tuple[FleetSnapshot, list[str]]:
    """Every llmfleet object of ``namespace`` (and every Region); unreadable ones are named."""
    objs: list[Resource] = []
    problems: list[str] = []
    for kind in KINDS:
        ns = namespace if kind.info.scope == "Namespaced" else None
        for doc in cluster.list(API_VERSION, kind.info.kind, ns):
            try:
                objs.append(kind.from_wire(doc))
            except ValidationError as err:
                name = (doc.get("metadata") or {}).get("name")
                problems.append(f"{kind.info.kind} {name}: {describe_validation_error(err)}")
    return snapshot_of(objs), problems


def main(args: argparse.Namespace) -> int:
    kubeconfig = Path(args.kubeconfig) if getattr(args, "kubeconfig", None) else None
    cluster = Cluster.connect(kubeconfig, getattr(args, "context", None))
    try:
        snap, problems = read_snapshot(cluster, args.namespace)
        for p in problems:
            print(f"skipped: {p}", file=sys.stderr)
        plan = next((p for p in snap.plans if p.name == args.plan), None)
        if plan is None:
            print(f"FleetPlan {args.namespace}/{args.plan} not found", file=sys.stderr)
            return 1
        policy = next((p for p in snap.policies if p.name == plan.spec.policy), None)
        if policy is None:
            print(
                f"FleetPlan {args.plan}: spec.policy names FleetPolicy {plan.spec.policy!r}, "
                "which does not exist",
                file=sys.stderr,
            )
            return 1
        if args.max_changes is not None:  # the policy's knob, overridden for this run
            policy = policy.model_copy(
                update={"spec": policy.spec.model_copy(update={"max_changes_per_cycle": args.max_changes})}
            )
        # run with the caller's own credentials: kubeconfig Secrets are read from the fleet's
        # namespace only, and a missing fleet namespace is created (as the caller may)
        with RegionClusters(
            cluster, kubeconfig_namespaces=(args.namespace,), create_namespaces=True
        ) as resolver:
            res = actuate(resolver, snap, plan.spec, policy, args.namespace, dry_run=args.dry_run)
    except KubeError as err:
        print(str(err), file=sys.stderr)
        return 1
    finally:
        cluster.close()
    verb = "would change" if args.dry_run else "changed"
    for line in res.diff:
        print(f"  {line}")
    for line in res.pending:
        print(f"  pending: {line}")
    for line in res.errors:
        print(f"  error: {line}", file=sys.stderr)
    print(f"FleetPlan {args.plan}: {verb} {res.changes} objects, {len(res.pending)} pending")
    return 0 if res.complete else 1
