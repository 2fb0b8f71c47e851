"""The threaded simulator, under the name the tests have always imported it by."""

from batchsms.simulator.threaded import SimThread, simulator_in_thread, simulator_thread

__all__ = ["SimThread", "simulator_in_thread", "simulator_thread"]
