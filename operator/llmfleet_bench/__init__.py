"""llmfleet's benchmarks, apart from the product (like kueue's ``test/performance``).

``llmfleet bench TARGET [...]`` imports one of these modules lazily and calls its ``main``:

=========================================  ==============================================
module                                     what it measures
=========================================  ==============================================
:mod:`llmfleet_bench.planner`              planner grid: solve time, cost, gap to the LP
                                           bound, SageServe under the same limits
:mod:`llmfleet_bench.controller`           reconcile latency with 1,000 CRs; plan-to-writes
                                           time, against a real apiserver
:mod:`llmfleet_bench.forecast`             forecaster backtest on the ServeGen flows
:mod:`llmfleet_bench.sim`                  digital-twin speed and peak memory
:mod:`llmfleet_bench.fairness`             fair schedulers side by side on ServeGen clients
=========================================  ==============================================

Each module states the thresholds it checks as named constants next to the code that
measures them (:class:`llmfleet_bench.targets.Threshold`) and prints every threshold beside
its measured figure with a pass/miss mark. :mod:`llmfleet_bench.fleets` is the seeded fleet
generator the planner benchmark and the planner's tests share.

The product (``llmfleet.*``) never imports this package, except ``llmfleet.cli``'s lazy
dispatch of ``llmfleet bench`` (``.importlinter`` enforces it).
"""
