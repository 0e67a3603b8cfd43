"""Sky computing: an intercloud job broker (Chasins et al., "The Sky Above The Clouds", 2022),
built the way SkyPilot (NSDI 2023) realises it.

Public API::

    from paperzoo.methods.sky_broker import load_dag, load_catalog, optimize, Broker, BrokerOptions

- :mod:`.spec`: job specs (YAML, SkyPilot-like) validated into a :class:`Dag`;
- :mod:`.catalog`: offerings in SkyPilot's CSV layout + egress prices and measured throughput;
- :mod:`.optimizer`: placement by dynamic programming (chains) or a HiGHS MILP (DAGs);
- :mod:`.providers`: local subprocesses, Ray job submission, dry-run AWS/GCP/Azure;
- :mod:`.broker`: provisioning with failover and spot recovery; :mod:`.state`: the SQLite job database;
- :mod:`.cli`: ``paperzoo sky plan|launch|status|logs|down``.
"""
from paperzoo.api import MethodSpec
from paperzoo.methods.sky_broker.broker import Broker, BrokerOptions, cancel, job_logs
from paperzoo.methods.sky_broker.catalog import Catalog, Offering, load_catalog, synthetic_catalog
from paperzoo.methods.sky_broker.config import PRESETS, SkyBrokerConfig
from paperzoo.methods.sky_broker.optimizer import (
                                                   Block,
                                                   Candidate,
                                                   NoFeasiblePlan,
                                                   Plan,
                                                   build_problem,
                                                   optimize,
                                                   solve,
                                                   solve_bruteforce,
                                                   solve_dp,
                                                   solve_ilp,
)
from paperzoo.methods.sky_broker.providers import (
                                                   CapacityError,
                                                   ChaosProvider,
                                                   DryRunCloudProvider,
                                                   JobStatus,
                                                   LocalProvider,
                                                   QuotaError,
                                                   RayProvider,
)
from paperzoo.methods.sky_broker.run import evaluate, report_section, run
from paperzoo.methods.sky_broker.spec import Dag, SpecError, load_dag, parse_dag
from paperzoo.methods.sky_broker.state import JobDB

CITATION = """@article{chasins2022sky,
  title   = {The Sky Above The Clouds},
  author  = {Chasins, Sarah and Cheung, Alvin and Crooks, Natacha and Ghodsi, Ali and Goldberg, Ken and
             Gonzalez, Joseph E. and Hellerstein, Joseph M. and Jordan, Michael I. and Joseph, Anthony D.
             and Mahoney, Michael W. and Parameswaran, Aditya and Patterson, David and Popa, Raluca Ada
             and Sen, Koushik and Shenker, Scott and Song, Dawn and Stoica, Ion},
  journal = {arXiv preprint arXiv:2205.07147},
  year    = {2022},
}"""

SPEC = MethodSpec(
    name="sky_broker",
    paper="The Sky Above The Clouds (intercloud broker: catalog, placement optimizer, failover)",
    citation=CITATION,
    url="https://arxiv.org/abs/2205.07147",
    config_cls=SkyBrokerConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="plan/cost_usd",
    table_metrics=("plan/cost_usd", "plan/time_h", "savings/single_cloud_best_x", "agree/cost_frac"),
    extras={"sky": ("ray",)},
    report_section=report_section,
)

__all__ = [
                                                   "SPEC",
                                                   "Block",
                                                   "Broker",
                                                   "BrokerOptions",
                                                   "Candidate",
                                                   "CapacityError",
                                                   "Catalog",
                                                   "ChaosProvider",
                                                   "Dag",
                                                   "DryRunCloudProvider",
                                                   "JobDB",
                                                   "JobStatus",
                                                   "LocalProvider",
                                                   "NoFeasiblePlan",
                                                   "Offering",
                                                   "Plan",
                                                   "QuotaError",
                                                   "RayProvider",
                                                   "SkyBrokerConfig",
                                                   "SpecError",
                                                   "build_problem",
                                                   "cancel",
                                                   "evaluate",
                                                   "job_logs",
                                                   "load_catalog",
                                                   "load_dag",
                                                   "optimize",
                                                   "parse_dag",
                                                   "run",
                                                   "solve",
                                                   "solve_bruteforce",
                                                   "solve_dp",
                                                   "solve_ilp",
                                                   "synthetic_catalog",
]
