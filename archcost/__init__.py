"""archcost: architecture cost-model analyzer for PyTorch models.

Data flows one way: model file -> trace (operator graph) -> cost -> plan -> validate -> report.
"""

__version__ = "0.1.0"
