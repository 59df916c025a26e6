"""``python -m layerlab`` is the ``layerlab`` command."""

from layerlab.cli.main import main

raise SystemExit(main())
