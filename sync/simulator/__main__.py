"""``python -m sync.simulator serve|evolve|faults ...`` (see :mod:`sync.simulator.command`)."""

from sync.simulator.command import simulator_cli

if __name__ == "__main__":
    simulator_cli(prog_name="python -m sync.simulator")
