"""Cache a frozen encoder's outputs (audio or video) for one corpus split and test condition."""

from avsr_sinks.workflow import cli
from avsr_sinks.workflow.feature_stage import add_arguments, cache_features


def main() -> None:
    ap = cli.parser(__doc__)
    add_arguments(ap)
    args = ap.parse_args()
    cache_features(args, cli.start(args))


if __name__ == "__main__":
    cli.run(main)
