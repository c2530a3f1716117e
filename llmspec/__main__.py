from llmspec.cli.main import main

raise SystemExit(main())
