r"""batchsms: apply many UpdateTask calls to Huawei Cloud SMS safely and fast.

The flow, one module per stage::

    records -> schema -> plan -> limiter -> client (+ retry, signing) -> outcomes
               \_________________ engine/pipeline wires them _________________/

The commands that drive it are in `commands/`; `cli.py` parses their options.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
