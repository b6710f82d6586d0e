from splitter.cli import main

raise SystemExit(main())
