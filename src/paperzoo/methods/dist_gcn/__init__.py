"""Distributed training of graph convolutional networks (Scardapane, Spinelli & Di Lorenzo, 2021).

N agents each own a part of a node-classification graph. Inference and back-propagation exchange
only boundary rows between the agents that own them; optimisation is gradient tracking over a
sparse communication topology designed from the data graph. The same agent code runs in an
in-process simulation and in real processes over ``torch.distributed`` (gloo).

Public API::

    from paperzoo.methods.dist_gcn import DistGCNConfig, SimComm, DistComm, build_topology
"""
from paperzoo.api import MethodSpec
from paperzoo.methods.dist_gcn.comm import AgentFailure, Comm, DistComm, SimComm, halo_exchange
from paperzoo.methods.dist_gcn.config import PRESETS, DistGCNConfig
from paperzoo.methods.dist_gcn.model import ParamLayout, dist_forward, gcn_forward
from paperzoo.methods.dist_gcn.run import evaluate, report_section, run
from paperzoo.methods.dist_gcn.topology import Topology, build_topology

CITATION = """@article{scardapane2021distributed,
  title   = {Distributed Training of Graph Convolutional Networks},
  author  = {Scardapane, Simone and Spinelli, Indro and Di Lorenzo, Paolo},
  journal = {IEEE Transactions on Signal and Information Processing over Networks},
  volume  = {7},
  pages   = {87--100},
  year    = {2021},
}"""

SPEC = MethodSpec(
    name="dist_gcn",
    paper="Distributed training of graph convolutional networks",
    citation=CITATION,
    url="https://arxiv.org/abs/2007.06281",
    config_cls=DistGCNConfig,
    presets=PRESETS,
    run=run,
    evaluate=evaluate,
    headline="test/accuracy",
    table_metrics=("accuracy",),
    variant_fields=("algorithm", "num_agents", "partition", "topology", "links", "mixing"),
    report_section=report_section,
)

__all__ = [
    "SPEC",
    "AgentFailure",
    "Comm",
    "DistComm",
    "DistGCNConfig",
    "ParamLayout",
    "SimComm",
    "Topology",
    "build_topology",
    "dist_forward",
    "evaluate",
    "gcn_forward",
    "halo_exchange",
    "run",
]
