from sht.cli import main

raise SystemExit(main())
