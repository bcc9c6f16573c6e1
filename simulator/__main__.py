"""``python -m simulator serve|evolve|faults ...`` (see :mod:`simulator.command`)."""

from simulator.command import simulator_cli

if __name__ == "__main__":
    simulator_cli(prog_name="python -m simulator")
