"""Train one experiment's projectors and LoRA adapters on cached features."""

import json

from avsr_sinks.workflow import cli
from avsr_sinks.workflow.training_stage import add_arguments, train_experiment


def main() -> None:
    ap = cli.parser(__doc__)
    add_arguments(ap)
    args = ap.parse_args()
    params = cli.start(args)
    print(json.dumps(train_experiment(args, params), indent=2))


if __name__ == "__main__":
    cli.run(main)
