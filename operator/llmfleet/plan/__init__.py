"""Fleet planner: typed instance in, typed and explained plan out (pure core, no I/O).

Entry points: :func:`llmfleet.plan.instance.from_snapshot` builds a
:class:`~llmfleet.plan.instance.PlanningInstance`; :func:`llmfleet.plan.solve.plan_fleet`
returns a :class:`~llmfleet.plan.types.Plan`, :class:`~llmfleet.plan.types.Infeasible` or
:class:`~llmfleet.plan.types.NoSolutionInTime`, never with replicas outside the
instance's ``replica_bounds``; :func:`llmfleet.plan.validate.validate` checks a plan's
tables against the instance; :func:`llmfleet.plan.explain.explain` says why each replica
exists; :func:`llmfleet.plan.convert.to_fleet_plan_spec` makes the API record;
:mod:`llmfleet.plan.sageserve` is the SageServe baseline. The benchmark lives beside the
product in :mod:`llmfleet_bench.planner` (``llmfleet bench planner``).
"""
