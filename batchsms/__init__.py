r"""batchsms: apply many UpdateTask calls to Huawei Cloud SMS safely and fast.

The flow, one module per stage::

    records -> schema -> plan -> limiter -> client (+ retry, auth) -> outcomes
               \___________________ pipeline wires them ___________________/
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
