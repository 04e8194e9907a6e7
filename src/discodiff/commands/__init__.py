"""The bodies of the command line's subcommands (``discodiff list``, ``sample``, ``export``);
:mod:`discodiff.cli` only registers them. Each module has ``add_parser(subparsers)`` and
``run(args) -> int``."""
